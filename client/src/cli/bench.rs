//! `bench`: load a running cluster with tasks and report throughput and latency.

use std::sync::Arc;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use wasmgrid_common::Size;

use super::render::print_json;
use super::tasks::resolve_module;
use super::values::more_than_zero;
use super::Output;
use crate::bench::{run, BenchOptions};
use crate::Client;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// A module digest or a .wasm file (uploaded first).
    #[arg(long)]
    pub module: String,
    /// How many tasks.
    #[arg(long, default_value_t = 10_000, value_parser = more_than_zero::<usize>)]
    pub tasks: usize,
    /// Tasks in flight at once.
    #[arg(long, default_value_t = 1_000, value_parser = more_than_zero::<usize>)]
    pub concurrency: usize,
    /// Input per task, in bytes or 64KiB-style (at most 256MiB, the largest message a master
    /// takes).
    #[arg(long, default_value_t = 16, value_parser = input_size)]
    pub input_size: usize,
    /// One task at a time, submit to result: the round trip.
    #[arg(long)]
    pub sync: bool,
    /// Fuel of each task (0: the executor's default).
    #[arg(long, default_value_t = 0)]
    pub fuel: u64,
    /// Memory cap of each task, e.g. 16MiB (default: the master's default-memory). The
    /// scheduler reserves each running task's cap on its executor, so a small cap lets tiny
    /// tasks use every slot.
    #[arg(long)]
    pub memory: Option<Size>,
}

/// A task input size no master could take is a usage error, not an allocation of it.
fn input_size(s: &str) -> Result<usize, String> {
    let n = s.parse::<Size>().map_err(|e| format!("{e}"))?.bytes();
    let n = usize::try_from(n).unwrap_or(usize::MAX);
    if n > wasmgrid_proto::MAX_MESSAGE_SIZE {
        return Err(format!(
            "must be at most {} bytes (256MiB, the largest message a master takes)",
            wasmgrid_proto::MAX_MESSAGE_SIZE
        ));
    }
    Ok(n)
}

pub async fn run_bench(client: Client, args: BenchArgs, output: Output) -> anyhow::Result<i32> {
    let client = Arc::new(client);
    let module = resolve_module(&client, &args.module).await?;
    let opts = BenchOptions {
        module,
        tasks: args.tasks,
        concurrency: args.concurrency,
        input_size: args.input_size,
        sync: args.sync,
        fuel: args.fuel,
        memory: args.memory.map_or(0, Size::bytes),
    };
    let bar = ProgressBar::new(opts.tasks as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} tasks {per_sec} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let shown = bar.clone();
    let report = run(client, &opts, &move |n| shown.set_position(n as u64)).await;
    bar.finish_and_clear();
    let report = report?;
    // Said first, so a reader that goes away (`| head -1`) cannot cut it off or turn the
    // failure into success.
    if report.failed > 0 {
        super::fail_even_if_closed();
        eprintln!("error: {} of the {} tasks failed (see `task list --state failed`)", report.failed, report.tasks);
    }
    match output {
        Output::Json => print_json(&serde_json::to_value(&report)?),
        Output::Text => {
            let mode = if report.sync {
                "sync (one at a time)".to_string()
            } else {
                format!("{} in flight", report.concurrency)
            };
            out!(
                "{:<14} {:>10} {:>8} {:>10} {:>12} {:>10} {:>10}",
                "MODE",
                "TASKS",
                "FAILED",
                "SECONDS",
                "TASKS/S",
                "P50 MS",
                "P99 MS"
            );
            out!(
                "{:<14} {:>10} {:>8} {:>10.2} {:>12.0} {:>10.2} {:>10.2}",
                mode,
                report.tasks,
                report.failed,
                report.seconds,
                report.throughput,
                report.latency_p50_ms,
                report.latency_p99_ms
            );
        }
    }
    Ok(i32::from(report.failed > 0))
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_input_size_no_master_could_take_is_refused() {
        assert_eq!(super::input_size("16"), Ok(16));
        assert_eq!(super::input_size("8MiB"), Ok(8 << 20));
        assert!(super::input_size("257MiB").is_err());
        assert!(super::input_size("268435457").unwrap_err().contains("at most 268435456 bytes"));
        assert!(super::input_size("-1").is_err());
    }
}
