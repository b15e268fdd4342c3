//! The executor's side of the conversation with the masters.
//!
//! One stream at a time, to the leader: `Hello` (with every run this executor holds, so a new
//! leader can reconcile), then assignments in, heartbeats and batched results out. Results
//! stay in the outbox until the leader acknowledges them, and are sent again after any
//! reconnect or when unacknowledged for `RESEND_AFTER` (twice as long after each send, up to a
//! minute); assignments for a run already held are ignored, so nothing runs twice because a
//! message was repeated.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt;
use tokio::sync::{mpsc, Notify, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use wasmgrid_common::Addr;
use wasmgrid_proto as pb;
use wasmgrid_proto::executor_message::Kind as Out;
use wasmgrid_proto::master_message::Kind as In;
use wasmgrid_proto::split;

use crate::masters::Masters;
use crate::modules::{ModuleCache, ModuleError};
use crate::runs::{self, RunKey, Runs};
use crate::sandbox::{Job, Kind, Outcome, Program, Sandbox};

/// A result the leader has not acknowledged this long after it was sent is sent again.
const RESEND_AFTER: Duration = Duration::from_secs(5);
/// How often an executor whose name another one holds asks again.
const NAME_TAKEN_RETRY: Duration = Duration::from_secs(2);
/// How long a master may take to accept a stream and welcome this executor.
const OPEN_TIMEOUT: Duration = Duration::from_secs(3);

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
    pub(crate) keepalive_ttl: Duration,
    incarnation: u64,
    pub masters: Masters,
    pub modules: ModuleCache,
    sandbox: Arc<Sandbox>,
    guests: tokio::runtime::Handle,
    permits: Arc<Semaphore>,
    busy: AtomicUsize,
    pub runs: Runs,
    finished: mpsc::UnboundedSender<RunKey>,
    pub status: Status,
    /// The stream to the leader, while one is open.
    pub(crate) outbound: Mutex<Option<mpsc::Sender<pb::ExecutorMessage>>>,
    /// When a message last came from the leader.
    pub(crate) last_contact: Mutex<Instant>,
    /// Sends a heartbeat now rather than at the next tick (a run began to wait).
    heartbeat_now: Notify,
    pub(crate) draining: AtomicBool,
    /// Fires when the executor has drained and the leader has forgotten it.
    pub left: CancellationToken,
    /// Fires when the leader asks this executor to drain.
    pub(crate) drain_requested: CancellationToken,
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
            busy: AtomicUsize::new(0),
            runs: Runs::default(),
            finished,
            status: Status::default(),
            outbound: Mutex::new(None),
            last_contact: Mutex::new(Instant::now()),
            heartbeat_now: Notify::new(),
            draining: AtomicBool::new(false),
            left: CancellationToken::new(),
            drain_requested: CancellationToken::new(),
        };
        (Arc::new(agent), rx)
    }

    pub fn slots(&self) -> u32 {
        self.slots
    }

    /// Runs executing in a slot right now, trials included.
    pub fn busy(&self) -> usize {
        self.busy.load(Ordering::SeqCst)
    }

    /// Keeps a stream to the leader open until `shutdown`, reconnecting as needed.
    pub async fn run(self: Arc<Self>, mut finished: mpsc::UnboundedReceiver<RunKey>, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(50);
        // The last reason logged as a warning: repeats of it (every retry) go to debug.
        let mut told = String::new();
        while !shutdown.is_cancelled() {
            let addr = self.masters.next();
            let started = Instant::now();
            let result = self.session(&addr, &mut finished, &shutdown).await;
            *self.outbound.lock().unwrap_or_else(|p| p.into_inner()) = None;
            self.status.connected.store(false, Ordering::Relaxed);
            match result {
                Ok(()) => return,
                // A wrong token, a TLS mismatch, no master up yet: say it once, plainly.
                Err(e) if e != told => {
                    tracing::warn!(master = %addr, error = %e, "no session with the leader; retrying");
                    told = e;
                }
                Err(e) => tracing::debug!(master = %addr, error = %e, "session ended"),
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
            running: self.runs.held(),
            keepalive_ttl_ms: u64::try_from(self.keepalive_ttl.as_millis()).unwrap_or(u64::MAX),
            trials: true,
        };
        send(&out, Out::Hello(hello)).await?;
        // A master that froze (a stopped process, a paused VM) accepts connections and never
        // answers: give up on it in bounded time and try the next.
        let opened =
            tokio::time::timeout(OPEN_TIMEOUT, client.session(ReceiverStream::new(out_rx))).await.map_err(|_| {
                self.masters.froze(addr);
                format!("no answer within {}s", OPEN_TIMEOUT.as_secs())
            })?;
        let mut inbound = match opened {
            Ok(r) => r.into_inner(),
            Err(status) if status.code() == tonic::Code::AlreadyExists => {
                // Another executor has our name: say so plainly, and ask again now and then
                // (it may be this executor's own previous life, not yet given up).
                tracing::error!(master = %addr, "{}", status.message());
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = tokio::time::sleep(NAME_TAKEN_RETRY) => {}
                }
                return Err(status.message().to_string());
            }
            Err(status) => {
                self.masters.learn_leader(&status);
                return Err(status.message().to_string());
            }
        };
        let first = tokio::time::timeout(OPEN_TIMEOUT, inbound.message()).await.map_err(|_| {
            self.masters.froze(addr);
            format!("no welcome within {}s", OPEN_TIMEOUT.as_secs())
        })?;
        let welcome = match first {
            Ok(Some(pb::MasterMessage { kind: Some(In::Welcome(w)) })) => w,
            Ok(_) => return Err("the master did not welcome us".into()),
            Err(status) => {
                self.masters.learn_leader(&status);
                return Err(status.message().to_string());
            }
        };
        tracing::info!(master = %addr, leader = %welcome.leader, "connected to the leader");
        self.masters.answered(addr);
        self.masters.learn_group(&welcome.masters);
        self.touch();
        self.status.connected.store(true, Ordering::Relaxed);
        *self.status.master.lock().unwrap_or_else(|p| p.into_inner()) = addr.to_string();
        *self.outbound.lock().unwrap_or_else(|p| p.into_inner()) = Some(out.clone());
        if self.draining.load(Ordering::Relaxed) {
            send(&out, Out::Draining(pb::Draining {})).await?;
        }
        // Whatever finished while we were away goes now, once.
        while finished.try_recv().is_ok() {}
        send_results(&out, self.runs.results(None)).await?;
        let interval = Duration::from_millis(welcome.keepalive_interval_ms.max(10));
        let mut heartbeat = tokio::time::interval(interval);
        // A leader with a majority answers every heartbeat. Silent for two, and still at the
        // next look (messages already here are read first), it froze or lost its majority:
        // look for the leader elsewhere, well before this executor's lease runs out (it gives
        // its runs up then) and the one a new leader gives it from its election.
        let silence = (interval * 2).max(Duration::from_millis(500));
        let mut watch =
            tokio::time::interval((interval / 4).clamp(Duration::from_millis(20), Duration::from_millis(250)));
        let mut silent_looks = 0;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                msg = inbound.message() => match msg {
                    Ok(Some(pb::MasterMessage { kind: Some(kind) })) => {
                        self.touch();
                        self.handle(kind);
                    }
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
                    send_results(&out, self.runs.results(Some(&keys))).await?;
                }
                _ = self.heartbeat_now.notified() => send(&out, self.heartbeat()).await?,
                _ = watch.tick() => {
                    let quiet = self.last_contact.lock().unwrap_or_else(|p| p.into_inner()).elapsed();
                    silent_looks = if quiet > silence { silent_looks + 1 } else { 0 };
                    if silent_looks == 2 {
                        self.masters.froze(addr);
                        return Err(format!("the leader has said nothing for {}ms; looking for it elsewhere", quiet.as_millis()));
                    }
                }
                _ = heartbeat.tick() => {
                    send(&out, self.heartbeat()).await?;
                    let overdue = self.runs.overdue(RESEND_AFTER);
                    if !overdue.is_empty() {
                        tracing::debug!(results = overdue.len(), "sending unacknowledged results again");
                        send_results(&out, overdue).await?;
                    }
                }
            }
        }
    }

    /// A heartbeat: the runs held, and which of them wait for a slot.
    fn heartbeat(&self) -> Out {
        Out::Heartbeat(pb::Heartbeat { running: self.runs.held() })
    }

    fn touch(&self) {
        *self.last_contact.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    fn handle(self: &Arc<Self>, kind: In) {
        match kind {
            In::Assign(a) => {
                for task in a.tasks {
                    self.start(task);
                }
            }
            In::Trial(a) => {
                for task in a.tasks {
                    self.trial(task);
                }
            }
            In::Cancel(c) => {
                for r in c.tasks {
                    if self.runs.cancel((r.task_id, r.attempt)) {
                        tracing::info!(task_id = r.task_id, attempt = r.attempt, "stopping run");
                    }
                }
            }
            In::Ack(a) => {
                self.runs.ack(a.tasks.iter().map(|r| (r.task_id, r.attempt)));
                if !a.masters.is_empty() {
                    self.masters.learn_group(&a.masters);
                }
            }
            In::Drain(_) => {
                tracing::info!("the leader asked this executor to drain");
                self.drain_requested.cancel();
            }
            In::Farewell(_) => self.left.cancel(),
            In::Welcome(_) => {}
        }
    }

    /// Starts a run unless it is already held.
    fn start(self: &Arc<Self>, a: pb::Assignment) {
        let key = (a.task_id, a.attempt);
        let Some(cancel) = self.runs.hold(key) else {
            tracing::debug!(task_id = key.0, attempt = key.1, "ignoring an assignment already held");
            return;
        };
        if self.draining.load(Ordering::Relaxed) {
            // Sent before the leader learnt of the drain: give it back to run elsewhere.
            self.runs.abandon(key, "the executor is draining");
        }
        tracing::debug!(task_id = key.0, attempt = key.1, input = a.input.len(), "starting run");
        let agent = self.clone();
        // On the guests' threads from the start: no hop between runtimes per run.
        self.guests.spawn(async move {
            let outcome = agent.execute(a, cancel).await;
            agent.runs.finish(key, outcome);
            let _ = agent.finished.send(key);
        });
    }

    /// Runs a trial (a task the leader has not written down yet) if a slot is free once its
    /// module is ready, else answers `executor_lost`. The module is fetched and compiled
    /// before a slot is taken, so a trial never holds a slot an assigned task waits for
    /// longer than its run. Its result goes back once and is not kept: if it is lost, the
    /// leader runs the task the ordinary way.
    fn trial(self: &Arc<Self>, a: pb::Assignment) {
        let agent = self.clone();
        self.guests.spawn(async move {
            let key = (a.task_id, a.attempt);
            let kind = program_kind(&a);
            // A module that cannot load fails the trial as it would fail an assigned run.
            let outcome = match agent.modules.get(&a.module, kind, &agent.masters).await {
                Err(e) => module_failure(e),
                Ok(program) => {
                    let permit = match agent.draining.load(Ordering::Relaxed) {
                        true => None,
                        false => agent.permits.clone().try_acquire_owned().ok(),
                    };
                    match permit {
                        Some(_permit) => agent.execute_counted(a, program, CancellationToken::new()).await,
                        None => failure(pb::FailureKind::ExecutorLost, "no free slot for a trial run".into()),
                    }
                }
            };
            let results = pb::TaskResults { results: vec![runs::task_result(key, outcome)] };
            agent.send_now(Out::TrialResults(results)).await;
        });
    }

    /// Runs an assigned task once its module is ready and a slot is free. Runs the leader
    /// queued here beyond the slots (a module known to run short) wait for one in order, and
    /// say so in heartbeats.
    ///
    /// The module is fetched and compiled first, while the run still counts as waiting: a
    /// slow compile (seconds, for a large module) holds no slot that runs of ready modules
    /// could take, does not count against the run's timeout here or in the leader's
    /// backstop (heartbeats flag the run as waiting), whichever way the task came (a trial
    /// loads its module first too), and a cancel or a drain ends the wait.
    async fn execute(self: &Arc<Self>, a: pb::Assignment, cancel: CancellationToken) -> Outcome {
        let kind = program_kind(&a);
        let loaded = match self.modules.ready(&a.module, kind) {
            Some(loaded) => loaded,
            None => {
                // The leader hears at once that this run waits (for its module), or it
                // would count the wait against the run's timeout until the next heartbeat.
                self.heartbeat_now.notify_one();
                // The load goes on by itself if this run is cancelled: the next run of the
                // module, or one already waiting for it, takes the program it makes instead
                // of compiling it again.
                let agent = self.clone();
                let module = a.module.clone();
                let load = tokio::spawn(async move { agent.modules.get(&module, kind, &agent.masters).await });
                tokio::select! {
                    loaded = load => loaded.unwrap_or_else(|e| {
                        Err(ModuleError::Fetch(a.module.clone(), format!("loading it failed: {e}")))
                    }),
                    _ = cancel.cancelled() => {
                        return failure(pb::FailureKind::Cancelled, "cancelled before it started".into())
                    }
                }
            }
        };
        let program = match loaded {
            Ok(program) => program,
            Err(e) => return module_failure(e),
        };
        let permit = tokio::select! {
            permit = self.permits.clone().acquire_owned() => permit.ok(),
            _ = cancel.cancelled() => None,
        };
        if cancel.is_cancelled() {
            return failure(pb::FailureKind::Cancelled, "cancelled before it started".into());
        }
        let Some(_permit) = permit else {
            return failure(pb::FailureKind::ExecutorLost, "the executor is shutting down".into());
        };
        if !self.runs.start((a.task_id, a.attempt)) {
            return failure(pb::FailureKind::Cancelled, "cancelled before it started".into());
        }
        self.execute_counted(a, program, cancel).await
    }

    /// Runs `a` with its loaded `program` on a slot already taken, counting it as busy
    /// meanwhile.
    async fn execute_counted(
        self: &Arc<Self>,
        a: pb::Assignment,
        program: Arc<dyn Program>,
        cancel: CancellationToken,
    ) -> Outcome {
        let busy = self.busy.fetch_add(1, Ordering::SeqCst) + 1;
        self.runs.note_busy(busy);
        let outcome = self.execute_with_slot(a, program, cancel).await;
        self.busy.fetch_sub(1, Ordering::SeqCst);
        outcome
    }

    async fn execute_with_slot(
        self: &Arc<Self>,
        a: pb::Assignment,
        program: Arc<dyn Program>,
        cancel: CancellationToken,
    ) -> Outcome {
        let limits = a.limits.unwrap_or_default();
        let job = Job {
            input: a.input,
            program_name: "task".into(),
            args: a.args,
            env: a.env.into_iter().map(|e| (e.key, e.value)).collect(),
            fuel: limits.fuel,
            memory: limits.memory_bytes,
            timeout: Duration::from_millis(limits.timeout_ms.max(1)),
            cancel,
        };
        // Called on the guests' threads (see `start`); a panic in the run fails this run only.
        AssertUnwindSafe(self.sandbox.run(program.as_ref(), job))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| failure(pb::FailureKind::Trap, "the run crashed".into()))
    }

    /// Sends a message on the open stream, if any.
    pub(crate) async fn send_now(&self, kind: Out) -> bool {
        let out = self.outbound.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match out {
            Some(out) => send(&out, kind).await.is_ok(),
            None => false,
        }
    }
}

fn program_kind(a: &pb::Assignment) -> Kind {
    if a.kind() == pb::ModuleKind::Command {
        Kind::Command
    } else {
        Kind::Component
    }
}

/// A module that could not be fetched is `executor_lost` (another executor may get it); one
/// that does not compile or link is `invalid_module`.
fn module_failure(e: ModuleError) -> Outcome {
    match e {
        ModuleError::Fetch(..) => failure(pb::FailureKind::ExecutorLost, e.to_string()),
        ModuleError::Invalid(..) => failure(pb::FailureKind::InvalidModule, e.to_string()),
    }
}

fn failure(kind: pb::FailureKind, message: String) -> Outcome {
    Outcome { failure: Some((kind, message)), ..Outcome::default() }
}

/// Sends `results` in messages of bounded size: all the results held after a reconnect
/// could exceed the largest message a master accepts, which would break the stream on every
/// reconnect.
async fn send_results(out: &mpsc::Sender<pb::ExecutorMessage>, results: Vec<pb::TaskResult>) -> Result<(), String> {
    for run in split::by_size(results, split::MESSAGE_BYTES) {
        send(out, Out::Results(pb::TaskResults { results: run })).await?;
    }
    Ok(())
}

async fn send(out: &mpsc::Sender<pb::ExecutorMessage>, kind: Out) -> Result<(), String> {
    out.send(pb::ExecutorMessage { kind: Some(kind) }).await.map_err(|_| "the stream to the master closed".to_string())
}
