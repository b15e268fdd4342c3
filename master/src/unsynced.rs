//! What applied batches produced that `state.redb` does not hold yet: the inputs of new tasks
//! and the final records of finished ones. They wait in memory for the next sync, which writes
//! them in its one durable transaction, so an ordinary apply touches no storage at all (the
//! Raft log already holds every entry durably; after a crash the entries after the last sync
//! are applied again and produce the same records).
//!
//! Readers look here after the in-memory machine and before storage. A record moves from the
//! machine to here under the machine's write lock, and leaves here only after the sync that
//! wrote it has committed, so at every moment one of the three holds it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::state::{TaskId, TaskOutput, TaskRecord, TaskState};

/// Rough bytes a finished record takes besides its output.
const RECORD_BYTES: usize = 256;

/// One generation of unsynced records.
#[derive(Debug, Default)]
pub struct Pending {
    pub inputs: HashMap<TaskId, Vec<u8>>,
    pub finished: BTreeMap<TaskId, (TaskRecord, TaskOutput)>,
    bytes: usize,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.inputs.is_empty() && self.finished.is_empty()
    }
}

#[derive(Default)]
struct Generations {
    /// Added since the last sync began.
    current: Pending,
    /// Being written by a sync; readable until its commit.
    flushing: Option<Arc<Pending>>,
}

#[derive(Default)]
pub struct Unsynced {
    inner: RwLock<Generations>,
}

impl Unsynced {
    pub fn add(&self, inputs: Vec<(TaskId, Vec<u8>)>, finished: Vec<(TaskRecord, TaskOutput)>) {
        let mut g = self.write();
        for (id, input) in inputs {
            g.current.bytes += input.len() + 16;
            g.current.inputs.insert(id, input);
        }
        for (t, o) in finished {
            g.current.bytes += RECORD_BYTES + o.output.len() + o.stderr.len();
            g.current.finished.insert(t.id, (t, o));
        }
    }

    /// Bytes held by records not yet being written.
    pub fn bytes(&self) -> usize {
        self.read().current.bytes
    }

    /// Starts a sync: what was added so far is handed out to be written, and stays readable
    /// until `end_flush`.
    pub fn begin_flush(&self) -> Arc<Pending> {
        let mut g = self.write();
        let mut taken = std::mem::take(&mut g.current);
        // A sync that failed left its records here: they go with this one.
        if let Some(old) = g.flushing.take() {
            let old = Arc::try_unwrap(old).unwrap_or_else(|shared| Pending {
                inputs: shared.inputs.clone(),
                finished: shared.finished.clone(),
                bytes: shared.bytes,
            });
            taken = merge(old, taken);
        }
        let taken = Arc::new(taken);
        g.flushing = Some(taken.clone());
        taken
    }

    /// The sync that `begin_flush` started (`written`) has committed: storage holds its
    /// records now. A generation other than the one being written is left alone.
    pub fn end_flush(&self, written: &Arc<Pending>) {
        let mut g = self.write();
        if g.flushing.as_ref().is_some_and(|f| Arc::ptr_eq(f, written)) {
            g.flushing = None;
        }
    }

    /// Forgets everything (the state was replaced by a snapshot).
    pub fn clear(&self) {
        *self.write() = Generations::default();
    }

    pub fn is_empty(&self) -> bool {
        let g = self.read();
        g.current.is_empty() && g.flushing.as_ref().is_none_or(|f| f.is_empty())
    }

    pub fn finished(&self, id: TaskId) -> Option<(TaskRecord, TaskOutput)> {
        let g = self.read();
        g.current.finished.get(&id).or_else(|| g.flushing.as_ref()?.finished.get(&id)).cloned()
    }

    pub fn input(&self, id: TaskId) -> Option<Vec<u8>> {
        let g = self.read();
        g.current.inputs.get(&id).or_else(|| g.flushing.as_ref()?.inputs.get(&id)).cloned()
    }

    /// The first `limit` finished records with ids from `from` on, in id order, in `state`
    /// if given.
    pub fn finished_from(&self, from: TaskId, state: Option<TaskState>, limit: usize) -> Vec<(TaskRecord, TaskOutput)> {
        let g = self.read();
        let wanted = |r: &&(TaskRecord, TaskOutput)| state.is_none_or(|s| s == r.0.state);
        // The generations hold different tasks; each is in id order: merge the first
        // `limit` of each.
        let mut found: BTreeMap<TaskId, &(TaskRecord, TaskOutput)> = BTreeMap::new();
        if let Some(f) = &g.flushing {
            found.extend(f.finished.range(from..).map(|(_, r)| r).filter(wanted).take(limit).map(|r| (r.0.id, r)));
        }
        found.extend(g.current.finished.range(from..).map(|(_, r)| r).filter(wanted).take(limit).map(|r| (r.0.id, r)));
        found.into_values().take(limit).cloned().collect()
    }

    fn read(&self) -> RwLockReadGuard<'_, Generations> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Generations> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// `newer` over `older`.
fn merge(mut older: Pending, newer: Pending) -> Pending {
    older.inputs.extend(newer.inputs);
    older.finished.extend(newer.finished);
    older.bytes += newer.bytes;
    older
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::tests::spec;

    /// A succeeded task with a 10-byte output.
    fn record(id: TaskId) -> (TaskRecord, TaskOutput) {
        let t = TaskRecord { state: TaskState::Succeeded, attempts: 1, ..TaskRecord::pending(id, spec(1, 0), 0, 0) };
        (t, TaskOutput { output: vec![b'o'; 10], ..TaskOutput::default() })
    }

    #[test]
    fn records_stay_readable_until_their_flush_ends() {
        let u = Unsynced::default();
        u.add(vec![(1, b"in".to_vec())], vec![record(1)]);
        assert!(u.bytes() > 0);
        let flushing = u.begin_flush();
        assert_eq!(flushing.finished.len(), 1);
        assert_eq!(u.bytes(), 0, "what is being written no longer counts toward the next sync");
        u.add(Vec::new(), vec![record(2)]);
        assert_eq!(u.input(1).as_deref(), Some(&b"in"[..]));
        assert!(u.finished(1).is_some() && u.finished(2).is_some());
        let ids = |v: Vec<(TaskRecord, TaskOutput)>| v.iter().map(|(t, _)| t.id).collect::<Vec<_>>();
        assert_eq!(ids(u.finished_from(1, None, 10)), vec![1, 2]);
        assert_eq!(ids(u.finished_from(1, None, 1)), vec![1]);
        assert_eq!(ids(u.finished_from(2, Some(TaskState::Succeeded), 10)), vec![2]);
        assert!(u.finished_from(1, Some(TaskState::Failed), 10).is_empty());
        u.end_flush(&Arc::new(Pending::default()));
        assert!(u.finished(1).is_some(), "another generation's end leaves this one");
        u.end_flush(&flushing);
        assert!(u.finished(1).is_none() && u.input(1).is_none());
        assert!(u.finished(2).is_some());
        assert!(!u.is_empty());
        u.clear();
        assert!(u.is_empty());
    }

    #[test]
    fn a_failed_flush_goes_with_the_next() {
        let u = Unsynced::default();
        u.add(vec![(1, b"a".to_vec())], vec![record(1)]);
        drop(u.begin_flush());
        u.add(Vec::new(), vec![record(2)]);
        let next = u.begin_flush();
        assert_eq!(next.finished.keys().copied().collect::<Vec<_>>(), vec![1, 2]);
        assert!(next.inputs.contains_key(&1));
    }
}
