//! This master's copy of the replicated state: the in-memory machine (live tasks, modules,
//! executors), its projection at rest in `state.redb`, the module blobs, and who hears about
//! what an applied batch did (waiting clients, executor sessions).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::convert;
use crate::sessions::Sessions;
use crate::state::{
    Batch, Dispatch, Effects, ModuleMeta, RequestId, Response, RunRef, StateMachine, TaskId, TaskOutput, TaskRecord,
    TaskState,
};
use crate::storage::blobs::BlobStore;
use crate::storage::snapshot;
use crate::storage::state_db::{StateDb, Sync};
use crate::storage::StorageError;
use crate::unsynced::{Pending, Unsynced};
use crate::waiters::{Waiter, Waiters};
use wasmgrid_proto as pb;

/// How often applied state is fsynced. The log is durable on its own; this only bounds how
/// much of it a restart applies again.
const SYNC_EVERY: Duration = Duration::from_secs(1);

/// A sync comes sooner when this many bytes of inputs and outputs wait in memory for it,
/// and the apply that finds that much waits for the sync before it, so memory stays bounded.
const SYNC_BYTES: usize = 64 << 20;

pub struct Replica {
    pub db: Arc<StateDb>,
    sm: RwLock<StateMachine>,
    /// Held while a batch is applied and delivered, and while a sync starts: memory does not
    /// change under a reader that holds it (reconciliation, listing).
    gate: Mutex<()>,
    /// What changed in memory since the last sync.
    dirty: Mutex<Dirty>,
    /// Applied inputs and finished records that storage does not hold yet.
    unsynced: Arc<Unsynced>,
    /// The sync being written on its own thread, if any: one at a time, in the order they
    /// were taken, while batches go on being applied.
    writing: Mutex<Option<JoinHandle<Result<(), StorageError>>>>,
    /// Why a sync failed, once one has: every later apply and sync fails with it (Raft
    /// stops, and a restart applies the log again from the last sync that committed).
    failed: Mutex<Option<String>>,
    pub blobs: BlobStore,
    pub waiters: Waiters,
    pub sessions: Sessions,
}

impl Replica {
    pub fn open(db: StateDb, blobs: BlobStore) -> Result<Self, StorageError> {
        let sm = db.load()?;
        Ok(Self {
            db: Arc::new(db),
            sm: RwLock::new(sm),
            gate: Mutex::new(()),
            dirty: Mutex::new(Dirty::new()),
            unsynced: Arc::default(),
            writing: Mutex::new(None),
            failed: Mutex::new(None),
            blobs,
            waiters: Waiters::default(),
            sessions: Sessions::default(),
        })
    }

    /// Read access to the in-memory machine; hold it briefly.
    pub fn read(&self) -> RwLockReadGuard<'_, StateMachine> {
        self.sm.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces the whole state with a received snapshot's (`snapshot::load`, then the Raft
    /// bookkeeping in `meta`), under the gate and after any sync being written: a sync
    /// running meanwhile would otherwise write the old machine's state over the new.
    pub fn install(&self, path: &Path, meta: &[(&str, Vec<u8>)]) -> Result<(), StorageError> {
        let _gate = self.gate.lock().unwrap_or_else(|p| p.into_inner());
        self.settle_writing()?;
        snapshot::load(&self.db, path)?;
        self.db.put_meta(meta)?;
        self.db.sync()?;
        self.reload()
    }

    /// Reloads the machine from storage (after a snapshot replaced it).
    fn reload(&self) -> Result<(), StorageError> {
        let sm = self.db.load()?;
        *self.sm.write().unwrap_or_else(|p| p.into_inner()) = sm;
        *self.dirty.lock().unwrap_or_else(|p| p.into_inner()) = Dirty::new();
        self.unsynced.clear();
        Ok(())
    }

    /// Applies entries (`None` for entries without commands), keeps what they produced for
    /// readers until the next sync (about once a second, on its own thread, it writes that
    /// and the whole state with the Raft bookkeeping in `meta` durably), then tells executors
    /// and waiters. Blocking: call it from a blocking thread. A failed sync fails the apply
    /// after it.
    pub fn apply(
        &self,
        batches: Vec<Option<Batch>>,
        meta: Vec<(&'static str, Vec<u8>)>,
    ) -> Result<Vec<Vec<Response>>, StorageError> {
        let _gate = self.gate.lock().unwrap_or_else(|p| p.into_inner());
        let mut fx = Effects::default();
        let mut sm = self.sm.write().unwrap_or_else(|p| p.into_inner());
        let responses: Vec<Vec<Response>> =
            batches.into_iter().map(|b| b.map(|b| sm.apply(b, &mut fx)).unwrap_or_default()).collect();
        let mut outputs: HashMap<TaskId, TaskOutput> = std::mem::take(&mut fx.outputs).into_iter().collect();
        let finished: Vec<(TaskRecord, TaskOutput)> = std::mem::take(&mut fx.finished)
            .into_iter()
            .map(|t| {
                let o = outputs.remove(&t.id).unwrap_or_default();
                (t, o)
            })
            .collect();
        // Records for the clients waiting on these tasks, built from memory: no read back.
        let waiting = self.waiters.take(finished.iter().map(|(t, _)| t.id));
        let notices: Vec<(pb::Task, Vec<Waiter>)> = if waiting.is_empty() {
            Vec::new()
        } else {
            let by_id: HashMap<TaskId, &(TaskRecord, TaskOutput)> = finished.iter().map(|r| (r.0.id, r)).collect();
            waiting
                .into_iter()
                .filter_map(|(id, waiters)| {
                    let (t, o) = by_id.get(&id)?;
                    Some((convert::task(t.clone(), o.clone(), String::new()), waiters))
                })
                .collect()
        };
        // Before the machine's lock is released: a reader that no longer finds a task there
        // finds it here.
        self.unsynced.add(std::mem::take(&mut fx.inputs), finished);
        let forget_before = fx.forget_before.take();
        // Every replica forgets from the same records (all that was applied before), and
        // memory waiting for storage stays bounded: those syncs start now, after the one
        // being written. A sync that is only due waits until none is being written.
        let forced = forget_before.is_some() || self.unsynced.bytes() >= SYNC_BYTES;
        let sync = {
            let mut dirty = self.dirty.lock().unwrap_or_else(|p| p.into_inner());
            dirty.absorb(&mut fx, &meta);
            let start = forced || (dirty.due() && self.writing_done()?);
            start.then(|| dirty.take(&sm))
        };
        drop(sm);
        // What `sync` took from `dirty` is written by no later sync: past this point any
        // failure is as sticky as a failed sync's.
        let dispatch = (|| {
            let dispatch = self.with_inputs(std::mem::take(&mut fx.dispatch))?;
            if let Some(sync) = sync {
                self.settle_writing()?;
                self.start_writing(sync, forget_before)?;
            }
            Ok(dispatch)
        })()
        .inspect_err(|e| self.fail(e))?;
        self.sessions.note_queued(std::mem::take(&mut fx.queued), crate::clock::now_ms());
        self.sessions.deliver(dispatch, fx.stop, fx.acks);
        for (task, waiters) in notices {
            for w in waiters {
                let _ = w.send(task.clone());
            }
        }
        Ok(responses)
    }

    /// Writes the whole in-memory state durably now (before a snapshot). Its failure is as
    /// sticky as a background sync's: what it took from `dirty` is not written again.
    pub fn sync(&self) -> Result<(), StorageError> {
        let _gate = self.gate.lock().unwrap_or_else(|p| p.into_inner());
        self.settle_writing()?;
        let sync = {
            let sm = self.read();
            self.dirty.lock().unwrap_or_else(|p| p.into_inner()).take(&sm)
        };
        write_sync(&self.db, &self.unsynced, self.unsynced.begin_flush(), &sync, None).inspect_err(|e| self.fail(e))
    }

    /// Makes every later apply and sync fail with `e` (see `failed`).
    fn fail(&self, e: &StorageError) {
        self.failed.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert_with(|| e.to_string());
    }

    /// Starts writing `sync` and every unsynced record on a thread of its own. Hold the gate,
    /// with no sync being written.
    fn start_writing(&self, sync: Sync, forget_before: Option<i64>) -> Result<(), StorageError> {
        let pending = self.unsynced.begin_flush();
        let (db, unsynced) = (self.db.clone(), self.unsynced.clone());
        let handle = std::thread::Builder::new()
            .name("state-sync".into())
            .spawn(move || write_sync(&db, &unsynced, pending, &sync, forget_before))?;
        *self.writing.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
        Ok(())
    }

    /// Whether no sync is being written; a finished one's error, if it failed.
    fn writing_done(&self) -> Result<bool, StorageError> {
        let running = self.writing.lock().unwrap_or_else(|p| p.into_inner()).as_ref().is_some_and(|h| !h.is_finished());
        if running {
            return Ok(false);
        }
        self.settle_writing()?;
        Ok(true)
    }

    /// Waits for the sync being written, if any. Fails if it or any sync before it failed.
    fn settle_writing(&self) -> Result<(), StorageError> {
        let handle = self.writing.lock().unwrap_or_else(|p| p.into_inner()).take();
        let result = match handle {
            None => Ok(()),
            Some(h) => h.join().unwrap_or_else(|_| Err(StorageError::Corrupt("the state sync thread panicked".into()))),
        };
        if let Err(e) = &result {
            self.fail(e);
        }
        match self.failed.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            Some(why) => Err(StorageError::Corrupt(format!("a sync of state.redb failed: {why}"))),
            None => Ok(()),
        }
    }

    /// Each dispatch with its task's input, from memory or else storage.
    fn with_inputs(&self, dispatch: Vec<Dispatch>) -> Result<Vec<(Dispatch, Vec<u8>)>, StorageError> {
        let mut missing = Vec::new();
        let mut found: Vec<(Dispatch, Option<Vec<u8>>)> = dispatch
            .into_iter()
            .map(|d| {
                let input = self.unsynced.input(d.task);
                if input.is_none() {
                    missing.push(d.task);
                }
                (d, input)
            })
            .collect();
        let mut stored = if missing.is_empty() { HashMap::new() } else { self.db.inputs(&missing)? };
        Ok(found
            .drain(..)
            .map(|(d, input)| {
                let input = input.or_else(|| stored.remove(&d.task)).unwrap_or_default();
                (d, input)
            })
            .collect())
    }

    /// A task's input, from memory or else storage.
    pub fn input(&self, id: TaskId) -> Result<Option<Vec<u8>>, StorageError> {
        match self.unsynced.input(id) {
            Some(input) => Ok(Some(input)),
            None => self.db.input(id),
        }
    }

    /// A task's freshest record: live and recently finished ones from memory, the others
    /// from storage.
    pub fn task(&self, id: TaskId) -> Result<Option<pb::Task>, StorageError> {
        if let Some((t, true)) = self.lookup(id)? {
            return Ok(Some(t));
        }
        // Storage has nothing, or the copy of the task as live that an earlier sync wrote,
        // only if the task is not in memory either: wait for any batch in flight, read again.
        let _gate = self.gate.lock().unwrap_or_else(|p| p.into_inner());
        Ok(self.lookup(id)?.map(|(t, _)| t))
    }

    /// The task's record, and whether it is settled: live in memory, finished in memory, or
    /// final in storage. Looked up in that order, the order a record moves in.
    fn lookup(&self, id: TaskId) -> Result<Option<(pb::Task, bool)>, StorageError> {
        let live = {
            let sm = self.read();
            sm.live_task(id).map(|t| (t.clone(), sm.pending_reason(t)))
        };
        if let Some((t, reason)) = live {
            return Ok(Some((convert::task(t, TaskOutput::default(), reason), true)));
        }
        if let Some((t, out)) = self.unsynced.finished(id) {
            return Ok(Some((convert::task(t, out, String::new()), true)));
        }
        let Some(t) = self.db.task(id)? else {
            return Ok(None);
        };
        let settled = t.state.is_final();
        let out = self.db.output(id)?.unwrap_or_default();
        Ok(Some((convert::task(t, out, String::new()), settled)))
    }

    /// Brings a (re)connected executor and the state into agreement: runs the state gives
    /// `name` that it does not hold are sent again (the executor ignores duplicates); runs it
    /// holds that the state moved elsewhere are stopped. Returns how many of each.
    pub fn reconcile(&self, name: &str, held: &[RunRef]) -> Result<(usize, usize), StorageError> {
        let _gate = self.gate.lock().unwrap_or_else(|p| p.into_inner());
        let held_set: HashSet<RunRef> = held.iter().copied().collect();
        let (missing, stale): (Vec<Dispatch>, Vec<(String, RunRef)>) = {
            let sm = self.read();
            let missing = sm
                .executor(name)
                .map(|e| e.running.iter().filter_map(|id| sm.current_dispatch(*id)).collect::<Vec<_>>())
                .unwrap_or_default()
                .into_iter()
                .filter(|d| !held_set.contains(&RunRef { task: d.task, attempt: d.attempt }))
                .collect();
            let stale = held
                .iter()
                .filter(|r| {
                    !sm.live_task(r.task)
                        .is_some_and(|t| t.attempts == r.attempt && t.executor.as_deref() == Some(name))
                })
                .map(|r| (name.to_string(), *r))
                .collect();
            (missing, stale)
        };
        let dispatch = self.with_inputs(missing)?;
        let counts = (dispatch.len(), stale.len());
        // Their timeouts count from now at the earliest: the executor never had them.
        let resent = dispatch.iter().map(|(d, _)| (name.to_string(), RunRef { task: d.task, attempt: d.attempt }));
        self.sessions.note_queued(resent.collect(), crate::clock::now_ms());
        self.sessions.deliver(dispatch, stale, Vec::new());
        Ok(counts)
    }

    /// Tasks with ids above `after`, optionally in one state, oldest first: at most `limit`
    /// of them and about `byte_budget` bytes of output, from at most [`SCAN_ROWS`] stored
    /// records (the applies wait meanwhile). Live tasks come from memory (storage has them
    /// only as of the last sync), finished ones from memory until a sync has written them,
    /// then from storage. Returns the page and, if more may follow, the `after` of the next.
    pub fn list_tasks(
        &self,
        state: Option<TaskState>,
        after: TaskId,
        limit: usize,
        byte_budget: usize,
    ) -> Result<(Vec<pb::Task>, Option<TaskId>), StorageError> {
        // No batch is applied while memory and storage are read (a task finishing meanwhile
        // could be missed by both). A sync may commit meanwhile: the unsynced records are
        // read first, since a record leaves them only once storage has it.
        let _gate = self.gate.lock().unwrap_or_else(|p| p.into_inner());
        let live_only = matches!(state, Some(TaskState::Pending | TaskState::Running));
        let unsynced = if live_only {
            Vec::new()
        } else {
            // One more than a page: if memory alone fills it, the page says there is more.
            self.unsynced.finished_from(after.saturating_add(1), state, limit.saturating_add(1))
        };
        let (stored, stopped) = if live_only {
            (Vec::new(), None)
        } else {
            self.db.list_tasks(state, after, limit, byte_budget, SCAN_ROWS)?
        };
        // When storage stopped early, memory can only fill in up to where it stopped.
        let bound = stopped.unwrap_or(TaskId::MAX);
        let mut merged: BTreeMap<TaskId, pb::Task> =
            stored.into_iter().map(|(t, o)| (t.id, convert::task(t, o, String::new()))).collect();
        // Newer than storage's copy, which may be the task as live at the last sync, or the
        // same final record if a sync committed it meanwhile. A record that fails the filter
        // was never in `merged` (it is final, and storage holds no other final copy).
        for (t, o) in unsynced.into_iter().filter(|(t, _)| t.id <= bound) {
            merged.insert(t.id, convert::task(t, o, String::new()));
        }
        {
            let sm = self.read();
            let final_only = state.is_some_and(TaskState::is_final);
            for t in sm.live_tasks().filter(|t| t.id > after && t.id <= bound) {
                merged.remove(&t.id);
                if !final_only && state.is_none_or(|s| s == t.state) {
                    merged.insert(t.id, convert::task(t.clone(), TaskOutput::default(), sm.pending_reason(t)));
                }
            }
        }
        let mut next = stopped;
        let mut bytes = 0usize;
        let mut page: Vec<pb::Task> = Vec::with_capacity(merged.len().min(limit));
        for t in merged.into_values() {
            if page.len() >= limit || (bytes > byte_budget && !page.is_empty()) {
                next = Some(page.last().map_or(after, |t| t.id));
                break;
            }
            bytes += t.output.len() + t.stderr.len();
            page.push(t);
        }
        Ok((page, next))
    }
}

/// Stored task records one listing page reads at most: a filtered listing of a long history
/// holds the applies for milliseconds, not seconds.
pub const SCAN_ROWS: usize = 20_000;

impl Drop for Replica {
    /// A sync being written finishes first: storage is not left to a thread that outlives
    /// the replica (and holds `state.redb` open).
    fn drop(&mut self) {
        if let Err(e) = self.settle_writing() {
            tracing::warn!(error = %e, "the last sync of state.redb failed");
        }
    }
}

/// One sync: `pending` (the unsynced records, from `begin_flush`) and `sync` in one durable
/// transaction; the records leave memory once it has committed.
fn write_sync(
    db: &StateDb,
    unsynced: &Unsynced,
    pending: Arc<Pending>,
    sync: &Sync,
    forget_before: Option<i64>,
) -> Result<(), StorageError> {
    let started = Instant::now();
    db.write(&pending, sync, forget_before)?;
    unsynced.end_flush(&pending);
    tracing::debug!(
        inputs = pending.inputs.len(),
        finished = pending.finished.len(),
        live = sync.live.len(),
        took_ms = started.elapsed().as_millis() as u64,
        "synced state.redb"
    );
    Ok(())
}

/// What changed in memory since the last sync, and when that was.
struct Dirty {
    since: Instant,
    live: BTreeSet<TaskId>,
    modules: Vec<ModuleMeta>,
    /// Executors registered, changed or removed: each is written as memory has it at the
    /// sync, or deleted if gone (one that left and came back within a sync is kept).
    executors: BTreeSet<String>,
    /// Idempotency keys recorded (`Some`) or expired (`None`), the last word for each.
    requests: BTreeMap<RequestId, Option<(Vec<TaskId>, i64)>>,
    meta: Vec<(&'static str, Vec<u8>)>,
}

impl Dirty {
    fn new() -> Self {
        Self {
            since: Instant::now(),
            live: BTreeSet::new(),
            modules: Vec::new(),
            executors: BTreeSet::new(),
            requests: BTreeMap::new(),
            meta: Vec::new(),
        }
    }

    fn absorb(&mut self, fx: &mut Effects, meta: &[(&'static str, Vec<u8>)]) {
        self.live.extend(std::mem::take(&mut fx.changed));
        self.modules.append(&mut fx.modules);
        self.executors.extend(std::mem::take(&mut fx.executors));
        self.executors.extend(fx.executors_removed.drain(..));
        // An apply expires old keys before it records new ones.
        for key in fx.requests_expired.drain(..) {
            self.requests.insert(key, None);
        }
        for (key, ids, at) in fx.requests_added.drain(..) {
            self.requests.insert(key, Some((ids, at)));
        }
        if !meta.is_empty() {
            self.meta = meta.to_vec();
        }
    }

    fn due(&self) -> bool {
        self.since.elapsed() >= SYNC_EVERY
    }

    /// What to write for a sync, taken out of `self` (which starts over).
    fn take(&mut self, sm: &StateMachine) -> Sync {
        let meta = self.meta.clone();
        let d = std::mem::replace(self, Dirty { meta, ..Dirty::new() });
        let (executors, gone): (Vec<_>, Vec<_>) = d.executors.into_iter().partition(|n| sm.executor(n).is_some());
        let (added, expired): (Vec<_>, Vec<_>) = d.requests.into_iter().partition(|(_, r)| r.is_some());
        Sync {
            live: d.live.iter().filter_map(|id| sm.live_task(*id).cloned()).collect(),
            modules: d.modules,
            executors: executors.iter().filter_map(|n| sm.executor(n).cloned()).collect(),
            executors_removed: gone,
            requests_added: added.into_iter().filter_map(|(k, r)| r.map(|(ids, at)| (k, ids, at))).collect(),
            requests_expired: expired.into_iter().map(|(k, _)| k).collect(),
            next_task_id: sm.next_task_id(),
            member_addrs: sm.member_addrs().clone(),
            short_runs: sm.short_runs().cloned(),
            meta: d.meta,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{tests, Command, Limits, ModuleKind, ModuleMeta, NewTask, Report};

    fn replica(dir: &std::path::Path) -> Replica {
        let db = StateDb::open(&dir.join("state.redb")).unwrap();
        Replica::open(db, BlobStore::open(dir.join("blobs")).unwrap()).unwrap()
    }

    /// A module and one task of it with input `abc`.
    fn module_and_task() -> Vec<Command> {
        module_and_tasks(1)
    }

    /// A module and `n` tasks of it with input `abc`.
    fn module_and_tasks(n: u64) -> Vec<Command> {
        let digest = tests::module();
        let put = Command::PutModule(ModuleMeta { digest, size: 1, kind: ModuleKind::Component, created_at_ms: 0 });
        let tasks = (0..n).map(|_| NewTask { spec: tests::spec(1, 0), input: b"abc".to_vec() }).collect();
        vec![put, Command::Submit { request_id: None, tasks, max_pending: None }]
    }

    fn cancelled(t: Option<pb::Task>) -> bool {
        t.is_some_and(|t| t.state() == pb::TaskState::Cancelled)
    }

    #[test]
    fn a_finished_task_is_found_before_and_after_the_sync_that_stores_it() {
        let dir = tempfile::tempdir().unwrap();
        let replica = replica(dir.path());
        replica.apply(vec![Some(Batch { at_ms: 1, commands: module_and_task() })], vec![]).unwrap();
        replica.apply(vec![Some(Batch { at_ms: 2, commands: vec![Command::Cancel(1)] })], vec![]).unwrap();
        assert_eq!(replica.db.task(1).unwrap(), None, "not stored before a sync");
        assert!(cancelled(replica.task(1).unwrap()));
        let (listed, more) = replica.list_tasks(None, 0, 10, 1 << 20).unwrap();
        assert!(more.is_none() && listed.len() == 1 && cancelled(listed.into_iter().next()));
        let (listed, _) = replica.list_tasks(Some(TaskState::Pending), 0, 10, 1 << 20).unwrap();
        assert!(listed.is_empty());

        replica.sync().unwrap();
        assert_eq!(replica.db.task(1).unwrap().map(|t| t.state), Some(TaskState::Cancelled));
        assert!(cancelled(replica.task(1).unwrap()));
        let (listed, _) = replica.list_tasks(Some(TaskState::Cancelled), 0, 10, 1 << 20).unwrap();
        assert_eq!(listed.len(), 1);
        // It survives a restart from storage alone; its input, no longer needed, is not kept.
        drop(replica);
        let replica = self::replica(dir.path());
        assert!(cancelled(replica.task(1).unwrap()));
        assert_eq!(replica.input(1).unwrap(), None);
    }

    #[test]
    fn short_runs_count_from_the_entry_that_starts_them_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let replica = replica(dir.path());
        let n = u64::from(crate::state::short_runs::STREAK);
        let register = Command::Register {
            name: "e".into(),
            addr: "e:1".into(),
            incarnation: 1,
            slots: n as u32,
            memory: 1 << 30,
            lease_ms: 1000,
        };
        let report = |task| Report {
            task,
            attempt: 1,
            executor: "e".into(),
            failure: None,
            output: TaskOutput::default(),
            fuel_consumed: 1,
            duration_ms: 0,
            exit_code: None,
            stderr_truncated: false,
        };
        // n short runs before the count starts: they count for nothing.
        let mut commands = vec![register];
        commands.extend(module_and_tasks(n));
        let finish = Command::Finish((1..=n).map(report).collect());
        let batches = vec![Some(Batch { at_ms: 1, commands }), Some(Batch { at_ms: 2, commands: vec![finish] })];
        replica.apply(batches, vec![]).unwrap();
        assert!(replica.task(n).unwrap().is_some_and(|t| t.state() == pb::TaskState::Succeeded));
        assert!(replica.read().short_runs().is_none());
        replica.sync().unwrap();
        drop(replica);
        let replica = self::replica(dir.path());
        assert!(replica.read().short_runs().is_none(), "stored as not counted");

        let mut commands = vec![Command::TrackShortRuns];
        commands.extend(module_and_tasks(n));
        let finish = Command::Finish((n + 1..=2 * n).map(report).collect());
        let batches = vec![Some(Batch { at_ms: 3, commands }), Some(Batch { at_ms: 4, commands: vec![finish] })];
        replica.apply(batches, vec![]).unwrap();
        assert!(replica.read().runs_short(&tests::module()));
        replica.sync().unwrap();
        drop(replica);
        assert!(self::replica(dir.path()).read().runs_short(&tests::module()));
    }

    #[test]
    fn an_executor_that_leaves_and_comes_back_between_syncs_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let replica = replica(dir.path());
        let register = |incarnation| Command::Register {
            name: "e".into(),
            addr: "e:1".into(),
            incarnation,
            slots: 1,
            memory: 1 << 30,
            lease_ms: 1000,
        };
        let commands = vec![register(1), Command::Deregister { name: "e".into(), incarnation: 1 }, register(2)];
        replica.apply(vec![Some(Batch { at_ms: 1, commands })], vec![]).unwrap();
        // A request key that expires and is used again before a sync is kept too.
        let key = [7u8; 16];
        let submit = |request_id| Command::Submit { request_id, tasks: vec![], max_pending: None };
        replica.apply(vec![Some(Batch { at_ms: 2, commands: vec![submit(Some(key))] })], vec![]).unwrap();
        let later = 3 + crate::state::REQUEST_MEMORY_MS;
        replica.apply(vec![Some(Batch { at_ms: later, commands: vec![submit(Some(key))] })], vec![]).unwrap();
        replica.sync().unwrap();
        drop(replica);
        let replica = self::replica(dir.path());
        assert_eq!(replica.read().executor("e").map(|e| e.incarnation), Some(2));
        assert!(replica.read().request(&key).is_some(), "the key is stored");
    }

    #[test]
    fn a_run_sent_again_on_reconnect_has_its_timeout_count_from_then() {
        let dir = tempfile::tempdir().unwrap();
        let replica = replica(dir.path());
        let register = Command::Register {
            name: "e".into(),
            addr: "e:1".into(),
            incarnation: 1,
            slots: 1,
            memory: 1 << 30,
            lease_ms: 1000,
        };
        let mut commands = vec![register];
        commands.extend(module_and_task());
        replica.apply(vec![Some(Batch { at_ms: 1, commands })], vec![]).unwrap();
        let run = RunRef { task: 1, attempt: 1 };
        assert!(replica.read().live_task(1).is_some_and(|t| t.state == TaskState::Running));
        // The executor connects without it (the assignment was lost): it is sent again.
        let (tx, mut rx) = tokio::sync::mpsc::channel(4);
        replica.sessions.open("e", 1, tx, false);
        let before = crate::clock::now_ms();
        assert_eq!(replica.reconcile("e", &[]).unwrap(), (1, 0));
        assert!(rx.try_recv().is_ok(), "sent again");
        assert!(replica.sessions.last_waiting("e", run).is_some_and(|at| at >= before));
    }

    #[test]
    fn a_dispatch_gets_its_input_from_memory_then_from_storage() {
        let dir = tempfile::tempdir().unwrap();
        let replica = replica(dir.path());
        replica.apply(vec![Some(Batch { at_ms: 1, commands: module_and_task() })], vec![]).unwrap();
        let dispatch = || Dispatch {
            executor: "e".into(),
            task: 1,
            attempt: 1,
            module: tests::module(),
            kind: ModuleKind::Component,
            limits: Limits { fuel: 0, memory: 1, timeout_ms: 1 },
            args: vec![],
            env: vec![],
        };
        let input = |replica: &Replica| replica.with_inputs(vec![dispatch()]).unwrap().pop().unwrap().1;
        assert_eq!(input(&replica), b"abc");
        replica.sync().unwrap();
        assert_eq!(replica.unsynced.input(1), None, "the sync took it out of memory");
        assert_eq!(input(&replica), b"abc");
    }

    #[test]
    fn a_task_synced_while_live_is_stored_final_once_it_finishes() {
        let dir = tempfile::tempdir().unwrap();
        let replica = replica(dir.path());
        replica.apply(vec![Some(Batch { at_ms: 1, commands: module_and_task() })], vec![]).unwrap();
        assert_eq!(replica.input(1).unwrap().as_deref(), Some(&b"abc"[..]));
        assert_eq!(replica.db.input(1).unwrap(), None, "an ordinary apply writes nothing");
        replica.sync().unwrap();
        assert_eq!(replica.db.input(1).unwrap().as_deref(), Some(&b"abc"[..]));
        replica.apply(vec![Some(Batch { at_ms: 2, commands: vec![Command::Cancel(1)] })], vec![]).unwrap();
        replica.sync().unwrap();
        assert_eq!(replica.db.task(1).unwrap().map(|t| t.state), Some(TaskState::Cancelled));
        assert!(replica.db.load().unwrap().live_tasks().next().is_none(), "no longer marked live");
    }

    #[test]
    fn a_due_sync_is_written_behind_the_applies_and_ends_before_the_replica_closes() {
        let dir = tempfile::tempdir().unwrap();
        let replica = replica(dir.path());
        replica.apply(vec![Some(Batch { at_ms: 1, commands: module_and_task() })], vec![]).unwrap();
        replica.apply(vec![Some(Batch { at_ms: 2, commands: vec![Command::Cancel(1)] })], vec![]).unwrap();
        std::thread::sleep(SYNC_EVERY);
        // Due now: this apply starts the sync on a thread of its own and returns.
        replica.apply(vec![None], vec![]).unwrap();
        assert!(replica.writing.lock().unwrap().is_some(), "the apply left the sync to a thread");
        assert!(cancelled(replica.task(1).unwrap()), "readable while it is written");
        let (listed, _) = replica.list_tasks(Some(TaskState::Cancelled), 0, 10, 1 << 20).unwrap();
        assert!(cancelled(listed.into_iter().next()));
        replica.settle_writing().unwrap();
        assert!(replica.unsynced.is_empty());
        assert_eq!(replica.db.task(1).unwrap().map(|t| t.state), Some(TaskState::Cancelled));

        // A sync still being written when the replica closes ends first: it lets go of
        // state.redb, which opens again with task 2 in it.
        replica.apply(vec![Some(Batch { at_ms: 3, commands: module_and_task() })], vec![]).unwrap();
        std::thread::sleep(SYNC_EVERY);
        replica.apply(vec![None], vec![]).unwrap();
        drop(replica);
        let replica = self::replica(dir.path());
        assert_eq!(replica.db.input(2).unwrap().as_deref(), Some(&b"abc"[..]));
        assert!(replica.task(2).unwrap().is_some_and(|t| t.state() == pb::TaskState::Pending));
    }

    #[test]
    fn after_a_failed_sync_every_apply_and_sync_fails() {
        let dir = tempfile::tempdir().unwrap();
        let replica = replica(dir.path());
        replica.apply(vec![Some(Batch { at_ms: 1, commands: module_and_task() })], vec![]).unwrap();
        // A sync written in the background fails (the disk is gone, say).
        let failing = std::thread::spawn(|| Err(StorageError::Corrupt("the disk is gone".into())));
        *replica.writing.lock().unwrap() = Some(failing);
        std::thread::sleep(SYNC_EVERY);
        fn failed<T>(r: Result<T, StorageError>) -> bool {
            r.is_err_and(|e| e.to_string().contains("the disk is gone"))
        }
        assert!(failed(replica.apply(vec![None], vec![])), "the apply that finds it fails");
        assert!(failed(replica.apply(vec![None], vec![])), "and so does every later one");
        assert!(failed(replica.sync()));
        // Readers go on from memory: the task is still there.
        assert!(replica.task(1).unwrap().is_some());
        assert_eq!(replica.list_tasks(None, 0, 10, 1 << 20).unwrap().0.len(), 1);
    }

    #[test]
    fn listing_finds_every_finished_task_while_syncs_commit_behind_it() {
        const TASKS: u64 = 1000;
        let dir = tempfile::tempdir().unwrap();
        let replica = Arc::new(replica(dir.path()));
        replica.apply(vec![Some(Batch { at_ms: 1, commands: module_and_tasks(TASKS) })], vec![]).unwrap();
        let cancelled_up_to = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let writer = {
            let (replica, cancelled_up_to) = (replica.clone(), cancelled_up_to.clone());
            std::thread::spawn(move || {
                for id in 1..=TASKS {
                    let mut commands = vec![Command::Cancel(id)];
                    if id % 10 == 0 {
                        // Forgets nothing (all finished after 0 ms) but starts a sync now.
                        commands.push(Command::Forget { before_ms: 0 });
                    }
                    replica.apply(vec![Some(Batch { at_ms: 2, commands })], vec![]).unwrap();
                    cancelled_up_to.store(id, std::sync::atomic::Ordering::SeqCst);
                    // Room for the lister between applies (the gate is not a fair lock).
                    std::thread::sleep(Duration::from_micros(100));
                }
            })
        };
        let mut lists = 0;
        while !writer.is_finished() || lists == 0 {
            let done = cancelled_up_to.load(std::sync::atomic::Ordering::SeqCst);
            let (listed, more) = replica.list_tasks(Some(TaskState::Cancelled), 0, 10_000, usize::MAX).unwrap();
            assert!(more.is_none());
            let ids: BTreeSet<TaskId> = listed.iter().map(|t| t.id).collect();
            let missed: Vec<TaskId> = (1..=done).filter(|id| !ids.contains(id)).collect();
            assert!(missed.is_empty(), "listing {lists} missed cancelled tasks {missed:?}");
            for id in [1, done / 2, done].into_iter().filter(|id| (1..=done).contains(id)) {
                let t = replica.task(id).unwrap();
                assert!(cancelled(t.clone()), "task {id} read as {t:?}");
            }
            lists += 1;
        }
        writer.join().unwrap();
    }

    #[test]
    fn a_filtered_listing_reads_a_bounded_number_of_stored_tasks_a_page() {
        let dir = tempfile::tempdir().unwrap();
        let replica = replica(dir.path());
        let n = SCAN_ROWS as u64 + 500;
        replica.apply(vec![Some(Batch { at_ms: 1, commands: module_and_tasks(n) })], vec![]).unwrap();
        // Only the last few are cancelled: the first page reads SCAN_ROWS pending ones.
        let cancels = (n - 4..=n).map(Command::Cancel).collect();
        replica.apply(vec![Some(Batch { at_ms: 2, commands: cancels })], vec![]).unwrap();
        replica.sync().unwrap();
        let (page, next) = replica.list_tasks(Some(TaskState::Cancelled), 0, 100, usize::MAX).unwrap();
        assert_eq!((page.len(), next), (0, Some(SCAN_ROWS as u64)), "an empty page, and where to go on");
        let (page, next) = replica.list_tasks(Some(TaskState::Cancelled), SCAN_ROWS as u64, 100, usize::MAX).unwrap();
        assert_eq!((page.iter().map(|t| t.id).collect::<Vec<_>>(), next), ((n - 4..=n).collect(), None));
    }

    #[test]
    fn a_page_filled_from_memory_alone_says_there_is_more() {
        let dir = tempfile::tempdir().unwrap();
        let replica = replica(dir.path());
        replica.apply(vec![Some(Batch { at_ms: 1, commands: module_and_tasks(5) })], vec![]).unwrap();
        let cancels = (1..=5).map(Command::Cancel).collect();
        replica.apply(vec![Some(Batch { at_ms: 2, commands: cancels })], vec![]).unwrap();
        assert_eq!(replica.db.task(1).unwrap(), None, "all five only in memory");
        let (page, more) = replica.list_tasks(Some(TaskState::Cancelled), 0, 3, usize::MAX).unwrap();
        assert_eq!((page.iter().map(|t| t.id).collect::<Vec<_>>(), more), (vec![1, 2, 3], Some(3)));
        let (page, more) = replica.list_tasks(Some(TaskState::Cancelled), 3, 3, usize::MAX).unwrap();
        assert_eq!((page.iter().map(|t| t.id).collect::<Vec<_>>(), more), (vec![4, 5], None));
    }
}
