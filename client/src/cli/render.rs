//! How records are printed: JSON documents with the contract's field names, and short
//! text for people.

use base64::Engine as _;
use serde_json::{json, Value};
use wasmgrid_common::Size;
use wasmgrid_proto as pb;

pub fn module_kind(k: pb::ModuleKind) -> &'static str {
    match k {
        pb::ModuleKind::Component => "component",
        pb::ModuleKind::Command => "command",
        pb::ModuleKind::Unspecified => "unknown",
    }
}

pub fn state(s: pb::TaskState) -> &'static str {
    match s {
        pb::TaskState::Pending => "pending",
        pb::TaskState::Running => "running",
        pb::TaskState::Succeeded => "succeeded",
        pb::TaskState::Failed => "failed",
        pb::TaskState::Cancelled => "cancelled",
        pb::TaskState::Unspecified => "unknown",
    }
}

pub fn failure_kind(k: pb::FailureKind) -> &'static str {
    match k {
        pb::FailureKind::Trap => "trap",
        pb::FailureKind::OutOfFuel => "out_of_fuel",
        pb::FailureKind::MemoryLimit => "memory_limit",
        pb::FailureKind::Timeout => "timeout",
        pb::FailureKind::TaskError => "task_error",
        pb::FailureKind::Cancelled => "cancelled",
        pb::FailureKind::ExecutorLost => "executor_lost",
        pb::FailureKind::InvalidModule => "invalid_module",
        pb::FailureKind::OutputTooLarge => "output_too_large",
        pb::FailureKind::Unspecified => "unknown",
    }
}

pub fn module_json(m: &pb::Module) -> Value {
    json!({
        "digest": m.digest,
        "size": m.size,
        "kind": module_kind(m.kind()),
        "created_at_ms": m.created_at_ms,
    })
}

pub fn task_json(t: &pb::Task) -> Value {
    let b64 = base64::engine::general_purpose::STANDARD;
    let limits = t.limits.unwrap_or_default();
    json!({
        "id": t.id.to_string(),
        "state": state(t.state()),
        "module": t.module,
        "error": t.error.as_ref().map(|e| json!({ "kind": failure_kind(e.kind()), "message": e.message })),
        "attempts": t.attempts,
        "max_attempts": t.max_attempts,
        "executor": (!t.executor.is_empty()).then_some(&t.executor),
        "fuel_consumed": t.fuel_consumed,
        "duration_ms": t.duration_ms,
        "exit_code": t.exit_code,
        "output_b64": b64.encode(&t.output),
        "output": std::str::from_utf8(&t.output).ok(),
        "stderr": String::from_utf8_lossy(&t.stderr),
        "stderr_truncated": t.stderr_truncated,
        "input_size": t.input_size,
        "priority": t.priority,
        "limits": { "fuel": limits.fuel, "memory": limits.memory_bytes, "timeout_ms": limits.timeout_ms },
        "args": t.args,
        "env": t.env.iter().map(|e| format!("{}={}", e.key, e.value)).collect::<Vec<_>>(),
        "pending_reason": (!t.pending_reason.is_empty()).then_some(&t.pending_reason),
        "created_at_ms": t.created_at_ms,
        "started_at_ms": t.started_at_ms,
        "finished_at_ms": t.finished_at_ms,
    })
}

pub fn print_json(v: &Value) {
    out!("{}", serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string()));
}

/// `kind: message` of a failed task.
pub fn failure_line(t: &pb::Task) -> String {
    match &t.error {
        Some(e) => format!("{}: {}", failure_kind(e.kind()), e.message),
        None => state(t.state()).to_string(),
    }
}

/// A multi-line description of one task for people.
pub fn task_text(t: &pb::Task) -> String {
    let mut lines = vec![
        format!("id:        {}", t.id),
        format!("state:     {}", state(t.state())),
        format!("module:    {}", t.module),
    ];
    if !t.pending_reason.is_empty() {
        lines.push(format!("waiting:   {}", t.pending_reason));
    }
    if let Some(e) = &t.error {
        lines.push(format!("error:     {}: {}", failure_kind(e.kind()), e.message));
    }
    lines.push(format!("attempts:  {}/{}", t.attempts, t.max_attempts));
    if !t.executor.is_empty() {
        lines.push(format!("executor:  {}", t.executor));
    }
    lines.push(format!("fuel:      {}", t.fuel_consumed));
    lines.push(format!("duration:  {}ms", t.duration_ms));
    if let Some(code) = t.exit_code {
        lines.push(format!("exit code: {code}"));
    }
    lines.push(format!("input:     {}", Size(t.input_size)));
    if t.state() == pb::TaskState::Succeeded || !t.output.is_empty() {
        lines.push(format!("output:    {}", preview(&t.output)));
    }
    if !t.stderr.is_empty() {
        let more = if t.stderr_truncated { " (truncated)" } else { "" };
        lines.push(format!("stderr{more}:    {}", preview(&t.stderr)));
    }
    lines.join("\n")
}

/// Output as text when it is short UTF-8, otherwise its size.
pub fn preview(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) if s.len() <= 200 => s.trim_end().replace('\n', "\\n"),
        Ok(s) => format!("{}… ({})", &s[..s.floor_char_boundary(120)].replace('\n', "\\n"), Size(bytes.len() as u64)),
        Err(_) => format!("<{} of binary>", Size(bytes.len() as u64)),
    }
}
