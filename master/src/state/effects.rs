//! What applying a batch asks the world outside the state machine to do: records to store,
//! tasks to send to executors, executors to tell to stop, waiters to wake.
//!
//! The state machine itself never does I/O; the storage layer and the leader's sessions act
//! on these.

use std::collections::BTreeSet;

use wasmgrid_common::Digest;

use super::module::{ModuleKind, ModuleMeta};
use super::task::{Limits, TaskId, TaskOutput, TaskRecord};
use super::RequestId;

/// A run placed on an executor: everything it needs but the input bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dispatch {
    pub executor: String,
    pub task: TaskId,
    pub attempt: u32,
    pub module: Digest,
    pub kind: ModuleKind,
    pub limits: Limits,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

/// One run on one executor, named by its fencing token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct RunRef {
    pub task: TaskId,
    pub attempt: u32,
}

#[derive(Debug, Default)]
pub struct Effects {
    /// Live tasks whose record changed: store these.
    pub changed: BTreeSet<TaskId>,
    /// Tasks that reached a final state, with their final record (no longer in memory).
    pub finished: Vec<TaskRecord>,
    pub inputs: Vec<(TaskId, Vec<u8>)>,
    pub outputs: Vec<(TaskId, TaskOutput)>,
    pub dispatch: Vec<Dispatch>,
    /// Runs placed beyond their executor's slots: they wait there for one (the leader keeps
    /// this in mind for their deadlines; nothing stores it).
    pub queued: Vec<(String, RunRef)>,
    /// Runs an executor must stop (cancelled, or moved elsewhere).
    pub stop: Vec<(String, RunRef)>,
    /// Reports that were applied (accepted or ignored): the executor may forget them.
    pub acks: Vec<(String, RunRef)>,
    pub modules: Vec<ModuleMeta>,
    pub executors: BTreeSet<String>,
    /// Executors that left for good.
    pub executors_removed: Vec<String>,
    pub requests_added: Vec<(RequestId, Vec<TaskId>, i64)>,
    pub requests_expired: Vec<RequestId>,
    /// The masters' client addresses changed.
    pub member_addrs: bool,
    /// Forget finished tasks that finished before this time (ms since the epoch).
    pub forget_before: Option<i64>,
}

impl Effects {
    /// True when nothing needs storing or sending.
    pub fn is_empty(&self) -> bool {
        self.changed.is_empty()
            && self.finished.is_empty()
            && self.dispatch.is_empty()
            && self.stop.is_empty()
            && self.acks.is_empty()
            && self.modules.is_empty()
            && self.executors.is_empty()
            && self.requests_added.is_empty()
            && self.requests_expired.is_empty()
            && self.forget_before.is_none()
    }
}
