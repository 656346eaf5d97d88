/* Raw rates of this machine for the floor of each stage (benches/peers/floor.py):
 *   floor read FILE          sequential read of FILE from the page cache, bytes/s
 *   floor hmac N             HMAC-SHA256 of N 12-byte ids with pre-keyed states, per s
 *   floor incr N T           N increments of a tight loop into T counters at random, per s
 *   floor files DIR N        N small files created in one new directory under DIR, per s
 * One thread each; prints "name=rate". Build: cc -O2 floor.c -lcrypto */
#define _GNU_SOURCE
#define OPENSSL_SUPPRESS_DEPRECATED
#include <fcntl.h>
#include <openssl/sha.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int read_rate(const char *path) {
    size_t cap = 8 << 20;
    char *buf = malloc(cap);
    double best = 0;
    for (int pass = 0; pass < 3; pass++) { /* the first pass warms the cache */
        int fd = open(path, O_RDONLY);
        if (fd < 0 || !buf) return 1;
        double t0 = now();
        long long total = 0;
        ssize_t got;
        while ((got = read(fd, buf, cap)) > 0) total += got;
        double rate = total / (now() - t0);
        close(fd);
        if (pass > 0 && rate > best) best = rate;
    }
    printf("read_bytes_per_s=%.0f\n", best);
    return 0;
}

static int hmac_rate(long n) {
    unsigned char key[64] = {7}, ipad[64], opad[64], inner[32], out[32];
    for (int i = 0; i < 64; i++) { ipad[i] = key[i] ^ 0x36; opad[i] = key[i] ^ 0x5c; }
    SHA256_CTX ki, ko, c;
    SHA256_Init(&ki); SHA256_Update(&ki, ipad, 64);
    SHA256_Init(&ko); SHA256_Update(&ko, opad, 64);
    char id[16];
    unsigned sink = 0;
    double t0 = now();
    for (long i = 0; i < n; i++) {
        snprintf(id, sizeof id, "SYN%09ld", i % 1000000000L);
        c = ki; SHA256_Update(&c, id, 12); SHA256_Final(inner, &c);
        c = ko; SHA256_Update(&c, inner, 32); SHA256_Final(out, &c);
        sink += out[0];
    }
    printf("hmac_per_s=%.0f\n", n / (now() - t0));
    return sink == 0xFFFFFFFF;
}

static int incr_rate(long n, long t) {
    uint32_t *idx = malloc(sizeof *idx * (1 << 20)), *count = calloc(t, sizeof *count);
    if (!idx || !count || t < 1) return 1;
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (int i = 0; i < 1 << 20; i++) { x ^= x << 13; x ^= x >> 7; x ^= x << 17; idx[i] = x % t; }
    double t0 = now();
    for (long i = 0; i < n; i++) count[idx[i & ((1 << 20) - 1)]]++;
    double secs = now() - t0;
    uint64_t sum = 0;
    for (long i = 0; i < t; i++) sum += count[i];
    printf("increments_per_s=%.0f\n", n / secs);
    return sum != (uint64_t)n;
}

static int files_rate(const char *parent, long n) {
    char dir[4096], path[4200], body[600];
    memset(body, 'x', sizeof body);
    snprintf(dir, sizeof dir, "%s/floor-files-%d", parent, getpid());
    if (mkdir(dir, 0755)) return 1;
    int dfd = open(dir, O_RDONLY | O_DIRECTORY);
    double t0 = now();
    for (long i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/978%010ld.json", dir, i * 7919 % 10000000000L);
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
        if (fd < 0 || write(fd, body, sizeof body) != (ssize_t)sizeof body) return 1;
        close(fd);
    }
    syncfs(dfd); /* export makes its files durable before switching `current` */
    double secs = now() - t0;
    close(dfd);
    for (long i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/978%010ld.json", dir, i * 7919 % 10000000000L);
        unlink(path);
    }
    rmdir(dir);
    printf("files_per_s=%.0f\n", n / secs);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "read")) return read_rate(argv[2]);
    if (argc == 3 && !strcmp(argv[1], "hmac")) return hmac_rate(atol(argv[2]));
    if (argc == 4 && !strcmp(argv[1], "incr")) return incr_rate(atol(argv[2]), atol(argv[3]));
    if (argc == 4 && !strcmp(argv[1], "files")) return files_rate(argv[2], atol(argv[3]));
    fprintf(stderr, "usage: floor read FILE | hmac N | incr N T | files DIR N\n");
    return 2;
}
