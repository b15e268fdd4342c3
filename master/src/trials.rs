//! Trial runs, on the leader. A task a client waits on (`RunTask`) is first run on a free
//! executor slot before anything is written, then submitted and finished in one command
//! (`Command::Ran`): its round trip holds one durable write instead of two (the submit's and
//! the result's). Nothing here is replicated. Whatever goes wrong (no free slot, the
//! executor goes away, the run outlasts [`TRIAL_BUDGET`]) falls back to the ordinary submit,
//! so a trial only ever costs a repeated run, never a lost task.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::oneshot;
use wasmgrid_common::Digest;
use wasmgrid_proto as pb;

use crate::convert;
use crate::node::Node;
use crate::sessions::{message, Sessions};
use crate::state::{Dispatch, FailureKind, Limits, NewTask, Report, StateMachine};

/// Longest a trial may run. A task that needs longer is run again the ordinary way (and its
/// module skips trials from then on), so the waste is bounded by this.
pub const TRIAL_BUDGET: Duration = Duration::from_millis(250);

/// How long a trial may take on top of its budget: fetching and compiling its module.
const TRIAL_SETUP: Duration = Duration::from_secs(30);

/// Modules remembered as too slow for trials, at most; the set starts over when full.
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
    /// Trials waiting for their result: id → (executor, where the result goes).
    waiting: HashMap<u64, (String, oneshot::Sender<pb::TaskResult>)>,
    /// Trials running on each executor: slots the replicated state does not count.
    per_executor: HashMap<String, u32>,
    /// Modules whose trial ran out of budget.
    slow: HashSet<Digest>,
}

impl Inner {
    fn remove(&mut self, id: u64) -> Option<(String, oneshot::Sender<pb::TaskResult>)> {
        let (executor, tx) = self.waiting.remove(&id)?;
        if let Some(n) = self.per_executor.get_mut(&executor) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_executor.remove(&executor);
            }
        }
        Some((executor, tx))
    }
}

/// A trial in flight; dropping it (the client went away, the wait timed out) forgets it.
pub struct Trial<'a> {
    trials: &'a Trials,
    pub id: u64,
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

    /// The executor a trial of a task needing `memory` should go to: a connected, alive one
    /// with a slot free of tasks and trials, the freest first. None while tasks are pending:
    /// a trial must not overtake the queue.
    pub fn pick(&self, sm: &StateMachine, sessions: &Sessions, memory: u64) -> Option<String> {
        if sm.pending_count() > 0 {
            return None;
        }
        let inner = self.lock();
        sm.executors()
            .filter(|e| e.fits_now(memory) && sessions.is_connected(&e.name))
            .map(|e| (e.free_slots().saturating_sub(inner.per_executor.get(&e.name).copied().unwrap_or(0)), e))
            .filter(|(free, _)| *free > 0)
            .max_by_key(|(free, _)| *free)
            .map(|(_, e)| e.name.clone())
    }

    /// Starts waiting for a trial on `executor`.
    pub fn begin(&self, executor: &str) -> Trial<'_> {
        let (tx, rx) = oneshot::channel();
        let mut inner = self.lock();
        inner.next_id = inner.next_id.wrapping_add(1);
        let id = inner.next_id;
        inner.waiting.insert(id, (executor.to_string(), tx));
        *inner.per_executor.entry(executor.to_string()).or_default() += 1;
        Trial { trials: self, id, result: rx }
    }

    /// Hands a trial's result to its waiter (if it is still waiting, and `executor` ran it).
    pub fn complete(&self, executor: &str, result: pb::TaskResult) {
        let mut inner = self.lock();
        if inner.waiting.get(&result.task_id).is_some_and(|(e, _)| e == executor) {
            if let Some((_, tx)) = inner.remove(result.task_id) {
                let _ = tx.send(result);
            }
        }
    }

    /// The stream of `executor` closed: its trials will not report, so stop waiting for them.
    pub fn executor_gone(&self, executor: &str) {
        let mut inner = self.lock();
        let ids: Vec<u64> = inner.waiting.iter().filter(|(_, (e, _))| e == executor).map(|(id, _)| *id).collect();
        for id in ids {
            inner.remove(id);
        }
    }

    pub fn is_slow(&self, module: &Digest) -> bool {
        self.lock().slow.contains(module)
    }

    pub fn mark_slow(&self, module: Digest) {
        let mut inner = self.lock();
        if inner.slow.len() >= MAX_SLOW_MODULES {
            inner.slow.clear();
        }
        inner.slow.insert(module);
    }
}

/// Runs `task` on a free slot before it is submitted; None when it cannot or should not be
/// (the caller then submits it the ordinary way).
pub async fn run(node: &Node, task: &NewTask) -> Option<Report> {
    let spec = &task.spec;
    if node.trials.is_slow(&spec.module) {
        return None;
    }
    let (executor, kind) = {
        let sm = node.replica.read();
        let executor = node.trials.pick(&sm, &node.replica.sessions, spec.limits.memory)?;
        (executor, sm.module(&spec.module)?.kind)
    };
    let budget = u64::try_from(TRIAL_BUDGET.as_millis()).unwrap_or(u64::MAX);
    let capped = spec.limits.timeout_ms > budget;
    let mut trial = node.trials.begin(&executor);
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
    if !node.replica.sessions.send(&executor, message) {
        return None;
    }
    // Module fetch and compilation do not count against the run's timeout.
    let Ok(Ok(result)) = tokio::time::timeout(TRIAL_BUDGET + TRIAL_SETUP, &mut trial.result).await else {
        tracing::info!(executor = %executor, "a trial got no result (its executor went away); submitting the task");
        return None;
    };
    let report = convert::report(&executor, result);
    match &report.failure {
        // No free slot after all, draining, or the module could not be fetched.
        Some(f) if f.kind == FailureKind::ExecutorLost => None,
        Some(f) if f.kind == FailureKind::Timeout && capped => {
            tracing::debug!(module = %spec.module, "a trial ran out of budget; the module skips trials from now on");
            node.trials.mark_slow(spec.module);
            None
        }
        _ => Some(report),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(id: u64) -> pb::TaskResult {
        pb::TaskResult { task_id: id, output: b"out".to_vec(), ..Default::default() }
    }

    #[test]
    fn a_result_reaches_only_the_trial_it_names_from_the_executor_that_ran_it() {
        let trials = Trials::default();
        let mut a = trials.begin("e1");
        let mut b = trials.begin("e2");
        trials.complete("e2", result(a.id)); // wrong executor
        trials.complete("e1", result(a.id.wrapping_add(100))); // unknown id
        assert!(a.result.try_recv().is_err());
        trials.complete("e1", result(a.id));
        assert_eq!(a.result.try_recv().unwrap().output, b"out");
        trials.executor_gone("e2");
        assert!(matches!(b.result.try_recv(), Err(oneshot::error::TryRecvError::Closed)));
        assert!(trials.lock().per_executor.is_empty());
    }

    #[test]
    fn a_dropped_trial_frees_its_slot_and_leaders_do_not_share_ids() {
        let trials = Trials::default();
        let t = trials.begin("e1");
        assert_eq!(trials.lock().per_executor.get("e1"), Some(&1));
        drop(t);
        assert!(trials.lock().per_executor.is_empty() && trials.lock().waiting.is_empty());
        let other = Trials::default();
        assert_ne!(trials.begin("e1").id, other.begin("e1").id);
    }
}
