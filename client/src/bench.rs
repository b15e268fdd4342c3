//! The load generator behind `master-client bench` and `make bench`: many tasks through a
//! running cluster, measuring throughput (first submit to last result) and each task's
//! latency (submit to result), or one task at a time for the round trip (`sync`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use wasmgrid_proto as pb;

use crate::{Client, ClientError};

/// Bytes of inputs in one submit at most (a single larger task still goes alone).
const BATCH_BYTES: usize = 1 << 20;

#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// A module digest.
    pub module: String,
    pub tasks: usize,
    /// Tasks in flight at once (async mode).
    pub concurrency: usize,
    pub input_size: usize,
    /// One task at a time, submit to result.
    pub sync: bool,
    /// Fuel of each task (0: the executor's default).
    pub fuel: u64,
    /// Memory cap of each task in bytes (0: the master's default).
    pub memory: u64,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct BenchReport {
    pub tasks: usize,
    pub failed: usize,
    pub seconds: f64,
    /// Tasks per second, from the first submit to the last result.
    pub throughput: f64,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub latency_max_ms: f64,
    pub concurrency: usize,
    pub sync: bool,
}

/// Runs the benchmark; `progress` hears how many tasks have finished.
pub async fn run(
    client: Arc<Client>,
    opts: &BenchOptions,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<BenchReport, ClientError> {
    let input = vec![b'x'; opts.input_size];
    let spec = pb::TaskSpec {
        module: opts.module.clone(),
        input,
        limits: Some(pb::Limits { fuel: opts.fuel, memory_bytes: opts.memory, ..Default::default() }),
        ..Default::default()
    };
    let started = Instant::now();
    let (latencies, failed) = if opts.sync {
        run_sync(&client, &spec, opts.tasks, progress).await?
    } else {
        run_async(client, &spec, opts.tasks, opts.concurrency.max(1), progress).await?
    };
    let seconds = started.elapsed().as_secs_f64();
    Ok(report(latencies, failed, seconds, opts))
}

async fn run_sync(
    client: &Client,
    spec: &pb::TaskSpec,
    tasks: usize,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<(Vec<Duration>, usize), ClientError> {
    let mut latencies = Vec::with_capacity(capacity(tasks));
    let mut failed = 0;
    for i in 0..tasks {
        let t0 = Instant::now();
        let t = client.run(spec.clone()).await?;
        latencies.push(t0.elapsed());
        if t.state() != pb::TaskState::Succeeded {
            failed += 1;
        }
        progress(i + 1);
    }
    Ok((latencies, failed))
}

async fn run_async(
    client: Arc<Client>,
    spec: &pb::TaskSpec,
    tasks: usize,
    concurrency: usize,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<(Vec<Duration>, usize), ClientError> {
    // Batches keep the in-flight window full without one RPC per task, and stay far below
    // any master's max-message-size (4 MiB at the least) whatever the input size.
    let concurrency = concurrency.min(tasks).clamp(1, Semaphore::MAX_PERMITS);
    // Within what the masters take in one submit (masters that do not say take 1000).
    let most = match client.cluster_status().await?.max_batch_size {
        0 => 1000,
        n => n as usize,
    };
    let batch = (concurrency / 4).clamp(1, most.min(1000)).min((BATCH_BYTES / (spec.input.len() + 64)).max(1));
    let window = Arc::new(Semaphore::new(concurrency));
    let done: Arc<Mutex<(Vec<Duration>, usize)>> = Arc::new(Mutex::new((Vec::with_capacity(capacity(tasks)), 0)));
    let mut waiters = Vec::new();
    let mut submitted = 0;
    while submitted < tasks {
        let n = batch.min(tasks - submitted);
        // Closed by a waiter that failed: its tasks will never give their permits back, and
        // its error is reported below.
        let Ok(permits) = window.clone().acquire_many_owned(n as u32).await else { break };
        permits.forget();
        let t0 = Instant::now();
        let ids = client.submit(vec![spec.clone(); n]).await?;
        submitted += n;
        let (client, window, finished) = (client.clone(), window.clone(), done.clone());
        waiters.push(tokio::spawn(async move {
            let waited = client
                .wait(&ids, |t| {
                    let mut d = finished.lock().unwrap_or_else(|p| p.into_inner());
                    d.0.push(t0.elapsed());
                    if t.state() != pb::TaskState::Succeeded {
                        d.1 += 1;
                    }
                    window.add_permits(1);
                })
                .await;
            if waited.is_err() {
                window.close();
            }
            waited
        }));
        progress(done.lock().map(|d| d.0.len()).unwrap_or(0));
    }
    let total = waiters.len();
    for (i, w) in waiters.into_iter().enumerate() {
        w.await.map_err(|_| closed())??;
        if i + 1 == total || i % 8 == 0 {
            progress(done.lock().map(|d| d.0.len()).unwrap_or(0));
        }
    }
    let d = std::mem::take(&mut *done.lock().unwrap_or_else(|p| p.into_inner()));
    Ok(d)
}

/// Room for the latencies of `tasks` tasks, reserved up front up to a point (a mistyped
/// `--tasks` should not be an allocation failure).
fn capacity(tasks: usize) -> usize {
    tasks.min(1 << 20)
}

fn closed() -> ClientError {
    ClientError::Invalid("the benchmark was interrupted".into())
}

fn report(mut latencies: Vec<Duration>, failed: usize, seconds: f64, opts: &BenchOptions) -> BenchReport {
    latencies.sort_unstable();
    let pct = |p: f64| {
        if latencies.is_empty() {
            return 0.0;
        }
        let i = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[i].as_secs_f64() * 1000.0
    };
    BenchReport {
        tasks: latencies.len(),
        failed,
        seconds,
        throughput: if seconds > 0.0 { latencies.len() as f64 / seconds } else { 0.0 },
        latency_p50_ms: pct(0.50),
        latency_p99_ms: pct(0.99),
        latency_max_ms: pct(1.0),
        concurrency: if opts.sync { 1 } else { opts.concurrency },
        sync: opts.sync,
    }
}
