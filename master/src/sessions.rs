//! The leader's open executor streams: where to send assignments, cancellations and result
//! acknowledgements, when each executor was last heard from (its lease), and which of its
//! runs it last said were still waiting for a slot.
//!
//! Sends never block: an executor whose stream is full or gone loses its session, reconnects,
//! and is brought up to date by the reconciliation that follows every `Hello`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tonic::Status;
use wasmgrid_proto as pb;
use wasmgrid_proto::split;

use crate::convert;
use crate::state::{Dispatch, RunRef};

pub type Outbox = mpsc::Sender<Result<pb::MasterMessage, Status>>;

/// How many messages may queue for one executor before its session is dropped.
pub const OUTBOX_CAPACITY: usize = 4096;

struct Session {
    id: u64,
    incarnation: u64,
    tx: Outbox,
    /// The executor runs trials (it said so in `Hello`).
    trials: bool,
}

#[derive(Default)]
pub struct Sessions {
    inner: Mutex<HashMap<String, Session>>,
    /// When each executor incarnation was last heard from, kept after its stream closes so
    /// the lease runs from the last message, not from the disconnect.
    seen: Mutex<HashMap<String, SessionInfo>>,
    /// Per executor, each held run it last reported waiting for a slot, and when (ms since
    /// the epoch): such a run has not started, so its timeout has not begun.
    waiting: Mutex<HashMap<String, HashMap<RunRef, i64>>>,
    next_id: AtomicU64,
}

/// How often an executor with lease `lease` sends a heartbeat.
pub fn keepalive_interval(lease: Duration) -> Duration {
    (lease / 4).max(Duration::from_millis(25))
}

/// When an executor incarnation was last heard from, and whether its stream is open now.
#[derive(Debug, Clone, Copy)]
pub struct SessionInfo {
    pub incarnation: u64,
    pub last_seen: Instant,
    pub connected: bool,
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, HashMap<String, SessionInfo>> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens a session for `name`, replacing (and so closing) any older one. Returns its id.
    pub fn open(&self, name: &str, incarnation: u64, tx: Outbox, trials: bool) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let now = Instant::now();
        let session = Session { id, incarnation, tx, trials };
        self.lock().insert(name.to_string(), session);
        self.seen().insert(name.to_string(), SessionInfo { incarnation, last_seen: now, connected: true });
        id
    }

    /// Whether another process holds `name`: a session of another incarnation, heard from
    /// within `lease`. An executor restarted after a crash its master has not noticed gets
    /// in once its old session has been silent that long.
    pub fn taken(&self, name: &str, incarnation: u64, lease: Duration) -> bool {
        let open = self.lock();
        open.get(name).is_some_and(|s| s.incarnation != incarnation)
            && self.seen().get(name).is_some_and(|i| i.connected && i.last_seen.elapsed() < lease)
    }

    /// True while `id` is still the session of `name`.
    pub fn is_current(&self, name: &str, id: u64) -> bool {
        self.lock().get(name).is_some_and(|s| s.id == id)
    }

    /// Closes session `id` of `name`; true if it was still the current one.
    pub fn close(&self, name: &str, id: u64) -> bool {
        let mut map = self.lock();
        if map.get(name).is_none_or(|s| s.id != id) {
            return false;
        }
        map.remove(name);
        if let Some(seen) = self.seen().get_mut(name) {
            seen.connected = false;
        }
        true
    }

    /// Ends the stream of `name` with `why` (it reconnects, and is reconciled).
    pub fn end(&self, name: &str, why: &str) {
        let removed = self.lock().remove(name);
        if let Some(s) = removed {
            if let Some(seen) = self.seen().get_mut(name) {
                seen.connected = false;
            }
            let _ = s.tx.try_send(Err(Status::unavailable(why.to_string())));
        }
    }

    /// Ends every stream, e.g. when this master stops being the leader.
    pub fn close_all(&self, why: &str) {
        let sessions: Vec<Session> = self.lock().drain().map(|(_, s)| s).collect();
        self.seen().clear();
        self.waiting.lock().unwrap_or_else(|p| p.into_inner()).clear();
        for s in sessions {
            let _ = s.tx.try_send(Err(Status::unavailable(why.to_string())));
        }
    }

    pub fn touch(&self, name: &str, id: u64) {
        let incarnation = match self.lock().get(name) {
            Some(s) if s.id == id => s.incarnation,
            _ => return,
        };
        self.seen().insert(name.to_string(), SessionInfo { incarnation, last_seen: Instant::now(), connected: true });
    }

    /// Takes note of runs placed beyond their executors' slots at `now_ms`, on executors
    /// with a session here (so only a leader keeps any): they wait there, as of now.
    pub fn note_queued(&self, runs: Vec<(String, RunRef)>, now_ms: i64) {
        if runs.is_empty() {
            return;
        }
        let open = self.lock();
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        for (name, run) in runs.into_iter().filter(|(name, _)| open.contains_key(name)) {
            waiting.entry(name).or_default().insert(run, now_ms);
        }
    }

    /// Takes note of the runs `name` holds (from its `Hello` or a heartbeat, at `now_ms`):
    /// those waiting for a slot are marked waiting as of now; the rest keep when they were
    /// last seen waiting, if ever; runs it no longer holds are forgotten, unless noted in
    /// the last second (their assignment may have crossed this heartbeat). On a `Hello`
    /// (`first`) every held run counts as waiting as of now: it may have waited, then
    /// started, while this master did not hear the executor (under another leader, or with
    /// its stream closed), and this one cannot tell when.
    pub fn note_held(&self, name: &str, held: &[pb::RunningTask], now_ms: i64, first: bool) {
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        let runs = waiting.entry(name.to_string()).or_default();
        let keep: HashSet<RunRef> = held.iter().map(|r| RunRef { task: r.task_id, attempt: r.attempt }).collect();
        runs.retain(|run, at| keep.contains(run) || now_ms.saturating_sub(*at) < 1_000);
        for r in held {
            let run = RunRef { task: r.task_id, attempt: r.attempt };
            if r.waiting || first {
                runs.insert(run, now_ms);
            }
        }
    }

    /// When `name` last reported `run` waiting for a slot, if it ever did.
    pub fn last_waiting(&self, name: &str, run: RunRef) -> Option<i64> {
        let waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        waiting.get(name)?.get(&run).copied()
    }

    pub fn info(&self, name: &str) -> Option<SessionInfo> {
        self.seen().get(name).copied()
    }

    /// The id of `name`'s open session, if it has one.
    pub fn current(&self, name: &str) -> Option<u64> {
        self.lock().get(name).map(|s| s.id)
    }

    /// True while `name` has an open stream and runs trials.
    pub fn takes_trials(&self, name: &str) -> bool {
        self.lock().get(name).is_some_and(|s| s.trials)
    }

    /// Queues `msg` for `name`; false if it has no open stream (or lost it just now).
    pub fn send(&self, name: &str, msg: pb::MasterMessage) -> bool {
        let mut map = self.lock();
        let failed = match map.get(name) {
            Some(s) => s.tx.try_send(Ok(msg)).is_err(),
            None => return false,
        };
        if failed {
            tracing::warn!(executor = name, "executor stream is full or closed; dropping its session");
            map.remove(name);
            if let Some(seen) = self.seen().get_mut(name) {
                seen.connected = false;
            }
        }
        !failed
    }

    /// Sends what an applied batch asks of executors, one message per kind and executor.
    pub fn deliver(
        &self,
        dispatch: Vec<(Dispatch, Vec<u8>)>,
        stop: Vec<(String, RunRef)>,
        acks: Vec<(String, RunRef)>,
    ) {
        let mut assign: BTreeMap<String, Vec<pb::Assignment>> = BTreeMap::new();
        for (d, input) in dispatch {
            let a = convert::assignment(&d, input);
            assign.entry(d.executor).or_default().push(a);
        }
        for (name, tasks) in assign {
            // Inputs can be large: several messages rather than one the executor refuses.
            for tasks in split::by_size(tasks, split::MESSAGE_BYTES) {
                self.send(&name, message(pb::master_message::Kind::Assign(pb::Assignments { tasks })));
            }
        }
        for (name, runs) in group(stop) {
            self.send(&name, message(pb::master_message::Kind::Cancel(pb::CancelTasks { tasks: runs })));
        }
        for (name, runs) in group(acks) {
            self.send(
                &name,
                message(pb::master_message::Kind::Ack(pb::ResultsAck { tasks: runs, masters: Vec::new() })),
            );
        }
    }
}

pub fn message(kind: pb::master_message::Kind) -> pb::MasterMessage {
    pb::MasterMessage { kind: Some(kind) }
}

fn group(runs: Vec<(String, RunRef)>) -> BTreeMap<String, Vec<pb::RunningTask>> {
    let mut out: BTreeMap<String, Vec<pb::RunningTask>> = BTreeMap::new();
    for (name, r) in runs {
        out.entry(name).or_default().push(pb::RunningTask { task_id: r.task, attempt: r.attempt, waiting: false });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_runs_are_noted_for_open_sessions_and_forgotten_once_not_held() {
        let sessions = Sessions::default();
        let (tx, _rx) = mpsc::channel(4);
        sessions.open("e", 1, tx, false);
        let run = |task| RunRef { task, attempt: 1 };
        let held = |task, waiting| pb::RunningTask { task_id: task, attempt: 1, waiting };
        sessions.note_queued(vec![("e".into(), run(1)), ("elsewhere".into(), run(2))], 1_000);
        assert_eq!(sessions.last_waiting("e", run(1)), Some(1_000), "placed beyond the slots");
        assert_eq!(sessions.last_waiting("elsewhere", run(2)), None, "no session here: not noted");

        // A heartbeat: 1 still waits; 3 runs, never seen waiting.
        sessions.note_held("e", &[held(1, true), held(3, false)], 5_000, false);
        assert_eq!(sessions.last_waiting("e", run(1)), Some(5_000));
        assert_eq!(sessions.last_waiting("e", run(3)), None);
        // 1 started: when it was last seen waiting stays.
        sessions.note_held("e", &[held(1, false)], 7_000, false);
        assert_eq!(sessions.last_waiting("e", run(1)), Some(5_000));
        // No longer held: forgotten.
        sessions.note_held("e", &[], 9_000, false);
        assert_eq!(sessions.last_waiting("e", run(1)), None);
        // A Hello: every held run counts as waiting until now, known or not.
        sessions.note_held("e", &[held(4, false), held(5, false)], 10_000, false);
        sessions.note_queued(vec![("e".into(), run(5))], 10_000);
        sessions.note_held("e", &[held(4, false), held(5, false)], 12_000, true);
        assert_eq!(sessions.last_waiting("e", run(4)), Some(12_000));
        assert_eq!(sessions.last_waiting("e", run(5)), Some(12_000));
        // Losing the lead forgets it all.
        sessions.close_all("no longer the leader");
        assert_eq!(sessions.last_waiting("e", run(4)), None);
    }
}
