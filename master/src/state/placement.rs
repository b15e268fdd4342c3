//! Placement: which pending task runs on which executor.
//!
//! Pending tasks are taken in priority order (FIFO within a priority). Each goes to the
//! executor with room for it (a free slot and enough unreserved memory) that is least loaded
//! relative to its size, so work spreads evenly. A task that fits no executor right now is
//! skipped, not waited on, so one big task cannot block the small ones behind it; the scan
//! stops once no executor has a free slot and room for the smallest queued task, or after a
//! bounded number of misfits, so placement never walks the whole queue. A task bigger than
//! every executor is no misfit: it is parked (see `Queue::park`) until a big enough one joins,
//! so any number of them cannot use up the scan and hold back the tasks behind them.
//!
//! A task of a module known to run short (`short_runs`) may also take one of an executor's
//! `EXECUTOR_QUEUE` places beyond its slots, and waits there for a slot: its executor then
//! starts the next run the moment one ends, instead of after a commit and a message. Only
//! until a task that is not short waits for room (a slot, or memory): no short task passes
//! it from then on, so a stream of short tasks cannot starve it, and the queues drain to let
//! it in. A task bigger than every executor does not stop the queueing.

use std::cmp::Ordering;

use wasmgrid_common::Size;

use super::effects::{Effects, RunRef};
use super::executor::{ExecutorRecord, ExecutorState};
use super::machine::StateMachine;
use super::task::{TaskRecord, TaskState};

/// How many pending tasks that fit nowhere one placement round looks past.
const MISFIT_SCAN_LIMIT: usize = 1024;

pub(super) fn place_pending(sm: &mut StateMachine, now: i64, fx: &mut Effects) {
    let Some(smallest) = sm.queue.smallest_need() else {
        return;
    };
    // Short tasks may queue at executors until a task that is not short waits for room.
    let mut queueing = true;
    // Executors with room (a free slot, or a queue place) for at least the smallest queued task.
    let mut open: Vec<String> =
        sm.executors.values().filter(|e| e.has_room(smallest, queueing)).map(|e| e.name.clone()).collect();
    // The most memory any task could ever get here (a bigger one waits for a bigger executor).
    let largest = sm.executors.values().filter(|e| e.state == ExecutorState::Alive).map(|e| e.memory).max();
    if let Some(largest) = largest {
        sm.queue.unpark_up_to(largest);
    }
    let mut placed = Vec::new();
    let mut oversize = Vec::new();
    let mut misfits = 0;
    for (_, id) in sm.queue.iter() {
        if open.is_empty() || misfits > MISFIT_SCAN_LIMIT {
            break;
        }
        let Some(task) = sm.live.get(&id) else {
            continue;
        };
        let need = task.spec.limits.memory;
        let short = queueing && sm.runs_short(&task.spec.module);
        let best = open
            .iter()
            .filter_map(|n| sm.executors.get(n))
            .filter(|e| e.has_room(need, short))
            .min_by(|a, b| load_order(a, b));
        let Some(best) = best else {
            if largest.is_none_or(|l| need > l) {
                oversize.push(id);
                continue;
            }
            // A task that is not short and could run once room frees (a slot, or memory the
            // queued ones hold): nothing passes it from here on. One too big for every
            // executor waits for a bigger one without holding the queues up.
            if queueing && !short {
                queueing = false;
                open.retain(|n| sm.executors.get(n).is_some_and(|e| e.has_room(smallest, false)));
            }
            misfits += 1;
            continue;
        };
        let name = best.name.clone();
        let mut beyond_slots = false;
        if let Some(e) = sm.executors.get_mut(&name) {
            beyond_slots = e.running.len() >= e.slots as usize;
            e.running.insert(id);
            e.memory_reserved += need;
            if !e.has_room(smallest, queueing) {
                open.retain(|n| *n != name);
            }
        }
        placed.push((id, name, beyond_slots));
    }
    for id in oversize {
        if let Some(t) = sm.live.get(&id) {
            sm.queue.park(t);
        }
    }
    for (id, executor, beyond_slots) in placed {
        let Some(t) = sm.live.get_mut(&id) else {
            continue;
        };
        sm.queue.remove(t);
        t.state = TaskState::Running;
        t.attempts += 1;
        if beyond_slots {
            fx.queued.push((executor.clone(), RunRef { task: id, attempt: t.attempts }));
        }
        t.executor = Some(executor);
        t.started_at_ms = now;
        fx.changed.insert(id);
        if let Some(d) = sm.current_dispatch(id) {
            fx.dispatch.push(d);
        }
    }
}

/// Least loaded first (running/slots, compared without division), then fewest running,
/// then by name so every master picks the same one.
fn load_order(a: &ExecutorRecord, b: &ExecutorRecord) -> Ordering {
    let (ra, rb) = (a.running.len() as u64, b.running.len() as u64);
    (ra * u64::from(b.slots)).cmp(&(rb * u64::from(a.slots))).then(ra.cmp(&rb)).then_with(|| a.name.cmp(&b.name))
}

pub(super) fn pending_reason(sm: &StateMachine, t: &TaskRecord) -> String {
    if t.state != TaskState::Pending {
        return String::new();
    }
    let usable: Vec<&ExecutorRecord> = sm.executors.values().filter(|e| e.state == ExecutorState::Alive).collect();
    if usable.is_empty() {
        return "no executor is available".to_string();
    }
    let need = t.spec.limits.memory;
    let largest = usable.iter().map(|e| e.memory).max().unwrap_or(0);
    if need > largest {
        return format!("needs {} of memory, largest executor has {}", Size(need).human(), Size(largest).human());
    }
    if usable.iter().all(|e| e.free_slots() == 0) {
        return "waiting for a free slot".to_string();
    }
    if usable.iter().all(|e| e.free_slots() == 0 || e.free_memory() < need) {
        return format!("waiting for {} of free memory", Size(need));
    }
    String::new()
}
