/* Prints the titles related to a title, best first, one per line.
 *
 *   cc -I crates/feed-c/include crates/feed-c/examples/c/similar.c \
 *      -L target/release -lalsoborrowed_feed_c -o similar
 *   LD_LIBRARY_PATH=target/release ./similar var/demo/published 9788702173512 5
 *
 * Exit status: 0 success (also for a title without a list: no output),
 * 1 the feed could not be opened or a call failed, 2 usage. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alsoborrowed_feed.h"

int main(int argc, char **argv) {
    if (argc < 3 || argc > 4) {
        fprintf(stderr, "usage: %s FEED_DIR TITLE [N]\n", argv[0]);
        return 2;
    }
    size_t n = argc == 4 ? (size_t)strtoul(argv[3], NULL, 10) : 20;

    abf_error *error = abf_error_new();
    abf_feed *feed = abf_feed_open(argv[1], error);
    if (feed == NULL) {
        /* The message belongs to `error`: print it before freeing that. */
        fprintf(stderr, "error %d: %s\n", (int)abf_error_code(error), abf_error_message(error));
        abf_error_free(error);
        return 1;
    }

    abf_list *list = abf_feed_similar(feed, argv[2], strlen(argv[2]), n, error);
    if (list == NULL) {
        fprintf(stderr, "error %d: %s\n", (int)abf_error_code(error), abf_error_message(error));
        abf_feed_free(feed);
        abf_error_free(error);
        return 1;
    }
    /* The list is a copy: it stays valid after the feed is freed. */
    abf_feed_free(feed);
    for (size_t i = 0; i < abf_list_len(list); i++) {
        /* Each string belongs to `list`; do not free it. */
        puts(abf_list_get(list, i));
    }
    abf_list_free(list);
    abf_error_free(error);
    return 0;
}
