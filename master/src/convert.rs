//! Conversions between the state machine's records and their protobuf form.

use wasmgrid_proto as pb;

use crate::state::{
    Dispatch, ExecutorRecord, Failure, FailureKind, Limits, ModuleKind, ModuleMeta, Report, TaskOutput, TaskRecord,
    TaskState,
};

pub fn task_state(s: TaskState) -> pb::TaskState {
    match s {
        TaskState::Pending => pb::TaskState::Pending,
        TaskState::Running => pb::TaskState::Running,
        TaskState::Succeeded => pb::TaskState::Succeeded,
        TaskState::Failed => pb::TaskState::Failed,
        TaskState::Cancelled => pb::TaskState::Cancelled,
    }
}

pub fn task_state_from(s: pb::TaskState) -> Option<TaskState> {
    Some(match s {
        pb::TaskState::Unspecified => return None,
        pb::TaskState::Pending => TaskState::Pending,
        pb::TaskState::Running => TaskState::Running,
        pb::TaskState::Succeeded => TaskState::Succeeded,
        pb::TaskState::Failed => TaskState::Failed,
        pb::TaskState::Cancelled => TaskState::Cancelled,
    })
}

pub fn failure_kind(k: FailureKind) -> pb::FailureKind {
    match k {
        FailureKind::Trap => pb::FailureKind::Trap,
        FailureKind::OutOfFuel => pb::FailureKind::OutOfFuel,
        FailureKind::MemoryLimit => pb::FailureKind::MemoryLimit,
        FailureKind::Timeout => pb::FailureKind::Timeout,
        FailureKind::TaskError => pb::FailureKind::TaskError,
        FailureKind::Cancelled => pb::FailureKind::Cancelled,
        FailureKind::ExecutorLost => pb::FailureKind::ExecutorLost,
        FailureKind::InvalidModule => pb::FailureKind::InvalidModule,
        FailureKind::OutputTooLarge => pb::FailureKind::OutputTooLarge,
    }
}

/// Unknown kinds from a newer executor count as traps: the run failed, that much is sure.
pub fn failure_kind_from(k: pb::FailureKind) -> FailureKind {
    match k {
        pb::FailureKind::Unspecified | pb::FailureKind::Trap => FailureKind::Trap,
        pb::FailureKind::OutOfFuel => FailureKind::OutOfFuel,
        pb::FailureKind::MemoryLimit => FailureKind::MemoryLimit,
        pb::FailureKind::Timeout => FailureKind::Timeout,
        pb::FailureKind::TaskError => FailureKind::TaskError,
        pb::FailureKind::Cancelled => FailureKind::Cancelled,
        pb::FailureKind::ExecutorLost => FailureKind::ExecutorLost,
        pb::FailureKind::InvalidModule => FailureKind::InvalidModule,
        pb::FailureKind::OutputTooLarge => FailureKind::OutputTooLarge,
    }
}

pub fn module_kind(k: ModuleKind) -> pb::ModuleKind {
    match k {
        ModuleKind::Component => pb::ModuleKind::Component,
        ModuleKind::Command => pb::ModuleKind::Command,
    }
}

pub fn module(m: &ModuleMeta) -> pb::Module {
    pb::Module {
        digest: m.digest.to_string(),
        size: m.size,
        kind: module_kind(m.kind).into(),
        created_at_ms: m.created_at_ms,
    }
}

pub fn limits(l: Limits) -> pb::Limits {
    pb::Limits { fuel: l.fuel, memory_bytes: l.memory, timeout_ms: l.timeout_ms }
}

fn env(pairs: &[(String, String)]) -> Vec<pb::EnvVar> {
    pairs.iter().map(|(key, value)| pb::EnvVar { key: key.clone(), value: value.clone() }).collect()
}

pub fn task(t: TaskRecord, out: TaskOutput, pending_reason: String) -> pb::Task {
    pb::Task {
        id: t.id,
        state: task_state(t.state).into(),
        module: t.spec.module.to_string(),
        limits: Some(limits(t.spec.limits)),
        max_attempts: t.spec.max_attempts,
        priority: t.spec.priority,
        attempts: t.attempts,
        executor: t.executor.unwrap_or_default(),
        error: t.error.map(|f| pb::Failure { kind: failure_kind(f.kind).into(), message: f.message }),
        fuel_consumed: t.fuel_consumed,
        duration_ms: t.duration_ms,
        exit_code: t.exit_code,
        output: out.output,
        stderr: out.stderr,
        input_size: t.input_size,
        created_at_ms: t.created_at_ms,
        started_at_ms: t.started_at_ms,
        finished_at_ms: t.finished_at_ms,
        pending_reason,
        env: env(&t.spec.env),
        args: t.spec.args,
        stderr_truncated: t.stderr_truncated,
    }
}

pub fn assignment(d: &Dispatch, input: Vec<u8>) -> pb::Assignment {
    pb::Assignment {
        task_id: d.task,
        attempt: d.attempt,
        module: d.module.to_string(),
        kind: module_kind(d.kind).into(),
        input,
        limits: Some(limits(d.limits)),
        args: d.args.clone(),
        env: env(&d.env),
    }
}

pub fn report(executor: &str, r: pb::TaskResult) -> Report {
    Report {
        task: r.task_id,
        attempt: r.attempt,
        executor: executor.to_string(),
        failure: r.failure.map(|f| Failure::new(failure_kind_from(f.kind()), f.message)),
        output: TaskOutput { output: r.output, stderr: r.stderr },
        fuel_consumed: r.fuel_consumed,
        duration_ms: r.duration_ms,
        exit_code: r.exit_code,
        stderr_truncated: r.stderr_truncated,
    }
}

pub fn executor_info(e: &ExecutorRecord, connected: bool, last_heartbeat_ms: i64) -> pb::ExecutorInfo {
    let placed = u32::try_from(e.running.len()).unwrap_or(u32::MAX);
    pb::ExecutorInfo {
        name: e.name.clone(),
        addr: e.addr.clone(),
        slots: e.slots,
        slots_in_use: placed.min(e.slots),
        queued: placed.saturating_sub(e.slots),
        memory_bytes: e.memory,
        memory_reserved: e.memory_reserved,
        state: e.state.as_str().to_string(),
        running: e.running.iter().copied().collect(),
        last_heartbeat_ms,
        connected,
    }
}
