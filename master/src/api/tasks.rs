//! Task submission, reads, waiting and cancellation.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tonic::Status;
use wasmgrid_common::{Digest, Size};
use wasmgrid_proto as pb;

use crate::convert;
use crate::error::ApiError;
use crate::node::Node;
use crate::state::{Command, Limits, NewTask, Refusal, RequestId, Response, StateMachine, TaskId, TaskSpec};
use crate::trials;

/// Tasks in one `ListTasks` page when the client does not say.
const DEFAULT_PAGE: usize = 1000;
const MAX_PAGE: usize = 10_000;
/// Output bytes in one `ListTasks` page, roughly.
const PAGE_BYTES: usize = 32 * 1024 * 1024;

pub async fn submit(node: &Node, req: pb::SubmitTasksRequest) -> Result<pb::SubmitTasksResponse, ApiError> {
    node.ensure_leader()?;
    let cfg = &node.config;
    if req.tasks.is_empty() {
        return Err(ApiError::InvalidArgument("no tasks to submit".into()));
    }
    if req.tasks.len() > cfg.max_batch_size {
        return Err(ApiError::InvalidArgument(format!(
            "{} tasks in one submit, more than the limit max-batch-size = {}",
            req.tasks.len(),
            cfg.max_batch_size
        )));
    }
    let request_id = request_id(&req.request_id)?;
    let mut tasks = Vec::with_capacity(req.tasks.len());
    for spec in req.tasks {
        tasks.push(new_task(node, spec)?);
    }
    known_modules(&node.replica.read(), &tasks)?;
    let max_pending = Some(node.config.max_pending_tasks);
    let ids = submitted(node.propose(Command::Submit { request_id, tasks, max_pending }).await?)?;
    Ok(pb::SubmitTasksResponse { ids })
}

/// Refuses tasks whose module was never uploaded (the state machine checks again at apply).
fn known_modules(sm: &StateMachine, tasks: &[NewTask]) -> Result<(), ApiError> {
    match tasks.iter().find(|t| sm.module(&t.spec.module).is_none()) {
        Some(t) => Err(ApiError::FailedPrecondition(Refusal::UnknownModule(t.spec.module.to_string()).to_string())),
        None => Ok(()),
    }
}

fn request_id(bytes: &[u8]) -> Result<Option<RequestId>, ApiError> {
    match bytes.len() {
        0 => Ok(None),
        16 => {
            let mut id = [0u8; 16];
            id.copy_from_slice(bytes);
            Ok(Some(id))
        }
        n => Err(ApiError::InvalidArgument(format!("request_id must be 16 bytes, not {n}"))),
    }
}

/// The ids a submit (or a `Ran`) answered with, or why it was refused.
fn submitted(response: Response) -> Result<Vec<TaskId>, ApiError> {
    match response {
        Response::Submitted(ids) => Ok(ids),
        Response::Refused(r @ Refusal::QueueFull { .. }) => Err(ApiError::ResourceExhausted(r.to_string())),
        Response::Refused(r) => Err(ApiError::FailedPrecondition(r.to_string())),
        Response::Done => Err(ApiError::Internal("submit answered without task ids".into())),
    }
}

/// Submits one task and answers with its final record. When the queue is empty and an
/// executor has a free slot, the task is run first (a trial, see `trials`) and then
/// submitted and finished in one command; otherwise it is submitted and waited for.
pub async fn run(node: Arc<Node>, req: pb::RunTaskRequest) -> Result<pb::Task, ApiError> {
    node.ensure_leader()?;
    let spec = req.task.ok_or_else(|| ApiError::InvalidArgument("no task to run".into()))?;
    let request_id = request_id(&req.request_id)?;
    let task = new_task(&node, spec)?;
    let seen = {
        let sm = node.replica.read();
        known_modules(&sm, std::slice::from_ref(&task))?;
        request_id.is_some_and(|r| sm.request(&r).is_some())
    };
    let report = if seen { None } else { trials::run(&node, &task).await };
    let command = match report {
        Some(report) => Command::Ran { request_id, task, report: Box::new(report) },
        None => Command::Submit { request_id, tasks: vec![task], max_pending: Some(node.config.max_pending_tasks) },
    };
    let ids = submitted(node.propose(command).await?)?;
    let id = *ids.first().ok_or_else(|| ApiError::Internal("submit answered without a task id".into()))?;
    // A task that ran as a trial is final already: no waiter needed.
    if let Some(t) = node.replica.task(id)?.filter(|t| t.state().is_final()) {
        return Ok(t);
    }
    let mut finished = wait(node, vec![id])?;
    match finished.recv().await {
        Some(Ok(t)) => Ok(t),
        Some(Err(status)) => Err(ApiError::Unavailable(status.message().to_string())),
        None => Err(ApiError::Unavailable("stopped waiting for the task".into())),
    }
}

/// Checks one spec and fills in the master's defaults.
fn new_task(node: &Node, spec: pb::TaskSpec) -> Result<NewTask, ApiError> {
    let cfg = &node.config;
    let module: Digest = spec.module.parse().map_err(|e| ApiError::InvalidArgument(format!("{e}")))?;
    // Arguments and environment are stored and sent with the input: the same limit bounds all.
    let extra: usize = spec.args.iter().map(|a| a.len() + 1).sum::<usize>()
        + spec.env.iter().map(|e| e.key.len() + e.value.len() + 2).sum::<usize>();
    let size = (spec.input.len() + extra) as u64;
    if size > cfg.max_input_size {
        let what = if extra == 0 { "task input is" } else { "task input, arguments and environment come to" };
        return Err(ApiError::InvalidArgument(format!(
            "{what} {}, larger than the limit max-input-size = {}",
            Size(size),
            Size(cfg.max_input_size)
        )));
    }
    let l = spec.limits.unwrap_or_default();
    let limits = Limits {
        fuel: l.fuel,
        memory: if l.memory_bytes == 0 { cfg.default_memory } else { l.memory_bytes },
        timeout_ms: if l.timeout_ms == 0 {
            u64::try_from(cfg.default_timeout.as_millis()).unwrap_or(u64::MAX)
        } else {
            l.timeout_ms
        },
    };
    if let Some(e) = spec.env.iter().find(|e| e.key.is_empty() || e.key.contains('=') || e.key.contains('\0')) {
        return Err(ApiError::InvalidArgument(format!(
            "environment variable name `{}` is invalid: it must be non-empty, without '=' or NUL",
            e.key
        )));
    }
    if spec.args.iter().chain(spec.env.iter().map(|e| &e.value)).any(|a| a.contains('\0')) {
        return Err(ApiError::InvalidArgument("arguments and environment values cannot contain NUL bytes".into()));
    }
    Ok(NewTask {
        spec: TaskSpec {
            module,
            limits,
            max_attempts: if spec.max_attempts == 0 { cfg.default_max_attempts } else { spec.max_attempts },
            priority: spec.priority,
            args: spec.args,
            env: spec.env.into_iter().map(|e| (e.key, e.value)).collect(),
        },
        input: spec.input,
    })
}

pub fn get(node: &Node, id: TaskId) -> Result<pb::Task, ApiError> {
    node.ensure_leader()?;
    node.replica.task(id)?.ok_or_else(|| ApiError::NotFound(not_found(node, id)))
}

/// Why task `id` has no record: it was never submitted, or it finished and was forgotten.
fn not_found(node: &Node, id: TaskId) -> String {
    if id > 0 && id < node.replica.read().next_task_id() {
        match node.config.result_retention {
            Duration::ZERO => format!("task {id} not found: it finished and was forgotten"),
            keep => format!(
                "task {id} not found: it finished and was forgotten (finished tasks are kept for result-retention = {})",
                humantime::format_duration(keep)
            ),
        }
    } else {
        format!("task {id} not found")
    }
}

pub async fn cancel(node: &Node, id: TaskId) -> Result<pb::Task, ApiError> {
    node.ensure_leader()?;
    match node.propose(Command::Cancel(id)).await? {
        Response::Refused(Refusal::TaskNotFound(_)) => Err(ApiError::NotFound(not_found(node, id))),
        Response::Refused(Refusal::AlreadyFinished(_)) => {
            let Some(state) = node.replica.task(id)?.and_then(|t| convert::task_state_from(t.state())) else {
                return Err(ApiError::NotFound(not_found(node, id)));
            };
            Err(ApiError::FailedPrecondition(format!("task {id} has already finished ({})", state.as_str())))
        }
        _ => get(node, id),
    }
}

pub fn list(node: &Node, req: pb::ListTasksRequest) -> Result<pb::ListTasksResponse, ApiError> {
    node.ensure_leader()?;
    let state = match req.state {
        None => None,
        Some(s) => {
            let s =
                pb::TaskState::try_from(s).map_err(|_| ApiError::InvalidArgument(format!("unknown task state {s}")))?;
            convert::task_state_from(s)
        }
    };
    let limit = match req.limit as usize {
        0 => DEFAULT_PAGE,
        n => n.min(MAX_PAGE),
    };
    // A page of at least one task, or the end: a client that pages from the last task it got
    // (one older than `next_after`) must not be handed the same empty page again. Each read
    // takes the gate for a bounded stretch of the history, so applies go on between them.
    let mut after = req.after_id;
    loop {
        let (tasks, next) = node.replica.list_tasks(state, after, limit, PAGE_BYTES)?;
        match next {
            Some(n) if tasks.is_empty() => after = n,
            _ => return Ok(pb::ListTasksResponse { tasks, more: next.is_some(), next_after: next.unwrap_or(0) }),
        }
    }
}

/// How often a wait checks that this master still leads.
const WATCH_LEADERSHIP_EVERY: Duration = Duration::from_millis(500);

/// Streams each task of `ids` once it has finished: at once for finished ones, on the apply
/// of their result for the others. Unknown ids end the stream with NOT_FOUND.
pub fn wait(node: Arc<Node>, ids: Vec<TaskId>) -> Result<mpsc::Receiver<Result<pb::Task, Status>>, ApiError> {
    node.ensure_leader()?;
    if ids.is_empty() {
        return Err(ApiError::InvalidArgument("no task ids to wait for".into()));
    }
    if ids.len() > pb::MAX_WAIT_IDS {
        return Err(ApiError::InvalidArgument(format!(
            "{} task ids in one wait; at most {} (wait for the rest in another)",
            ids.len(),
            pb::MAX_WAIT_IDS
        )));
    }
    let mut remaining: BTreeSet<TaskId> = ids.into_iter().collect();
    let (notify_tx, mut notify_rx) = mpsc::unbounded_channel();
    let ids: Vec<TaskId> = remaining.iter().copied().collect();
    node.replica.waiters.register(&ids, &notify_tx);
    drop(notify_tx);
    let (out, rx) = mpsc::channel(256);
    tokio::spawn(async move {
        // Register first, then look: a task finishing in between is seen one way or the other.
        for id in ids {
            match node.replica.task(id) {
                Ok(Some(t)) if t.state().is_final() => {
                    remaining.remove(&id);
                    if out.send(Ok(t)).await.is_err() {
                        return;
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => {
                    let _ = out.send(Err(Status::not_found(not_found(&node, id)))).await;
                    return;
                }
                Err(e) => {
                    let _ = out.send(Err(ApiError::from(e).into())).await;
                    return;
                }
            }
        }
        // A wait lasts as long as its tasks run, hours maybe: it ends (the client asks the
        // leader again) when this master stops, stops leading, or leads cut off from the
        // majority, where results no longer commit.
        let mut check = tokio::time::interval(WATCH_LEADERSHIP_EVERY);
        while !remaining.is_empty() {
            let task = tokio::select! {
                t = notify_rx.recv() => match t { Some(t) => t, None => return },
                _ = out.closed() => return,
                _ = node.shutdown.cancelled() => {
                    let _ = out.send(Err(Status::unavailable("this master is shutting down; ask another"))).await;
                    return;
                }
                _ = check.tick() => {
                    let stop = if node.cut_off() {
                        Err(Status::unavailable(crate::node::CUT_OFF_REASON))
                    } else if !node.is_leader() {
                        // Names the leader, if known, for the client to go to.
                        node.ensure_leader().map_err(Status::from)
                    } else {
                        Ok(())
                    };
                    if let Err(status) = stop {
                        let _ = out.send(Err(status)).await;
                        return;
                    }
                    continue;
                }
            };
            if !remaining.remove(&task.id) {
                continue;
            }
            if out.send(Ok(task)).await.is_err() {
                return;
            }
        }
    });
    Ok(rx)
}
