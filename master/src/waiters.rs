//! Who waits for which task: `WaitTasks` streams register here and are woken once the task's
//! final record is stored. Every master applies the log, so waiting works on any of them.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::mpsc;

use crate::state::TaskId;

#[derive(Default)]
pub struct Waiters {
    inner: Mutex<HashMap<TaskId, Vec<mpsc::UnboundedSender<TaskId>>>>,
}

impl Waiters {
    /// Registers `tx` to hear about each of `ids` when it finishes.
    pub fn register(&self, ids: &[TaskId], tx: &mpsc::UnboundedSender<TaskId>) {
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        for id in ids {
            map.entry(*id).or_default().push(tx.clone());
        }
    }

    /// Wakes everyone waiting on `finished`.
    pub fn notify(&self, finished: impl IntoIterator<Item = TaskId>) {
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if map.is_empty() {
            return;
        }
        for id in finished {
            if let Some(list) = map.remove(&id) {
                for tx in list {
                    let _ = tx.send(id);
                }
            }
        }
    }

    /// Drops registrations whose stream has gone away.
    pub fn forget_closed(&self) {
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, list| {
            list.retain(|tx| !tx.is_closed());
            !list.is_empty()
        });
    }
}
