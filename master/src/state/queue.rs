//! The pending queue: task ids in placement order (priority, then submission), and how many
//! tasks wait at each memory size, so placement knows the smallest need without a scan and
//! stops as soon as no executor has room for even that.

use std::cmp::Reverse;
use std::collections::{btree_map, BTreeMap, BTreeSet};

use super::task::{TaskId, TaskRecord};

#[derive(Debug, Default, Clone)]
pub struct Queue {
    order: BTreeSet<(Reverse<i32>, TaskId)>,
    needs: BTreeMap<u64, usize>,
}

impl Queue {
    /// Queues `t` by its priority and id, counted at its memory (both fixed in its spec).
    pub fn insert(&mut self, t: &TaskRecord) {
        if self.order.insert((Reverse(t.spec.priority), t.id)) {
            *self.needs.entry(t.spec.limits.memory).or_default() += 1;
        }
    }

    pub fn remove(&mut self, t: &TaskRecord) {
        if self.order.remove(&(Reverse(t.spec.priority), t.id)) {
            if let btree_map::Entry::Occupied(mut e) = self.needs.entry(t.spec.limits.memory) {
                *e.get_mut() -= 1;
                if *e.get() == 0 {
                    e.remove();
                }
            }
        }
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// `(priority, id)` in placement order.
    pub fn iter(&self) -> impl Iterator<Item = (i32, TaskId)> + '_ {
        self.order.iter().map(|&(Reverse(p), id)| (p, id))
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
}
