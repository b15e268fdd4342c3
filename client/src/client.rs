//! [`Client`]: every call of the `Master` API, following the leader.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use tonic::{Code, Status};
use wasmgrid_common::Addr;
use wasmgrid_proto as pb;
use wasmgrid_proto::master_client::MasterClient;
use wasmgrid_proto::security::{AuthChannel, Security};
use wasmgrid_proto::{LEADER_METADATA, MAX_MESSAGE_SIZE};

use crate::error::ClientError;

/// What one task needs; the rest comes from the masters' defaults.
pub type TaskSpec = pb::TaskSpec;

pub struct Client {
    addrs: Vec<Addr>,
    state: Mutex<State>,
    deadline: Duration,
    security: Security,
    notice: Option<Notice>,
}

/// Hears, once per call, that no master has answered for a while (the call goes on).
pub type Notice = Arc<dyn Fn(&str) + Send + Sync>;

/// How long a call fails before the notice hears of it.
const NOTICE_AFTER: Duration = Duration::from_secs(3);
/// How long a status read tries each other master when the first knew no leader.
const LEADER_SEARCH: Duration = Duration::from_secs(2);
/// A wait's stream up this long before it broke was healthy: the break starts a new count.
const STABLE_STREAM: Duration = Duration::from_secs(10);

#[derive(Default)]
struct State {
    /// Index into `addrs`, or a leader address learnt from a follower.
    current: Option<Addr>,
    next: usize,
    channels: Vec<(String, AuthChannel)>,
    /// Masters that have answered a call: a cancelled call to one of them is a dropped
    /// connection (a master died), not a handshake that never worked.
    answered: Vec<Addr>,
}

impl Client {
    /// A client for the masters at `addrs` (any of them; the leader is found).
    pub fn new(addrs: Vec<Addr>) -> Result<Self, ClientError> {
        if addrs.is_empty() {
            return Err(ClientError::Invalid("no master address given".into()));
        }
        Ok(Self {
            addrs,
            state: Mutex::new(State::default()),
            deadline: Duration::from_secs(30),
            security: Security::default(),
            notice: None,
        })
    }

    /// Tells `notice` when a call has found no master for a few seconds and keeps trying.
    pub fn with_notice(mut self, notice: Notice) -> Self {
        self.notice = Some(notice);
        self
    }

    /// Presents the cluster token and talks TLS as `security` says.
    pub fn with_security(mut self, security: Security) -> Self {
        self.security = security;
        self.lock().channels.clear();
        self
    }

    /// How long a call keeps looking for a leader before it gives up (default 30s).
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn target(&self) -> Addr {
        let mut s = self.lock();
        if let Some(a) = &s.current {
            return a.clone();
        }
        let a = self.addrs[s.next % self.addrs.len()].clone();
        s.current = Some(a.clone());
        a
    }

    fn channel(&self, addr: &Addr) -> Result<AuthChannel, ClientError> {
        let url = addr.host_port();
        if let Some((_, c)) = self.lock().channels.iter().find(|(u, _)| *u == url) {
            return Ok(c.clone());
        }
        let channel = self
            .security
            .endpoint(addr.host(), addr.port())
            .map_err(|e| ClientError::Invalid(format!("bad master address {addr}: {e}")))?
            .connect_timeout(Duration::from_secs(3))
            .tcp_nodelay(true)
            // Pings: a master that died or froze, or a listener that accepts connections but
            // never answers, is given up within about 4 s and the next address tried. A live
            // master answers pings even while a long call (a task run) is under way; 3 s
            // leaves room for a ping queued behind a flow-control window of upload data on a
            // slow link.
            .http2_keep_alive_interval(Duration::from_secs(1))
            .keep_alive_timeout(Duration::from_secs(3))
            .keep_alive_while_idle(true)
            .connect_lazy();
        let channel = self.security.wrap(channel);
        self.lock().channels.push((url, channel.clone()));
        Ok(channel)
    }

    fn master(&self, addr: &Addr) -> Result<MasterClient<AuthChannel>, ClientError> {
        Ok(MasterClient::new(self.channel(addr)?)
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE))
    }

    /// Moves to the leader a follower named, or to the next address.
    fn redirect(&self, status: &Status) {
        let hint =
            status.metadata().get(LEADER_METADATA).and_then(|v| v.to_str().ok()).and_then(|s| s.parse::<Addr>().ok());
        let mut s = self.lock();
        match hint {
            Some(h) if s.current.as_ref() != Some(&h) => s.current = Some(h),
            _ => Self::next_address(&mut s),
        }
    }

    /// Leaves the current master for the next given address.
    fn next_address(s: &mut State) {
        s.next = s.next.wrapping_add(1);
        s.current = None;
    }

    /// The status message, with a hint when it looks like TLS on one side only.
    fn explain(&self, status: &Status) -> String {
        let message = status.message();
        if message.contains("message length too large") {
            return format!("{message} (over the master's max-message-size)");
        }
        if self.security.tls_client() {
            if message.contains("tls") || message.contains("InvalidContentType") || message.contains("corrupt message")
            {
                return format!("{message} (is the master serving TLS? a plaintext master needs no --tls-ca)");
            }
        } else if [
            "h2 protocol error",
            "connection reset",
            "operation was canceled",
            "connection closed",
            "broken pipe",
        ]
        .iter()
        .any(|m| message.contains(m))
        {
            return format!("{message} (the master may require TLS: pass --tls-ca with its CA certificate)");
        }
        if message.is_empty() {
            // Another gRPC server (an executor's status port, say) answers UNIMPLEMENTED, bare.
            return match status.code() {
                Code::Unimplemented => "it serves gRPC, but not the master's API (an executor's port?)".to_string(),
                code => format!("{code:?}"),
            };
        }
        message.to_string()
    }

    /// Runs `call` against the leader, following redirects and retrying unavailable masters
    /// until the deadline, counted from the first failure (a call may rightly take long, as a
    /// `RunTask` does while its task runs, and still deserves retries when it fails).
    async fn call<T, F, Fut>(&self, call: F) -> Result<T, ClientError>
    where
        F: FnMut(MasterClient<AuthChannel>) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        self.call_within(self.deadline, call).await
    }

    /// `call`, giving up after failing for `deadline`.
    async fn call_within<T, F, Fut>(&self, deadline: Duration, mut call: F) -> Result<T, ClientError>
    where
        F: FnMut(MasterClient<AuthChannel>) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let mut failing_since: Option<Instant> = None;
        let mut backoff = Duration::from_millis(20);
        let mut tried = Vec::new();
        // Addresses where something other than a master answered, and what it said.
        let mut not_masters: Vec<(Addr, String)> = Vec::new();
        // The last refusal a master itself gave: more telling than a later connect error.
        let mut heard: Option<String> = None;
        let mut noticed = false;
        loop {
            let addr = self.target();
            let status = match call(self.master(&addr)?).await {
                Ok(v) => {
                    let mut s = self.lock();
                    if !s.answered.contains(&addr) {
                        s.answered.push(addr);
                    }
                    return Ok(v);
                }
                Err(s) => s,
            };
            let answered = self.lock().answered.contains(&addr);
            if !answered && not_a_master(&status) {
                // An executor's port, a web server, TLS on one side only: try the others.
                if !not_masters.iter().any(|(a, _)| *a == addr) {
                    not_masters.push((addr.clone(), self.explain(&status)));
                }
                if self.addrs.iter().all(|a| not_masters.iter().any(|(n, _)| n == a)) {
                    let what = not_masters.iter().map(|(a, why)| format!("{a}: {why}")).collect::<Vec<_>>();
                    let message = format!("no wasmgrid master at the given address(es) ({})", what.join("; "));
                    return Err(ClientError::Refused { code: status.code(), message });
                }
                self.redirect(&status);
                // A follower may keep naming this address as its leader: no busy loop.
                if failing_since.get_or_insert_with(Instant::now).elapsed() > deadline {
                    let last = heard.clone().unwrap_or_else(|| format!("{addr}: {}", self.explain(&status)));
                    return Err(ClientError::Unavailable { tried: tried.join(", "), last });
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(500));
                continue;
            }
            // A certificate the CA does not vouch for will not change by retrying.
            if status.message().contains("invalid peer certificate") {
                return Err(ClientError::Refused { code: status.code(), message: self.explain(&status) });
            }
            let dropped = status.code() == Code::Cancelled && answered;
            if !retryable(&status) && !dropped && !cut(&status) {
                return Err(ClientError::Refused { code: status.code(), message: self.explain(&status) });
            }
            if !tried.contains(&addr.to_string()) {
                tried.push(addr.to_string());
            }
            if !is_transport(&status) {
                heard = Some(format!("{addr}: {}", status.message()));
            }
            self.redirect(&status);
            let failing = failing_since.get_or_insert_with(Instant::now).elapsed();
            let last = || heard.clone().unwrap_or_else(|| self.explain(&status));
            if failing > deadline {
                return Err(ClientError::Unavailable { tried: tried.join(", "), last: last() });
            }
            if failing > NOTICE_AFTER && !noticed {
                noticed = true;
                if let Some(notice) = &self.notice {
                    notice(&format!("no leader has answered yet ({}); retrying for up to {:?}", last(), deadline));
                }
            }
            // A named leader is tried at once; otherwise back off a little.
            if status.metadata().get(LEADER_METADATA).is_none() {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(500));
            }
        }
    }

    /// Uploads a module (in chunks); `progress` hears the bytes sent so far.
    pub async fn upload_module(
        &self,
        bytes: &[u8],
        progress: Arc<dyn Fn(u64) + Send + Sync>,
    ) -> Result<pb::Module, ClientError> {
        self.call(|mut c| {
            let progress = progress.clone();
            let chunks: Vec<pb::UploadModuleRequest> = upload_messages(bytes);
            let mut sent = 0u64;
            let stream = tokio_stream::iter(chunks).map(move |m| {
                if let Some(pb::upload_module_request::Part::Chunk(c)) = &m.part {
                    sent += c.len() as u64;
                    progress(sent);
                }
                m
            });
            async move { c.upload_module(stream).await.map(|r| r.into_inner()) }
        })
        .await
    }

    pub async fn list_modules(&self) -> Result<Vec<pb::Module>, ClientError> {
        self.call(
            |mut c| async move { c.list_modules(pb::ListModulesRequest {}).await.map(|r| r.into_inner().modules) },
        )
        .await
    }

    /// Submits tasks in one batch; returns their ids in order. Safe to retry.
    pub async fn submit(&self, tasks: Vec<TaskSpec>) -> Result<Vec<u64>, ClientError> {
        let request = pb::SubmitTasksRequest { tasks, request_id: rand::random::<[u8; 16]>().to_vec() };
        self.call(|mut c| {
            let request = request.clone();
            async move { c.submit_tasks(request).await.map(|r| r.into_inner().ids) }
        })
        .await
    }

    /// Submits one task and returns its final record, in one call: when an executor is free
    /// the master runs the task before writing it down, and writes its submit and result
    /// together. Safe to retry (the request id makes a repeat return the first task).
    pub async fn run(&self, task: TaskSpec) -> Result<pb::Task, ClientError> {
        let request = pb::RunTaskRequest { task: Some(task), request_id: rand::random::<[u8; 16]>().to_vec() };
        self.call(|mut c| {
            let request = request.clone();
            async move { c.run_task(request).await.map(|r| r.into_inner()) }
        })
        .await
    }

    pub async fn get(&self, id: u64) -> Result<pb::Task, ClientError> {
        self.call(|mut c| async move { c.get_task(pb::GetTaskRequest { id }).await.map(|r| r.into_inner()) }).await
    }

    pub async fn cancel(&self, id: u64) -> Result<pb::Task, ClientError> {
        self.call(|mut c| async move { c.cancel_task(pb::CancelTaskRequest { id }).await.map(|r| r.into_inner()) })
            .await
    }

    /// Every task (optionally in one state), page by page.
    pub async fn list(&self, state: Option<pb::TaskState>, limit: Option<usize>) -> Result<Vec<pb::Task>, ClientError> {
        let mut all = Vec::new();
        let mut after_id = 0;
        loop {
            let want = limit.map_or(0, |l| l.saturating_sub(all.len()));
            let request = pb::ListTasksRequest {
                state: state.map(|s| s as i32),
                after_id,
                limit: u32::try_from(want).unwrap_or(u32::MAX),
            };
            let page = self.call(|mut c| async move { c.list_tasks(request).await.map(|r| r.into_inner()) }).await?;
            // Older masters do not say where the next page starts: after the last task.
            after_id = match page.next_after {
                0 => page.tasks.last().map_or(after_id, |t| t.id),
                next => next,
            };
            all.extend(page.tasks);
            let full = limit.is_some_and(|l| all.len() >= l);
            if !page.more || full {
                return Ok(all);
            }
        }
    }

    /// Waits until every task of `ids` has finished, calling `each` as each one does (in
    /// the order they finish, [`pb::MAX_WAIT_IDS`] at a time). Survives leader changes.
    pub async fn wait(&self, ids: &[u64], mut each: impl FnMut(pb::Task)) -> Result<(), ClientError> {
        let mut remaining: std::collections::BTreeSet<u64> = ids.iter().copied().collect();
        // Since when streams keep breaking soon after they open (their master died or lost
        // the lead): the wait moves on to the leader, backing off, until the deadline. A
        // stream that delivered a task or stayed up a while resets it: a long wait survives
        // any number of failovers spread over its life.
        let mut broken_since: Option<Instant> = None;
        let mut backoff = Duration::from_millis(50);
        while !remaining.is_empty() {
            let request = pb::WaitTasksRequest { ids: remaining.iter().copied().take(pb::MAX_WAIT_IDS).collect() };
            let mut stream = self
                .call(|mut c| {
                    let request = request.clone();
                    async move { c.wait_tasks(request).await.map(|r| r.into_inner()) }
                })
                .await?;
            let opened = Instant::now();
            loop {
                match stream.message().await {
                    Ok(Some(task)) => {
                        broken_since = None;
                        // Each task once, even if a master sends it again.
                        if remaining.remove(&task.id) {
                            each(task);
                        }
                    }
                    Ok(None) => break,
                    Err(status) if retryable(&status) || broken(&status) => {
                        if opened.elapsed() > STABLE_STREAM {
                            (broken_since, backoff) = (None, Duration::from_millis(50));
                        }
                        if broken_since.get_or_insert_with(Instant::now).elapsed() > self.deadline {
                            return Err(ClientError::Refused { code: status.code(), message: self.explain(&status) });
                        }
                        self.redirect(&status);
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                        break;
                    }
                    Err(status) => {
                        return Err(ClientError::Refused { code: status.code(), message: status.message().to_string() })
                    }
                }
            }
        }
        Ok(())
    }

    /// Waits for one task and returns its final record.
    pub async fn wait_one(&self, id: u64) -> Result<pb::Task, ClientError> {
        let mut found = None;
        self.wait(&[id], |t| found = Some(t)).await?;
        found.ok_or_else(|| ClientError::Invalid(format!("task {id} finished without a record")))
    }

    pub async fn list_members(&self) -> Result<pb::ListMembersResponse, ClientError> {
        let call = |mut c: MasterClient<AuthChannel>| async move {
            c.list_members(pb::ListMembersRequest {}).await.map(|r| r.into_inner())
        };
        self.leaders_view(call, |r| r.leader.is_empty()).await
    }

    /// A status read: a master that knows no leader answers with its own view, but another
    /// of the given masters may know one (the asked one was cut off, or removed from the
    /// group): each is asked in turn before the leaderless view is taken.
    async fn leaders_view<T, F, Fut>(&self, mut call: F, leaderless: impl Fn(&T) -> bool) -> Result<T, ClientError>
    where
        F: FnMut(MasterClient<AuthChannel>) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let first = self.call(&mut call).await?;
        if !leaderless(&first) {
            return Ok(first);
        }
        for _ in 1..self.addrs.len() {
            Self::next_address(&mut self.lock());
            if let Ok(view) = self.call_within(LEADER_SEARCH, &mut call).await {
                if !leaderless(&view) {
                    return Ok(view);
                }
            }
        }
        Ok(first)
    }

    /// Adds a master (learner first, then voter); it must already run with `--name name`.
    pub async fn add_member(&self, name: &str, peer_url: &str) -> Result<pb::ListMembersResponse, ClientError> {
        let request = pb::AddMemberRequest { name: name.to_string(), peer_url: peer_url.to_string() };
        self.call(|mut c| {
            let request = request.clone();
            async move { c.add_member(request).await.map(|r| r.into_inner()) }
        })
        .await
    }

    pub async fn remove_member(&self, name: &str) -> Result<pb::ListMembersResponse, ClientError> {
        let request = pb::RemoveMemberRequest { name: name.to_string() };
        self.call(|mut c| {
            let request = request.clone();
            async move { c.remove_member(request).await.map(|r| r.into_inner()) }
        })
        .await
    }

    /// Stops placing tasks on executor `name`; it finishes its tasks, then leaves.
    pub async fn drain_executor(&self, name: &str) -> Result<pb::ExecutorInfo, ClientError> {
        let request = pb::DrainExecutorRequest { name: name.to_string() };
        self.call(|mut c| {
            let request = request.clone();
            async move { c.drain_executor(request).await.map(|r| r.into_inner()) }
        })
        .await
    }

    pub async fn cluster_status(&self) -> Result<pb::ClusterStatusResponse, ClientError> {
        let call = |mut c: MasterClient<AuthChannel>| async move {
            c.cluster_status(pb::ClusterStatusRequest {}).await.map(|r| r.into_inner())
        };
        self.leaders_view(call, |r| r.leader.is_empty()).await
    }
}

/// Something other than a master answered: a server without the master API (an executor's
/// status port, a web server) or one speaking another protocol (TLS on one side only).
fn not_a_master(status: &Status) -> bool {
    status.code() == Code::Unimplemented
        || (status.code() == Code::Unknown && status.message().contains("h2 protocol error") && !cut(status))
}

/// The connection broke in the middle of a call: the master died or restarted (not a sign
/// that no master is there).
fn cut(status: &Status) -> bool {
    ["error reading a body", "connection reset", "broken pipe", "connection closed", "operation was canceled"]
        .iter()
        .any(|m| status.message().contains(m))
}

/// No answer at all: the address is down or unreachable.
fn is_transport(status: &Status) -> bool {
    ["transport error", "tcp connect", "connect error", "connection", "dns error"]
        .iter()
        .any(|m| status.message().contains(m))
}

/// Unavailable means "not the leader" or "not reachable": another master may answer.
fn retryable(status: &Status) -> bool {
    matches!(status.code(), Code::Unavailable)
        || (status.code() == Code::Unknown && status.message().contains("transport"))
}

/// A stream cut by its connection rather than ended by its master: the master died, or its
/// connection did. A master ends a stream it refuses with a deliberate code instead.
fn broken(status: &Status) -> bool {
    matches!(status.code(), Code::Unknown | Code::Internal | Code::Cancelled)
        && (cut(status)
            || ["h2 protocol error", "connection", "transport"].iter().any(|m| status.message().contains(m)))
}

fn upload_messages(bytes: &[u8]) -> Vec<pb::UploadModuleRequest> {
    use pb::upload_module_request::Part;
    let mut msgs =
        vec![pb::UploadModuleRequest { part: Some(Part::Header(pb::UploadHeader { size: bytes.len() as u64 })) }];
    msgs.extend(
        bytes
            .chunks(wasmgrid_proto::CHUNK_SIZE)
            .map(|c| pb::UploadModuleRequest { part: Some(Part::Chunk(c.to_vec())) }),
    );
    msgs
}
