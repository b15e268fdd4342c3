//! A master and an executor on loopback, as child processes in a temporary directory, gone
//! when dropped (also when the program fails or is interrupted).

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use wasmgrid_client::Client;
use wasmgrid_testkit::process::Proc;

pub struct LocalCluster {
    pub master: Proc,
    pub executor: Proc,
    pub dir: tempfile::TempDir,
}

impl LocalCluster {
    /// Starts both and waits until the executor has joined.
    pub async fn start(slots: u32, extra_executor_args: &[&str]) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("wasmgrid-").tempdir().context("cannot create a temp dir")?;
        let data = |name: &str| dir.path().join(name).display().to_string();
        let master = Proc::start(
            "master",
            &["--master-addr".into(), "127.0.0.1:0".into(), "--data-dir".into(), data("master")],
            &dir.path().join("master.log"),
        );
        let mut args: Vec<String> = vec![
            "--join".into(),
            master.addr.to_string(),
            "--worker-addr".into(),
            "127.0.0.1:0".into(),
            "--name".into(),
            "local-executor".into(),
            "--data-dir".into(),
            data("executor"),
            "--slots".into(),
            slots.to_string(),
        ];
        args.extend(extra_executor_args.iter().map(|s| s.to_string()));
        let executor = Proc::start("executor", &args, &dir.path().join("executor.log"));
        let cluster = Self { master, executor, dir };
        cluster.wait_for_executor().await?;
        Ok(cluster)
    }

    pub fn client(&self) -> anyhow::Result<Client> {
        Ok(Client::new(vec![self.master.addr.clone()])?.with_deadline(Duration::from_secs(20)))
    }

    async fn wait_for_executor(&self) -> anyhow::Result<()> {
        let client = self.client()?;
        for _ in 0..400 {
            let status = client.cluster_status().await?;
            if status.executors.iter().any(|e| e.connected) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        anyhow::bail!("the executor did not join; see {}", self.log("executor").display())
    }

    pub fn log(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(format!("{name}.log"))
    }

    pub fn data(&self) -> &Path {
        self.dir.path()
    }
}
