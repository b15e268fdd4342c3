//! A group of master processes (and executor processes) on loopback, for the Raft tests:
//! kill one with SIGKILL, restart it on the same data dir and ports, or wipe its disk.
//!
//! Peer ports must be known before the masters start (`--initial-cluster`), so they are
//! reserved by binding port 0 and releasing it just before the start.

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use wasmgrid_client::Client;
use wasmgrid_common::Addr;
use wasmgrid_testkit::process::Proc;

pub struct MasterProc {
    pub name: String,
    pub api_port: u16,
    pub peer_port: u16,
    pub dir: PathBuf,
    pub proc: Option<Proc>,
}

impl MasterProc {
    pub fn api_addr(&self) -> Addr {
        Addr::new("127.0.0.1", self.api_port)
    }

    pub fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }
}

pub struct Group {
    pub masters: Vec<MasterProc>,
    pub executors: Vec<Proc>,
    pub dir: tempfile::TempDir,
    extra: Vec<String>,
}

/// Ports handed out for masters to bind later: below Linux's ephemeral range (32768 and up),
/// from which the kernel picks the local port of every outgoing connection. A port taken
/// from that range with `:0` and released could be given to such a connection (the suite
/// makes thousands) before its master binds it: "Address already in use".
const PORTS: std::ops::Range<u16> = 20_000..32_000;

/// A free port on loopback (bound, then released), outside the ephemeral range.
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    for _ in 0..1000 {
        // A random pick, so test processes running side by side rarely try the same port.
        let random = std::collections::hash_map::RandomState::new().build_hasher().finish();
        let port = PORTS.start + (random % u64::from(PORTS.end - PORTS.start)) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

impl Group {
    /// Starts `n` masters named m0..m{n-1}; `extra` flags go to every master.
    pub fn start(n: usize, extra: &[&str]) -> Self {
        let mut group = Self::new(n, extra);
        for i in 0..n {
            group.restart(i);
        }
        group
    }

    /// Like `start`, with every master started at the same moment rather than each once the
    /// one before listens: the founding masters then find each other bound but not serving.
    pub fn start_at_once(n: usize, extra: &[&str]) -> Self {
        let mut group = Self::new(n, extra);
        let starts: Vec<(Vec<String>, PathBuf)> = (0..n).map(|i| group.args(i)).collect();
        let procs: Vec<Proc> = std::thread::scope(|s| {
            let threads: Vec<_> =
                starts.iter().map(|(args, log)| s.spawn(move || Proc::start("master", args, log))).collect();
            threads.into_iter().map(|t| t.join().expect("a master did not start")).collect()
        });
        for (m, p) in group.masters.iter_mut().zip(procs) {
            m.proc = Some(p);
        }
        group
    }

    fn new(n: usize, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let masters = (0..n)
            .map(|i| MasterProc {
                name: format!("m{i}"),
                api_port: free_port(),
                peer_port: free_port(),
                dir: dir.path().join(format!("m{i}")),
                proc: None,
            })
            .collect();
        Self { masters, executors: Vec::new(), dir, extra: extra.iter().map(|s| s.to_string()).collect() }
    }

    fn initial_cluster(&self) -> String {
        self.masters.iter().map(|m| format!("{}={}", m.name, m.peer_url())).collect::<Vec<_>>().join(",")
    }

    /// (Re)starts master `i` on its data dir and ports.
    pub fn restart(&mut self, i: usize) {
        let (args, log) = self.args(i);
        self.masters[i].proc = Some(Proc::start("master", &args, &log));
    }

    /// The flags and log file of master `i`.
    fn args(&self, i: usize) -> (Vec<String>, PathBuf) {
        let cluster = self.initial_cluster();
        let m = &self.masters[i];
        let mut args = vec![
            "--name".to_string(),
            m.name.clone(),
            "--master-addr".into(),
            format!("127.0.0.1:{}", m.api_port),
            "--peer-urls".into(),
            format!("127.0.0.1:{}", m.peer_port),
            "--advertise-peer-urls".into(),
            m.peer_url(),
            "--initial-cluster".into(),
            cluster,
            "--data-dir".into(),
            m.dir.display().to_string(),
        ];
        args.extend(self.extra.iter().cloned());
        (args, self.dir.path().join(format!("{}.log", m.name)))
    }

    /// Adds master `m{n}` to the list (not yet to the group) and starts it.
    pub fn start_new_master(&mut self) -> usize {
        let i = self.masters.len();
        self.masters.push(MasterProc {
            name: format!("m{i}"),
            api_port: free_port(),
            peer_port: free_port(),
            dir: self.dir.path().join(format!("m{i}")),
            proc: None,
        });
        self.restart(i);
        i
    }

    pub fn kill(&mut self, i: usize) {
        if let Some(mut p) = self.masters[i].proc.take() {
            p.kill();
        }
    }

    /// Kills master `i` and deletes its data dir (a replaced disk).
    pub fn wipe(&mut self, i: usize) {
        self.kill(i);
        let _ = std::fs::remove_dir_all(&self.masters[i].dir);
    }

    pub fn addrs(&self) -> Vec<Addr> {
        self.masters.iter().map(MasterProc::api_addr).collect()
    }

    pub fn client(&self) -> Client {
        Client::new(self.addrs()).expect("addresses").with_deadline(Duration::from_secs(30))
    }

    /// Starts an executor process joined to every master, with a 3s lease.
    pub fn start_executor(&mut self, name: &str, slots: u32) {
        self.start_executor_with(name, slots, &["--keepalive-ttl", "3s"]);
    }

    /// Starts an executor process joined to every master, with `extra` flags.
    pub fn start_executor_with(&mut self, name: &str, slots: u32, extra: &[&str]) {
        self.start_executor_joined(name, slots, &self.addrs(), extra);
    }

    /// Starts an executor process joined to the masters at `join`, in that order.
    pub fn start_executor_joined(&mut self, name: &str, slots: u32, join: &[Addr], extra: &[&str]) {
        let join = join.iter().map(Addr::to_string).collect::<Vec<_>>().join(",");
        let args = vec![
            "--join".to_string(),
            join,
            "--worker-addr".into(),
            "127.0.0.1:0".into(),
            "--name".into(),
            name.into(),
            "--data-dir".into(),
            self.dir.path().join(name).display().to_string(),
            "--slots".into(),
            slots.to_string(),
        ];
        let mut args = args;
        args.extend(extra.iter().map(|s| s.to_string()));
        let log = self.dir.path().join(format!("{name}.log"));
        self.executors.push(Proc::start("executor", &args, &log));
    }

    /// Where the data dirs and logs are.
    pub fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// The index of the current leader, waiting up to `timeout` for one.
    pub async fn leader(&self, timeout: Duration) -> usize {
        let started = Instant::now();
        loop {
            for (i, m) in self.masters.iter().enumerate() {
                if m.proc.is_none() {
                    continue;
                }
                let c = Client::new(vec![m.api_addr()]).expect("addr").with_deadline(Duration::from_millis(500));
                if let Ok(s) = c.cluster_status().await {
                    if s.leader == m.name && s.members.iter().any(|x| x.name == m.name && x.role == "leader") {
                        return i;
                    }
                }
            }
            assert!(started.elapsed() < timeout, "no leader within {timeout:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        // Stop the processes first; on a failed test, keep the logs for whoever looks.
        for m in &mut self.masters {
            if let Some(mut p) = m.proc.take() {
                p.kill();
            }
        }
        self.executors.clear();
        if std::thread::panicking() {
            let kept = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir")).keep();
            eprintln!("test failed: master and executor logs kept in {}", kept.display());
        }
    }
}
