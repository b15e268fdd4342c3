//! The sandbox alone, in this process, with no scheduler: how fast a module can be
//! instantiated and called at best (the ceiling end-to-end throughput is held against), and
//! how long a compute-heavy call takes with fuel metering on and off.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use wasmgrid_executor::sandbox::{Job, Kind, Metering, Program, Sandbox, Settings};

pub struct Loaded {
    pub sandbox: Sandbox,
    pub program: Arc<dyn Program>,
}

/// Compiles and links a task component, in a sandbox with fuel metering (as the executor
/// runs) or with epoch interruption only.
pub fn load(bytes: &[u8], metering: Metering) -> anyhow::Result<Loaded> {
    let settings = Settings { default_fuel: 100_000_000_000, max_output: 64 << 20, max_stderr: 64 << 10 };
    let sandbox = Sandbox::with_metering(4, settings, metering)?;
    let compiled = sandbox.compile(bytes).map_err(|e| anyhow::anyhow!("compiling: {e}"))?;
    let program = sandbox.link(Kind::Component, &compiled).map_err(|e| anyhow::anyhow!("linking: {e}"))?;
    Ok(Loaded { sandbox, program })
}

fn job(input: &[u8]) -> Job {
    Job {
        input: input.to_vec(),
        program_name: "task".into(),
        args: Vec::new(),
        env: Vec::new(),
        fuel: 0,
        memory: 256 << 20,
        timeout: Duration::from_secs(120),
        cancel: CancellationToken::new(),
    }
}

impl Loaded {
    async fn call(&self, input: &[u8]) -> anyhow::Result<Duration> {
        let out = self.sandbox.run(&*self.program, job(input)).await;
        match out.failure {
            Some((kind, message)) => anyhow::bail!("the benchmark task failed ({kind:?}): {message}"),
            None => Ok(out.duration),
        }
    }

    /// Fresh instance + call, back to back on one thread for `period`: calls per second.
    pub async fn calls_per_second(&self, input: &[u8], period: Duration) -> anyhow::Result<f64> {
        for _ in 0..100 {
            self.call(input).await?;
        }
        let started = Instant::now();
        let mut calls = 0u64;
        while started.elapsed() < period {
            for _ in 0..100 {
                self.call(input).await?;
            }
            calls += 100;
        }
        Ok(calls as f64 / started.elapsed().as_secs_f64())
    }

    /// The fastest of `runs` calls (instantiation included, negligible for these).
    pub async fn best_of(&self, input: &[u8], runs: usize) -> anyhow::Result<Duration> {
        let mut best = Duration::MAX;
        for _ in 0..runs {
            best = best.min(self.call(input).await?);
        }
        Ok(best)
    }
}
