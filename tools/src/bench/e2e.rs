//! Through a real master and executor (child processes on loopback): throughput with many
//! tasks in flight, the one-at-a-time round trip, draining a deep queue, and the resident
//! memory of both processes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use wasmgrid_client::bench::{run, BenchOptions, BenchReport};
use wasmgrid_client::proto as pb;
use wasmgrid_client::Client;

use super::step;

/// Memory cap of every benchmark task. The scheduler reserves a running task's cap on its
/// executor: with the default 128 MiB, memory (not slots) would bound the runs at once, and
/// these tasks touch a few pages.
pub const TASK_MEMORY: u64 = 32 << 20;

pub fn bar(len: usize, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    let style = ProgressStyle::with_template(&format!("{{bar:40}} {{pos}}/{{len}} {what} {{per_sec}}"))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}

/// `tasks` tasks with `concurrency` in flight (`sync`: one at a time).
pub async fn load(
    client: &Arc<Client>,
    module: &str,
    tasks: usize,
    concurrency: usize,
    sync: bool,
) -> anyhow::Result<BenchReport> {
    let opts = BenchOptions {
        module: module.to_string(),
        tasks,
        concurrency,
        input_size: 16,
        sync,
        fuel: 0,
        memory: TASK_MEMORY,
    };
    let progress = bar(tasks, "tasks");
    let shown = progress.clone();
    let report = run(client.clone(), &opts, &move |n| shown.set_position(n as u64)).await;
    progress.finish_and_clear();
    let report = report?;
    anyhow::ensure!(report.failed == 0, "{} of the benchmark's tasks failed", report.failed);
    Ok(report)
}

/// The p50 of `calls` bare gRPC calls (`ListModules`, a few modules, no Raft, no disk):
/// the floor under each of the two request/reply exchanges in a sync round trip.
pub async fn call_p50(client: &Client, calls: usize) -> anyhow::Result<Duration> {
    let mut times = Vec::with_capacity(calls);
    for _ in 0..calls {
        let t = Instant::now();
        client.list_modules().await?;
        times.push(t.elapsed());
    }
    Ok(super::table::percentile(&mut times, 0.5))
}

/// The run with the higher throughput, for best-of-rounds figures.
pub fn faster(best: Option<BenchReport>, run: BenchReport) -> BenchReport {
    match best {
        Some(best) if best.throughput >= run.throughput => best,
        _ => run,
    }
}

/// Tasks per second while `pending` tasks wait in the queue: every slot is first taken by a
/// sleeping task, `pending` tasks of `module` are submitted behind them, then the sleepers
/// are cancelled and the clock runs until the last of the queue has finished.
pub async fn drain_rate(
    client: &Arc<Client>,
    module: &str,
    sleeper: &str,
    slots: u32,
    pending: usize,
) -> anyhow::Result<f64> {
    let limits = Some(pb::Limits { memory_bytes: TASK_MEMORY, ..Default::default() });
    let blocker = pb::TaskSpec { module: sleeper.to_string(), limits, ..Default::default() };
    let blockers = client.submit(vec![blocker; slots as usize]).await?;
    let spec = pb::TaskSpec { module: module.to_string(), input: vec![b'x'; 16], limits, ..Default::default() };
    step(&format!("queueing {pending} tasks behind {slots} sleeping ones"));
    let queued = bar(pending, "queued");
    let mut ids = Vec::with_capacity(pending);
    while ids.len() < pending {
        let n = 1000.min(pending - ids.len());
        ids.extend(client.submit(vec![spec.clone(); n]).await?);
        queued.set_position(ids.len() as u64);
    }
    queued.finish_and_clear();
    // Up to a queue's worth of them wait at the executor rather than in the master's queue
    // (the module runs short).
    let status = client.cluster_status().await?;
    let queued_at_executors: u64 = status.executors.iter().map(|e| u64::from(e.queued)).sum();
    let waiting = status.pending_tasks + queued_at_executors;
    // A few queued ones may have started already: an executor's queued run takes a slot the
    // moment it is free, and a sleeper may still be loading. The clock counts the rest.
    let waiting = usize::try_from(waiting).unwrap_or(usize::MAX).min(pending);
    anyhow::ensure!(waiting >= pending - pending / 100, "only {waiting} tasks were waiting, not {pending}");
    let done = bar(pending, "drained");
    let started = Instant::now();
    let cancels = blockers.iter().map(|id| {
        let client = client.clone();
        let id = *id;
        tokio::spawn(async move { client.cancel(id).await })
    });
    for c in cancels.collect::<Vec<_>>() {
        c.await.context("a cancel panicked")??;
    }
    // One waiting stream per thousand tasks, all at once, like many clients would.
    let mut handles = Vec::new();
    for chunk in ids.chunks(1000) {
        let (client, chunk, done) = (client.clone(), chunk.to_vec(), done.clone());
        handles.push(tokio::spawn(async move {
            let mut failed = 0usize;
            let r = client
                .wait(&chunk, |t| {
                    done.inc(1);
                    if t.state() != pb::TaskState::Succeeded {
                        failed += 1;
                    }
                })
                .await;
            r.map(|()| failed)
        }));
    }
    let mut failed = 0;
    for h in handles {
        failed += h.await.context("a waiting task panicked")??;
    }
    let seconds = started.elapsed().as_secs_f64();
    done.finish_and_clear();
    anyhow::ensure!(failed == 0, "{failed} queued tasks failed");
    Ok(waiting as f64 / seconds)
}

/// Resident memory of a process, from /proc.
pub fn rss_mib(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS in /proc status")?;
    Ok(kb / 1024.0)
}

/// Gives a process a moment to settle (freed memory returned, idle timers quiet).
pub async fn settle() {
    tokio::time::sleep(Duration::from_secs(2)).await;
}
