//! The master's background loops, each watching the one shutdown token:
//! - leadership: notices when this master gains or loses the lead; on a loss it ends every
//!   executor session so executors move to the new leader;
//! - leases: on the leader, declares executors lost once silent past their lease;
//! - waiters: forgets waits of clients that went away.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::node::Node;
use crate::state::{Command, ExecutorState};

pub fn spawn_all(node: &Arc<Node>, shutdown: &CancellationToken) {
    tokio::spawn(leadership(node.clone(), shutdown.clone()));
    tokio::spawn(leases(node.clone(), shutdown.clone()));
    tokio::spawn(waiters(node.clone(), shutdown.clone()));
}

async fn leadership(node: Arc<Node>, shutdown: CancellationToken) {
    let mut metrics = node.raft.metrics();
    let mut was_leader = false;
    loop {
        let leader = node.is_leader();
        if leader && !was_leader {
            tracing::info!(term = metrics.borrow().current_term, "became the leader");
            node.set_leader_since(Some(Instant::now()));
        } else if !leader && was_leader {
            tracing::info!("no longer the leader; closing executor sessions");
            node.set_leader_since(None);
            node.replica.sessions.close_all("this master is no longer the leader");
        }
        was_leader = leader;
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = metrics.changed() => if changed.is_err() { return },
        }
    }
}

async fn leases(node: Arc<Node>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Some(since) = node.leader_since() else {
            continue;
        };
        let now = Instant::now();
        let expired: Vec<(String, u64)> = {
            let sm = node.replica.read();
            sm.executors()
                .filter(|e| e.state != ExecutorState::Lost)
                .filter_map(|e| {
                    let heard = match node.replica.sessions.info(&e.name) {
                        Some(s) if s.incarnation == e.incarnation => s.last_seen.max(since),
                        _ => since,
                    };
                    let lease = Duration::from_millis(e.lease_ms.max(100));
                    (now.duration_since(heard) > lease).then(|| (e.name.clone(), e.incarnation))
                })
                .collect()
        };
        for (name, incarnation) in expired {
            tracing::warn!(executor = %name, "executor silent past its lease; moving its tasks");
            // Waiting keeps one notice per executor in flight, not one per tick.
            if let Err(e) = node.propose(Command::ExecutorLost { name, incarnation }).await {
                tracing::debug!(error = %e, "could not declare executor lost");
            }
        }
    }
}

async fn waiters(node: Arc<Node>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(30));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => node.replica.waiters.forget_closed(),
        }
    }
}
