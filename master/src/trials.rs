//! Trial runs, on the leader. A task a client waits on (`RunTask`) is first run on a free
//! executor slot before anything is written, then submitted and finished in one command
//! (`Command::Ran`): its round trip holds one durable write instead of two (the submit's and
//! the result's). Nothing here is replicated. Whatever goes wrong (no free slot, the
//! executor goes away, the run outlasts [`TRIAL_BUDGET`], the leader steps down) falls back
//! to the ordinary submit, so a trial only ever costs a repeated run, never a lost task.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use wasmgrid_common::Digest;
use wasmgrid_proto as pb;

use crate::convert;
use crate::node::Node;
use crate::sessions::{message, Sessions};
use crate::state::{Dispatch, FailureKind, Limits, NewTask, Report, StateMachine};

/// Longest a trial may run. A task that needs longer is run again the ordinary way (and its
/// module skips trials on this leader for [`SLOW_FOR`]), so the waste is bounded by this.
pub const TRIAL_BUDGET: Duration = Duration::from_millis(250);

/// How long a trial may take on top of its budget: fetching and compiling its module.
const TRIAL_SETUP: Duration = Duration::from_secs(30);

/// Inputs larger than this are submitted the ordinary way: a `Ran` entry carries the input
/// and the output, and a large input gains little from saving a write.
pub const TRIAL_MAX_INPUT: usize = 1 << 20;

/// How often a waiting trial checks that its executor's stream and this leadership still hold.
const WATCH_EVERY: Duration = Duration::from_millis(100);

/// How long a module whose trial ran out of budget skips trials.
const SLOW_FOR: Duration = Duration::from_secs(600);

/// Modules remembered as too slow for trials, at most; the oldest marks go first.
const MAX_SLOW_MODULES: usize = 10_000;

pub struct Trials {
    inner: Mutex<Inner>,
}

impl Default for Trials {
    /// Ids start at a random point: an executor reports a trial to whichever leader its
    /// stream goes to, and a new leader's trials must not take the ids of an old one's.
    fn default() -> Self {
        Self { inner: Mutex::new(Inner { next_id: rand::random::<u64>() >> 1, ..Inner::default() }) }
    }
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    /// Trials waiting for their result: id → (executor, memory, where the result goes).
    waiting: HashMap<u64, (String, u64, oneshot::Sender<pb::TaskResult>)>,
    /// Trials running on each executor, and the memory they asked for: what the replicated
    /// state does not count.
    per_executor: HashMap<String, (u32, u64)>,
    /// Modules whose trial ran out of budget, and when.
    slow: HashMap<Digest, Instant>,
}

impl Inner {
    fn remove(&mut self, id: u64) -> Option<oneshot::Sender<pb::TaskResult>> {
        let (executor, memory, tx) = self.waiting.remove(&id)?;
        if let Some((n, reserved)) = self.per_executor.get_mut(&executor) {
            *n = n.saturating_sub(1);
            *reserved = reserved.saturating_sub(memory);
            if *n == 0 {
                self.per_executor.remove(&executor);
            }
        }
        Some(tx)
    }
}

/// A trial in flight; dropping it (the client went away, the wait ended) forgets it.
pub struct Trial<'a> {
    trials: &'a Trials,
    pub id: u64,
    pub executor: String,
    pub result: oneshot::Receiver<pb::TaskResult>,
}

impl Drop for Trial<'_> {
    fn drop(&mut self) {
        self.trials.lock().remove(self.id);
    }
}

impl Trials {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a trial of a task needing `memory` on the executor with the most slots free of
    /// tasks and trials (alive, connected, taking trials, with the memory free), or None.
    /// None too while tasks are pending: a trial never runs ahead of queued work.
    pub fn begin(&self, sm: &StateMachine, sessions: &Sessions, memory: u64) -> Option<Trial<'_>> {
        if sm.pending_count() > 0 {
            return None;
        }
        let mut inner = self.lock();
        let executor = sm
            .executors()
            .filter(|e| sessions.takes_trials(&e.name))
            .filter_map(|e| {
                let (n, reserved) = inner.per_executor.get(&e.name).copied().unwrap_or_default();
                let free = e.free_slots().saturating_sub(n);
                let fits = e.fits_now(0) && e.free_memory().saturating_sub(reserved) >= memory;
                (free > 0 && fits).then_some((free, e))
            })
            .max_by_key(|(free, _)| *free)
            .map(|(_, e)| e.name.clone())?;
        let (tx, rx) = oneshot::channel();
        inner.next_id = inner.next_id.wrapping_add(1);
        let id = inner.next_id;
        inner.waiting.insert(id, (executor.clone(), memory, tx));
        let (n, reserved) = inner.per_executor.entry(executor.clone()).or_default();
        *n += 1;
        *reserved += memory;
        Some(Trial { trials: self, id, executor, result: rx })
    }

    /// Hands a trial's result to its waiter (if it is still waiting, and `executor` ran it).
    pub fn complete(&self, executor: &str, result: pb::TaskResult) {
        let mut inner = self.lock();
        if inner.waiting.get(&result.task_id).is_some_and(|(e, _, _)| e == executor) {
            if let Some(tx) = inner.remove(result.task_id) {
                let _ = tx.send(result);
            }
        }
    }

    /// The stream of `executor` closed: its trials will not report, so stop waiting for them.
    pub fn executor_gone(&self, executor: &str) {
        let mut inner = self.lock();
        let ids: Vec<u64> = inner.waiting.iter().filter(|(_, (e, _, _))| e == executor).map(|(id, _)| *id).collect();
        for id in ids {
            inner.remove(id);
        }
    }

    pub fn is_slow(&self, module: &Digest) -> bool {
        self.lock().slow.get(module).is_some_and(|at| at.elapsed() < SLOW_FOR)
    }

    pub fn mark_slow(&self, module: Digest) {
        let mut inner = self.lock();
        if inner.slow.len() >= MAX_SLOW_MODULES {
            inner.slow.retain(|_, at| at.elapsed() < SLOW_FOR);
            if inner.slow.len() >= MAX_SLOW_MODULES {
                inner.slow.clear();
            }
        }
        inner.slow.insert(module, Instant::now());
    }
}

/// Runs `task` on a free slot before it is submitted; None when it cannot or should not be
/// (the caller then submits it the ordinary way).
pub async fn run(node: &Node, task: &NewTask) -> Option<Report> {
    let spec = &task.spec;
    if task.input.len() > TRIAL_MAX_INPUT || node.trials.is_slow(&spec.module) {
        return None;
    }
    let (mut trial, kind) = {
        let sm = node.replica.read();
        let kind = sm.module(&spec.module)?.kind;
        (node.trials.begin(&sm, &node.replica.sessions, spec.limits.memory)?, kind)
    };
    let executor = trial.executor.clone();
    let budget = u64::try_from(TRIAL_BUDGET.as_millis()).unwrap_or(u64::MAX);
    let capped = spec.limits.timeout_ms > budget;
    let dispatch = Dispatch {
        executor: executor.clone(),
        task: trial.id,
        attempt: 1,
        module: spec.module,
        kind,
        limits: Limits { timeout_ms: spec.limits.timeout_ms.min(budget), ..spec.limits },
        args: spec.args.clone(),
        env: spec.env.clone(),
    };
    let assignment = convert::assignment(&dispatch, task.input.clone());
    let message = message(pb::master_message::Kind::Trial(pb::Assignments { tasks: vec![assignment] }));
    let session = node.replica.sessions.current(&executor)?;
    if !node.replica.sessions.send(&executor, message) {
        return None;
    }
    // Module fetch and compilation do not count against the run's timeout. Stop waiting as
    // soon as the stream the trial went out on is gone, or this master stops leading.
    let deadline = Instant::now() + TRIAL_BUDGET + TRIAL_SETUP;
    let mut watch = tokio::time::interval(WATCH_EVERY);
    let result = loop {
        tokio::select! {
            r = &mut trial.result => break r.ok(),
            _ = watch.tick() => {
                let holds = node.replica.sessions.current(&executor) == Some(session) && node.is_leader();
                if !holds || Instant::now() > deadline {
                    break None;
                }
            }
        }
    };
    let Some(result) = result else {
        tracing::info!(executor = %executor, "a trial got no result (its executor went away); submitting the task");
        return None;
    };
    let report = convert::report(&executor, result);
    match &report.failure {
        // No free slot after all, draining, or the module could not be fetched.
        Some(f) if f.kind == FailureKind::ExecutorLost => None,
        Some(f) if f.kind == FailureKind::Timeout && capped => {
            tracing::debug!(module = %spec.module, "a trial ran out of budget; the module skips trials for a while");
            node.trials.mark_slow(spec.module);
            None
        }
        _ => Some(report),
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::mpsc;

    use super::*;
    use crate::state::{Batch, Command, Effects};

    const MIB: u64 = 1 << 20;

    fn result(id: u64) -> pb::TaskResult {
        pb::TaskResult { task_id: id, output: b"out".to_vec(), ..Default::default() }
    }

    /// A state with `executors` (name, slots, memory MiB) registered, and their sessions open
    /// (the receivers keep them open); executors named `old-*` do not take trials.
    fn cluster(executors: &[(&str, u32, u64)]) -> (StateMachine, Sessions, Vec<mpsc::Receiver<OutboxItem>>) {
        let mut sm = StateMachine::new();
        let commands = executors
            .iter()
            .map(|(name, slots, mib)| Command::Register {
                name: name.to_string(),
                addr: String::new(),
                incarnation: 1,
                slots: *slots,
                memory: mib * MIB,
                lease_ms: 1000,
            })
            .collect();
        sm.apply(Batch { at_ms: 1, commands }, &mut Effects::default());
        let sessions = Sessions::default();
        let mut keep = Vec::new();
        for (name, _, _) in executors {
            let (tx, rx) = mpsc::channel(8);
            sessions.open(name, 1, tx, !name.starts_with("old-"));
            keep.push(rx);
        }
        (sm, sessions, keep)
    }

    type OutboxItem = Result<pb::MasterMessage, tonic::Status>;

    #[test]
    fn a_result_reaches_only_the_trial_it_names_from_the_executor_that_ran_it() {
        let (sm, sessions, _keep) = cluster(&[("e1", 1, 1024), ("e2", 1, 1024)]);
        let trials = Trials::default();
        let mut a = trials.begin(&sm, &sessions, MIB).unwrap();
        let mut b = trials.begin(&sm, &sessions, MIB).unwrap();
        assert_ne!(a.executor, b.executor, "one trial per free slot");
        trials.complete(&b.executor, result(a.id)); // from the wrong executor
        trials.complete(&a.executor, result(a.id.wrapping_add(100))); // unknown id
        assert!(a.result.try_recv().is_err());
        trials.complete(&a.executor, result(a.id));
        assert_eq!(a.result.try_recv().unwrap().output, b"out");
        trials.executor_gone(&b.executor);
        assert!(matches!(b.result.try_recv(), Err(oneshot::error::TryRecvError::Closed)));
        assert!(trials.lock().per_executor.is_empty() && trials.lock().waiting.is_empty());
    }

    #[test]
    fn trials_count_against_free_slots_and_memory_until_they_end() {
        let (sm, sessions, _keep) = cluster(&[("e1", 2, 100), ("old-e2", 4, 1024)]);
        let trials = Trials::default();
        assert!(trials.begin(&sm, &sessions, 200 * MIB).is_none(), "no executor taking trials has the memory");
        let first = trials.begin(&sm, &sessions, 60 * MIB).unwrap();
        assert_eq!(first.executor, "e1");
        assert!(trials.begin(&sm, &sessions, 60 * MIB).is_none(), "60 of 100 MiB are held by the first trial");
        let second = trials.begin(&sm, &sessions, 40 * MIB).unwrap();
        assert!(trials.begin(&sm, &sessions, 0).is_none(), "both slots are held");
        drop(first);
        assert!(trials.begin(&sm, &sessions, 60 * MIB).is_some(), "a dropped trial gives back its slot and memory");
        drop(second);
        assert!(trials.lock().per_executor.is_empty());
        let other = Trials::default();
        let (a, b) = (trials.begin(&sm, &sessions, 0).unwrap().id, other.begin(&sm, &sessions, 0).unwrap().id);
        assert_ne!(a, b, "two leaders do not hand out the same ids");
    }

    #[test]
    fn no_trial_while_tasks_are_pending() {
        let (mut sm, sessions, _keep) = cluster(&[("e1", 1, 1)]);
        let digest = crate::state::tests::module();
        let meta =
            crate::state::ModuleMeta { digest, size: 1, kind: crate::state::ModuleKind::Component, created_at_ms: 0 };
        let spec = crate::state::tests::spec(1024, 0);
        let submit =
            Command::Submit { request_id: None, tasks: vec![NewTask { spec, input: vec![] }], max_pending: None };
        sm.apply(Batch { at_ms: 2, commands: vec![Command::PutModule(meta), submit] }, &mut Effects::default());
        assert_eq!(sm.pending_count(), 1, "the task fits nowhere");
        assert!(Trials::default().begin(&sm, &sessions, 0).is_none());
    }
}
