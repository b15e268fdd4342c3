//! The replicated state: commands, the pure machine that applies them, and its records.

mod command;
mod effects;
mod executor;
mod machine;
mod module;
mod placement;
mod queue;
pub(crate) mod short_runs;
mod task;
#[cfg(test)]
pub(crate) mod tests;

pub use command::{Batch, Command, NewTask, Refusal, RequestId, Response};
pub use effects::{Dispatch, Effects, RunRef};
pub use executor::{ExecutorRecord, ExecutorState};
pub use machine::{StateMachine, REQUEST_MEMORY_MS};
pub use module::{ModuleKind, ModuleMeta};
pub use short_runs::ShortRuns;
pub use task::{Failure, FailureKind, Limits, Report, TaskId, TaskOutput, TaskRecord, TaskSpec, TaskState};
