//! Executor records: capacity, what runs where, and whether new work may go there.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::task::TaskId;

/// Tasks of a module known to run short that may be placed on an executor beyond its slots;
/// they wait in the executor's queue for a slot (see `short_runs` and `placement`).
pub const EXECUTOR_QUEUE: u32 = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExecutorState {
    Alive,
    /// Its stream to the leader is closed: no new tasks until it reconnects; its running
    /// tasks stay until its lease runs out.
    Disconnected,
    /// Finishing its tasks; takes no new ones.
    Draining,
    /// Silent past its lease, or gone; its tasks were moved.
    Lost,
}

impl ExecutorState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Alive => "alive",
            Self::Disconnected => "disconnected",
            Self::Draining => "draining",
            Self::Lost => "lost",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutorRecord {
    pub name: String,
    pub addr: String,
    pub incarnation: u64,
    pub slots: u32,
    pub memory: u64,
    pub state: ExecutorState,
    pub lease_ms: u64,
    pub registered_at_ms: i64,
    /// Tasks placed here and not finished, those queued there for a slot included: derived
    /// from the task records, never stored.
    #[serde(skip)]
    pub running: BTreeSet<TaskId>,
    /// Memory those tasks asked for: derived, never stored.
    #[serde(skip)]
    pub memory_reserved: u64,
}

impl ExecutorRecord {
    pub fn free_slots(&self) -> u32 {
        self.slots.saturating_sub(u32::try_from(self.running.len()).unwrap_or(u32::MAX))
    }

    pub fn lease(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.lease_ms)
    }

    pub fn free_memory(&self) -> u64 {
        self.memory.saturating_sub(self.memory_reserved)
    }

    /// True when a task needing `memory` could be placed here now, on a free slot.
    pub fn fits_now(&self, memory: u64) -> bool {
        self.has_room(memory, false)
    }

    /// True when a task needing `memory` could be placed here now: on a free slot, or, with
    /// `queue`, in the executor's queue of short tasks.
    pub fn has_room(&self, memory: u64, queue: bool) -> bool {
        let places = self.slots.saturating_add(if queue { EXECUTOR_QUEUE } else { 0 });
        self.state == ExecutorState::Alive && self.running.len() < places as usize && self.free_memory() >= memory
    }
}
