// readfile: a WASI command that tries to print a host file (argv[1], default /etc/passwd).
// The sandbox grants no filesystem, so it fails with an error from inside the guest and
// exits with code 2: the task fails as `task_error` with the exit code recorded.
#include <errno.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : "/etc/passwd";
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "cannot open %s: %s\n", path, strerror(errno));
        return 2;
    }
    int c;
    while ((c = fgetc(f)) != EOF) {
        putchar(c);
    }
    fclose(f);
    return 0;
}
