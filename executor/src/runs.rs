//! The runs an executor holds: those assigned (with their cancel token), some still waiting
//! for a slot, and finished ones whose result waits in the outbox until the leader
//! acknowledges it.
//!
//! A run given up by the executor itself (it drains, or lost the masters for longer than its
//! lease) is reported as `executor_lost`, so the master runs it elsewhere.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use wasmgrid_proto as pb;

use crate::sandbox::Outcome;

/// A run, named by its fencing token.
pub type RunKey = (u64, u32);

/// A result waiting for the leader's acknowledgement.
struct Sent {
    result: pb::TaskResult,
    at: Instant,
    times: u32,
}

/// Longest wait between two sends of an unacknowledged result.
const MAX_RESEND_INTERVAL: Duration = Duration::from_secs(60);

/// How long after its `times`-th send a result still unacknowledged is sent again: `after`,
/// then twice as long each time, up to a minute. A large result can take longer than `after`
/// to commit, and each copy sent is proposed again.
fn resend_interval(after: Duration, times: u32) -> Duration {
    let doublings = times.saturating_sub(1).min(16);
    after.saturating_mul(1 << doublings).min(MAX_RESEND_INTERVAL.max(after))
}

#[derive(Default)]
struct Inner {
    running: HashMap<RunKey, CancellationToken>,
    /// Held runs not started yet: waiting for a slot.
    waiting: HashSet<RunKey>,
    /// Runs given up, with why, and whether they were still waiting (never started).
    abandoned: HashMap<RunKey, (String, bool)>,
    /// Each result with when it was last sent, and how often.
    outbox: BTreeMap<RunKey, Sent>,
    /// Most runs at once so far (never more than the slots).
    peak: usize,
}

impl Inner {
    /// Marks `key` as given up with `why` and cancels it if it is still going.
    fn abandon(&mut self, key: RunKey, why: &str) {
        let not_started = self.waiting.contains(&key);
        self.abandoned.insert(key, (why.to_string(), not_started));
        if let Some(t) = self.running.get(&key) {
            t.cancel();
        }
    }
}

#[derive(Default)]
pub struct Runs {
    inner: Mutex<Inner>,
}

impl Runs {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a run unless it is already held; returns its cancel token.
    pub fn hold(&self, key: RunKey) -> Option<CancellationToken> {
        let mut runs = self.lock();
        if runs.running.contains_key(&key) || runs.outbox.contains_key(&key) {
            return None;
        }
        let token = CancellationToken::new();
        runs.running.insert(key, token.clone());
        runs.waiting.insert(key);
        Some(token)
    }

    /// A held run got its slot: it starts, unless it was given up or cancelled while it
    /// waited (checked under the same lock as `abandon`, so a run reported as never started
    /// never ran).
    pub fn start(&self, key: RunKey) -> bool {
        let mut runs = self.lock();
        let stopped = runs.abandoned.contains_key(&key) || runs.running.get(&key).is_none_or(|t| t.is_cancelled());
        if !stopped {
            runs.waiting.remove(&key);
        }
        !stopped
    }

    /// Records how many runs are executing right now (for the peak).
    pub fn note_busy(&self, busy: usize) {
        let mut runs = self.lock();
        runs.peak = runs.peak.max(busy);
    }

    pub fn peak(&self) -> usize {
        self.lock().peak
    }

    /// Moves a finished run to the outbox; a run this executor gave up becomes `executor_lost`.
    pub fn finish(&self, key: RunKey, o: Outcome) {
        let mut runs = self.lock();
        runs.running.remove(&key);
        runs.waiting.remove(&key);
        let (o, not_started) = match runs.abandoned.remove(&key) {
            Some((why, not_started)) => {
                (Outcome { failure: Some((pb::FailureKind::ExecutorLost, why)), ..o }, not_started)
            }
            None => (o, false),
        };
        let result = pb::TaskResult { not_started, ..task_result(key, o) };
        // It goes out right away through the agent's finished channel.
        runs.outbox.insert(key, Sent { result, at: Instant::now(), times: 0 });
    }

    pub fn cancel(&self, key: RunKey) -> bool {
        match self.lock().running.get(&key) {
            Some(token) => {
                token.cancel();
                true
            }
            None => false,
        }
    }

    /// Stops every running run, to be reported as `executor_lost` with `why`.
    pub fn abandon_all(&self, why: &str) -> usize {
        let mut runs = self.lock();
        let keys: Vec<RunKey> = runs.running.keys().copied().collect();
        keys.iter().for_each(|key| runs.abandon(*key, why));
        keys.len()
    }

    /// Gives up the runs still waiting for a slot, to be reported as `executor_lost` with `why`.
    pub fn abandon_waiting(&self, why: &str) -> usize {
        let mut runs = self.lock();
        let keys: Vec<RunKey> = runs.waiting.iter().copied().collect();
        keys.iter().for_each(|key| runs.abandon(*key, why));
        keys.len()
    }

    /// Marks one run as given up (it is cancelled and reported as `executor_lost`).
    pub fn abandon(&self, key: RunKey, why: &str) {
        self.lock().abandon(key, why);
    }

    pub fn ack(&self, keys: impl IntoIterator<Item = RunKey>) {
        let mut runs = self.lock();
        for key in keys {
            runs.outbox.remove(&key);
        }
    }

    /// Every run held: waiting for a slot, running, or finished and not yet acknowledged.
    pub fn held(&self) -> Vec<pb::RunningTask> {
        let runs = self.lock();
        runs.running
            .keys()
            .chain(runs.outbox.keys())
            .map(|key| pb::RunningTask { task_id: key.0, attempt: key.1, waiting: runs.waiting.contains(key) })
            .collect()
    }

    /// Task ids of the runs executing now, and of those still waiting for a slot.
    pub fn ids(&self) -> (Vec<u64>, Vec<u64>) {
        let runs = self.lock();
        let (waiting, running) = runs.running.keys().partition::<Vec<&RunKey>, _>(|k| runs.waiting.contains(k));
        (running.iter().map(|k| k.0).collect(), waiting.iter().map(|k| k.0).collect())
    }

    /// Runs assigned and not finished, those waiting for a slot included.
    pub fn running_count(&self) -> usize {
        self.lock().running.len()
    }

    pub fn outbox_len(&self) -> usize {
        self.lock().outbox.len()
    }

    /// Results waiting for an acknowledgement: all of them (a new session), or those of
    /// `keys` (just finished). Either is a first send to this session: resends back off
    /// from here.
    pub fn results(&self, keys: Option<&[RunKey]>) -> Vec<pb::TaskResult> {
        let mut runs = self.lock();
        let keys: Vec<RunKey> = match keys {
            None => runs.outbox.keys().copied().collect(),
            Some(keys) => keys.to_vec(),
        };
        Self::take_for_sending(&mut runs, &keys, true)
    }

    /// Results sent longer than `after` ago and still not acknowledged (the leader lost
    /// them, say, when a proposal timed out): to be sent again. Duplicates are harmless, the
    /// leader applies a run's report once.
    pub fn overdue(&self, after: Duration) -> Vec<pb::TaskResult> {
        let now = Instant::now();
        let mut runs = self.lock();
        let keys: Vec<RunKey> = runs
            .outbox
            .iter()
            .filter(|(_, sent)| now.duration_since(sent.at) >= resend_interval(after, sent.times))
            .map(|(k, _)| *k)
            .collect();
        Self::take_for_sending(&mut runs, &keys, false)
    }

    /// Copies of the results of `keys` still in the outbox, marked as sent now (`first`: the
    /// first time to this session).
    fn take_for_sending(runs: &mut Inner, keys: &[RunKey], first: bool) -> Vec<pb::TaskResult> {
        let now = Instant::now();
        keys.iter()
            .filter_map(|k| {
                let sent = runs.outbox.get_mut(k)?;
                sent.at = now;
                sent.times = if first { 1 } else { sent.times.saturating_add(1) };
                Some(sent.result.clone())
            })
            .collect()
    }
}

/// The message reporting run `key`'s outcome.
pub fn task_result(key: RunKey, o: Outcome) -> pb::TaskResult {
    pb::TaskResult {
        task_id: key.0,
        attempt: key.1,
        failure: o.failure.map(|(kind, message)| pb::Failure { kind: kind.into(), message }),
        output: o.output,
        fuel_consumed: o.fuel_consumed,
        duration_ms: u64::try_from(o.duration.as_millis()).unwrap_or(u64::MAX),
        exit_code: o.exit_code,
        stderr: o.stderr,
        stderr_truncated: o.stderr_truncated,
        not_started: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unacknowledged_results_come_due_again_until_acked() {
        let runs = Runs::default();
        let key = (7, 1);
        assert!(runs.hold(key).is_some());
        runs.finish(key, Outcome::default());
        // Just finished: it is on its way, not overdue.
        assert!(runs.overdue(Duration::from_secs(3600)).is_empty());
        let again = runs.overdue(Duration::ZERO);
        assert_eq!(again.iter().map(|r| (r.task_id, r.attempt)).collect::<Vec<_>>(), vec![key]);
        // A repeated assignment of a run whose result waits is not run twice.
        assert!(runs.hold(key).is_none());
        runs.ack([key]);
        assert!(runs.overdue(Duration::ZERO).is_empty());
        assert_eq!(runs.outbox_len(), 0);
    }

    #[test]
    fn resends_back_off_to_a_minute() {
        let after = Duration::from_secs(5);
        let intervals: Vec<u64> = (0..7).map(|n| resend_interval(after, n).as_secs()).collect();
        assert_eq!(intervals, vec![5, 5, 10, 20, 40, 60, 60]);
        assert_eq!(resend_interval(after, u32::MAX), MAX_RESEND_INTERVAL);
        assert_eq!(resend_interval(Duration::ZERO, 9), Duration::ZERO);
    }

    #[test]
    fn a_run_given_back_before_it_started_says_so() {
        let runs = Runs::default();
        for key in [(1, 1), (2, 1)] {
            assert!(runs.hold(key).is_some());
        }
        assert!(runs.start((1, 1)));
        assert_eq!(runs.abandon_all("draining"), 2);
        assert!(!runs.start((2, 1)), "given back while it waited: it must not start");
        for key in [(1, 1), (2, 1)] {
            runs.finish(key, Outcome::default());
        }
        let results = runs.overdue(Duration::ZERO);
        let given_back: Vec<_> = results.iter().map(|r| (r.task_id, r.not_started, r.failure.is_some())).collect();
        assert_eq!(given_back, vec![(1, false, true), (2, true, true)]);
    }

    #[test]
    fn runs_waiting_for_a_slot_are_told_apart_from_running_ones() {
        let runs = Runs::default();
        for key in [(1, 1), (2, 1), (3, 2)] {
            assert!(runs.hold(key).is_some());
        }
        assert!(runs.start((2, 1)));
        let (running, mut waiting) = runs.ids();
        waiting.sort_unstable();
        assert_eq!((running, waiting), (vec![2], vec![1, 3]));
        runs.finish((2, 1), Outcome::default());
        assert_eq!(runs.ids().0, Vec::<u64>::new(), "a finished run is neither");
        assert_eq!(runs.running_count(), 2, "waiting runs are still held");
    }
}
