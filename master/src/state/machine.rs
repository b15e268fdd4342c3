//! The replicated state machine: a pure function from (state, batch of commands) to
//! (new state, responses, effects). No I/O happens here, so every master applying the same
//! log reaches the same state, and the logic is tested with plain values.
//!
//! Only live tasks (pending or running) are held in memory; a task that reaches a final
//! state leaves memory through `Effects::finished` and lives on in storage.
//!
//! Placement is part of applying: after each batch the machine places pending tasks on
//! executors with room, deterministically, so no separate "assign" entry (and no extra fsync)
//! stands between a submit and its run.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use wasmgrid_common::Digest;

use super::command::{Batch, Command, NewTask, Refusal, RequestId, Response};
use super::effects::{Dispatch, Effects, RunRef};
use super::executor::{ExecutorRecord, ExecutorState};
use super::module::ModuleMeta;
use super::placement;
use super::queue::Queue;
use super::short_runs::ShortRuns;
use super::task::{Failure, FailureKind, Report, TaskId, TaskRecord, TaskState};

/// The fields of a `Register` command.
struct Registration {
    name: String,
    addr: String,
    incarnation: u64,
    slots: u32,
    memory: u64,
    lease_ms: u64,
}

/// How long a submit's idempotency key is remembered.
pub const REQUEST_MEMORY_MS: i64 = 3_600_000;

#[derive(Debug, Default, Clone)]
pub struct StateMachine {
    pub(super) next_task_id: TaskId,
    pub(super) modules: BTreeMap<Digest, ModuleMeta>,
    pub(super) executors: BTreeMap<String, ExecutorRecord>,
    pub(super) live: HashMap<TaskId, TaskRecord>,
    /// Pending tasks in placement order: higher priority first, then oldest first.
    pub(super) queue: Queue,
    requests: HashMap<RequestId, Vec<TaskId>>,
    request_log: VecDeque<(i64, RequestId)>,
    /// Client addresses of the masters, by Raft node id.
    member_addrs: BTreeMap<u64, String>,
    /// Which modules run short (their tasks may queue at executors); `None` until a
    /// `TrackShortRuns` entry starts the count.
    pub(super) short_runs: Option<ShortRuns>,
}

impl StateMachine {
    pub fn new() -> Self {
        Self { next_task_id: 1, ..Default::default() }
    }

    /// Rebuilds the machine from stored records; derived state (the queue, what runs where)
    /// is recomputed rather than trusted from storage.
    pub fn restore(
        next_task_id: TaskId,
        modules: impl IntoIterator<Item = ModuleMeta>,
        executors: impl IntoIterator<Item = ExecutorRecord>,
        live: impl IntoIterator<Item = TaskRecord>,
        requests: impl IntoIterator<Item = (RequestId, Vec<TaskId>, i64)>,
        member_addrs: BTreeMap<u64, String>,
        short_runs: Option<ShortRuns>,
    ) -> Self {
        let mut sm = Self { next_task_id: next_task_id.max(1), member_addrs, short_runs, ..Default::default() };
        sm.modules = modules.into_iter().map(|m| (m.digest, m)).collect();
        sm.executors = executors
            .into_iter()
            .map(|mut e| {
                e.running.clear();
                e.memory_reserved = 0;
                (e.name.clone(), e)
            })
            .collect();
        for t in live {
            match t.state {
                TaskState::Pending => {
                    sm.queue.insert(&t);
                }
                TaskState::Running => {
                    if let Some(e) = t.executor.as_ref().and_then(|n| sm.executors.get_mut(n)) {
                        e.running.insert(t.id);
                        e.memory_reserved += t.spec.limits.memory;
                    }
                }
                _ => continue,
            }
            sm.live.insert(t.id, t);
        }
        let mut reqs: Vec<_> = requests.into_iter().collect();
        reqs.sort_by_key(|(_, _, at)| *at);
        for (id, tasks, at) in reqs {
            sm.request_log.push_back((at, id));
            sm.requests.insert(id, tasks);
        }
        sm
    }

    /// Applies one entry's batch, appending what must happen outside to `fx`.
    pub fn apply(&mut self, batch: Batch, fx: &mut Effects) -> Vec<Response> {
        let now = batch.at_ms;
        self.expire_requests(now, fx);
        let responses = batch.commands.into_iter().map(|c| self.apply_one(c, now, fx)).collect();
        placement::place_pending(self, now, fx);
        responses
    }

    fn apply_one(&mut self, cmd: Command, now: i64, fx: &mut Effects) -> Response {
        match cmd {
            Command::PutModule(meta) => {
                if let std::collections::btree_map::Entry::Vacant(slot) = self.modules.entry(meta.digest) {
                    fx.modules.push(meta.clone());
                    slot.insert(meta);
                }
                Response::Done
            }
            Command::Submit { request_id, tasks, max_pending } => self.submit(request_id, tasks, max_pending, now, fx),
            Command::Finish(reports) => {
                for r in reports {
                    fx.acks.push((r.executor.clone(), RunRef { task: r.task, attempt: r.attempt }));
                    self.finish(r, now, fx);
                }
                Response::Done
            }
            Command::GiveBack { executor, runs } => {
                for run in runs {
                    fx.acks.push((executor.clone(), run));
                    self.give_back(&executor, run, fx);
                }
                Response::Done
            }
            Command::Ran { request_id, task, report } => self.ran(request_id, task, *report, now, fx),
            Command::Cancel(id) => match self.cancel(id, now, fx) {
                Ok(()) => Response::Done,
                Err(refusal) => Response::Refused(refusal),
            },
            Command::Register { name, addr, incarnation, slots, memory, lease_ms } => {
                let e = Registration { name, addr, incarnation, slots, memory, lease_ms };
                self.register(e, now, fx);
                Response::Done
            }
            Command::Disconnected { name, incarnation } => {
                if let Some(e) = self.executors.get_mut(&name) {
                    if e.incarnation == incarnation && e.state == ExecutorState::Alive {
                        e.state = ExecutorState::Disconnected;
                        fx.executors.insert(name);
                    }
                }
                Response::Done
            }
            Command::Drain(name) => match self.executors.get_mut(&name) {
                Some(e) => {
                    if e.state != ExecutorState::Lost {
                        e.state = ExecutorState::Draining;
                        fx.executors.insert(name);
                    }
                    Response::Done
                }
                None => Response::Refused(Refusal::ExecutorNotFound(name)),
            },
            Command::Deregister { name, incarnation } => {
                if self.executors.get(&name).is_some_and(|e| e.incarnation == incarnation) {
                    self.lose_executor(&name, now, fx);
                    self.executors.remove(&name);
                    fx.executors_removed.push(name);
                }
                Response::Done
            }
            Command::Expire { task, attempt } => {
                let running = self.live.get(&task).filter(|t| t.state == TaskState::Running && t.attempts == attempt);
                if let Some(executor) = running.and_then(|t| t.executor.clone()) {
                    let timeout = running.map_or(0, |t| t.spec.limits.timeout_ms);
                    if let (Some(short_runs), Some(t)) = (self.short_runs.as_mut(), running) {
                        // A run that hung is not short.
                        short_runs.end_streak(&t.spec.module);
                    }
                    fx.stop.push((executor.clone(), RunRef { task, attempt }));
                    self.release(task);
                    let message = format!(
                        "the task ran past its timeout of {timeout}ms and executor {executor} did not report a result"
                    );
                    self.finalize(task, TaskState::Failed, Some(Failure::new(FailureKind::Timeout, message)), now, fx);
                }
                Response::Done
            }
            Command::TrackShortRuns => {
                self.short_runs.get_or_insert_default();
                Response::Done
            }
            Command::Forget { before_ms } => {
                // Finished tasks live in storage only: the store does the forgetting.
                fx.forget_before = Some(fx.forget_before.map_or(before_ms, |b| b.max(before_ms)));
                Response::Done
            }
            Command::MemberAddr { node, api_addr } => {
                if self.member_addrs.get(&node) != Some(&api_addr) {
                    self.member_addrs.insert(node, api_addr);
                    fx.member_addrs = true;
                }
                Response::Done
            }
            Command::ExecutorLost { name, incarnation } => {
                let matches = self
                    .executors
                    .get(&name)
                    .is_some_and(|e| e.incarnation == incarnation && e.state != ExecutorState::Lost);
                if matches {
                    self.lose_executor(&name, now, fx);
                }
                Response::Done
            }
        }
    }

    fn submit(
        &mut self,
        request_id: Option<RequestId>,
        tasks: Vec<NewTask>,
        max_pending: Option<u64>,
        now: i64,
        fx: &mut Effects,
    ) -> Response {
        if let Some(ids) = request_id.and_then(|r| self.requests.get(&r)) {
            return Response::Submitted(ids.clone());
        }
        let (pending, adding) = (self.queue.len() as u64, tasks.len() as u64);
        if let Some(limit) = max_pending.filter(|l| pending + adding > *l) {
            return Response::Refused(Refusal::QueueFull { pending, adding, limit });
        }
        if let Some(t) = tasks.iter().find(|t| !self.modules.contains_key(&t.spec.module)) {
            return Response::Refused(Refusal::UnknownModule(t.spec.module.to_string()));
        }
        let mut ids = Vec::with_capacity(tasks.len());
        for NewTask { spec, input } in tasks {
            let id = self.next_task_id;
            self.next_task_id += 1;
            let record = TaskRecord::pending(id, spec, input.len() as u64, now);
            self.queue.insert(&record);
            self.live.insert(id, record);
            fx.inputs.push((id, input));
            fx.changed.insert(id);
            ids.push(id);
        }
        if let Some(r) = request_id {
            // Never before the last: leaders' clocks differ, and a replica restored from
            // storage sorts the log by time; out of order, it would expire keys at other
            // entries than the rest.
            let at = self.request_log.back().map_or(now, |&(last, _)| last.max(now));
            self.requests.insert(r, ids.clone());
            self.request_log.push_back((at, r));
            fx.requests_added.push((r, ids.clone(), at));
        }
        Response::Submitted(ids)
    }

    /// Submits `task` as already run on `r.executor` (attempt 1), then finishes it with `r`.
    fn ran(&mut self, request_id: Option<RequestId>, task: NewTask, r: Report, now: i64, fx: &mut Effects) -> Response {
        if let Some(ids) = request_id.and_then(|id| self.requests.get(&id)) {
            return Response::Submitted(ids.clone());
        }
        let response = self.submit(request_id, vec![task], None, now, fx);
        let Response::Submitted(ids) = &response else {
            return response;
        };
        let Some(t) = ids.first().and_then(|id| self.live.get_mut(id)) else {
            return response;
        };
        let id = t.id;
        self.queue.remove(t);
        t.state = TaskState::Running;
        t.attempts = 1;
        t.executor = Some(r.executor.clone());
        t.started_at_ms = now.saturating_sub(i64::try_from(r.duration_ms).unwrap_or(i64::MAX));
        // Accepted when it started, as far as anyone can tell: created never after started.
        t.created_at_ms = t.started_at_ms;
        self.finish(Report { task: id, attempt: 1, ..r }, now, fx);
        response
    }

    /// Applies a run's report, unless it is late or a duplicate.
    fn finish(&mut self, r: Report, now: i64, fx: &mut Effects) {
        let current = self.live.get(&r.task).is_some_and(|t| {
            t.state == TaskState::Running && t.attempts == r.attempt && t.executor.as_deref() == Some(&r.executor)
        });
        if !current {
            // A late or duplicate report from an older attempt: the task moved on.
            return;
        }
        self.release(r.task);
        let retry = matches!(&r.failure, Some(f) if f.kind == FailureKind::ExecutorLost);
        let Some(t) = self.live.get_mut(&r.task) else {
            return;
        };
        if retry && t.attempts < t.spec.max_attempts {
            t.state = TaskState::Pending;
            self.queue.insert(t);
            fx.changed.insert(t.id);
            return;
        }
        let ran =
            !matches!(&r.failure, Some(f) if matches!(f.kind, FailureKind::ExecutorLost | FailureKind::Cancelled));
        if let Some(short_runs) = self.short_runs.as_mut().filter(|_| ran) {
            short_runs.record(&t.spec.module, r.duration_ms);
        }
        t.fuel_consumed = r.fuel_consumed;
        t.duration_ms = r.duration_ms;
        t.exit_code = r.exit_code;
        t.stderr_truncated = r.stderr_truncated;
        let state = if r.failure.is_some() { TaskState::Failed } else { TaskState::Succeeded };
        let error = r.failure;
        fx.outputs.push((r.task, r.output));
        self.finalize(r.task, state, error, now, fx);
    }

    /// Puts a run its executor never started back in the queue without using up an attempt:
    /// the task is allowed one more. Attempt numbers stay the runs' fencing tokens, so the
    /// next run is a new attempt, and nothing said about this one can touch it.
    fn give_back(&mut self, executor: &str, run: RunRef, fx: &mut Effects) {
        let current = self.live.get(&run.task).is_some_and(|t| {
            t.state == TaskState::Running && t.attempts == run.attempt && t.executor.as_deref() == Some(executor)
        });
        if !current {
            return;
        }
        self.release(run.task);
        let Some(t) = self.live.get_mut(&run.task) else {
            return;
        };
        t.spec.max_attempts = t.spec.max_attempts.saturating_add(1);
        t.state = TaskState::Pending;
        self.queue.insert(t);
        fx.changed.insert(t.id);
    }

    fn cancel(&mut self, id: TaskId, now: i64, fx: &mut Effects) -> Result<(), Refusal> {
        let Some(t) = self.live.get(&id) else {
            return Err(if id > 0 && id < self.next_task_id {
                Refusal::AlreadyFinished(id)
            } else {
                Refusal::TaskNotFound(id)
            });
        };
        match (t.state, t.executor.clone()) {
            (TaskState::Pending, _) => {
                self.queue.remove(t);
            }
            (TaskState::Running, Some(executor)) => {
                fx.stop.push((executor, RunRef { task: id, attempt: t.attempts }));
                self.release(id);
                // The record is final before the executor's report of the stopped run
                // comes (which then changes nothing): its duration is the time since
                // dispatch, as this master saw it, not 0.
                if let Some(t) = self.live.get_mut(&id) {
                    t.duration_ms = u64::try_from(now.saturating_sub(t.started_at_ms)).unwrap_or(0);
                }
            }
            _ => {}
        }
        let failure = Failure::new(FailureKind::Cancelled, "cancelled by request");
        self.finalize(id, TaskState::Cancelled, Some(failure), now, fx);
        Ok(())
    }

    fn register(&mut self, r: Registration, now: i64, fx: &mut Effects) {
        let Registration { name, addr, incarnation, slots, memory, lease_ms } = r;
        let restarted = self.executors.get(&name).is_some_and(|e| e.incarnation != incarnation);
        if restarted {
            // A new process under an old name: whatever the old one ran is gone.
            self.lose_executor(&name, now, fx);
        }
        let e = self.executors.entry(name.clone()).or_insert_with(|| ExecutorRecord {
            name: name.clone(),
            addr: String::new(),
            incarnation,
            slots: 0,
            memory: 0,
            state: ExecutorState::Alive,
            lease_ms,
            registered_at_ms: now,
            running: BTreeSet::new(),
            memory_reserved: 0,
        });
        if restarted {
            e.registered_at_ms = now;
        }
        e.addr = addr;
        e.incarnation = incarnation;
        e.slots = slots;
        e.memory = memory;
        e.lease_ms = lease_ms;
        // The same process back after a break stays draining: its drain goes on.
        if restarted || e.state != ExecutorState::Draining {
            e.state = ExecutorState::Alive;
        }
        fx.executors.insert(name);
    }

    /// Moves every task of `name` back to the queue (or fails it when out of attempts).
    fn lose_executor(&mut self, name: &str, now: i64, fx: &mut Effects) {
        let Some(e) = self.executors.get_mut(name) else {
            return;
        };
        e.state = ExecutorState::Lost;
        e.memory_reserved = 0;
        let running = std::mem::take(&mut e.running);
        fx.executors.insert(name.to_string());
        for id in running {
            let Some(t) = self.live.get_mut(&id) else {
                continue;
            };
            fx.stop.push((name.to_string(), RunRef { task: id, attempt: t.attempts }));
            if t.attempts < t.spec.max_attempts {
                t.state = TaskState::Pending;
                self.queue.insert(t);
                fx.changed.insert(id);
            } else {
                let attempts = match t.attempts {
                    1 => "1 attempt".to_string(),
                    n => format!("{n} attempts"),
                };
                let message = format!("executor {name} was lost; gave up after {attempts}");
                self.finalize(id, TaskState::Failed, Some(Failure::new(FailureKind::ExecutorLost, message)), now, fx);
            }
        }
    }

    /// Frees the slot and memory a running task holds on its executor.
    fn release(&mut self, id: TaskId) {
        let Some(t) = self.live.get(&id) else { return };
        if let Some(e) = t.executor.as_ref().and_then(|n| self.executors.get_mut(n)) {
            if e.running.remove(&id) {
                e.memory_reserved = e.memory_reserved.saturating_sub(t.spec.limits.memory);
            }
        }
    }

    fn finalize(&mut self, id: TaskId, state: TaskState, error: Option<Failure>, now: i64, fx: &mut Effects) {
        if let Some(mut t) = self.live.remove(&id) {
            t.state = state;
            t.error = error;
            t.finished_at_ms = now;
            fx.changed.remove(&id);
            fx.finished.push(t);
        }
    }

    fn expire_requests(&mut self, now: i64, fx: &mut Effects) {
        while let Some(&(at, id)) = self.request_log.front() {
            if now - at < REQUEST_MEMORY_MS {
                break;
            }
            self.request_log.pop_front();
            self.requests.remove(&id);
            fx.requests_expired.push(id);
        }
    }

    // ---- reads ----

    pub fn next_task_id(&self) -> TaskId {
        self.next_task_id
    }

    pub fn module(&self, digest: &Digest) -> Option<&ModuleMeta> {
        self.modules.get(digest)
    }

    pub fn modules(&self) -> impl Iterator<Item = &ModuleMeta> {
        self.modules.values()
    }

    pub fn executor(&self, name: &str) -> Option<&ExecutorRecord> {
        self.executors.get(name)
    }

    pub fn executors(&self) -> impl Iterator<Item = &ExecutorRecord> {
        self.executors.values()
    }

    pub fn live_task(&self, id: TaskId) -> Option<&TaskRecord> {
        self.live.get(&id)
    }

    pub fn live_tasks(&self) -> impl Iterator<Item = &TaskRecord> {
        self.live.values()
    }

    /// The tasks a request id submitted, while it is remembered.
    pub fn request(&self, id: &RequestId) -> Option<&[TaskId]> {
        self.requests.get(id).map(Vec::as_slice)
    }

    pub fn pending_count(&self) -> usize {
        self.queue.len()
    }

    pub fn running_count(&self) -> usize {
        self.live.len() - self.queue.len()
    }

    /// Which modules run short, once counted (see `Command::TrackShortRuns`).
    pub fn short_runs(&self) -> Option<&ShortRuns> {
        self.short_runs.as_ref()
    }

    /// True when tasks of `module` may queue at executors beyond their slots.
    pub fn runs_short(&self, module: &Digest) -> bool {
        self.short_runs.as_ref().is_some_and(|s| s.is_short(module))
    }

    /// Client addresses of the masters, by Raft node id.
    pub fn member_addrs(&self) -> &BTreeMap<u64, String> {
        &self.member_addrs
    }

    /// The dispatch of a running task's current attempt (to send it again after a reconnect).
    pub fn current_dispatch(&self, id: TaskId) -> Option<Dispatch> {
        let t = self.live.get(&id)?;
        if t.state != TaskState::Running {
            return None;
        }
        Some(Dispatch {
            executor: t.executor.clone()?,
            task: id,
            attempt: t.attempts,
            module: t.spec.module,
            kind: self.modules.get(&t.spec.module)?.kind,
            limits: t.spec.limits,
            args: t.spec.args.clone(),
            env: t.spec.env.clone(),
        })
    }

    /// Running tasks whose timeout (plus `grace_ms`) has passed at `now_ms`: (task, attempt).
    /// `counts_from(executor, run, placed_ms)` says when a run's timeout began at the latest
    /// (`None`: unknown, never overdue).
    pub fn overdue(
        &self,
        now_ms: i64,
        grace_ms: i64,
        counts_from: impl Fn(&ExecutorRecord, RunRef, i64) -> Option<i64>,
    ) -> Vec<(TaskId, u32)> {
        self.executors
            .values()
            .flat_map(|e| e.running.iter().map(move |id| (e, id)))
            .filter_map(|(e, id)| Some((e, self.live.get(id)?)))
            .filter(|(e, t)| {
                let timeout = i64::try_from(t.spec.limits.timeout_ms).unwrap_or(i64::MAX);
                counts_from(e, RunRef { task: t.id, attempt: t.attempts }, t.started_at_ms)
                    .is_some_and(|from| from.saturating_add(timeout).saturating_add(grace_ms) < now_ms)
            })
            .map(|(_, t)| (t.id, t.attempts))
            .collect()
    }

    /// Why a pending task is not running (empty when it just waits for a free slot).
    pub fn pending_reason(&self, t: &TaskRecord) -> String {
        placement::pending_reason(self, t)
    }
}
