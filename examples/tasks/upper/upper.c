// upper: a plain WASI command program (main, stdin -> stdout), no task world needed.
// Prints each argument on its own line, then stdin, all in upper case, then the value of
// the environment variable UPPER_SUFFIX if it is set. Built for wasm32-wasi with main().
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>

static void put_upper(const char *s) {
    for (; *s; s++) {
        putchar(toupper((unsigned char)*s));
    }
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        put_upper(argv[i]);
        putchar('\n');
    }
    int c;
    while ((c = getchar()) != EOF) {
        putchar(toupper(c));
    }
    const char *suffix = getenv("UPPER_SUFFIX");
    if (suffix != NULL) {
        fputs(suffix, stdout);
    }
    return 0;
}
