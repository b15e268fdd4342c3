//! This master's copy of the replicated state: the in-memory machine (live tasks, modules,
//! executors), its projection at rest in `state.redb`, the module blobs, and who hears about
//! what an applied batch did (waiting clients, executor sessions).

use std::sync::{RwLock, RwLockReadGuard};

use crate::convert;
use crate::sessions::Sessions;
use crate::state::{Batch, Effects, Response, StateMachine, TaskId, TaskOutput, TaskRecord, TaskState};
use crate::storage::blobs::BlobStore;
use crate::storage::state_db::{Changes, StateDb};
use crate::storage::StorageError;
use crate::waiters::Waiters;
use wasmgrid_proto as pb;

pub struct Replica {
    pub db: StateDb,
    sm: RwLock<StateMachine>,
    pub blobs: BlobStore,
    pub waiters: Waiters,
    pub sessions: Sessions,
}

impl Replica {
    pub fn open(db: StateDb, blobs: BlobStore) -> Result<Self, StorageError> {
        let sm = db.load()?;
        Ok(Self { db, sm: RwLock::new(sm), blobs, waiters: Waiters::default(), sessions: Sessions::default() })
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
        let mut fx = Effects::default();
        let (responses, changes) = {
            let mut sm = self.sm.write().unwrap_or_else(|p| p.into_inner());
            let responses: Vec<Vec<Response>> = batches
                .into_iter()
                .map(|b| b.map(|b| sm.apply(b, &mut fx)).unwrap_or_default())
                .collect();
            let changes = Changes {
                live: fx.changed.iter().filter_map(|id| sm.live_task(*id).cloned()).collect(),
                finished: std::mem::take(&mut fx.finished),
                inputs: std::mem::take(&mut fx.inputs),
                outputs: std::mem::take(&mut fx.outputs),
                modules: std::mem::take(&mut fx.modules),
                executors: fx.executors.iter().filter_map(|n| sm.executor(n).cloned()).collect(),
                requests_added: std::mem::take(&mut fx.requests_added),
                requests_expired: std::mem::take(&mut fx.requests_expired),
                next_task_id: sm.next_task_id(),
                meta,
            };
            (responses, changes)
        };
        let finished: Vec<TaskId> = changes.finished.iter().map(|t| t.id).collect();
        let dispatch = self.db.persist(changes, std::mem::take(&mut fx.dispatch))?;
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
        let Some(t) = self.db.task(id)? else { return Ok(None) };
        let out = self.db.output(id)?.unwrap_or_default();
        Ok(Some(convert::task(t, out, String::new())))
    }

    /// True when `t` is stored in a final state.
    pub fn is_final(t: &TaskRecord) -> bool {
        t.state.is_final()
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
