//! The pending queue: task ids in placement order (priority, then submission), and how many
//! tasks wait at each memory size, so placement knows the smallest need without a scan and
//! stops as soon as no executor has room for even that. Tasks bigger than every executor are
//! parked by size, out of placement's way, until an executor big enough joins.

use std::cmp::Reverse;
use std::collections::{btree_map, BTreeMap, BTreeSet};

use super::task::{TaskId, TaskRecord};

#[derive(Debug, Default, Clone)]
pub struct Queue {
    order: BTreeSet<Key>,
    /// Tasks too big for every executor, by the memory they need.
    parked: BTreeMap<u64, BTreeSet<Key>>,
    needs: BTreeMap<u64, usize>,
    len: usize,
}

type Key = (Reverse<i32>, TaskId);

fn key(t: &TaskRecord) -> Key {
    (Reverse(t.spec.priority), t.id)
}

impl Queue {
    /// Queues `t` by its priority and id, counted at its memory (both fixed in its spec).
    pub fn insert(&mut self, t: &TaskRecord) {
        let need = t.spec.limits.memory;
        if !self.parked.get(&need).is_some_and(|p| p.contains(&key(t))) && self.order.insert(key(t)) {
            *self.needs.entry(need).or_default() += 1;
            self.len += 1;
        }
    }

    pub fn remove(&mut self, t: &TaskRecord) {
        let need = t.spec.limits.memory;
        if self.order.remove(&key(t)) || self.remove_parked(need, &key(t)) {
            if let btree_map::Entry::Occupied(mut e) = self.needs.entry(need) {
                *e.get_mut() -= 1;
                if *e.get() == 0 {
                    e.remove();
                }
            }
            self.len -= 1;
        }
    }

    fn remove_parked(&mut self, need: u64, key: &Key) -> bool {
        let btree_map::Entry::Occupied(mut parked) = self.parked.entry(need) else {
            return false;
        };
        let found = parked.get_mut().remove(key);
        if parked.get().is_empty() {
            parked.remove();
        }
        found
    }

    /// Queued tasks, parked ones included.
    pub fn len(&self) -> usize {
        self.len
    }

    /// `(priority, id)` in placement order, parked tasks left out.
    pub fn iter(&self) -> impl Iterator<Item = (i32, TaskId)> + '_ {
        self.order.iter().map(|&(Reverse(p), id)| (p, id))
    }

    /// Takes `t`, found bigger than every executor, out of placement's way.
    pub fn park(&mut self, t: &TaskRecord) {
        if self.order.remove(&key(t)) {
            self.parked.entry(t.spec.limits.memory).or_default().insert(key(t));
        }
    }

    /// Puts parked tasks needing at most `largest` back in placement order.
    pub fn unpark_up_to(&mut self, largest: u64) {
        let bigger = match largest.checked_add(1) {
            Some(above) => self.parked.split_off(&above),
            None => BTreeMap::new(),
        };
        for (_, keys) in std::mem::replace(&mut self.parked, bigger) {
            self.order.extend(keys);
        }
    }

    /// The least memory any queued task needs.
    pub fn smallest_need(&self) -> Option<u64> {
        self.needs.keys().next().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::tests::spec;

    const MIB: u64 = 1024 * 1024;

    /// Task `id` at `priority`, needing `memory_mib`.
    fn task(id: TaskId, priority: i32, memory_mib: u64) -> TaskRecord {
        TaskRecord::pending(id, spec(memory_mib, priority), 0, 0)
    }

    #[test]
    fn keeps_placement_order_and_the_smallest_need() {
        let mut q = Queue::default();
        let (t3, t4, t1) = (task(3, 0, 100), task(4, 5, 300), task(1, 0, 200));
        q.insert(&t3);
        q.insert(&t4);
        q.insert(&t1);
        q.insert(&t1); // again: counted once
        assert_eq!(q.iter().collect::<Vec<_>>(), vec![(5, 4), (0, 1), (0, 3)]);
        assert_eq!(q.smallest_need(), Some(100 * MIB));
        q.remove(&t3);
        assert_eq!(q.smallest_need(), Some(200 * MIB));
        q.remove(&t3); // not queued: no change
        q.remove(&t1);
        assert_eq!(q.smallest_need(), Some(300 * MIB));
        assert_eq!(q.len(), 1);
        q.remove(&t4);
        assert!(q.len() == 0 && q.smallest_need().is_none());
    }

    #[test]
    fn parked_tasks_are_counted_but_not_iterated_until_unparked() {
        let mut q = Queue::default();
        let (small, big, huge) = (task(1, 0, 100), task(2, 9, 300), task(3, 0, 900));
        for t in [&small, &big, &huge] {
            q.insert(t);
        }
        q.park(&big);
        q.park(&huge);
        q.insert(&big); // already queued (parked): counted once
        assert_eq!((q.len(), q.iter().collect::<Vec<_>>()), (3, vec![(0, 1)]));
        q.unpark_up_to(500 * MIB);
        assert_eq!(q.iter().collect::<Vec<_>>(), vec![(9, 2), (0, 1)]);
        q.remove(&huge); // cancelled while parked
        assert_eq!((q.len(), q.smallest_need()), (2, Some(100 * MIB)));
        q.park(&big);
        q.unpark_up_to(u64::MAX);
        assert_eq!(q.iter().collect::<Vec<_>>(), vec![(9, 2), (0, 1)]);
    }
}
