//! Commands: every change to the replicated state is one of these, carried in a Raft entry.
//!
//! One entry holds a batch of commands (group commit) and the leader's clock, so applying it
//! is deterministic on every master.

use serde::{Deserialize, Serialize};

use super::effects::RunRef;
use super::module::ModuleMeta;
use super::task::{Report, TaskId, TaskSpec};

/// The payload of one Raft entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    /// The proposing leader's wall clock, in ms since the epoch.
    pub at_ms: i64,
    pub commands: Vec<Command>,
}

/// A client's idempotency key for a submit.
pub type RequestId = [u8; 16];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewTask {
    pub spec: TaskSpec,
    /// Encoded as bytes, not as a sequence of u8 (the same in postcard, much faster).
    #[serde(with = "serde_bytes")]
    pub input: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// A module whose bytes are already in the blob store.
    PutModule(ModuleMeta),
    Submit {
        request_id: Option<RequestId>,
        tasks: Vec<NewTask>,
        /// Refuse the batch if the pending queue would grow past this (`max-pending-tasks`).
        max_pending: Option<u64>,
    },
    /// Results of runs, as reported by executors.
    Finish(Vec<Report>),
    Cancel(TaskId),
    Register {
        name: String,
        addr: String,
        incarnation: u64,
        slots: u32,
        memory: u64,
        /// How long the executor may stay silent before it is declared lost.
        lease_ms: u64,
    },
    /// The executor's stream to the leader closed.
    Disconnected {
        name: String,
        incarnation: u64,
    },
    /// Take no new tasks there; it finishes what it runs and then leaves.
    Drain(String),
    /// The executor left (after a drain): forget it; whatever it still ran moves.
    Deregister {
        name: String,
        incarnation: u64,
    },
    /// The run's timeout has passed and its executor has not reported: fail it as `timeout`.
    Expire {
        task: TaskId,
        attempt: u32,
    },
    /// Where clients reach master `node` (so followers can name the leader's address).
    MemberAddr {
        node: u64,
        api_addr: String,
    },
    /// The leader saw no heartbeat from this incarnation for a whole lease.
    ExecutorLost {
        name: String,
        incarnation: u64,
    },
    /// Retention: forget finished tasks (record, input, output) that finished before
    /// `before_ms`, oldest ids first, at most a bounded number per command.
    Forget {
        before_ms: i64,
    },
    /// A task that already ran, on a trial run for a client waiting on it (`RunTask`): it is
    /// submitted and finished in this one command, so its result costs one durable write.
    /// A request id seen before answers with the first request's task, and the run is dropped.
    Ran {
        request_id: Option<RequestId>,
        task: NewTask,
        /// The run's outcome; its `task` and `attempt` are ignored (the task gets an id here).
        report: Box<Report>,
    },
    /// Start keeping which modules run short (`short_runs`), from this entry on. A leader
    /// proposes it when its state has none (a new cluster, or one written by a version that
    /// kept none), so every replica starts counting at the same entry, wherever its replay
    /// of the log began.
    TrackShortRuns,
    /// Runs `executor` gave back before they started (it drained while they waited for a
    /// slot): pending again, and the attempt does not count. (Last, so older logs decode.)
    GiveBack {
        executor: String,
        runs: Vec<RunRef>,
    },
}

/// What applying one command answers to its proposer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    Done,
    Submitted(Vec<TaskId>),
    Refused(Refusal),
}

/// Why a command changed nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Refusal {
    #[error("task {0} not found")]
    TaskNotFound(TaskId),
    #[error("task {0} has already finished")]
    AlreadyFinished(TaskId),
    #[error("unknown module {0}: upload it first with `master-client module upload`")]
    UnknownModule(String),
    #[error("resource exhausted: {pending} tasks are pending and {adding} more would pass the limit max-pending-tasks = {limit}; retry once the queue drains")]
    QueueFull { pending: u64, adding: u64, limit: u64 },
    #[error("no executor named {0}")]
    ExecutorNotFound(String),
}
