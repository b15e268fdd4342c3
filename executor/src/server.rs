//! Starting an executor on a bound worker listener: the sandbox and its guest runtime, the
//! module cache, the agent that talks to the masters, and the status API.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;
use wasmgrid_common::Addr;
use wasmgrid_proto::security::Security;
use wasmgrid_proto::worker_server::WorkerServer;

use crate::agent::{Agent, AgentParts};
use crate::config::ExecutorConfig;
use crate::masters::Masters;
use crate::modules::ModuleCache;
use crate::sandbox::{Sandbox, Settings};
use crate::worker_api::WorkerService;

/// A running executor.
pub struct Running {
    pub agent: Arc<Agent>,
    pub drain_grace: std::time::Duration,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    guests: Option<tokio::runtime::Runtime>,
}

impl Running {
    /// Waits for the loops to end after the shutdown token fired.
    pub async fn join(mut self) {
        for t in std::mem::take(&mut self.tasks) {
            let _ = t.await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(rt) = self.guests.take() {
            rt.shutdown_background();
        }
    }
}

/// Binds `--worker-addr`.
pub async fn bind(config: &ExecutorConfig) -> anyhow::Result<TcpListener> {
    let addr = config.worker_addr.host_port();
    TcpListener::bind(&addr).await.map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))
}

pub async fn start(
    config: ExecutorConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<Running> {
    let bound = listener.local_addr()?;
    let mut advertise = config.advertise_addr.clone();
    if advertise.port() == 0 {
        advertise = Addr::new(advertise.host(), bound.port());
    }
    let name = config.name.clone().unwrap_or_else(|| advertise.host_port());
    let security = Security::load(&config.security)?;
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| anyhow::anyhow!("cannot create data dir {}: {e}", config.data_dir.display()))?;
    let settings = Settings {
        default_fuel: config.default_fuel,
        max_output: usize::try_from(config.max_output_size).unwrap_or(usize::MAX),
        max_stderr: usize::try_from(config.max_stderr_size).unwrap_or(usize::MAX),
    };
    let sandbox = Arc::new(Sandbox::new(config.slots, settings)?);
    // Guests run on their own threads, so a busy guest never delays the stream to the master.
    let guests = tokio::runtime::Builder::new_multi_thread()
        // One thread per core is enough: runs interleave at their yield points.
        .worker_threads(config.slots.min(cpus()).max(1) as usize)
        .thread_name("guest")
        .enable_all()
        .build()?;
    let modules = ModuleCache::open(sandbox.clone(), &config.data_dir)?;
    let (agent, finished) = Agent::new(AgentParts {
        name: name.clone(),
        advertise_addr: advertise.to_string(),
        slots: config.slots,
        memory: config.memory,
        keepalive_ttl: config.keepalive_ttl,
        masters: Masters::new(config.join.clone(), security.clone()),
        modules,
        sandbox,
        guests: guests.handle().clone(),
    });
    tracing::info!(name = %name, slots = config.slots, "listening on {bound}");
    let mut tasks = vec![tokio::spawn(agent.clone().run(finished, shutdown.clone()))];
    tasks.push(tokio::spawn(agent.clone().watch_lease(shutdown.clone())));
    // A drain asked by the leader (`master-client executor drain`) ends with the executor leaving.
    let (drainer, grace, token) = (agent.clone(), config.drain_grace, shutdown.clone());
    tasks.push(tokio::spawn(async move {
        tokio::select! {
            _ = token.cancelled() => {}
            _ = drainer.drain_requested.cancelled() => drainer.drain(grace).await,
        }
    }));
    let service = InterceptedService::new(WorkerServer::new(WorkerService::new(agent.clone())), security.check_token());
    let mut server = Server::builder().http2_keepalive_interval(Some(Duration::from_secs(10)));
    if let Some(tls) = security.server_tls() {
        server = server.tls_config(tls).map_err(|e| anyhow::anyhow!("TLS setup: {e}"))?;
    }
    let token = shutdown.clone();
    tasks.push(tokio::spawn(async move {
        let router = server.add_service(service);
        if let Err(e) = router.serve_with_incoming_shutdown(incoming(listener), token.cancelled()).await {
            tracing::error!(error = %e, "worker api failed");
        }
    }));
    Ok(Running { agent, drain_grace: config.drain_grace, tasks, guests: Some(guests) })
}

/// Accepted connections with TCP_NODELAY: without it every small message of a stream waits
/// out the peer's delayed ACK (about 40ms a round trip). `Server::tcp_nodelay` only applies
/// to listeners tonic binds itself.
fn incoming(listener: TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener).with_nodelay(Some(true))
}

fn cpus() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(1))
}
