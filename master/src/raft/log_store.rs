//! The Raft log in `raft-log.redb`, written by one thread that commits whatever has queued
//! up in a single fsynced transaction (group commit).
//!
//! `append` hands the entries to that thread and returns at once; openraft learns they are
//! durable through the `LogFlushed` callback. Until then the entries sit in `pending`, where
//! readers (replication to followers) find them.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogId, RaftLogReader};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::oneshot;

use super::{io_err, read_err, Entry, LogId, StorageErr, TypeConfig, Vote};
use crate::storage::codec::{decode, encode};
use crate::storage::StorageError;

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const PURGED: &str = "last_purged";

/// Most operations one commit takes, so a flood of appends still reports progress.
const MAX_OPS_PER_COMMIT: usize = 4096;

enum Op {
    Append { rows: Vec<(LogId, Vec<u8>)>, done: LogFlushed<TypeConfig> },
    Truncate { since: u64, done: oneshot::Sender<Result<(), StorageError>> },
    Purge { upto: LogId, done: oneshot::Sender<Result<(), StorageError>> },
    Meta { key: &'static str, value: Vec<u8>, done: Option<oneshot::Sender<Result<(), StorageError>>> },
}

struct Shared {
    db: Database,
    /// Appended entries the writer has not committed yet.
    pending: Mutex<BTreeMap<u64, Entry>>,
    last_log: Mutex<Option<LogId>>,
    last_purged: Mutex<Option<LogId>>,
}

/// Cheap to clone: clones share the database and the writer.
#[derive(Clone)]
pub struct LogStore {
    shared: Arc<Shared>,
    writer: std_mpsc::Sender<Op>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl LogStore {
    pub fn open(path: &Path) -> Result<Self, StorageError> {
        let db = Database::create(path)?;
        let tx = db.begin_write()?;
        tx.open_table(LOG)?;
        tx.open_table(META)?;
        tx.commit()?;
        let (last_log, last_purged) = {
            let tx = db.begin_read()?;
            let log = tx.open_table(LOG)?;
            let last_log = match log.last()? {
                Some((_, v)) => Some(*decode::<Entry>(v.value())?.get_log_id()),
                None => None,
            };
            let meta = tx.open_table(META)?;
            let purged: Option<LogId> = meta.get(PURGED)?.map(|v| decode(v.value())).transpose()?;
            (last_log.or(purged), purged)
        };
        let shared = Arc::new(Shared {
            db,
            pending: Mutex::new(BTreeMap::new()),
            last_log: Mutex::new(last_log),
            last_purged: Mutex::new(last_purged),
        });
        let (writer, ops) = std_mpsc::channel();
        let for_thread = shared.clone();
        std::thread::Builder::new().name("raft-log-writer".into()).spawn(move || write_loop(&for_thread, &ops))?;
        Ok(Self { shared, writer })
    }

    fn send(&self, op: Op) -> Result<(), StorageError> {
        self.writer.send(op).map_err(|_| StorageError::Corrupt("raft log writer has stopped".into()))
    }

    async fn wait(&self, make: impl FnOnce(oneshot::Sender<Result<(), StorageError>>) -> Op) -> Result<(), StorageErr> {
        let (tx, rx) = oneshot::channel();
        self.send(make(tx)).map_err(io_err)?;
        match rx.await {
            Ok(r) => r.map_err(io_err),
            Err(_) => Err(io_err(StorageError::Corrupt("raft log writer has stopped".into()))),
        }
    }

    fn read_meta<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StorageError> {
        let tx = self.shared.db.begin_read()?;
        let meta = tx.open_table(META)?;
        meta.get(key)?.map(|v| decode(v.value())).transpose()
    }

    fn read_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<Vec<Entry>, StorageError> {
        // Pending first, then the database: an entry leaves `pending` only after its commit,
        // so whatever this misses in one it finds in the other.
        let mut found: BTreeMap<u64, Entry> =
            lock(&self.shared.pending).range((start, end)).map(|(k, v)| (*k, v.clone())).collect();
        let tx = self.shared.db.begin_read()?;
        let log = tx.open_table(LOG)?;
        for row in log.range::<u64>((start, end))? {
            let (k, v) = row?;
            if let std::collections::btree_map::Entry::Vacant(slot) = found.entry(k.value()) {
                slot.insert(decode(v.value())?);
            }
        }
        Ok(found.into_values().collect())
    }
}

fn write_loop(shared: &Shared, ops: &std_mpsc::Receiver<Op>) {
    while let Ok(first) = ops.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_OPS_PER_COMMIT {
            match ops.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let result = commit(shared, &batch).map_err(|e| e.to_string());
        for op in batch {
            let r = result.clone().map_err(StorageError::Corrupt);
            match op {
                Op::Append { rows, done } => {
                    if r.is_ok() {
                        let mut pending = lock(&shared.pending);
                        for (id, _) in &rows {
                            if pending.get(&id.index).is_some_and(|e| e.get_log_id() == id) {
                                pending.remove(&id.index);
                            }
                        }
                    }
                    done.log_io_completed(r.map_err(std::io::Error::other));
                }
                Op::Truncate { done, .. } | Op::Purge { done, .. } => {
                    let _ = done.send(r);
                }
                Op::Meta { done, .. } => {
                    if let Some(done) = done {
                        let _ = done.send(r);
                    }
                }
            }
        }
    }
}

fn commit(shared: &Shared, batch: &[Op]) -> Result<(), StorageError> {
    let mut tx = shared.db.begin_write()?;
    let durable = batch.iter().any(|op| !matches!(op, Op::Meta { done: None, .. }));
    tx.set_durability(if durable { Durability::Immediate } else { Durability::None })?;
    {
        let mut log = tx.open_table(LOG)?;
        let mut meta = tx.open_table(META)?;
        for op in batch {
            match op {
                Op::Append { rows, .. } => {
                    for (id, bytes) in rows {
                        log.insert(id.index, bytes.as_slice())?;
                    }
                }
                Op::Truncate { since, .. } => {
                    log.retain_in(*since.., |_, _| false)?;
                }
                Op::Purge { upto, .. } => {
                    log.retain_in(..=upto.index, |_, _| false)?;
                    meta.insert(PURGED, encode(upto)?.as_slice())?;
                }
                Op::Meta { key, value, .. } => {
                    meta.insert(*key, value.as_slice())?;
                }
            }
        }
    }
    tx.commit()?;
    Ok(())
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageErr> {
        let (start, end) = (range.start_bound().cloned(), range.end_bound().cloned());
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.read_range(start, end)).await.map_err(read_err)?.map_err(read_err)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageErr> {
        let last_purged = *lock(&self.shared.last_purged);
        let last_log = (*lock(&self.shared.last_log)).or(last_purged);
        Ok(LogState { last_purged_log_id: last_purged, last_log_id: last_log })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageErr> {
        let value = encode(vote).map_err(io_err)?;
        self.wait(|done| Op::Meta { key: VOTE, value, done: Some(done) }).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageErr> {
        self.read_meta(VOTE).map_err(read_err)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageErr> {
        let value = encode(&committed).map_err(io_err)?;
        self.send(Op::Meta { key: COMMITTED, value, done: None }).map_err(io_err)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageErr> {
        Ok(self.read_meta::<Option<LogId>>(COMMITTED).map_err(read_err)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageErr>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut rows = Vec::new();
        {
            let mut pending = lock(&self.shared.pending);
            for entry in entries {
                let id = *entry.get_log_id();
                rows.push((id, encode(&entry).map_err(io_err)?));
                pending.insert(id.index, entry);
            }
        }
        if let Some((last, _)) = rows.last() {
            *lock(&self.shared.last_log) = Some(*last);
        }
        self.send(Op::Append { rows, done: callback }).map_err(io_err)
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageErr> {
        {
            let mut pending = lock(&self.shared.pending);
            let _ = pending.split_off(&log_id.index);
        }
        let since = log_id.index;
        self.wait(|done| Op::Truncate { since, done }).await?;
        // The new last entry is the one before `since`, if any is left.
        let before = if since == 0 {
            Vec::new()
        } else {
            self.read_range(Bound::Included(since - 1), Bound::Excluded(since)).map_err(read_err)?
        };
        let purged = *lock(&self.shared.last_purged);
        *lock(&self.shared.last_log) = before.last().map(|e| *e.get_log_id()).or(purged);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageErr> {
        {
            let mut pending = lock(&self.shared.pending);
            pending.retain(|k, _| *k > log_id.index);
        }
        *lock(&self.shared.last_purged) = Some(log_id);
        {
            let mut last = lock(&self.shared.last_log);
            if last.is_none_or(|l| l.index < log_id.index) {
                *last = Some(log_id);
            }
        }
        self.wait(|done| Op::Purge { upto: log_id, done }).await
    }
}
