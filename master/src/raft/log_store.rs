//! The Raft log: entries in append-only segment files under `raft-log/` (see `segments`),
//! and the vote, commit index and purge point in `raft-log/meta`.
//!
//! One writer thread makes every change. It takes whatever has queued up, writes the
//! entries with one `write` and makes them durable with one `fdatasync` (group commit), then
//! tells openraft through the `LogFlushed` callbacks. Recent entries stay decoded in memory
//! (up to `CACHE_BYTES`), so applying a committed entry or sending it to a follower seldom
//! reads the disk.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io::Write;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogId, RaftLogReader};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::segments::Segments;
use super::{io_err, read_err, Entry, LogId, StorageErr, TypeConfig, Vote};
use crate::storage::codec::{decode, encode};
use crate::storage::StorageError;

/// Most operations one write takes, so a flood of appends still reports progress.
const MAX_OPS_PER_WRITE: usize = 4096;
/// Decoded entries kept in memory, by encoded size.
const CACHE_BYTES: usize = 32 * 1024 * 1024;
/// The commit index is only a hint for restarts; it is written at most this often.
const COMMITTED_EVERY: Duration = Duration::from_secs(1);

type Done = oneshot::Sender<Result<(), StorageError>>;

enum Op {
    Append { rows: Vec<(LogId, Vec<u8>)>, done: LogFlushed<TypeConfig> },
    Truncate { since: u64, done: Done },
    Purge { upto: LogId, done: Done },
    Vote { vote: Vote, done: Done },
    Committed(Option<LogId>),
}

/// What `raft-log/meta` holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Meta {
    vote: Option<Vote>,
    committed: Option<LogId>,
    purged: Option<LogId>,
}

#[derive(Default)]
struct Cache {
    entries: BTreeMap<u64, (Entry, usize)>,
    bytes: usize,
    /// Entries up to here are in the segment files and may leave the cache.
    written: Option<u64>,
}

impl Cache {
    fn insert(&mut self, entry: Entry, size: usize) {
        self.bytes += size;
        if let Some((_, old)) = self.entries.insert(entry.get_log_id().index, (entry, size)) {
            self.bytes -= old;
        }
    }

    fn remove_from(&mut self, since: u64) {
        for (_, (_, size)) in self.entries.split_off(&since) {
            self.bytes -= size;
        }
    }

    fn remove_upto(&mut self, upto: u64) {
        let kept = self.entries.split_off(&(upto + 1));
        for (_, size) in std::mem::replace(&mut self.entries, kept).into_values() {
            self.bytes -= size;
        }
    }

    fn evict(&mut self) {
        while self.bytes > CACHE_BYTES {
            let Some(mut first) = self.entries.first_entry() else { break };
            if self.written.is_none_or(|w| *first.key() > w) {
                break;
            }
            self.bytes -= first.get_mut().1;
            first.remove();
        }
    }
}

struct Shared {
    dir: PathBuf,
    segments: Mutex<Segments>,
    cache: Mutex<Cache>,
    meta: Mutex<Meta>,
    last_log: Mutex<Option<LogId>>,
    /// The last entry known to be on disk and synced (`None` right after a truncation).
    durable: Mutex<Option<LogId>>,
    /// Set, with why, once a write has failed: openraft learns of it only at its next call
    /// (a failed commit-index rewrite is answered to no one), the master at once.
    failed: tokio::sync::watch::Sender<Option<String>>,
}

/// Cheap to clone: clones share the files and the writer.
#[derive(Clone)]
pub struct LogStore {
    shared: Arc<Shared>,
    writer: std_mpsc::Sender<Op>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn stopped() -> StorageError {
    StorageError::Corrupt("raft log writer has stopped".into())
}

impl LogStore {
    /// Opens the log in directory `dir`, recovering from a write torn by a crash.
    pub fn open(dir: &Path) -> Result<Self, StorageError> {
        let meta: Meta = match std::fs::read(dir.join("meta")) {
            Ok(bytes) => decode(&bytes)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Meta::default(),
            Err(e) => return Err(e.into()),
        };
        let mut segments = Segments::open(dir, meta.purged.map(|p| p.index))?;
        if let Some(purged) = meta.purged {
            segments.purge(purged.index)?;
        }
        let expected_first = meta.purged.map_or(0, |p| p.index + 1);
        if segments.first_index().is_some_and(|first| first > expected_first) {
            return Err(StorageError::Corrupt(format!(
                "raft log in {} starts at {first:?}, after a gap from {expected_first}",
                dir.display(),
                first = segments.first_index()
            )));
        }
        let last_log = match segments.last_index() {
            Some(last) => match segments.read(last)? {
                Some(bytes) => Some(*decode::<Entry>(&bytes)?.get_log_id()),
                None => None,
            },
            None => meta.purged,
        };
        let cache = Cache { written: segments.last_index(), ..Cache::default() };
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            segments: Mutex::new(segments),
            cache: Mutex::new(cache),
            meta: Mutex::new(meta),
            last_log: Mutex::new(last_log),
            durable: Mutex::new(last_log),
            failed: tokio::sync::watch::Sender::new(None),
        });
        let (writer, ops) = std_mpsc::channel();
        let for_thread = shared.clone();
        std::thread::Builder::new().name("raft-log-writer".into()).spawn(move || write_loop(&for_thread, &ops))?;
        Ok(Self { shared, writer })
    }

    /// Why a write failed, once one has (the log takes no more writes then).
    pub fn failure(&self) -> tokio::sync::watch::Receiver<Option<String>> {
        self.shared.failed.subscribe()
    }

    fn send(&self, op: Op) -> Result<(), StorageError> {
        self.writer.send(op).map_err(|_| stopped())
    }

    async fn wait(&self, make: impl FnOnce(Done) -> Op) -> Result<(), StorageErr> {
        let (tx, rx) = oneshot::channel();
        self.send(make(tx)).map_err(io_err)?;
        match rx.await {
            Ok(r) => r.map_err(io_err),
            Err(_) => Err(io_err(stopped())),
        }
    }

    fn read_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<Vec<Entry>, StorageError> {
        let from = match start {
            Bound::Included(i) => i,
            Bound::Excluded(i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let Some(last) = lock(&self.shared.last_log).map(|l| l.index) else { return Ok(Vec::new()) };
        let to = match end {
            Bound::Included(i) => i.min(last),
            Bound::Excluded(i) => i.saturating_sub(1).min(last),
            Bound::Unbounded => last,
        };
        if end == Bound::Excluded(0) || from > to {
            return Ok(Vec::new());
        }
        let mut found = Vec::with_capacity(usize::try_from(to - from + 1).unwrap_or(0).min(4096));
        // The log may start after `from` (at 1, or after a purge).
        let seg_first = lock(&self.shared.segments).first_index();
        let cache_first = lock(&self.shared.cache).entries.keys().next().copied();
        let floor = match (seg_first, cache_first) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b).unwrap_or(from),
        };
        let mut index = from.max(floor);
        while index <= to {
            // The cache first: an entry leaves it only once it is in the files.
            {
                let cache = lock(&self.shared.cache);
                for (i, (entry, _)) in cache.entries.range(index..=to) {
                    if *i != index {
                        break;
                    }
                    found.push(entry.clone());
                    index += 1;
                }
            }
            if index > to {
                break;
            }
            match lock(&self.shared.segments).read(index)? {
                Some(bytes) => found.push(decode(&bytes)?),
                None => break,
            }
            index += 1;
        }
        Ok(found)
    }
}

fn write_loop(shared: &Shared, ops: &std_mpsc::Receiver<Op>) {
    let mut committed_written = Instant::now();
    // After a failed write (`shared.failed`) the files and memory may disagree: every later
    // operation fails too (openraft stops on a storage error), rather than build on an
    // unknown state.
    while let Ok(first) = ops.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_OPS_PER_WRITE {
            match ops.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let earlier = shared.failed.borrow().clone();
        let result = match &earlier {
            Some(e) => Err(format!("an earlier raft log write failed: {e}")),
            None => apply(shared, &batch, &mut committed_written).map_err(|e| e.to_string()),
        };
        match &result {
            Ok(()) => lock(&shared.cache).evict(),
            Err(e) if earlier.is_none() => {
                tracing::error!(error = %e, "raft log write failed; the log is read-only from now on");
                shared.failed.send_replace(Some(e.clone()));
            }
            Err(_) => {}
        }
        for op in batch {
            let r = result.clone().map_err(StorageError::Corrupt);
            match op {
                Op::Append { done, .. } => done.log_io_completed(r.map_err(std::io::Error::other)),
                Op::Truncate { done, .. } | Op::Purge { done, .. } | Op::Vote { done, .. } => {
                    let _ = done.send(r);
                }
                Op::Committed(_) => {}
            }
        }
    }
}

/// Carries out one batch: entries written and synced once, the meta file rewritten if the
/// vote or the purge point changed (or the commit index is due). Nothing in `meta` is made
/// durable before the entries appended ahead of it in the batch are.
fn apply(shared: &Shared, batch: &[Op], committed_written: &mut Instant) -> Result<(), StorageError> {
    let mut unsynced: Option<Option<LogId>> = None;
    let mut meta_changed = false;
    let mut committed_changed = false;
    for op in batch {
        match op {
            Op::Append { rows, .. } => {
                let refs: Vec<(u64, &[u8])> = rows.iter().map(|(id, b)| (id.index, b.as_slice())).collect();
                lock(&shared.segments).append(&refs)?;
                if let Some((last, _)) = rows.last() {
                    lock(&shared.cache).written = Some(last.index);
                    unsynced = Some(Some(*last));
                }
            }
            Op::Truncate { since, .. } => {
                lock(&shared.segments).truncate(*since)?;
                lock(&shared.cache).written = since.checked_sub(1);
                *lock(&shared.durable) = None;
                unsynced = unsynced.map(|_| None);
            }
            Op::Purge { upto, .. } => {
                sync_appended(shared, &mut unsynced)?;
                // The purge point is durable before any segment goes, so a restart never
                // sees a log that starts after a gap.
                lock(&shared.meta).purged = Some(*upto);
                write_meta(shared)?;
                lock(&shared.segments).purge(upto.index)?;
            }
            Op::Vote { vote, .. } => {
                lock(&shared.meta).vote = Some(*vote);
                meta_changed = true;
            }
            Op::Committed(c) => {
                lock(&shared.meta).committed = *c;
                committed_changed = true;
            }
        }
    }
    sync_appended(shared, &mut unsynced)?;
    if meta_changed || (committed_changed && committed_written.elapsed() >= COMMITTED_EVERY) {
        write_meta(shared)?;
        *committed_written = Instant::now();
    }
    Ok(())
}

/// Syncs what was appended since the last sync, if anything; the fsync runs without the
/// segments lock, so readers are not held up by the disk.
fn sync_appended(shared: &Shared, unsynced: &mut Option<Option<LogId>>) -> Result<(), StorageError> {
    let Some(last) = unsynced.take() else { return Ok(()) };
    let syncer = lock(&shared.segments).syncer()?;
    syncer.sync()?;
    if last.is_some() {
        *lock(&shared.durable) = last;
    }
    Ok(())
}

/// Replaces `meta` durably: write a temporary file, sync it, rename it over, sync the directory.
fn write_meta(shared: &Shared) -> Result<(), StorageError> {
    let mut meta = lock(&shared.meta).clone();
    // openraft may commit entries this follower has not synced yet; a restart must never
    // find a commit index past the end of its durable log.
    let durable = *lock(&shared.durable);
    if meta.committed.is_some_and(|c| durable.is_none_or(|d| c.index > d.index)) {
        meta.committed = durable;
    }
    let bytes = encode(&meta)?;
    let tmp = shared.dir.join("meta.tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(&bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, shared.dir.join("meta"))?;
    std::fs::File::open(&shared.dir)?.sync_all()?;
    Ok(())
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageErr> {
        self.read_range(range.start_bound().cloned(), range.end_bound().cloned()).map_err(read_err)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageErr> {
        let last_purged = lock(&self.shared.meta).purged;
        let last_log = (*lock(&self.shared.last_log)).or(last_purged);
        Ok(LogState { last_purged_log_id: last_purged, last_log_id: last_log })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageErr> {
        let vote = *vote;
        self.wait(|done| Op::Vote { vote, done }).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageErr> {
        Ok(lock(&self.shared.meta).vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageErr> {
        self.send(Op::Committed(committed)).map_err(io_err)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageErr> {
        Ok(lock(&self.shared.meta).committed)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageErr>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut rows = Vec::new();
        let mut last = None;
        {
            let mut cache = lock(&self.shared.cache);
            for entry in entries {
                let id = *entry.get_log_id();
                let bytes = encode(&entry).map_err(io_err)?;
                cache.insert(entry, bytes.len());
                rows.push((id, bytes));
                last = Some(id);
            }
        }
        if last.is_some() {
            *lock(&self.shared.last_log) = last;
        }
        self.send(Op::Append { rows, done: callback }).map_err(io_err)
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageErr> {
        let since = log_id.index;
        lock(&self.shared.cache).remove_from(since);
        self.wait(|done| Op::Truncate { since, done }).await?;
        // The new last entry is the one before `since`, if any is left.
        let before = match since.checked_sub(1) {
            Some(prev) => self.read_range(Bound::Included(prev), Bound::Included(prev)).map_err(read_err)?,
            None => Vec::new(),
        };
        let purged = lock(&self.shared.meta).purged;
        *lock(&self.shared.last_log) = before.last().map(|e| *e.get_log_id()).or(purged);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageErr> {
        lock(&self.shared.cache).remove_upto(log_id.index);
        {
            let mut last = lock(&self.shared.last_log);
            if last.is_none_or(|l| l.index < log_id.index) {
                *last = Some(log_id);
            }
        }
        self.wait(|done| Op::Purge { upto: log_id, done }).await
    }
}
