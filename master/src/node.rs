//! One master: its Raft handle, replica, proposer and configuration, shared by the API
//! services and the background loops.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::{RaftMetrics, ServerState};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use wasmgrid_proto::security::Security;

use crate::catch_up::CatchUp;
use crate::config::MasterConfig;
use crate::error::ApiError;
use crate::peers::Peers;
use crate::proposer::{ProposeError, Proposer};
use crate::raft::{Member, NodeId, Raft};
use crate::removal::Removal;
use crate::replica::Replica;
use crate::state::{Command, Response};
use crate::trials::Trials;

pub type Metrics = RaftMetrics<NodeId, Member>;

/// How long past its 8 heartbeats of grace a leader may go without a majority's
/// acknowledgement before the streams it holds open (executor sessions, waits) are closed as
/// cut off: twice what an AppendEntries of usual size may take, since acknowledgements pause
/// while a large entry crosses.
pub const CUT_OFF_AFTER: Duration = Duration::from_secs(10);

/// Why a cut-off leader closes a stream (see [`Node::cut_off`]).
pub const CUT_OFF_REASON: &str =
    "this master leads but has lost contact with a majority of the group; finding the new leader";

pub struct Node {
    pub id: NodeId,
    pub config: MasterConfig,
    pub raft: Raft,
    pub replica: Arc<Replica>,
    pub proposer: Proposer,
    pub peers: Peers,
    pub trials: Trials,
    metrics: watch::Receiver<Metrics>,
    /// When this master last became leader (leases of executors count from then at most).
    leader_since: Mutex<Option<Instant>>,
    /// The last log index when this master became leader: its state is current once it has
    /// applied that far (`u64::MAX` while not leading).
    ready_at: AtomicU64,
    /// When each other master last answered a probe (see `background::health`).
    heard_from: Mutex<HashMap<NodeId, Instant>>,
    /// Whether the group removed this master (see `removal`).
    pub removal: Removal,
    /// Whether this master is too far behind the leader to stand for election (see `catch_up`).
    pub catch_up: CatchUp,
    /// Fires when this master stops: streams it holds open end, so the servers can stop.
    pub shutdown: CancellationToken,
    /// Set while a leader hands over before it stops: executors it closed go elsewhere.
    handing_over: AtomicBool,
}

impl Node {
    pub fn new(
        id: NodeId,
        config: MasterConfig,
        raft: Raft,
        replica: Arc<Replica>,
        security: Security,
        shutdown: CancellationToken,
    ) -> Self {
        let proposer = Proposer::start(raft.clone());
        let metrics = raft.metrics();
        Self {
            id,
            config,
            raft,
            replica,
            proposer,
            peers: Peers::new(security),
            trials: Trials::default(),
            metrics,
            leader_since: Mutex::new(None),
            ready_at: AtomicU64::new(u64::MAX),
            heard_from: Mutex::default(),
            removal: Removal::default(),
            catch_up: CatchUp::default(),
            shutdown,
            handing_over: AtomicBool::new(false),
        }
    }

    /// From now until it exits, this master takes no new executor sessions.
    pub fn hand_over(&self) {
        self.handing_over.store(true, Ordering::Release);
    }

    pub fn handing_over(&self) -> bool {
        self.handing_over.load(Ordering::Acquire)
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

    /// Where clients and executors reach every master of the group.
    pub fn api_addrs(&self) -> Vec<String> {
        let m = self.metrics();
        let membership = m.membership_config.membership();
        membership.nodes().map(|(id, member)| self.api_addr(*id, member)).filter(|a| !a.is_empty()).collect()
    }

    /// Where clients reach master `id`: announced through the log, else from its membership.
    pub fn api_addr(&self, id: NodeId, member: &Member) -> String {
        let announced = self.replica.read().member_addrs().get(&id).cloned();
        announced.filter(|a| !a.is_empty()).unwrap_or_else(|| member.api_addr.clone())
    }

    /// Refuses with the leader's address unless this master leads and still hears from a
    /// majority (a leader cut off from the others must not answer with stale data).
    pub fn ensure_leader(&self) -> Result<(), ApiError> {
        if self.is_leader() {
            if !self.has_quorum() {
                let window = self.quorum_window();
                return Err(ApiError::Unavailable(if self.leader_since().is_none_or(|t| t.elapsed() <= window) {
                    "this master has just become the leader and no majority has confirmed it yet; retry in a moment"
                        .into()
                } else {
                    "this master leads but has lost contact with a majority of the group; its data may be stale".into()
                }));
            }
            let m = self.metrics.borrow();
            // A new leader has applied every committed entry only once it has applied one of
            // its own term (its first, blank entry), and everything its log held when it took
            // the lead: a lone master restarting takes it back in the same term, without a
            // new entry, and its state is stale until the log it kept is applied again.
            let applied = m.last_applied.map_or(0, |l| l.index);
            if m.last_applied.is_none_or(|l| l.leader_id.term < m.current_term)
                || applied < self.ready_at.load(Ordering::Acquire)
            {
                return Err(ApiError::Unavailable(
                    "this master has just become the leader and is still applying the log; retry in a moment".into(),
                ));
            }
            return Ok(());
        }
        Err(self.not_leader(self.leader()))
    }

    /// Whether a majority of the group has acknowledged this master, as leader, within the
    /// last 8 heartbeats. A leader that none has acknowledged yet has not: one just elected
    /// (for a moment), or a lone master of a group restarted (openraft gives it its lead
    /// back, in its old term, and its state may be stale).
    pub fn has_quorum(&self) -> bool {
        let window = self.quorum_window().as_millis();
        self.metrics.borrow().millis_since_quorum_ack.is_some_and(|ms| u128::from(ms) <= window)
    }

    /// Whether this master leads but no majority has acknowledged it for [`CUT_OFF_AFTER`]
    /// past the 8 heartbeats it counts as acknowledged: openraft 0.9 keeps such a leader
    /// leading.
    pub fn cut_off(&self) -> bool {
        if !self.is_leader() {
            return false;
        }
        // On top of the window in which a leader counts as acknowledged at all.
        let after = self.quorum_window() + CUT_OFF_AFTER;
        match self.metrics.borrow().millis_since_quorum_ack {
            Some(ms) => u128::from(ms) > after.as_millis(),
            None => self.leader_since().is_some_and(|t| t.elapsed() > after),
        }
    }

    /// How long a leader may go without a majority's acknowledgement: 8 heartbeats.
    fn quorum_window(&self) -> std::time::Duration {
        self.config.raft_heartbeat * 8
    }

    /// The leader's name as status reports it: none when this master leads without a
    /// majority behind it.
    pub fn leader_name(&self) -> String {
        match self.leader() {
            Some((id, _)) if id == self.id && !self.has_quorum() => String::new(),
            Some((_, member)) => member.name,
            None => String::new(),
        }
    }

    /// For a read any master can answer but the leader answers best (only the leader holds
    /// the executors' sessions and knows how far each member has replicated): refuses with
    /// the leader's address when this master follows a known leader. With no leader known,
    /// this master's own view is the best there is, and it answers.
    pub fn prefer_leader(&self) -> Result<(), ApiError> {
        match self.leader() {
            Some((id, member)) if id != self.id => Err(self.not_leader(Some((id, member)))),
            None if self.removal.leader_hint().is_some_and(|a| !a.is_empty()) => Err(self.not_leader(None)),
            _ => Ok(()),
        }
    }

    /// Names the leader: the one this master follows, or, once the group has removed this
    /// master, the group's.
    fn not_leader(&self, leader: Option<(NodeId, Member)>) -> ApiError {
        let leader = leader.map(|(id, m)| self.api_addr(id, &m)).or_else(|| self.removal.leader_hint());
        ApiError::NotLeader { leader: leader.filter(|a| !a.is_empty()) }
    }

    /// Proposes one command and waits until it is applied, at most `write-timeout`, and no
    /// longer than this master runs: a leader cut off from its group must not hold its exit
    /// for a write that cannot commit.
    pub async fn propose(&self, command: Command) -> Result<Response, ApiError> {
        let timeout = self.config.write_timeout;
        let applied = tokio::select! {
            r = tokio::time::timeout(timeout, self.proposer.propose(command)) => r,
            _ = self.shutdown.cancelled() => {
                return Err(ApiError::Unavailable(
                    "this master shut down before the command was committed (a retry of the same request is safe)".into(),
                ))
            }
        };
        match applied {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(ProposeError::NotLeader(leader))) => {
                let leader = leader.map(|m| (crate::raft::node_id(&m.name), m));
                Err(self.not_leader(leader))
            }
            Ok(Err(ProposeError::Failed(e))) => Err(ApiError::Unavailable(format!("the command was not committed: {e}"))),
            Err(_) => Err(ApiError::Unavailable(format!(
                "not committed within {}: a majority of the masters may be unreachable (a retry of the same request is safe)",
                humantime::format_duration(timeout)
            ))),
        }
    }

    pub fn leader_since(&self) -> Option<Instant> {
        *self.leader_since.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn set_leader_since(&self, since: Option<Instant>) {
        let ready_at = match since {
            Some(_) => self.metrics.borrow().last_log_index.unwrap_or(0),
            None => u64::MAX,
        };
        self.ready_at.store(ready_at, Ordering::Release);
        *self.leader_since.lock().unwrap_or_else(|p| p.into_inner()) = since;
    }

    pub(crate) fn heard(&self, id: NodeId) {
        self.heard_from.lock().unwrap_or_else(|p| p.into_inner()).insert(id, Instant::now());
    }

    /// True for this master, and for another that answered a probe in the last 3 seconds.
    pub fn reachable(&self, id: NodeId) -> bool {
        id == self.id
            || self
                .heard_from
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&id)
                .is_some_and(|t| t.elapsed() < std::time::Duration::from_secs(3))
    }
}
