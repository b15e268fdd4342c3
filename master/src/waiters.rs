//! Who waits for which task: `WaitTasks` streams register here and are handed the task's
//! final record when the batch that finished it has been stored. Every master applies the
//! log, so waiting works on any of them.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::mpsc;
use wasmgrid_proto as pb;

use crate::state::TaskId;

pub type Waiter = mpsc::UnboundedSender<pb::Task>;

#[derive(Default)]
pub struct Waiters {
    inner: Mutex<HashMap<TaskId, Vec<Waiter>>>,
}

impl Waiters {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TaskId, Vec<Waiter>>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers `tx` to receive each of `ids` when it finishes.
    pub fn register(&self, ids: &[TaskId], tx: &Waiter) {
        let mut map = self.lock();
        for id in ids {
            map.entry(*id).or_default().push(tx.clone());
        }
    }

    /// Takes the waiters of the `finished` tasks that have any, so their records are built
    /// only when someone wants them.
    pub fn take(&self, finished: impl IntoIterator<Item = TaskId>) -> Vec<(TaskId, Vec<Waiter>)> {
        let mut map = self.lock();
        if map.is_empty() {
            return Vec::new();
        }
        finished.into_iter().filter_map(|id| map.remove(&id).map(|w| (id, w))).collect()
    }

    /// Drops registrations whose stream has gone away.
    pub fn forget_closed(&self) {
        self.lock().retain(|_, list| {
            list.retain(|tx| !tx.is_closed());
            !list.is_empty()
        });
    }
}
