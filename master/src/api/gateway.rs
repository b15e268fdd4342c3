//! The `ExecutorGateway` service: one long-lived stream per executor, on the leader.
//!
//! A stream opens with `Hello`; the executor is registered through Raft, welcomed, and
//! reconciled: runs the state gives it that it does not hold are sent again (the executor
//! ignores duplicates), runs it holds that the state moved elsewhere are stopped. Then
//! heartbeats renew its lease and results are proposed in batches; acknowledgements come
//! back once they are committed, so a result is never lost to a leader change.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use wasmgrid_common::Digest;
use wasmgrid_proto as pb;
use wasmgrid_proto::executor_gateway_server::ExecutorGateway;
use wasmgrid_proto::executor_message::Kind;

use crate::convert;
use crate::node::Node;
use crate::sessions::{message, OUTBOX_CAPACITY};
use crate::state::{Command, RunRef};

/// How long a new stream may take to say `Hello`.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

pub struct GatewayService {
    node: Arc<Node>,
}

impl GatewayService {
    pub fn new(node: Arc<Node>) -> Self {
        Self { node }
    }
}

type MessageStream = Pin<Box<dyn Stream<Item = Result<pb::MasterMessage, Status>> + Send>>;
type ChunkStream = Pin<Box<dyn Stream<Item = Result<pb::ModuleChunk, Status>> + Send>>;

#[tonic::async_trait]
impl ExecutorGateway for GatewayService {
    type SessionStream = MessageStream;

    async fn session(&self, req: Request<Streaming<pb::ExecutorMessage>>) -> Result<Response<MessageStream>, Status> {
        self.node.ensure_leader()?;
        if self.node.handing_over() {
            return Err(Status::unavailable("this master is shutting down; connect to another"));
        }
        let mut inbound = req.into_inner();
        let first = tokio::time::timeout(HELLO_TIMEOUT, inbound.message())
            .await
            .map_err(|_| Status::deadline_exceeded("no hello from the executor"))??;
        let Some(pb::ExecutorMessage { kind: Some(Kind::Hello(hello)) }) = first else {
            return Err(Status::invalid_argument("an executor stream must start with hello"));
        };
        if hello.name.is_empty() || hello.slots == 0 {
            return Err(Status::invalid_argument("hello needs a name and at least one slot"));
        }
        if self.node.replica.sessions.taken(&hello.name, hello.incarnation, lease(&self.node, &hello)) {
            return Err(Status::already_exists(format!(
                "executor name {:?} is taken by another executor connected to the cluster; give this one its own --name",
                hello.name
            )));
        }
        let (tx, rx) = mpsc::channel(OUTBOX_CAPACITY);
        tokio::spawn(serve(self.node.clone(), hello, inbound, tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    type FetchModuleStream = ChunkStream;

    async fn fetch_module(&self, req: Request<pb::FetchModuleRequest>) -> Result<Response<ChunkStream>, Status> {
        let digest: Digest = req.into_inner().digest.parse().map_err(|e| Status::invalid_argument(format!("{e}")))?;
        let blobs = self.node.replica.blobs.clone();
        let bytes = tokio::task::spawn_blocking(move || blobs.get(&digest))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|_| Status::not_found(format!("module {digest} is not stored on this master")))?;
        let chunks: Vec<Result<pb::ModuleChunk, Status>> =
            bytes.chunks(wasmgrid_proto::CHUNK_SIZE).map(|c| Ok(pb::ModuleChunk { data: c.to_vec() })).collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }
}

/// The executor's lease: silent this long, it is lost.
fn lease(node: &Node, hello: &pb::Hello) -> Duration {
    match hello.keepalive_ttl_ms {
        0 => node.config.keepalive_ttl,
        ms => Duration::from_millis(ms.max(100)),
    }
}

async fn serve(
    node: Arc<Node>,
    hello: pb::Hello,
    mut inbound: Streaming<pb::ExecutorMessage>,
    tx: mpsc::Sender<Result<pb::MasterMessage, Status>>,
) {
    let name = hello.name.clone();
    let lease = lease(&node, &hello);
    // The welcome goes first: once the session is open, anything applied (its own
    // registration placing waiting tasks on it, say) is sent to it, and an executor takes a
    // first message that is not the welcome for a broken handshake.
    let interval = crate::sessions::keepalive_interval(lease);
    let welcome = pb::Welcome {
        keepalive_interval_ms: u64::try_from(interval.as_millis()).unwrap_or(1000),
        leader: node.config.name.clone(),
        masters: node.api_addrs(),
    };
    if tx.send(Ok(message(pb::master_message::Kind::Welcome(welcome)))).await.is_err() {
        return;
    }
    // Which runs wait for a slot is known before the session counts as heard from.
    node.replica.sessions.note_held(&name, &hello.running, crate::clock::now_ms(), true);
    let session = node.replica.sessions.open(&name, hello.incarnation, tx.clone(), hello.trials);
    let register = Command::Register {
        name: name.clone(),
        addr: hello.advertise_addr.clone(),
        incarnation: hello.incarnation,
        slots: hello.slots,
        memory: hello.memory_bytes,
        lease_ms: u64::try_from(lease.as_millis()).unwrap_or(u64::MAX),
    };
    if let Err(e) = node.propose(register).await {
        let _ = tx.send(Err(e.into())).await;
        node.replica.sessions.close(&name, session);
        return;
    }
    tracing::info!(executor = %name, slots = hello.slots, addr = %hello.advertise_addr, "executor registered");
    // Told to drain before it reconnected: it may not have heard (the drain is idempotent).
    if node.replica.read().executor(&name).is_some_and(|e| e.state == crate::state::ExecutorState::Draining) {
        let _ = tx.send(Ok(message(pb::master_message::Kind::Drain(pb::Drain {})))).await;
    }
    let held: Vec<RunRef> = hello.running.iter().map(|r| RunRef { task: r.task_id, attempt: r.attempt }).collect();
    match node.replica.reconcile(&name, &held) {
        Ok((0, 0)) => {}
        Ok((resent, stopped)) => {
            tracing::info!(executor = %name, resent, stopped, "reconciled executor")
        }
        Err(e) => tracing::warn!(executor = %name, error = %e, "could not reconcile executor"),
    }
    let mut check = tokio::time::interval(Duration::from_millis(500));
    loop {
        let msg = tokio::select! {
            msg = inbound.message() => msg,
            _ = node.shutdown.cancelled() => {
                let _ = tx.send(Err(Status::unavailable("this master is shutting down"))).await;
                break;
            }
            _ = check.tick() => {
                if !node.replica.sessions.is_current(&name, session) {
                    break;
                }
                if node.cut_off() {
                    // openraft 0.9 keeps a leader cut off from the other masters leading; its
                    // executors' results could never commit here. Send them to look for the
                    // leader the majority elects.
                    tracing::warn!(executor = %name, "lost contact with a majority of masters; closing executor session");
                    let _ = tx.send(Err(Status::unavailable(crate::node::CUT_OFF_REASON))).await;
                    break;
                }
                continue;
            }
        };
        match msg {
            Ok(Some(pb::ExecutorMessage { kind: Some(kind) })) => {
                node.replica.sessions.touch(&name, session);
                match kind {
                    Kind::Results(results) => {
                        let (given_back, ran): (Vec<_>, Vec<_>) =
                            results.results.into_iter().partition(|r| r.not_started);
                        if !given_back.is_empty() {
                            let runs =
                                given_back.iter().map(|r| RunRef { task: r.task_id, attempt: r.attempt }).collect();
                            node.proposer.propose_detached(Command::GiveBack { executor: name.clone(), runs });
                        }
                        if !ran.is_empty() {
                            let reports = ran.into_iter().map(|r| convert::report(&name, r)).collect();
                            node.proposer.propose_detached(Command::Finish(reports));
                        }
                    }
                    Kind::TrialResults(results) => {
                        for r in results.results {
                            node.trials.complete(&name, r);
                        }
                    }
                    Kind::Draining(_) => {
                        tracing::info!(executor = %name, "executor is draining");
                        node.proposer.propose_detached(Command::Drain(name.clone()));
                    }
                    Kind::Leaving(_) => {
                        let leave = Command::Deregister { name: name.clone(), incarnation: hello.incarnation };
                        if node.propose(leave).await.is_ok() {
                            tracing::info!(executor = %name, "executor drained and left");
                            let _ = tx.send(Ok(message(pb::master_message::Kind::Farewell(pb::Farewell {})))).await;
                        }
                    }
                    Kind::Heartbeat(hb) => {
                        node.replica.sessions.note_held(&name, &hb.running, crate::clock::now_ms(), false);
                        // An empty acknowledgement answers it: the executor times its lease
                        // from the last word of the leader, and a leader with nothing to
                        // assign or acknowledge (long runs, no new work) would otherwise say
                        // nothing at all. Not without a majority: the majority's leader may
                        // be moving these runs, and the executor's lease should run out as
                        // the masters' does. A full outbox is busy talking already.
                        if node.has_quorum() {
                            let group = pb::ResultsAck { tasks: Vec::new(), masters: node.api_addrs() };
                            let ack = pb::master_message::Kind::Ack(group);
                            let _ = tx.try_send(Ok(message(ack)));
                        }
                    }
                    Kind::Hello(_) => {}
                }
            }
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(status) => {
                tracing::debug!(executor = %name, %status, "executor stream ended");
                break;
            }
        }
        if !node.replica.sessions.is_current(&name, session) {
            break;
        }
    }
    let current = node.replica.sessions.close(&name, session);
    if current {
        // Its trials will not report (a newer session's trials are not ours to drop).
        node.trials.executor_gone(&name);
    }
    if current && node.is_leader() {
        // No new tasks go there until it is back; its running ones wait out its lease.
        node.proposer.propose_detached(Command::Disconnected { name: name.clone(), incarnation: hello.incarnation });
    }
    tracing::info!(executor = %name, "executor disconnected");
}
