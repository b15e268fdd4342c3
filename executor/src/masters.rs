//! The masters this executor knows, and how it reaches them: the leader first when a
//! follower has named it, otherwise each address of `--join` and of the group (as the last
//! leader listed it) in turn, passing over for a while any master that froze on us (went
//! silent, or never answered a stream).

use std::collections::{HashMap, HashSet};
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
    /// The group's masters not in `--join`, as the last leader listed them.
    group: Vec<Addr>,
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

    /// Every master known: `--join`'s, then the rest of the group's.
    fn all(&self, s: &State) -> Vec<Addr> {
        self.addrs.iter().chain(&s.group).cloned().collect()
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
        let all = self.all(&s);
        let n = all.len();
        let turn = (0..n).map(|i| s.next.wrapping_add(i) % n).find(|&i| !s.passed_over(&all[i])).unwrap_or(s.next % n);
        s.next = turn.wrapping_add(1);
        all[turn].clone()
    }

    /// Takes the group's masters as a leader listed them (in its welcome): an executor told
    /// of only some of them in `--join` still finds the next leader when those are down.
    /// Addresses it cannot parse are left out.
    pub fn learn_group(&self, masters: &[String]) {
        let mut known: HashSet<String> = self.addrs.iter().map(Addr::host_port).collect();
        let group =
            masters.iter().filter_map(|m| m.parse::<Addr>().ok()).filter(|a| known.insert(a.host_port())).collect();
        self.lock().group = group;
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
        let addrs = {
            let s = self.lock();
            let mut addrs = self.all(&s);
            addrs.sort_by_key(|a| s.passed_over(a));
            addrs
        };
        for addr in &addrs {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Addr {
        s.parse().unwrap()
    }

    #[test]
    fn the_group_a_leader_lists_joins_the_round_robin() {
        let masters = Masters::new(vec![addr("127.0.0.1:1")], Security::default());
        assert_eq!(masters.next(), addr("127.0.0.1:1"));
        assert_eq!(masters.next(), addr("127.0.0.1:1"));
        let listed = ["http://127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3", "127.0.0.1:2", "not an address"];
        masters.learn_group(&listed.map(String::from));
        let turns: Vec<String> = (0..6).map(|_| masters.next().host_port()).collect();
        let mut seen = turns[..3].to_vec();
        seen.sort();
        assert_eq!(seen, ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"], "{turns:?}");
        assert_eq!(turns[..3], turns[3..], "{turns:?}");
        // A later list replaces it (a master removed from the group is dropped), --join stays.
        masters.learn_group(&["127.0.0.1:3".to_string()]);
        let mut turns: Vec<String> = (0..2).map(|_| masters.next().host_port()).collect();
        turns.sort();
        assert_eq!(turns, ["127.0.0.1:1", "127.0.0.1:3"]);
    }
}
