//! Starting and stopping a master: storage, Raft, the background loops and the gRPC servers,
//! on listeners the caller has bound (tests bind port 0), until the shutdown token fires.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use openraft::SnapshotPolicy;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;
use wasmgrid_common::Addr;
use wasmgrid_proto::executor_gateway_server::ExecutorGatewayServer;
use wasmgrid_proto::master_server::MasterServer;
use wasmgrid_proto::raft_peer_server::RaftPeerServer;
use wasmgrid_proto::MAX_MESSAGE_SIZE;

use crate::api::gateway::GatewayService;
use crate::api::master::MasterService;
use crate::api::peer::PeerService;
use crate::background;
use crate::config::MasterConfig;
use crate::node::Node;
use crate::raft::log_store::LogStore;
use crate::raft::network::Network;
use crate::raft::state_store::StateStore;
use crate::raft::{members, node_id, Member, Raft};
use crate::replica::Replica;
use crate::storage::blobs::BlobStore;
use crate::storage::state_db::StateDb;
use tonic::service::interceptor::InterceptedService;
use wasmgrid_proto::security::{CheckToken, Security};

/// The sockets a master serves on.
pub struct Listeners {
    pub api: TcpListener,
    /// The Raft peer service; `None` serves it on the API listener.
    pub peer: Option<TcpListener>,
}

impl Listeners {
    /// Binds the addresses of `config`.
    pub async fn bind(config: &MasterConfig) -> anyhow::Result<Self> {
        let api = bind(&config.master_addr.host_port()).await?;
        let peer = match &config.peer_addr {
            Some(a) => Some(bind(&a.host_port()).await?),
            None => None,
        };
        Ok(Self { api, peer })
    }

    pub fn api_addr(&self) -> std::io::Result<SocketAddr> {
        self.api.local_addr()
    }
}

async fn bind(addr: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))
}

/// How close to the leader's log a learner must be to become a voter.
const CAUGHT_UP_ENTRIES: u64 = 64;

/// How long a stopping master lets open requests finish.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// A running master, for callers (tests) that need its parts.
pub struct Running {
    pub node: Arc<Node>,
    log_failure: tokio::sync::watch::Receiver<Option<String>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Before an orderly exit: a leader closes the executors' streams (so they move at once)
    /// and gives its followers up to a second to replicate everything, so the next leader
    /// starts from the full log; it then stops, and a follower is elected when the lease runs
    /// out.
    pub async fn step_down(&self) {
        if !self.node.is_leader() {
            return;
        }
        tracing::info!("handing over: closing executor sessions and letting followers catch up");
        self.node.hand_over();
        self.node.replica.sessions.close_all("this master is shutting down");
        let deadline = std::time::Instant::now() + Duration::from_secs(1);
        while std::time::Instant::now() < deadline {
            let m = self.node.metrics();
            let last = m.last_log_index;
            let caught_up = m.replication.as_ref().is_none_or(|r| r.values().all(|l| l.map(|l| l.index) == last));
            if caught_up {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Resolves if Raft stops on its own, with why: a storage error it cannot go on after (a
    /// full disk under the log). The master can then serve nothing, not even reads, and must
    /// exit (so that executors and clients move to the other masters, and a supervisor
    /// restarts it once the cause is fixed) rather than go on answering for a dead node.
    pub async fn raft_failed(&self) -> String {
        let mut log_failure = self.log_failure.clone();
        tokio::select! {
            why = self.raft_stopped() => why,
            // A failed write openraft has not noticed yet (the commit index, written every
            // second, is answered to no one): an idle leader would look healthy until its
            // next write.
            Ok(why) = log_failure.wait_for(Option::is_some) => format!("raft log write failed: {}", why.as_deref().unwrap_or_default()),
        }
    }

    async fn raft_stopped(&self) -> String {
        let mut metrics = self.node.raft.metrics();
        loop {
            if let Err(fatal) = &metrics.borrow_and_update().running_state {
                if !matches!(fatal, openraft::error::Fatal::Stopped) {
                    return fatal.to_string();
                }
            }
            if metrics.changed().await.is_err() {
                // Raft is gone without saying why: only on shutdown, which the caller drives.
                std::future::pending::<()>().await;
            }
        }
    }

    /// Waits for the servers to stop (after the shutdown token fired) and stops Raft. Requests
    /// still open after [`STOP_GRACE`] (a client that stalls mid-upload, or stops reading a
    /// wait) are cut: nothing a client does holds a master's exit.
    pub async fn join(self) {
        let deadline = tokio::time::Instant::now() + STOP_GRACE;
        for mut t in self.tasks {
            if tokio::time::timeout_at(deadline, &mut t).await.is_err() {
                tracing::warn!("requests still open {}s after shutdown; closing them", STOP_GRACE.as_secs());
                t.abort();
            }
        }
        if let Err(e) = self.node.raft.shutdown().await {
            tracing::warn!(error = %e, "raft did not shut down cleanly");
        }
    }
}

/// Opens storage, starts Raft and serves until `shutdown` fires.
pub async fn start(
    mut config: MasterConfig,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<Running> {
    // Started on port 0, a master advertises the port it got.
    let api_port = listeners.api.local_addr()?.port();
    if config.advertise_addr.port() == 0 {
        config.advertise_addr = Addr::new(config.advertise_addr.host(), api_port);
    }
    if config.advertise_peer_addr.port() == 0 {
        let peer_port = match &listeners.peer {
            Some(p) => p.local_addr()?.port(),
            None => api_port,
        };
        config.advertise_peer_addr = Addr::new(config.advertise_peer_addr.host(), peer_port);
    }
    let security = Security::load(&config.security)?;
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| anyhow::anyhow!("cannot create data dir {}: {e}", config.data_dir.display()))?;
    let dir = &config.data_dir;
    if dir.join("raft-log.redb").exists() {
        anyhow::bail!(
            "data dir {} was written by an older wasmgrid (raft-log.redb); start with an empty one",
            dir.display()
        );
    }
    // The state database first: its lock keeps a second master off this data dir before the
    // log is opened (opening the log deletes purged segments and cuts a torn tail, which
    // would be another master's live writes).
    let db = StateDb::open(&dir.join("state.redb"))?;
    let log_store = LogStore::open(&dir.join("raft-log"))?;
    let log_failure = log_store.failure();
    let blobs = BlobStore::open(dir.join("blobs"))?;
    let replica = Arc::new(Replica::open(db, blobs)?);
    let state_store = StateStore::open(replica.clone(), dir.join("snapshots"))?;

    let id = node_id(&config.name);
    let hb = u64::try_from(config.raft_heartbeat.as_millis()).unwrap_or(100);
    let raft_config = openraft::Config {
        cluster_name: "wasmgrid".into(),
        heartbeat_interval: hb,
        election_timeout_min: hb * 4,
        election_timeout_max: hb * 8,
        install_snapshot_timeout: 10_000,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_every),
        // Logs kept behind a snapshot, for followers a little behind (the rest get the snapshot).
        max_in_snapshot_log_to_keep: config.snapshot_every.min(1_000),
        max_payload_entries: 64,
        // A learner counts as caught up (and `member add` makes it a voter) this close to the
        // leader's log. openraft's default, 5,000 entries, let a busy group promote a master
        // thousands of entries behind: a voter that cannot yet acknowledge anything.
        replication_lag_threshold: CAUGHT_UP_ENTRIES,
        ..Default::default()
    }
    .validate()?;
    let network = Network { security: security.clone() };
    let raft = Raft::new(id, Arc::new(raft_config), network, log_store, state_store).await?;

    let me = Member {
        name: config.name.clone(),
        peer_addr: config.advertise_peer_addr.to_string(),
        api_addr: config.advertise_addr.to_string(),
    };
    let founders: Vec<Member> = if config.initial_cluster.is_empty() {
        vec![me.clone()]
    } else {
        config
            .initial_cluster
            .iter()
            .map(|(name, addr)| {
                if *name == me.name {
                    me.clone()
                } else {
                    Member { name: name.clone(), peer_addr: addr.to_string(), api_addr: String::new() }
                }
            })
            .collect()
    };
    if !raft.is_initialized().await? {
        let founding: BTreeMap<_, _> = members(&founders);
        // A master with an empty data dir must join the group that exists (a replaced disk, a
        // new member), not found a second one: ask the others first.
        let existing = existing_group(&security, &founders, &me.name).await;
        match existing {
            Some(peer) => {
                tracing::info!(%peer, "a group exists; waiting for its leader to bring this master up to date")
            }
            None => {
                tracing::info!(members = founding.len(), "initializing a new group");
                if let Err(e) = raft.initialize(founding).await {
                    tracing::warn!(error = %e, "group initialization refused");
                }
            }
        }
    } else if founders.len() == 1 {
        // A lone master need not wait out an election timeout after a restart.
        let _ = raft.trigger().elect().await;
    }

    let node = Arc::new(Node::new(id, config, raft, replica, security.clone(), shutdown.clone()));
    background::spawn_all(&node, &shutdown);

    let api_addr = listeners.api.local_addr()?;
    tracing::info!(name = %node.config.name, "listening on {api_addr}");
    let mut tasks = Vec::new();
    let peer_on_api = listeners.peer.is_none();
    let api_server = server(&security)?;
    tasks.push(tokio::spawn(serve_api(
        node.clone(),
        api_server,
        security.clone(),
        listeners.api,
        peer_on_api,
        shutdown.clone(),
    )));
    if let Some(peer) = listeners.peer {
        tracing::info!("peer service listening on {}", peer.local_addr()?);
        let peer_server = server(&security)?;
        tasks.push(tokio::spawn(serve_peer(node.clone(), peer_server, security.clone(), peer, shutdown.clone())));
    }
    Ok(Running { node, log_failure, tasks })
}

/// The name of a founding member that already belongs to an initialized group, if any.
async fn existing_group(security: &Security, founders: &[Member], me: &str) -> Option<String> {
    let peers = crate::peers::Peers::new(security.clone());
    for m in founders.iter().filter(|m| m.name != me) {
        if let Ok(reply) = peers.probe(&m.peer_addr).await {
            if reply.initialized {
                return Some(m.name.clone());
            }
        }
    }
    None
}

/// A server with this master's transport settings, and TLS when it has a certificate.
fn server(security: &Security) -> anyhow::Result<Server> {
    let builder = Server::builder()
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)));
    Ok(match security.server_tls() {
        Some(tls) => builder.tls_config(tls).map_err(|e| anyhow::anyhow!("TLS setup: {e}"))?,
        None => builder,
    })
}

type Guarded<S> = InterceptedService<S, CheckToken>;

fn peer_service(node: &Arc<Node>, security: &Security) -> Guarded<RaftPeerServer<PeerService>> {
    let svc = RaftPeerServer::new(PeerService::new(node.clone()))
        .max_decoding_message_size(wasmgrid_proto::PEER_MESSAGE_SIZE)
        .max_encoding_message_size(wasmgrid_proto::PEER_MESSAGE_SIZE);
    InterceptedService::new(svc, security.check_token())
}

async fn serve_api(
    node: Arc<Node>,
    mut server: Server,
    security: Security,
    listener: TcpListener,
    with_peer: bool,
    shutdown: CancellationToken,
) {
    // What clients send is bounded by max-message-size; answers may be larger (a listing, a
    // module fetch) and are bounded by the client side. Executors' messages are bounded by
    // their own max-output-size and max-stderr-size, and a result refused here would be sent
    // again on every reconnect, blocking every other result of that executor: the gateway
    // takes what gRPC allows.
    let master = MasterServer::new(MasterService::new(node.clone()))
        .max_decoding_message_size(node.config.max_message_size)
        .max_encoding_message_size(MAX_MESSAGE_SIZE);
    let gateway = ExecutorGatewayServer::new(GatewayService::new(node.clone()))
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE);
    let router = server
        .add_service(InterceptedService::new(master, security.check_token()))
        .add_service(InterceptedService::new(gateway, security.check_token()))
        .add_optional_service(with_peer.then(|| peer_service(&node, &security)));
    let incoming = incoming(listener);
    if let Err(e) = router.serve_with_incoming_shutdown(incoming, shutdown.cancelled()).await {
        tracing::error!(error = %e, "api server failed");
    }
}

async fn serve_peer(
    node: Arc<Node>,
    mut server: Server,
    security: Security,
    listener: TcpListener,
    shutdown: CancellationToken,
) {
    let incoming = incoming(listener);
    let router = server.add_service(peer_service(&node, &security));
    if let Err(e) = router.serve_with_incoming_shutdown(incoming, shutdown.cancelled()).await {
        tracing::error!(error = %e, "peer server failed");
    }
}

fn incoming(listener: TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener).with_nodelay(Some(true))
}
