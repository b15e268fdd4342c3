// trap: executes an `unreachable` instruction. The task fails as `trap`; the executor keeps
// serving.
#include "task.h"

bool exports_task_run(task_list_u8_t *input, task_list_u8_t *ret, task_string_t *err) {
    (void)input;
    (void)ret;
    (void)err;
    __builtin_trap();
}
