// The sha256 and fib examples compiled natively, from the very same source files as their
// wasm builds, for `make bench`: prints the best time of RUNS runs (default 5) in nanoseconds.
//   native-bench SHA_BYTES FIB_N [RUNS]   ->   sha256_ns N \n fib_ns N
#define NATIVE_BENCH
#include <stdio.h>
#include <time.h>

#include "../examples/tasks/fib/fib.c"
#include "../examples/tasks/sha256/sha256.c"

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

int main(int argc, char **argv) {
    size_t bytes = argc > 1 ? strtoul(argv[1], NULL, 10) : 4 << 20;
    unsigned n = argc > 2 ? (unsigned)strtoul(argv[2], NULL, 10) : 30;
    int runs = argc > 3 ? atoi(argv[3]) : 5;
    if (runs < 1) runs = 1;
    uint8_t *data = malloc(bytes);
    if (data == NULL) return 1;
    memset(data, 'x', bytes);
    char hex[65] = {0};
    long long best_sha = -1, best_fib = -1;
    volatile unsigned long long sink = 0;
    for (int run = 0; run < runs; run++) {
        long long t0 = now_ns();
        sha256_hex(data, bytes, hex);
        long long t1 = now_ns();
        sink += fib(n);
        long long t2 = now_ns();
        if (best_sha < 0 || t1 - t0 < best_sha) best_sha = t1 - t0;
        if (best_fib < 0 || t2 - t1 < best_fib) best_fib = t2 - t1;
    }
    printf("sha256_ns %lld\nfib_ns %lld\n", best_sha, best_fib);
    fprintf(stderr, "sha256 %s fib(%u) %llu\n", hex, n, sink / (unsigned long long)runs);
    free(data);
    return 0;
}
