//! Masters and executors in one process, for tests that need real servers but no crashes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use wasmgrid_client::Client;
use wasmgrid_common::Addr;
use wasmgrid_executor::ExecutorOptions;
use wasmgrid_master::node::Node;
use wasmgrid_master::{Listeners, MasterOptions};

pub struct TestMaster {
    pub addr: Addr,
    pub node: Arc<Node>,
    pub dir: PathBuf,
    shutdown: CancellationToken,
    running: Option<wasmgrid_master::Running>,
}

impl TestMaster {
    /// Starts a single master with its data in `dir`; `tweak` adjusts the options.
    pub async fn start(dir: &Path, tweak: impl FnOnce(&mut MasterOptions)) -> Self {
        crate::init_logging();
        let mut opts = MasterOptions {
            master_addr: Some(Addr::new("127.0.0.1", 0)),
            data_dir: Some(dir.to_path_buf()),
            ..Default::default()
        };
        tweak(&mut opts);
        let config = opts.resolve().unwrap();
        let listeners = Listeners::bind(&config).await.unwrap();
        let port = listeners.api_addr().unwrap().port();
        let shutdown = CancellationToken::new();
        let running = wasmgrid_master::start(config, listeners, shutdown.clone()).await.unwrap();
        let node = running.node.clone();
        let master =
            Self { addr: Addr::new("127.0.0.1", port), node, dir: dir.to_path_buf(), shutdown, running: Some(running) };
        master.wait_leader().await;
        master
    }

    async fn wait_leader(&self) {
        for _ in 0..200 {
            if self.node.is_leader() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("master never became leader");
    }

    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(r) = self.running.take() {
            r.join().await;
        }
    }
}

pub struct TestExecutor {
    pub name: String,
    pub agent: std::sync::Arc<wasmgrid_executor::agent::Agent>,
    shutdown: CancellationToken,
    running: Option<wasmgrid_executor::Running>,
}

impl TestExecutor {
    pub async fn start(join: &[Addr], dir: &Path, tweak: impl FnOnce(&mut ExecutorOptions)) -> Self {
        crate::init_logging();
        let mut opts = ExecutorOptions {
            join: Some(wasmgrid_common::AddrList(join.to_vec())),
            worker_addr: Some(Addr::new("127.0.0.1", 0)),
            data_dir: Some(dir.to_path_buf()),
            slots: Some(2),
            memory: Some(wasmgrid_common::Size(4 << 30)),
            ..Default::default()
        };
        tweak(&mut opts);
        let config = opts.resolve().unwrap();
        let listener = wasmgrid_executor::bind(&config).await.unwrap();
        let shutdown = CancellationToken::new();
        let running = wasmgrid_executor::start(config, listener, shutdown.clone()).await.unwrap();
        Self { name: running.agent.name.clone(), agent: running.agent.clone(), shutdown, running: Some(running) }
    }

    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(r) = self.running.take() {
            r.join().await;
        }
    }
}

/// One master and some executors, each in its own temp dir.
pub struct Cluster {
    pub master: TestMaster,
    pub executors: Vec<TestExecutor>,
    pub dir: tempfile::TempDir,
}

impl Cluster {
    pub async fn start(executors: usize) -> Self {
        Self::start_with(executors, |_| {}, |_| {}).await
    }

    pub async fn start_with(
        executors: usize,
        master: impl FnOnce(&mut MasterOptions),
        executor: impl Fn(&mut ExecutorOptions),
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let master = TestMaster::start(&dir.path().join("master"), master).await;
        let mut list = Vec::new();
        for i in 0..executors {
            let e = TestExecutor::start(
                std::slice::from_ref(&master.addr),
                &dir.path().join(format!("executor-{i}")),
                |o| {
                    o.name = Some(format!("executor-{i}"));
                    executor(o);
                },
            )
            .await;
            list.push(e);
        }
        let cluster = Self { master, executors: list, dir };
        cluster.wait_executors(executors).await;
        cluster
    }

    pub fn client(&self) -> Client {
        Client::new(vec![self.master.addr.clone()]).unwrap().with_deadline(Duration::from_secs(20))
    }

    /// Waits until `n` executors are registered and connected.
    pub async fn wait_executors(&self, n: usize) {
        let client = self.client();
        for _ in 0..400 {
            let status = client.cluster_status().await.unwrap();
            if status.executors.iter().filter(|e| e.connected && e.state == "alive").count() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("executors did not connect");
    }

    pub async fn stop(self) {
        for e in self.executors {
            e.stop().await;
        }
        self.master.stop().await;
    }
}
