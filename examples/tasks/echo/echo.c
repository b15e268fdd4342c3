// echo: returns its input unchanged. The smallest useful task.
#include "task.h"

bool exports_task_run(task_list_u8_t *input, task_list_u8_t *ret, task_string_t *err) {
    (void)err;
    // The input buffer is ours; hand it back as the output.
    *ret = *input;
    return true;
}
