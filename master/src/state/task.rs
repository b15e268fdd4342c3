//! Task records as the state machine keeps them: spec, state, attempts and outcome.

use serde::{Deserialize, Serialize};
use wasmgrid_common::Digest;

pub type TaskId = u64;

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TaskState {
    Pending,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl TaskState {
    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }
}

/// Why a task failed. The names are part of the CLI/JSON contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FailureKind {
    Trap,
    OutOfFuel,
    MemoryLimit,
    Timeout,
    TaskError,
    Cancelled,
    ExecutorLost,
    InvalidModule,
    OutputTooLarge,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Trap => "trap",
            Self::OutOfFuel => "out_of_fuel",
            Self::MemoryLimit => "memory_limit",
            Self::Timeout => "timeout",
            Self::TaskError => "task_error",
            Self::Cancelled => "cancelled",
            Self::ExecutorLost => "executor_lost",
            Self::InvalidModule => "invalid_module",
            Self::OutputTooLarge => "output_too_large",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub kind: FailureKind,
    pub message: String,
}

impl Failure {
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into() }
    }
}

/// Limits of one run, resolved by the leader at submit (fuel 0 = the executor's default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Limits {
    pub fuel: u64,
    pub memory: u64,
    pub timeout_ms: u64,
}

/// What the user asked for, minus the input bytes (kept apart, see `storage`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSpec {
    pub module: Digest,
    pub limits: Limits,
    pub max_attempts: u32,
    pub priority: i32,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

/// Everything known about a task but its input and output bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRecord {
    pub id: TaskId,
    pub spec: TaskSpec,
    pub input_size: u64,
    pub state: TaskState,
    /// Runs started so far; the current run's fencing token.
    pub attempts: u32,
    /// The executor of the current or last run.
    pub executor: Option<String>,
    pub error: Option<Failure>,
    pub fuel_consumed: u64,
    pub duration_ms: u64,
    pub exit_code: Option<i32>,
    pub stderr_truncated: bool,
    pub created_at_ms: i64,
    pub started_at_ms: i64,
    pub finished_at_ms: i64,
}

impl TaskRecord {
    /// A task as submitted: pending, never run.
    pub fn pending(id: TaskId, spec: TaskSpec, input_size: u64, created_at_ms: i64) -> Self {
        Self {
            id,
            spec,
            input_size,
            state: TaskState::Pending,
            attempts: 0,
            executor: None,
            error: None,
            fuel_consumed: 0,
            duration_ms: 0,
            exit_code: None,
            stderr_truncated: false,
            created_at_ms,
            started_at_ms: 0,
            finished_at_ms: 0,
        }
    }
}

/// The bytes a run produced.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskOutput {
    /// Encoded as bytes, not as a sequence of u8 (the same in postcard, much faster).
    #[serde(with = "serde_bytes")]
    pub output: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub stderr: Vec<u8>,
}

/// An executor's report on one run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub task: TaskId,
    pub attempt: u32,
    pub executor: String,
    pub failure: Option<Failure>,
    pub output: TaskOutput,
    pub fuel_consumed: u64,
    pub duration_ms: u64,
    pub exit_code: Option<i32>,
    pub stderr_truncated: bool,
}
