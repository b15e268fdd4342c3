//! The masters this executor knows, and how it reaches them: the leader first when a
//! follower has named it, otherwise each address of `--join` in turn, passing over for a
//! while any master that froze on us (went silent, or never answered a stream).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tonic::Status;
use wasmgrid_common::Addr;
use wasmgrid_proto::executor_gateway_client::ExecutorGatewayClient;
use wasmgrid_proto::security::{AuthChannel, Security};
use wasmgrid_proto::{FetchModuleRequest, LEADER_METADATA, MAX_MESSAGE_SIZE};

pub struct Masters {
    addrs: Vec<Addr>,
    security: Security,
    state: Mutex<State>,
}

/// How long a master that froze on us is passed over (unless every master did).
const PASS_OVER_FOR: Duration = Duration::from_secs(15);

#[derive(Default)]
struct State {
    hint: Option<Addr>,
    next: usize,
    channels: HashMap<String, AuthChannel>,
    /// Masters that froze on us, and when.
    frozen: HashMap<String, Instant>,
}

impl State {
    fn passed_over(&self, addr: &Addr) -> bool {
        self.frozen.get(&addr.host_port()).is_some_and(|at| at.elapsed() < PASS_OVER_FOR)
    }
}

impl Masters {
    pub fn new(addrs: Vec<Addr>, security: Security) -> Self {
        Self { addrs, security, state: Mutex::new(State::default()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next master to try: the named leader if a follower told us (even one that froze
    /// on us: it may only have been slow, and the followers know who leads), else round
    /// robin, where masters that froze on us lately come only when all did.
    pub fn next(&self) -> Addr {
        let mut s = self.lock();
        if let Some(hint) = s.hint.take() {
            return hint;
        }
        let n = self.addrs.len();
        let turn =
            (0..n).map(|i| s.next.wrapping_add(i) % n).find(|&i| !s.passed_over(&self.addrs[i])).unwrap_or(s.next % n);
        s.next = turn.wrapping_add(1);
        self.addrs[turn].clone()
    }

    /// `addr` accepted a stream and then went silent, or never answered one.
    pub fn froze(&self, addr: &Addr) {
        self.lock().frozen.insert(addr.host_port(), Instant::now());
    }

    /// `addr` welcomed us: it is not passed over any more.
    pub fn answered(&self, addr: &Addr) {
        self.lock().frozen.remove(&addr.host_port());
    }

    /// Remembers the leader named in a follower's refusal.
    pub fn learn_leader(&self, status: &Status) -> bool {
        let hint =
            status.metadata().get(LEADER_METADATA).and_then(|v| v.to_str().ok()).and_then(|s| s.parse::<Addr>().ok());
        let found = hint.is_some();
        if let Some(h) = hint {
            self.lock().hint = Some(h);
        }
        found
    }

    /// A (lazily connected) channel to `addr`, reused across calls.
    pub fn channel(&self, addr: &Addr) -> Result<AuthChannel, String> {
        let key = addr.host_port();
        if let Some(c) = self.lock().channels.get(&key) {
            return Ok(c.clone());
        }
        let channel = self
            .security
            .endpoint(addr.host(), addr.port())
            .map_err(|e| format!("bad master address {addr}: {e}"))?
            .connect_timeout(Duration::from_secs(3))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(10))
            .keep_alive_while_idle(true)
            .connect_lazy();
        let channel = self.security.wrap(channel);
        self.lock().channels.insert(key, channel.clone());
        Ok(channel)
    }

    pub fn gateway(&self, addr: &Addr) -> Result<ExecutorGatewayClient<AuthChannel>, String> {
        Ok(ExecutorGatewayClient::new(self.channel(addr)?)
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE))
    }

    /// Fetches a module's bytes from whichever master has them.
    pub async fn fetch_module(&self, digest: &str) -> Result<Vec<u8>, String> {
        let mut last_error = String::from("no master to fetch from");
        // Masters that froze on us last: a fetch from one would wait for the keepalive.
        let mut addrs: Vec<&Addr> = self.addrs.iter().collect();
        {
            let s = self.lock();
            addrs.sort_by_key(|a| s.passed_over(a));
        }
        for addr in addrs {
            match self.fetch_from(addr, digest).await {
                Ok(bytes) => return Ok(bytes),
                Err(e) => last_error = format!("{addr}: {e}"),
            }
        }
        Err(last_error)
    }

    async fn fetch_from(&self, addr: &Addr, digest: &str) -> Result<Vec<u8>, String> {
        let mut client = self.gateway(addr)?;
        let request = FetchModuleRequest { digest: digest.to_string() };
        let mut stream = client.fetch_module(request).await.map_err(|s| s.message().to_string())?.into_inner();
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.message().await.map_err(|s| s.message().to_string())? {
            bytes.extend_from_slice(&chunk.data);
        }
        Ok(bytes)
    }
}
