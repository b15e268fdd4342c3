//! The master's background loops, each watching the one shutdown token:
//! - leadership: notices when this master gains or loses the lead; on a loss it ends every
//!   executor session so executors move to the new leader;
//! - leases: on the leader, declares executors lost once silent past their lease, fails
//!   runs past their timeout that no executor reported, and starts the count of which
//!   modules run short when the state has none;
//! - waiters: forgets waits of clients that went away;
//! - announce: makes sure the group knows where clients reach this master;
//! - blobs: fetches module blobs this master lacks (after a snapshot or being away);
//! - health: probes the other masters, for `cluster status`, and from their replies notices
//!   when this master was removed from the group or is too far behind to stand for election;
//! - retention: on the leader, forgets finished tasks older than `result-retention`, and
//!   executors lost for longer than that.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::clock::now_ms;
use crate::node::Node;
use crate::removal::Change;
use crate::sessions;
use crate::state::{Command, ExecutorRecord, ExecutorState, RunRef};

pub fn spawn_all(node: &Arc<Node>, shutdown: &CancellationToken) {
    tokio::spawn(leadership(node.clone(), shutdown.clone()));
    tokio::spawn(leases(node.clone(), shutdown.clone()));
    tokio::spawn(waiters(node.clone(), shutdown.clone()));
    tokio::spawn(announce(node.clone(), shutdown.clone()));
    tokio::spawn(blobs(node.clone(), shutdown.clone()));
    tokio::spawn(health(node.clone(), shutdown.clone()));
    tokio::spawn(retention(node.clone(), shutdown.clone()));
}

async fn retention(node: Arc<Node>, shutdown: CancellationToken) {
    let keep = node.config.result_retention;
    if keep.is_zero() {
        return;
    }
    let period = (keep / 4).clamp(Duration::from_millis(250), Duration::from_secs(60));
    let mut tick = tokio::time::interval(period);
    // Executors this leader has seen lost, and since when.
    let mut lost: HashMap<(String, u64), Instant> = HashMap::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if node.leader_since().is_none() {
            lost.clear();
            continue;
        }
        let before_ms = now_ms().saturating_sub(i64::try_from(keep.as_millis()).unwrap_or(i64::MAX));
        if let Err(e) = node.propose(Command::Forget { before_ms }).await {
            tracing::debug!(error = %e, "retention pass not committed; trying again later");
        }
        forget_lost_executors(&node, &mut lost, keep).await;
    }
}

/// Forgets executors lost for longer than `keep`, as finished tasks are: a cluster whose
/// executors come and go under new names (autoscaling) would otherwise list every one that
/// ever died, for ever. One that comes back registers anew.
async fn forget_lost_executors(node: &Node, lost: &mut HashMap<(String, u64), Instant>, keep: Duration) {
    let now_lost: Vec<(String, u64)> = node
        .replica
        .read()
        .executors()
        .filter(|e| e.state == ExecutorState::Lost)
        .map(|e| (e.name.clone(), e.incarnation))
        .collect();
    lost.retain(|key, _| now_lost.contains(key));
    for key in now_lost {
        if lost.entry(key.clone()).or_insert_with(Instant::now).elapsed() < keep {
            continue;
        }
        let (name, incarnation) = key;
        tracing::info!(executor = %name, "forgetting an executor lost for longer than result-retention");
        if let Err(e) = node.propose(Command::Deregister { name, incarnation }).await {
            tracing::debug!(error = %e, "could not forget a lost executor; trying again later");
        }
    }
}

async fn health(node: Arc<Node>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut answers: HashMap<u64, bool> = HashMap::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let others: Vec<(u64, String, String)> = {
            let m = node.metrics();
            let membership = m.membership_config.membership();
            membership
                .nodes()
                .filter(|(id, _)| **id != node.id)
                .map(|(id, n)| (*id, n.name.clone(), n.peer_addr.clone()))
                .collect()
        };
        let mut replies = Vec::new();
        for (id, name, addr) in others {
            let answered = node.peers.probe(&addr).await;
            if let Ok(reply) = &answered {
                node.heard(id);
                removal(&node, reply);
                replies.push(reply.clone());
            }
            // Said once per change (openraft's own replication errors repeat, and are off).
            if answers.insert(id, answered.is_ok()) != Some(answered.is_ok()) {
                match answered {
                    Ok(_) => tracing::info!(peer = %name, addr = %addr, "master answers"),
                    Err(e) => tracing::warn!(peer = %name, addr = %addr, error = %e, "master does not answer"),
                }
            }
        }
        let last_log_index = node.metrics().last_log_index.unwrap_or(0);
        match node.catch_up.note(last_log_index, &replies) {
            Some(true) => tracing::info!(
                last_log_index,
                "far behind the leader: not standing for election until this master has caught up"
            ),
            Some(false) => tracing::info!(last_log_index, "standing for election again"),
            None => continue,
        }
        stand_for_election(&node);
    }
}

/// Lets openraft campaign unless the group removed this master or it is catching up.
fn stand_for_election(node: &Node) {
    node.raft.runtime_config().elect(node.removal.leader_hint().is_none() && !node.catch_up.holding());
}

/// Stops campaigning once a peer shows that the group removed this master, and starts again
/// once it is added back.
fn removal(node: &Node, reply: &wasmgrid_proto::ProbeReply) {
    match node.removal.note(node.id, &node.metrics(), reply) {
        Change::Removed => {
            tracing::warn!(
                told_by = %reply.name,
                "this master was removed from the group: it no longer stands for election and sends \
                 clients to the leader; stop it, or add it back with `member add`"
            );
            stand_for_election(node);
        }
        Change::Restored => {
            tracing::info!("this master is a member of the group again");
            stand_for_election(node);
        }
        Change::None => {}
    }
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
    const ASK_AGAIN: Duration = Duration::from_secs(1);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut asked_to_track: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        // Without a majority nothing would commit: no notices that repeat every lease.
        let Some(since) = node.leader_since().filter(|_| node.has_quorum()) else {
            continue;
        };
        if node.replica.read().short_runs().is_none() && asked_to_track.is_none_or(|at| at.elapsed() > ASK_AGAIN) {
            node.proposer.propose_detached(Command::TrackShortRuns);
            asked_to_track = Some(Instant::now());
        }
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
            match node.propose(Command::ExecutorLost { name: name.clone(), incarnation }).await {
                // A frozen executor that wakes up must register again (and be told what
                // it runs is stale): end its stream so it reconnects.
                Ok(_) => node.replica.sessions.end(&name, "this executor was declared lost; register again"),
                Err(e) => tracing::debug!(error = %e, "could not declare executor lost"),
            }
        }
        // A run past its timeout whose executor, heard from, never said so: fail it here.
        let overdue = node.replica.read().overdue(now_ms(), TIMEOUT_GRACE_MS, |executor, run, placed_ms| {
            timeout_counts_from(&node.replica.sessions, executor, run, placed_ms)
        });
        for (task, attempt) in overdue {
            tracing::warn!(task_id = task, attempt, "run past its timeout and not reported; failing it");
            if let Err(e) = node.propose(Command::Expire { task, attempt }).await {
                tracing::debug!(error = %e, "could not expire a run");
            }
        }
    }
}

/// How long past a run's timeout the leader waits for the executor's own report.
const TIMEOUT_GRACE_MS: i64 = 3_000;

/// When the timeout of `run` on `executor`, placed at `placed_ms`, began at the latest, as
/// far as this leader knows; `None` while this leader does not hear the executor (its lease
/// decides then). A run placed on a free slot began at once. One placed beyond the slots,
/// or reported waiting for one, began within a heartbeat of when it was last known to wait
/// (the next heartbeat would say if it still does).
fn timeout_counts_from(
    sessions: &sessions::Sessions,
    executor: &ExecutorRecord,
    run: RunRef,
    placed_ms: i64,
) -> Option<i64> {
    let heard = sessions.info(&executor.name).is_some_and(|s| s.connected && s.incarnation == executor.incarnation);
    if !heard {
        return None;
    }
    let heartbeat = i64::try_from(sessions::keepalive_interval(executor.lease()).as_millis()).unwrap_or(0);
    Some(match sessions.last_waiting(&executor.name, run) {
        Some(at) => at.max(placed_ms).saturating_add(heartbeat),
        None => placed_ms,
    })
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

async fn announce(node: Arc<Node>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mine = node.config.advertise_addr.to_string();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let known = node.replica.read().member_addrs().get(&node.id).cloned();
        if known.as_deref() == Some(mine.as_str()) {
            continue;
        }
        let result = if node.is_leader() {
            node.propose(Command::MemberAddr { node: node.id, api_addr: mine.clone() })
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        } else {
            match node.leader() {
                Some((_, leader)) => {
                    let info = wasmgrid_proto::MemberInfo { name: node.config.name.clone(), api_addr: mine.clone() };
                    node.peers.announce(&leader.peer_addr, info).await
                }
                None => continue,
            }
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, "could not announce this master's address yet");
        }
    }
}

async fn blobs(node: Arc<Node>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let missing: Vec<_> = {
            let sm = node.replica.read();
            sm.modules().map(|m| m.digest).filter(|d| !node.replica.blobs.contains(d)).collect()
        };
        if missing.is_empty() {
            continue;
        }
        let sources: Vec<String> = {
            let m = node.metrics();
            let leader = m.current_leader;
            let membership = m.membership_config.membership();
            let mut ids: Vec<_> = membership.nodes().map(|(id, _)| *id).filter(|id| *id != node.id).collect();
            ids.sort_by_key(|id| Some(*id) != leader);
            ids.iter().filter_map(|id| membership.get_node(id).map(|n| n.peer_addr.clone())).collect()
        };
        for digest in missing {
            for source in &sources {
                match node.peers.fetch_blob(source, digest).await {
                    Ok(bytes) => {
                        let blobs = node.replica.blobs.clone();
                        match tokio::task::spawn_blocking(move || blobs.put(&digest, &bytes)).await {
                            Ok(Ok(())) => tracing::info!(module = %digest, from = %source, "fetched a missing module"),
                            _ => tracing::warn!(module = %digest, "cannot store a fetched module"),
                        }
                        break;
                    }
                    Err(e) => tracing::debug!(module = %digest, from = %source, error = %e, "module not fetched"),
                }
            }
        }
    }
}
