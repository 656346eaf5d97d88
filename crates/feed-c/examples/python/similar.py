"""Prints the titles related to a title, best first, one per line, through
the C interface (ctypes; no compiler or extension module needed).

    python3 crates/feed-c/examples/python/similar.py \
        target/release/libalsoborrowed_feed_c.so var/demo/published 9788702173512 5

Exit status: 0 success (no output for a title without a list), 1 the feed
could not be opened, 2 usage.
"""

import ctypes
import sys


class Feed:
    """An open feed; close() (or a with-block) frees it."""

    def __init__(self, lib_path, feed_path):
        lib = ctypes.CDLL(lib_path)
        lib.abf_error_new.restype = ctypes.c_void_p
        lib.abf_error_free.argtypes = [ctypes.c_void_p]
        lib.abf_error_code.argtypes = [ctypes.c_void_p]
        lib.abf_error_code.restype = ctypes.c_int
        lib.abf_error_message.argtypes = [ctypes.c_void_p]
        lib.abf_error_message.restype = ctypes.c_char_p  # copied by ctypes
        lib.abf_feed_open.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
        lib.abf_feed_open.restype = ctypes.c_void_p
        lib.abf_feed_free.argtypes = [ctypes.c_void_p]
        lib.abf_feed_similar.argtypes = [
            ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_void_p,
        ]
        lib.abf_feed_similar.restype = ctypes.c_void_p
        lib.abf_list_len.argtypes = [ctypes.c_void_p]
        lib.abf_list_len.restype = ctypes.c_size_t
        lib.abf_list_get_bytes.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_size_t),
        ]
        lib.abf_list_get_bytes.restype = ctypes.c_void_p
        lib.abf_list_free.argtypes = [ctypes.c_void_p]
        self._lib = lib
        self._error = lib.abf_error_new()
        self._feed = lib.abf_feed_open(feed_path.encode(), self._error)
        if not self._feed:
            message = lib.abf_error_message(self._error).decode()
            code = lib.abf_error_code(self._error)
            lib.abf_error_free(self._error)
            raise OSError(code, message)

    def similar(self, title, n=20):
        """Up to n related titles, best first (an empty list if none)."""
        data = title.encode()
        lib = self._lib
        handle = lib.abf_feed_similar(self._feed, data, len(data), n, self._error)
        if not handle:
            raise ValueError(lib.abf_error_message(self._error).decode())
        try:
            out = []
            for i in range(lib.abf_list_len(handle)):
                length = ctypes.c_size_t()
                ptr = lib.abf_list_get_bytes(handle, i, ctypes.byref(length))
                # string_at copies: the list's strings die with abf_list_free.
                out.append(ctypes.string_at(ptr, length.value).decode())
            return out
        finally:
            lib.abf_list_free(handle)

    def close(self):
        if self._feed:
            self._lib.abf_feed_free(self._feed)
            self._lib.abf_error_free(self._error)
            self._feed = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def main(argv):
    if len(argv) not in (4, 5):
        print(f"usage: {argv[0]} LIBRARY FEED_DIR TITLE [N]", file=sys.stderr)
        return 2
    n = int(argv[4]) if len(argv) == 5 else 20
    try:
        feed = Feed(argv[1], argv[2])
    except OSError as e:
        print(f"error {e.errno}: {e.strerror}", file=sys.stderr)
        return 1
    with feed:
        for title in feed.similar(argv[3], n):
            print(title)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
