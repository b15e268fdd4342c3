// hog: allocates memory 1 MiB at a time, touching every page, until the allocator gives up.
// Under a memory cap it fails as `memory_limit`, however it reacts to the refusal.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "task.h"

// Keeps every block reachable, so the compiler cannot drop the allocations as unused.
static void *volatile newest;

bool exports_task_run(task_list_u8_t *input, task_list_u8_t *ret, task_string_t *err) {
    (void)input;
    (void)ret;
    size_t mib = 0;
    for (;;) {
        void **block = malloc(1 << 20);
        if (block == NULL) {
            break;
        }
        memset(block, 0xAB, 1 << 20);
        *block = newest;
        newest = block;
        mib++;
    }
    char msg[64];
    int n = snprintf(msg, sizeof msg, "allocation failed after %zu MiB", mib);
    task_string_dup_n(err, msg, (size_t)n);
    return false;
}
