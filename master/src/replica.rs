//! This master's copy of the replicated state: the in-memory machine (live tasks, modules,
//! executors), its projection at rest in `state.redb`, the module blobs, and who hears about
//! what an applied batch did (waiting clients, executor sessions).

use std::collections::HashSet;
use std::sync::{Mutex, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use crate::convert;
use crate::sessions::Sessions;
use crate::state::{Batch, Dispatch, Effects, Response, RunRef, StateMachine, TaskId, TaskOutput, TaskState};
use crate::storage::blobs::BlobStore;
use crate::storage::state_db::{Changes, StateDb};
use crate::storage::StorageError;
use crate::waiters::Waiters;
use wasmgrid_proto as pb;

/// How often applied state is fsynced. The log is durable on its own; this only bounds how
/// much of it a restart applies again.
const SYNC_EVERY: Duration = Duration::from_secs(1);

pub struct Replica {
    pub db: StateDb,
    sm: RwLock<StateMachine>,
    /// Held while a batch is applied, stored and delivered, so a reader that needs memory
    /// and storage to agree (reconciliation) never sees one ahead of the other.
    gate: Mutex<()>,
    /// When the state was last made durable; see `SYNC_EVERY`.
    synced: Mutex<Instant>,
    pub blobs: BlobStore,
    pub waiters: Waiters,
    pub sessions: Sessions,
}

impl Replica {
    pub fn open(db: StateDb, blobs: BlobStore) -> Result<Self, StorageError> {
        let sm = db.load()?;
        Ok(Self {
            db,
            sm: RwLock::new(sm),
            gate: Mutex::new(()),
            synced: Mutex::new(Instant::now()),
            blobs,
            waiters: Waiters::default(),
            sessions: Sessions::default(),
        })
    }

    /// Read access to the in-memory machine; hold it briefly.
    pub fn read(&self) -> RwLockReadGuard<'_, StateMachine> {
        self.sm.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Reloads the machine from storage (after a snapshot replaced it).
    pub fn reload(&self) -> Result<(), StorageError> {
        let sm = self.db.load()?;
        *self.sm.write().unwrap_or_else(|p| p.into_inner()) = sm;
        Ok(())
    }

    /// Applies entries (`None` for entries without commands), stores the result with the
    /// Raft bookkeeping in `meta`, then tells executors and waiters. Blocking: call it from a
    /// blocking thread.
    pub fn apply(
        &self,
        batches: Vec<Option<Batch>>,
        meta: Vec<(&'static str, Vec<u8>)>,
    ) -> Result<Vec<Vec<Response>>, StorageError> {
        let _gate = self.gate.lock().unwrap_or_else(|p| p.into_inner());
        let mut fx = Effects::default();
        let (responses, changes) = {
            let mut sm = self.sm.write().unwrap_or_else(|p| p.into_inner());
            let responses: Vec<Vec<Response>> =
                batches.into_iter().map(|b| b.map(|b| sm.apply(b, &mut fx)).unwrap_or_default()).collect();
            let changes = Changes {
                live: fx.changed.iter().filter_map(|id| sm.live_task(*id).cloned()).collect(),
                finished: std::mem::take(&mut fx.finished),
                inputs: std::mem::take(&mut fx.inputs),
                outputs: std::mem::take(&mut fx.outputs),
                modules: std::mem::take(&mut fx.modules),
                executors: fx.executors.iter().filter_map(|n| sm.executor(n).cloned()).collect(),
                executors_removed: std::mem::take(&mut fx.executors_removed),
                requests_added: std::mem::take(&mut fx.requests_added),
                requests_expired: std::mem::take(&mut fx.requests_expired),
                next_task_id: sm.next_task_id(),
                member_addrs: fx.member_addrs.then(|| sm.member_addrs().clone()),
                meta,
            };
            (responses, changes)
        };
        let finished: Vec<TaskId> = changes.finished.iter().map(|t| t.id).collect();
        let durable = {
            let mut synced = self.synced.lock().unwrap_or_else(|p| p.into_inner());
            let due = synced.elapsed() >= SYNC_EVERY;
            if due {
                *synced = Instant::now();
            }
            due
        };
        let dispatch = self.db.persist(changes, std::mem::take(&mut fx.dispatch), durable)?;
        self.sessions.deliver(dispatch, fx.stop, fx.acks);
        self.waiters.notify(finished);
        Ok(responses)
    }

    /// A task's freshest record: live ones from memory, finished ones from storage.
    pub fn task(&self, id: TaskId) -> Result<Option<pb::Task>, StorageError> {
        let live = {
            let sm = self.read();
            sm.live_task(id).map(|t| (t.clone(), sm.pending_reason(t)))
        };
        if let Some((t, reason)) = live {
            return Ok(Some(convert::task(t, TaskOutput::default(), reason)));
        }
        let Some(t) = self.db.task(id)? else {
            return Ok(None);
        };
        let out = self.db.output(id)?.unwrap_or_default();
        Ok(Some(convert::task(t, out, String::new())))
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
        let mut dispatch = Vec::with_capacity(missing.len());
        for d in missing {
            let input = self.db.input(d.task)?.unwrap_or_default();
            dispatch.push((d, input));
        }
        let counts = (dispatch.len(), stale.len());
        self.sessions.deliver(dispatch, stale, Vec::new());
        Ok(counts)
    }

    pub fn list_tasks(
        &self,
        state: Option<TaskState>,
        after: TaskId,
        limit: usize,
        byte_budget: usize,
    ) -> Result<(Vec<pb::Task>, bool), StorageError> {
        let (rows, more) = self.db.list_tasks(state, after, limit, byte_budget)?;
        let sm = self.read();
        let tasks = rows
            .into_iter()
            .map(|(t, out)| {
                // Storage may trail memory by one batch; memory wins for live tasks.
                let (t, reason) = match sm.live_task(t.id) {
                    Some(live) => (live.clone(), sm.pending_reason(live)),
                    None => (t, String::new()),
                };
                convert::task(t, out, reason)
            })
            .collect();
        Ok((tasks, more))
    }
}

#[cfg(test)]
mod tests {
    use wasmgrid_common::Digest;

    use super::*;
    use crate::state::{Command, Limits, ModuleKind, ModuleMeta, NewTask, TaskSpec};

    #[test]
    fn tasks_placed_later_are_dispatched_with_their_input() {
        let dir = tempfile::tempdir().unwrap();
        let db = StateDb::open(&dir.path().join("state.redb")).unwrap();
        let replica = Replica::open(db, BlobStore::open(dir.path().join("blobs")).unwrap()).unwrap();
        let digest = Digest::of(b"m");
        let put = Command::PutModule(ModuleMeta { digest, size: 1, kind: ModuleKind::Component, created_at_ms: 0 });
        let spec = TaskSpec {
            module: digest,
            limits: Limits { fuel: 0, memory: 1, timeout_ms: 1 },
            max_attempts: 1,
            priority: 0,
            args: vec![],
            env: vec![],
        };
        let submit = Command::Submit {
            request_id: None,
            tasks: vec![NewTask { spec, input: b"abc".to_vec() }],
            max_pending: None,
        };
        replica.apply(vec![Some(Batch { at_ms: 1, commands: vec![put, submit] })], vec![]).unwrap();
        assert_eq!(replica.db.input(1).unwrap().as_deref(), Some(&b"abc"[..]));
    }
}
