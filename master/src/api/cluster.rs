//! `cluster status`: the members of the group as Raft sees them, and the executors.

use std::time::Instant;

use openraft::ServerState;
use wasmgrid_proto as pb;

use crate::convert;
use crate::error::ApiError;
use crate::node::Node;
use crate::sessions::message;
use crate::state::{Command, ExecutorRecord, Response};

pub fn status(node: &Node) -> Result<pb::ClusterStatusResponse, ApiError> {
    node.prefer_leader()?;
    let m = node.metrics();
    let leader = node.leader_name();
    let members = members(node);
    let now = Instant::now();
    let sm = node.replica.read();
    let executors = sm.executors().map(|e| executor_info(node, e, now)).collect();
    Ok(pb::ClusterStatusResponse {
        leader,
        term: m.current_term,
        members,
        executors,
        pending_tasks: sm.pending_count() as u64,
        running_tasks: sm.running_count() as u64,
        commit_index: m.last_applied.map_or(0, |l| l.index),
        max_batch_size: u32::try_from(node.config.max_batch_size).unwrap_or(u32::MAX),
        max_module_size: node.config.max_module_size,
        max_input_size: node.config.max_input_size,
    })
}

/// Stops placing tasks on executor `name` and tells it to finish and leave.
pub async fn drain(node: &Node, name: String) -> Result<pb::ExecutorInfo, ApiError> {
    node.ensure_leader()?;
    if let Response::Refused(r) = node.propose(Command::Drain(name.clone())).await? {
        return Err(ApiError::NotFound(r.to_string()));
    }
    node.replica.sessions.send(&name, message(pb::master_message::Kind::Drain(pb::Drain {})));
    let sm = node.replica.read();
    let e = sm.executor(&name).ok_or_else(|| ApiError::NotFound(format!("no executor named {name}")))?;
    Ok(executor_info(node, e, Instant::now()))
}

/// An executor's record with what this master's session with it shows: connected, and how
/// long ago it was last heard from (-1: no session here).
fn executor_info(node: &Node, e: &ExecutorRecord, now: Instant) -> pb::ExecutorInfo {
    let session = node.replica.sessions.info(&e.name).filter(|s| s.incarnation == e.incarnation);
    let ago = session.map_or(-1, |s| i64::try_from(now.duration_since(s.last_seen).as_millis()).unwrap_or(i64::MAX));
    convert::executor_info(e, session.is_some_and(|s| s.connected), ago)
}

/// The members as this master sees them: the leader knows how far each has replicated.
pub fn members(node: &Node) -> Vec<pb::Member> {
    let m = node.metrics();
    let last_index = m.last_log_index.unwrap_or(0);
    let replication = m.replication.clone();
    let membership = m.membership_config.membership();
    let voters: Vec<u64> = membership.voter_ids().collect();
    membership
        .nodes()
        .map(|(id, member)| {
            let role = if Some(*id) == m.current_leader {
                "leader"
            } else if !voters.contains(id) {
                "learner"
            } else if *id == node.id && m.state == ServerState::Candidate {
                "candidate"
            } else {
                "follower"
            };
            // The leader knows how far each peer has replicated; others only know themselves.
            let matched = match (&replication, *id == node.id) {
                (_, true) => Some(last_index),
                (Some(r), false) => r.get(id).map(|l| l.map_or(0, |l| l.index)),
                (None, false) => None,
            };
            pb::Member {
                name: member.name.clone(),
                id: *id,
                api_addr: node.api_addr(*id, member),
                peer_addr: member.peer_addr.clone(),
                role: role.to_string(),
                reachable: node.reachable(*id),
                last_log_index: matched.unwrap_or(0),
                lag: matched.map_or(0, |i| last_index.saturating_sub(i)),
            }
        })
        .collect()
}
