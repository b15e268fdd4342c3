//! Membership of the master group at run time: `member list|add|remove`.
//!
//! A new master is first added as a learner and brought up to date, then made a voter. A
//! removal is refused when the members left would not have a reachable majority.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use openraft::ChangeMembers;
use wasmgrid_common::Addr;
use wasmgrid_proto as pb;

use super::cluster;
use crate::error::ApiError;
use crate::node::Node;
use crate::raft::{node_id, Member, NodeId};

/// How long a new member may take to catch up before it is made a voter.
const CATCH_UP: Duration = Duration::from_secs(120);

pub fn list(node: &Node) -> Result<pb::ListMembersResponse, ApiError> {
    node.prefer_leader()?;
    Ok(view(node))
}

/// The members as this master sees them, leader or not (an add or remove answers with it,
/// even when the leader has just removed itself).
fn view(node: &Node) -> pb::ListMembersResponse {
    let leader = node.leader_name();
    pb::ListMembersResponse { members: cluster::members(node), leader }
}

pub async fn add(node: &Arc<Node>, name: String, peer_url: String) -> Result<pb::ListMembersResponse, ApiError> {
    node.ensure_leader()?;
    if name.is_empty() || name.contains([',', '=']) || name.chars().any(char::is_whitespace) {
        return Err(ApiError::InvalidArgument(format!(
            "member name `{name}` must be non-empty, without spaces, ',' or '='"
        )));
    }
    let addr: Addr = peer_url.parse().map_err(|e| ApiError::InvalidArgument(format!("peer URL: {e}")))?;
    let id = node_id(&name);
    if voters(node).contains(&id) {
        return Err(ApiError::FailedPrecondition(format!("{name} is already a member")));
    }
    // Reach it first, so a typo fails here instead of leaving a learner nobody can reach.
    let probe = node
        .peers
        .probe(&addr.to_string())
        .await
        .map_err(|e| ApiError::FailedPrecondition(format!("cannot reach {name} at {addr}: {e}")))?;
    if probe.name != name {
        return Err(ApiError::FailedPrecondition(format!(
            "the master at {addr} is named {}, not {name}; start it with --name {name}",
            probe.name
        )));
    }
    let member = Member { name: name.clone(), peer_addr: addr.to_string(), api_addr: String::new() };
    tracing::info!(member = %name, addr = %addr, "adding a learner");
    tokio::time::timeout(CATCH_UP, node.raft.add_learner(id, member, true))
        .await
        .map_err(|_| ApiError::Unavailable(format!("{name} did not catch up within {}s", CATCH_UP.as_secs())))?
        .map_err(|e| ApiError::Unavailable(format!("cannot add {name}: {e}")))?;
    tracing::info!(member = %name, "promoting the learner to voter");
    change(node, ChangeMembers::AddVoterIds(BTreeSet::from([id])), &format!("make {name} a voter")).await?;
    Ok(view(node))
}

pub async fn remove(node: &Arc<Node>, name: String) -> Result<pb::ListMembersResponse, ApiError> {
    node.ensure_leader()?;
    let id = node_id(&name);
    let voters = voters(node);
    if !voters.contains(&id) {
        return Err(ApiError::NotFound(format!("no member named {name}")));
    }
    let remaining: Vec<NodeId> = voters.iter().copied().filter(|v| *v != id).collect();
    if remaining.is_empty() {
        return Err(ApiError::FailedPrecondition(format!("{name} is the last member; it cannot be removed")));
    }
    let mut reachable = 0;
    for v in &remaining {
        if *v == node.id || probe(node, *v).await {
            reachable += 1;
        }
    }
    let majority = remaining.len() / 2 + 1;
    if reachable < majority {
        return Err(ApiError::FailedPrecondition(format!(
            "removing {name} would leave {reachable} reachable of {} members, fewer than the {majority} needed: the group would lose its quorum",
            remaining.len()
        )));
    }
    tracing::info!(member = %name, "removing a member");
    change(node, ChangeMembers::RemoveVoters(BTreeSet::from([id])), &format!("remove {name}")).await?;
    Ok(view(node))
}

/// Commits a membership change, waiting at most twice `write-timeout` (it takes two commits):
/// a group that loses its majority meanwhile does not hold the request open.
async fn change(node: &Node, change: ChangeMembers<NodeId, Member>, what: &str) -> Result<(), ApiError> {
    let timeout = node.config.write_timeout * 2;
    match tokio::time::timeout(timeout, node.raft.change_membership(change, false)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(ApiError::Unavailable(format!("cannot {what}: {e}"))),
        Err(_) => Err(ApiError::DeadlineExceeded(format!(
            "cannot {what}: not committed within {}; a majority of the masters may be unreachable (`member list` shows whether the change took effect)",
            humantime::format_duration(timeout)
        ))),
    }
}

fn voters(node: &Node) -> BTreeSet<NodeId> {
    node.metrics().membership_config.membership().voter_ids().collect()
}

async fn probe(node: &Node, id: NodeId) -> bool {
    let addr = node.metrics().membership_config.membership().get_node(&id).map(|m| m.peer_addr.clone());
    match addr {
        Some(addr) => node.peers.probe(&addr).await.is_ok(),
        None => false,
    }
}
