//! The executor's side of the conversation with the masters.
//!
//! One stream at a time, to the leader: `Hello` (with every run this executor holds, so a new
//! leader can reconcile), then assignments in, heartbeats and batched results out. Results
//! stay in the outbox until the leader acknowledges them, and are sent again after any
//! reconnect; assignments for a run already held are ignored, so nothing runs twice because
//! a message was repeated.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use wasmgrid_common::Addr;
use wasmgrid_proto as pb;
use wasmgrid_proto::executor_message::Kind as Out;
use wasmgrid_proto::master_message::Kind as In;

use crate::masters::Masters;
use crate::modules::{ModuleCache, ModuleError};
use crate::sandbox::{Job, Kind, Outcome, Sandbox};

/// A run, named by its fencing token.
type RunKey = (u64, u32);

/// What the agent shares with the status API.
#[derive(Default)]
pub struct Status {
    pub connected: AtomicBool,
    pub master: Mutex<String>,
}

pub struct Agent {
    pub name: String,
    advertise_addr: String,
    slots: u32,
    memory: u64,
    keepalive_ttl: Duration,
    incarnation: u64,
    pub masters: Masters,
    pub modules: ModuleCache,
    sandbox: Arc<Sandbox>,
    guests: tokio::runtime::Handle,
    permits: Arc<Semaphore>,
    runs: Mutex<Runs>,
    finished: mpsc::UnboundedSender<RunKey>,
    pub status: Status,
}

#[derive(Default)]
struct Runs {
    running: HashMap<RunKey, CancellationToken>,
    outbox: BTreeMap<RunKey, pb::TaskResult>,
}

pub struct AgentParts {
    pub name: String,
    pub advertise_addr: String,
    pub slots: u32,
    pub memory: u64,
    pub keepalive_ttl: Duration,
    pub masters: Masters,
    pub modules: ModuleCache,
    pub sandbox: Arc<Sandbox>,
    pub guests: tokio::runtime::Handle,
}

impl Agent {
    pub fn new(p: AgentParts) -> (Arc<Self>, mpsc::UnboundedReceiver<RunKey>) {
        let (finished, rx) = mpsc::unbounded_channel();
        let agent = Self {
            name: p.name,
            advertise_addr: p.advertise_addr,
            slots: p.slots,
            memory: p.memory,
            keepalive_ttl: p.keepalive_ttl,
            incarnation: rand::random(),
            masters: p.masters,
            modules: p.modules,
            sandbox: p.sandbox,
            guests: p.guests,
            permits: Arc::new(Semaphore::new(p.slots as usize)),
            runs: Mutex::new(Runs::default()),
            finished,
            status: Status::default(),
        };
        (Arc::new(agent), rx)
    }

    fn runs(&self) -> std::sync::MutexGuard<'_, Runs> {
        self.runs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Task ids running now (for the status API).
    pub fn running(&self) -> Vec<u64> {
        self.runs().running.keys().map(|k| k.0).collect()
    }

    pub fn slots(&self) -> u32 {
        self.slots
    }

    /// Every run this executor holds: running, or finished and not yet acknowledged.
    fn held(&self) -> Vec<pb::RunningTask> {
        let runs = self.runs();
        runs.running
            .keys()
            .chain(runs.outbox.keys())
            .map(|(task_id, attempt)| pb::RunningTask { task_id: *task_id, attempt: *attempt })
            .collect()
    }

    /// Keeps a stream to the leader open until `shutdown`, reconnecting as needed.
    pub async fn run(self: Arc<Self>, mut finished: mpsc::UnboundedReceiver<RunKey>, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(50);
        while !shutdown.is_cancelled() {
            let addr = self.masters.next();
            let started = Instant::now();
            match self.session(&addr, &mut finished, &shutdown).await {
                Ok(()) => return,
                Err(e) => {
                    self.status.connected.store(false, Ordering::Relaxed);
                    tracing::debug!(master = %addr, error = %e, "session ended");
                }
            }
            if started.elapsed() > Duration::from_secs(5) {
                backoff = Duration::from_millis(50);
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }

    /// One stream; returns `Ok` only on shutdown.
    async fn session(
        self: &Arc<Self>,
        addr: &Addr,
        finished: &mut mpsc::UnboundedReceiver<RunKey>,
        shutdown: &CancellationToken,
    ) -> Result<(), String> {
        let mut client = self.masters.gateway(addr)?;
        let (out, out_rx) = mpsc::channel::<pb::ExecutorMessage>(1024);
        let hello = pb::Hello {
            name: self.name.clone(),
            advertise_addr: self.advertise_addr.clone(),
            slots: self.slots,
            memory_bytes: self.memory,
            incarnation: self.incarnation,
            running: self.held(),
            keepalive_ttl_ms: u64::try_from(self.keepalive_ttl.as_millis()).unwrap_or(u64::MAX),
        };
        send(&out, Out::Hello(hello)).await?;
        let mut inbound = match client.session(ReceiverStream::new(out_rx)).await {
            Ok(r) => r.into_inner(),
            Err(status) => {
                self.masters.learn_leader(&status);
                return Err(status.message().to_string());
            }
        };
        let welcome = match inbound.message().await {
            Ok(Some(pb::MasterMessage { kind: Some(In::Welcome(w)) })) => w,
            Ok(_) => return Err("the master did not welcome us".into()),
            Err(status) => {
                self.masters.learn_leader(&status);
                return Err(status.message().to_string());
            }
        };
        tracing::info!(master = %addr, leader = %welcome.leader, "connected to the leader");
        self.status.connected.store(true, Ordering::Relaxed);
        *self.status.master.lock().unwrap_or_else(|p| p.into_inner()) = addr.to_string();
        // Whatever finished while we were away goes now, once.
        while finished.try_recv().is_ok() {}
        let pending: Vec<pb::TaskResult> = self.runs().outbox.values().cloned().collect();
        if !pending.is_empty() {
            send(&out, Out::Results(pb::TaskResults { results: pending })).await?;
        }
        let mut heartbeat = tokio::time::interval(Duration::from_millis(welcome.keepalive_interval_ms.max(10)));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                msg = inbound.message() => match msg {
                    Ok(Some(pb::MasterMessage { kind: Some(kind) })) => self.handle(kind),
                    Ok(Some(_)) => {}
                    Ok(None) => return Err("the master closed the stream".into()),
                    Err(status) => {
                        self.masters.learn_leader(&status);
                        return Err(status.message().to_string());
                    }
                },
                Some(first) = finished.recv() => {
                    let mut keys = vec![first];
                    while let Ok(k) = finished.try_recv() {
                        keys.push(k);
                    }
                    let results: Vec<pb::TaskResult> = {
                        let runs = self.runs();
                        keys.iter().filter_map(|k| runs.outbox.get(k).cloned()).collect()
                    };
                    send(&out, Out::Results(pb::TaskResults { results })).await?;
                }
                _ = heartbeat.tick() => {
                    send(&out, Out::Heartbeat(pb::Heartbeat { running: self.held() })).await?;
                }
            }
        }
    }

    fn handle(self: &Arc<Self>, kind: In) {
        match kind {
            In::Assign(a) => {
                for task in a.tasks {
                    self.start(task);
                }
            }
            In::Cancel(c) => {
                let runs = self.runs();
                for r in c.tasks {
                    if let Some(token) = runs.running.get(&(r.task_id, r.attempt)) {
                        tracing::info!(task_id = r.task_id, attempt = r.attempt, "stopping run");
                        token.cancel();
                    }
                }
            }
            In::Ack(a) => {
                let mut runs = self.runs();
                for r in a.tasks {
                    runs.outbox.remove(&(r.task_id, r.attempt));
                }
            }
            In::Welcome(_) => {}
        }
    }

    /// Starts a run unless it is already held.
    fn start(self: &Arc<Self>, a: pb::Assignment) {
        let key = (a.task_id, a.attempt);
        let cancel = CancellationToken::new();
        {
            let mut runs = self.runs();
            if runs.running.contains_key(&key) || runs.outbox.contains_key(&key) {
                tracing::debug!(task_id = key.0, attempt = key.1, "ignoring an assignment already held");
                return;
            }
            runs.running.insert(key, cancel.clone());
        }
        tracing::debug!(task_id = key.0, attempt = key.1, input = a.input.len(), "starting run");
        let agent = self.clone();
        tokio::spawn(async move {
            let outcome = agent.execute(a, cancel).await;
            agent.finish(key, outcome);
        });
    }

    async fn execute(self: &Arc<Self>, a: pb::Assignment, cancel: CancellationToken) -> Outcome {
        let Ok(_permit) = self.permits.clone().acquire_owned().await else {
            return failure(pb::FailureKind::ExecutorLost, "the executor is shutting down".into());
        };
        let kind = if a.kind() == pb::ModuleKind::Command { Kind::Command } else { Kind::Component };
        let program = match self.modules.get(&a.module, kind, &self.masters).await {
            Ok(p) => p,
            Err(e @ ModuleError::Fetch(..)) => return failure(pb::FailureKind::ExecutorLost, e.to_string()),
            Err(e @ ModuleError::Invalid(..)) => return failure(pb::FailureKind::InvalidModule, e.to_string()),
        };
        let limits = a.limits.unwrap_or_default();
        let job = Job {
            input: a.input,
            program_name: format!("task-{}", a.task_id),
            args: a.args,
            env: a.env.into_iter().map(|e| (e.key, e.value)).collect(),
            fuel: limits.fuel,
            memory: limits.memory_bytes,
            timeout: Duration::from_millis(limits.timeout_ms.max(1)),
            cancel,
        };
        let sandbox = self.sandbox.clone();
        let run = self.guests.spawn(async move { sandbox.run(program.as_ref(), job).await });
        run.await.unwrap_or_else(|e| failure(pb::FailureKind::Trap, format!("the run crashed: {e}")))
    }

    fn finish(&self, key: RunKey, o: Outcome) {
        let result = pb::TaskResult {
            task_id: key.0,
            attempt: key.1,
            failure: o.failure.map(|(kind, message)| pb::Failure { kind: kind.into(), message }),
            output: o.output,
            fuel_consumed: o.fuel_consumed,
            duration_ms: u64::try_from(o.duration.as_millis()).unwrap_or(u64::MAX),
            exit_code: o.exit_code,
            stderr: o.stderr,
            stderr_truncated: o.stderr_truncated,
        };
        {
            let mut runs = self.runs();
            runs.running.remove(&key);
            runs.outbox.insert(key, result);
        }
        let _ = self.finished.send(key);
    }
}

fn failure(kind: pb::FailureKind, message: String) -> Outcome {
    Outcome { failure: Some((kind, message)), ..Outcome::default() }
}

async fn send(out: &mpsc::Sender<pb::ExecutorMessage>, kind: Out) -> Result<(), String> {
    out.send(pb::ExecutorMessage { kind: Some(kind) }).await.map_err(|_| "the stream to the master closed".to_string())
}
