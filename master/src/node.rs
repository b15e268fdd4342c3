//! One master: its Raft handle, replica, proposer and configuration, shared by the API
//! services and the background loops.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use openraft::{RaftMetrics, ServerState};
use tokio::sync::watch;

use crate::config::MasterConfig;
use crate::error::ApiError;
use crate::proposer::{ProposeError, Proposer};
use crate::raft::{Member, NodeId, Raft};
use crate::replica::Replica;
use crate::state::{Command, Response};

pub type Metrics = RaftMetrics<NodeId, Member>;

pub struct Node {
    pub id: NodeId,
    pub config: MasterConfig,
    pub raft: Raft,
    pub replica: Arc<Replica>,
    pub proposer: Proposer,
    metrics: watch::Receiver<Metrics>,
    /// When this master last became leader (leases of executors count from then at most).
    leader_since: Mutex<Option<Instant>>,
}

impl Node {
    pub fn new(id: NodeId, config: MasterConfig, raft: Raft, replica: Arc<Replica>) -> Self {
        let proposer = Proposer::start(raft.clone());
        let metrics = raft.metrics();
        Self { id, config, raft, replica, proposer, metrics, leader_since: Mutex::new(None) }
    }

    pub fn metrics(&self) -> Metrics {
        self.metrics.borrow().clone()
    }

    pub fn is_leader(&self) -> bool {
        let m = self.metrics.borrow();
        m.current_leader == Some(self.id) && m.state == ServerState::Leader
    }

    /// The leader as this master knows it.
    pub fn leader(&self) -> Option<(NodeId, Member)> {
        let m = self.metrics.borrow();
        let id = m.current_leader?;
        let member = m.membership_config.membership().get_node(&id)?.clone();
        Some((id, member))
    }

    /// Refuses with the leader's address unless this master leads.
    pub fn ensure_leader(&self) -> Result<(), ApiError> {
        if self.is_leader() {
            return Ok(());
        }
        Err(self.not_leader(self.leader().map(|(_, m)| m)))
    }

    fn not_leader(&self, leader: Option<Member>) -> ApiError {
        let leader = leader.map(|m| m.api_addr).filter(|a| !a.is_empty());
        ApiError::NotLeader { leader }
    }

    /// Proposes one command and waits until it is applied.
    pub async fn propose(&self, command: Command) -> Result<Response, ApiError> {
        match self.proposer.propose(command).await {
            Ok(r) => Ok(r),
            Err(ProposeError::NotLeader(leader)) => Err(self.not_leader(leader)),
            Err(ProposeError::Failed(e)) => Err(ApiError::Unavailable(format!("the command was not committed: {e}"))),
        }
    }

    pub fn leader_since(&self) -> Option<Instant> {
        *self.leader_since.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn set_leader_since(&self, since: Option<Instant>) {
        *self.leader_since.lock().unwrap_or_else(|p| p.into_inner()) = since;
    }
}
