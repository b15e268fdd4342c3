// fib: the n-th Fibonacci number, computed by naive recursion (input: n as text, default 25).
// CPU-bound on purpose: fib(30) burns about 100 million units of fuel. The same file compiles
// natively (bench/native.c) for comparison.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef NATIVE_BENCH
#include "task.h"
#endif

static unsigned long long fib(unsigned n) {
    return n < 2 ? n : fib(n - 1) + fib(n - 2);
}

#ifndef NATIVE_BENCH
bool exports_task_run(task_list_u8_t *input, task_list_u8_t *ret, task_string_t *err) {
    char text[32] = {0};
    size_t len = input->len < sizeof text - 1 ? input->len : sizeof text - 1;
    memcpy(text, input->ptr, len);
    char *end = NULL;
    unsigned long n = len == 0 ? 25 : strtoul(text, &end, 10);
    if ((len > 0 && (end == text || (*end != '\0' && *end != '\n'))) || n > 90) {
        const char *msg = "input must be a number from 0 to 90";
        task_string_dup(err, msg);
        return false;
    }
    char out[32];
    int n_out = snprintf(out, sizeof out, "%llu", fib((unsigned)n));
    ret->ptr = malloc((size_t)n_out);
    memcpy(ret->ptr, out, (size_t)n_out);
    ret->len = (size_t)n_out;
    return true;
}
#endif
