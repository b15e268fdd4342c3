//! The pending queue: task ids in placement order (priority, then submission), and how many
//! tasks wait at each memory size, so placement knows the smallest need without a scan and
//! stops as soon as no executor has room for even that.

use std::cmp::Reverse;
use std::collections::{btree_map, BTreeMap, BTreeSet};

use super::task::TaskId;

#[derive(Debug, Default, Clone)]
pub struct Queue {
    order: BTreeSet<(Reverse<i32>, TaskId)>,
    needs: BTreeMap<u64, usize>,
}

impl Queue {
    pub fn insert(&mut self, priority: i32, id: TaskId, memory: u64) {
        if self.order.insert((Reverse(priority), id)) {
            *self.needs.entry(memory).or_default() += 1;
        }
    }

    /// `priority` and `memory` must be those the task was inserted with.
    pub fn remove(&mut self, priority: i32, id: TaskId, memory: u64) {
        if self.order.remove(&(Reverse(priority), id)) {
            if let btree_map::Entry::Occupied(mut e) = self.needs.entry(memory) {
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

    #[test]
    fn keeps_placement_order_and_the_smallest_need() {
        let mut q = Queue::default();
        q.insert(0, 3, 100);
        q.insert(5, 4, 300);
        q.insert(0, 1, 200);
        q.insert(0, 1, 200); // again: counted once
        assert_eq!(q.iter().collect::<Vec<_>>(), vec![(5, 4), (0, 1), (0, 3)]);
        assert_eq!(q.smallest_need(), Some(100));
        q.remove(0, 3, 100);
        assert_eq!(q.smallest_need(), Some(200));
        q.remove(0, 3, 100); // not queued: no change
        q.remove(0, 1, 200);
        assert_eq!(q.smallest_need(), Some(300));
        assert_eq!(q.len(), 1);
        q.remove(5, 4, 300);
        assert!(q.len() == 0 && q.smallest_need().is_none());
    }
}
