//! The applied state at rest, in `state.redb`: task records, inputs and outputs apart so
//! listing stays cheap, modules, executors and idempotency keys.
//!
//! Applying a batch writes nothing here: the Raft log is durable already, and what the batch
//! produced waits in memory (`crate::unsynced`). About once a second (before every snapshot,
//! with every `Forget`, and sooner when much waits) a *sync* writes in one fsynced
//! transaction the inputs and final records gathered since the last one, and the live
//! tasks, executors, modules and idempotency keys as they are in memory, with the last
//! applied log id. After a crash the state is the last sync's, and the log entries after it
//! are applied again.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::codec::{decode, encode};
use super::StorageError;
use crate::state::{
    ExecutorRecord, ModuleMeta, RequestId, ShortRuns, StateMachine, TaskId, TaskOutput, TaskRecord, TaskState,
};
use crate::unsynced::Pending;

pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
pub(crate) const MODULES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("modules");
pub(crate) const EXECUTORS: TableDefinition<&str, &[u8]> = TableDefinition::new("executors");
pub(crate) const TASKS: TableDefinition<u64, &[u8]> = TableDefinition::new("tasks");
pub(crate) const LIVE: TableDefinition<u64, ()> = TableDefinition::new("live");
pub(crate) const INPUTS: TableDefinition<u64, &[u8]> = TableDefinition::new("inputs");
pub(crate) const OUTPUTS: TableDefinition<u64, &[u8]> = TableDefinition::new("outputs");
pub(crate) const REQUESTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("requests");

const NEXT_TASK_ID: &str = "next_task_id";
const MEMBER_ADDRS: &str = "member_addrs";
const SHORT_RUNS: &str = "short_runs";

/// Most finished tasks one `Forget` command removes, so one apply stays short.
pub const FORGET_BATCH: usize = 10_000;

/// The in-memory state written at a sync point.
#[derive(Debug, Default)]
pub struct Sync {
    /// Live tasks changed since the last sync.
    pub live: Vec<TaskRecord>,
    pub modules: Vec<ModuleMeta>,
    pub executors: Vec<ExecutorRecord>,
    pub executors_removed: Vec<String>,
    pub requests_added: Vec<(RequestId, Vec<TaskId>, i64)>,
    pub requests_expired: Vec<RequestId>,
    pub next_task_id: TaskId,
    pub member_addrs: BTreeMap<u64, String>,
    pub short_runs: Option<ShortRuns>,
    /// Raft bookkeeping (last applied log id, membership), already encoded.
    pub meta: Vec<(&'static str, Vec<u8>)>,
}

/// Page cache of `state.redb`: reads of finished tasks, listing.
const STATE_CACHE_BYTES: usize = 32 * 1024 * 1024;

pub struct StateDb {
    pub(crate) db: Database,
}

impl StateDb {
    pub fn open(path: &Path) -> Result<Self, StorageError> {
        // redb caches up to 1 GiB by default; the hot state lives in memory already.
        let db = match redb::Builder::new().set_cache_size(STATE_CACHE_BYTES).create(path) {
            Ok(db) => db,
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => return Err(StorageError::InUse(path.to_path_buf())),
            Err(e) => return Err(e.into()),
        };
        let tx = db.begin_write()?;
        {
            tx.open_table(META)?;
            tx.open_table(MODULES)?;
            tx.open_table(EXECUTORS)?;
            tx.open_table(TASKS)?;
            tx.open_table(LIVE)?;
            tx.open_table(INPUTS)?;
            tx.open_table(OUTPUTS)?;
            tx.open_table(REQUESTS)?;
        }
        tx.commit()?;
        Ok(Self { db })
    }

    /// Rebuilds the in-memory machine from the stored records.
    pub fn load(&self) -> Result<StateMachine, StorageError> {
        let tx = self.db.begin_read()?;
        let next_task_id: TaskId = read_meta(&tx.open_table(META)?, NEXT_TASK_ID)?.unwrap_or(1);
        let member_addrs: BTreeMap<u64, String> = read_meta(&tx.open_table(META)?, MEMBER_ADDRS)?.unwrap_or_default();
        let short_runs: Option<ShortRuns> = read_meta(&tx.open_table(META)?, SHORT_RUNS)?;
        let modules = values::<_, ModuleMeta>(&tx.open_table(MODULES)?)?;
        let executors = values::<_, ExecutorRecord>(&tx.open_table(EXECUTORS)?)?;
        let tasks = tx.open_table(TASKS)?;
        let mut live = Vec::new();
        for row in tx.open_table(LIVE)?.iter()? {
            let id = row?.0.value();
            if let Some(bytes) = tasks.get(id)? {
                live.push(decode::<TaskRecord>(bytes.value())?);
            }
        }
        let mut requests = Vec::new();
        for row in tx.open_table(REQUESTS)?.iter()? {
            let (k, v) = row?;
            let key: RequestId =
                k.value().try_into().map_err(|_| StorageError::Corrupt("request key of the wrong length".into()))?;
            let (ids, at): (Vec<TaskId>, i64) = decode(v.value())?;
            requests.push((key, ids, at));
        }
        Ok(StateMachine::restore(next_task_id, modules, executors, live, requests, member_addrs, short_runs))
    }

    /// Reads one Raft bookkeeping value.
    pub fn meta<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StorageError> {
        let tx = self.db.begin_read()?;
        read_meta(&tx.open_table(META)?, key)
    }

    /// A sync, in one durable transaction: the records applied since the last one
    /// (`pending`), the in-memory state in `sync`, then, with `forget_before`, the removal
    /// of finished tasks that finished before that time (see `forget_finished`).
    pub fn write(&self, pending: &Pending, sync: &Sync, forget_before: Option<i64>) -> Result<(), StorageError> {
        let tx = self.db.begin_write()?;
        {
            let mut tasks = tx.open_table(TASKS)?;
            let mut live = tx.open_table(LIVE)?;
            let mut inputs = tx.open_table(INPUTS)?;
            let mut outputs = tx.open_table(OUTPUTS)?;
            // A task submitted and finished since the last sync never has its input written
            // (nothing reads a finished task's input), nor is it in `live`. An input written
            // earlier stays until the task is forgotten: deleting it here cost a B-tree delete
            // per task when draining a deep queue.
            let mut rows: Vec<_> = pending.inputs.iter().filter(|(id, _)| !pending.finished.contains_key(id)).collect();
            rows.sort_unstable_by_key(|(id, _)| **id);
            for (id, input) in rows {
                inputs.insert(id, input.as_slice())?;
            }
            for (t, o) in pending.finished.values() {
                tasks.insert(t.id, encode(t)?.as_slice())?;
                if !pending.inputs.contains_key(&t.id) {
                    live.remove(t.id)?;
                }
                if !o.output.is_empty() || !o.stderr.is_empty() {
                    outputs.insert(t.id, encode(o)?.as_slice())?;
                }
            }
            for t in &sync.live {
                tasks.insert(t.id, encode(t)?.as_slice())?;
                live.insert(t.id, ())?;
            }
            if let Some(before) = forget_before {
                forget_finished(&mut tasks, &live, &mut inputs, &mut outputs, before)?;
            }
        }
        write_sync(&tx, sync)?;
        tx.commit()?;
        Ok(())
    }

    /// The inputs of `ids` that storage holds, in one read.
    pub fn inputs(&self, ids: &[TaskId]) -> Result<HashMap<TaskId, Vec<u8>>, StorageError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(INPUTS)?;
        let mut found = HashMap::with_capacity(ids.len());
        for id in ids {
            if let Some(v) = table.get(id)? {
                found.insert(*id, v.value().to_vec());
            }
        }
        Ok(found)
    }

    /// Writes Raft bookkeeping rows.
    pub fn put_meta(&self, rows: &[(&str, Vec<u8>)]) -> Result<(), StorageError> {
        let tx = self.db.begin_write()?;
        {
            let mut meta = tx.open_table(META)?;
            for (k, v) in rows {
                meta.insert(*k, v.as_slice())?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Makes every earlier commit durable.
    pub fn sync(&self) -> Result<(), StorageError> {
        let mut tx = self.db.begin_write()?;
        tx.set_durability(Durability::Immediate)?;
        tx.commit()?;
        Ok(())
    }

    pub fn task(&self, id: TaskId) -> Result<Option<TaskRecord>, StorageError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(TASKS)?;
        table.get(id)?.map(|v| decode(v.value())).transpose()
    }

    pub fn input(&self, id: TaskId) -> Result<Option<Vec<u8>>, StorageError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(INPUTS)?;
        Ok(table.get(id)?.map(|v| v.value().to_vec()))
    }

    pub fn output(&self, id: TaskId) -> Result<Option<TaskOutput>, StorageError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(OUTPUTS)?;
        table.get(id)?.map(|v| decode(v.value())).transpose()
    }

    /// Tasks with ids above `after`, optionally in one state, with their outputs: at most
    /// `limit` of them, about `byte_budget` bytes of output, and what `scan_limit` rows hold.
    /// Returns where the next page starts (after which id), if more may follow.
    pub fn list_tasks(
        &self,
        state: Option<TaskState>,
        after: TaskId,
        limit: usize,
        byte_budget: usize,
        scan_limit: usize,
    ) -> Result<(Vec<Stored>, Option<TaskId>), StorageError> {
        let tx = self.db.begin_read()?;
        let tasks = tx.open_table(TASKS)?;
        let outputs = tx.open_table(OUTPUTS)?;
        let mut found: Vec<Stored> = Vec::new();
        let mut bytes = 0usize;
        for (scanned, row) in tasks.range(after.saturating_add(1)..)?.enumerate() {
            let (k, v) = row?;
            if scanned == scan_limit {
                return Ok((found, Some(k.value().saturating_sub(1))));
            }
            let t: TaskRecord = decode(v.value())?;
            if state.is_some_and(|s| s != t.state) {
                continue;
            }
            if found.len() >= limit || (bytes > byte_budget && !found.is_empty()) {
                let last = found.last().map_or(after, |(t, _)| t.id);
                return Ok((found, Some(last)));
            }
            let out: TaskOutput = match outputs.get(t.id)? {
                Some(o) => decode(o.value())?,
                None => TaskOutput::default(),
            };
            bytes += out.output.len() + out.stderr.len();
            found.push((t, out));
        }
        Ok((found, None))
    }
}

/// A stored task and its output.
pub type Stored = (TaskRecord, TaskOutput);

/// Everything but task records that a sync writes.
fn write_sync(tx: &redb::WriteTransaction, sync: &Sync) -> Result<(), StorageError> {
    let mut modules = tx.open_table(MODULES)?;
    for m in &sync.modules {
        modules.insert(m.digest.0.as_slice(), encode(m)?.as_slice())?;
    }
    let mut executors = tx.open_table(EXECUTORS)?;
    for e in &sync.executors {
        executors.insert(e.name.as_str(), encode(e)?.as_slice())?;
    }
    for name in &sync.executors_removed {
        executors.remove(name.as_str())?;
    }
    let mut requests = tx.open_table(REQUESTS)?;
    for (key, ids, at) in &sync.requests_added {
        requests.insert(key.as_slice(), encode(&(ids, at))?.as_slice())?;
    }
    for key in &sync.requests_expired {
        requests.remove(key.as_slice())?;
    }
    let mut meta = tx.open_table(META)?;
    meta.insert(NEXT_TASK_ID, encode(&sync.next_task_id)?.as_slice())?;
    meta.insert(MEMBER_ADDRS, encode(&sync.member_addrs)?.as_slice())?;
    match &sync.short_runs {
        Some(short_runs) => meta.insert(SHORT_RUNS, encode(short_runs)?.as_slice())?,
        None => meta.remove(SHORT_RUNS)?,
    };
    for (k, v) in &sync.meta {
        meta.insert(*k, v.as_slice())?;
    }
    Ok(())
}

fn read_meta<T: DeserializeOwned>(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    key: &str,
) -> Result<Option<T>, StorageError> {
    table.get(key)?.map(|v| decode(v.value())).transpose()
}

fn values<K: redb::Key + 'static, T: DeserializeOwned>(
    table: &impl ReadableTable<K, &'static [u8]>,
) -> Result<Vec<T>, StorageError> {
    let mut out = Vec::new();
    for row in table.iter()? {
        out.push(decode(row?.1.value())?);
    }
    Ok(out)
}

/// Encodes a value for `Changes::meta`.
pub fn meta_value<T: Serialize>(value: &T) -> Result<Vec<u8>, StorageError> {
    encode(value)
}

/// Removes finished tasks that finished before `before_ms`, in id order, up to
/// `FORGET_BATCH`, stopping at the first one that finished later: ids follow submission, so
/// what is left is younger, give or take the tasks that ran long. Live tasks are skipped.
/// Every replica holds the same finished records, so every replica forgets the same ones.
fn forget_finished(
    tasks: &mut redb::Table<u64, &[u8]>,
    live: &redb::Table<u64, ()>,
    inputs: &mut redb::Table<u64, &[u8]>,
    outputs: &mut redb::Table<u64, &[u8]>,
    before_ms: i64,
) -> Result<usize, StorageError> {
    let mut doomed = Vec::new();
    for row in tasks.iter()? {
        let (id, bytes) = row?;
        let id = id.value();
        if live.get(id)?.is_some() {
            continue;
        }
        let t: TaskRecord = decode(bytes.value())?;
        if !t.state.is_final() {
            continue;
        }
        if t.finished_at_ms >= before_ms || doomed.len() >= FORGET_BATCH {
            break;
        }
        doomed.push(id);
    }
    for id in &doomed {
        tasks.remove(id)?;
        inputs.remove(id)?;
        outputs.remove(id)?;
    }
    Ok(doomed.len())
}
