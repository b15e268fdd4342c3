// spin: loops forever. Stopped by its fuel budget (`out_of_fuel`) or, with plenty of fuel,
// by its wall-clock timeout (`timeout`).
#include "task.h"

bool exports_task_run(task_list_u8_t *input, task_list_u8_t *ret, task_string_t *err) {
    (void)input;
    (void)ret;
    (void)err;
    volatile unsigned long long n = 0;
    for (;;) {
        n++;
    }
}
