//! `demo` (run by `make demo`): starts a master and an executor on loopback in a temporary
//! directory, uploads every example task, runs each with inputs that show success and every
//! kind of failure, prints a table, and stops everything it started, also on Ctrl-C or
//! failure. Exits 1 if any task ended differently than expected.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use wasmgrid_client::proto as pb;
use wasmgrid_client::Client;
use wasmgrid_tools::local::LocalCluster;

#[derive(Parser)]
#[command(about = "Run every example task on a local master and executor")]
struct Args {
    /// Where the built examples are.
    #[arg(long, default_value = "examples/tasks/build")]
    examples: PathBuf,
}

/// One run of the demo: which example, with what, and what should happen.
struct Case {
    example: &'static str,
    input: &'static str,
    fuel: u64,
    memory: u64,
    timeout_ms: u64,
    args: &'static [&'static str],
    env: &'static [(&'static str, &'static str)],
    expect: &'static str,
}

const MIB: u64 = 1024 * 1024;

const fn case(example: &'static str, input: &'static str, expect: &'static str) -> Case {
    Case { example, input, fuel: 0, memory: 0, timeout_ms: 0, args: &[], env: &[], expect }
}

fn cases() -> Vec<Case> {
    vec![
        case("echo", "hello, wasmgrid", "succeeded"),
        case("wordcount", "the cat and the hat and the bat", "succeeded"),
        case("fib", "25", "succeeded"),
        Case { fuel: 10_000_000, ..case("fib", "30", "out_of_fuel") },
        case("sha256", "abc", "succeeded"),
        Case { fuel: 50_000_000, ..case("spin", "", "out_of_fuel") },
        Case { fuel: u64::MAX / 4, timeout_ms: 1000, ..case("spin", "", "timeout") },
        Case { memory: 32 * MIB, ..case("hog", "", "memory_limit") },
        case("trap", "", "trap"),
        Case {
            args: &["first \"arg\"", "second arg"],
            env: &[("UPPER_SUFFIX", " (suffix from --env)")],
            ..case("upper", "make me loud", "succeeded")
        },
        Case { args: &["/etc/passwd"], ..case("readfile", "", "task_error") },
        case("upper-component", "a wasi:cli/run component", "succeeded"),
        case("echo-rust", "hello from Rust", "succeeded"),
        case("wordcount-rust", "to be or not to be", "succeeded"),
        case("fib-rust", "25", "succeeded"),
    ]
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let outcome = tokio::select! {
        r = run(&args.examples) => r,
        _ = interrupted() => Err(anyhow::anyhow!("interrupted; stopped everything")),
    };
    match outcome {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("demo: {e:#}");
            std::process::exit(1);
        }
    }
}

async fn interrupted() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

async fn run(examples: &Path) -> anyhow::Result<bool> {
    println!("starting a master and an executor on 127.0.0.1 ...");
    let cluster = LocalCluster::start(2, &[]).await?;
    println!(
        "master {} and executor {} are up (data and logs in {})\n",
        cluster.master.addr,
        cluster.executor.addr,
        cluster.data().display()
    );
    let client = cluster.client()?;
    let mut digests = HashMap::new();
    let mut all_as_expected = true;
    println!("{:>4}  {:<15} {:<11} {:<54} {:>11} {:>7}", "TASK", "EXAMPLE", "STATE", "OUTPUT / ERROR", "FUEL", "TIME");
    for c in cases() {
        let path = examples.join(format!("{}.wasm", c.example));
        if !path.is_file() {
            println!("{:>4}  {:<15} (not built: {} is missing)", "-", c.example, path.display());
            continue;
        }
        let digest = match digests.get(c.example) {
            Some(d) => Clone::clone(d),
            None => {
                let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
                let m = client.upload_module(&bytes, Arc::new(|_| {})).await?;
                digests.insert(c.example, m.digest.clone());
                m.digest
            }
        };
        let t = run_case(&client, &c, &digest).await?;
        let ok = outcome(&t) == c.expect;
        all_as_expected &= ok;
        println!(
            "{:>4}  {:<15} {:<11} {:<54} {:>11} {:>5}ms{}",
            t.id,
            c.example,
            state(&t),
            shorten(&detail(&t), 54),
            t.fuel_consumed,
            t.duration_ms,
            if ok { "" } else { "  <- expected " }.to_string() + if ok { "" } else { c.expect }
        );
    }
    println!();
    if all_as_expected {
        println!("every task ended as expected; stopping the master and the executor");
    } else {
        println!("some tasks did not end as expected; logs: {}", cluster.data().display());
    }
    Ok(all_as_expected)
}

async fn run_case(client: &Client, c: &Case, digest: &str) -> anyhow::Result<pb::Task> {
    let spec = pb::TaskSpec {
        module: digest.to_string(),
        input: c.input.as_bytes().to_vec(),
        limits: Some(pb::Limits { fuel: c.fuel, memory_bytes: c.memory, timeout_ms: c.timeout_ms }),
        args: c.args.iter().map(|a| a.to_string()).collect(),
        env: c.env.iter().map(|(k, v)| pb::EnvVar { key: k.to_string(), value: v.to_string() }).collect(),
        ..Default::default()
    };
    let id = client.submit(vec![spec]).await?[0];
    Ok(client.wait_one(id).await?)
}

fn state(t: &pb::Task) -> &'static str {
    match t.state() {
        pb::TaskState::Succeeded => "succeeded",
        pb::TaskState::Failed => "failed",
        pb::TaskState::Cancelled => "cancelled",
        pb::TaskState::Pending => "pending",
        pb::TaskState::Running => "running",
        pb::TaskState::Unspecified => "unknown",
    }
}

/// "succeeded", or the failure kind.
fn outcome(t: &pb::Task) -> String {
    match &t.error {
        None => state(t).to_string(),
        Some(e) => e.kind().as_str_name().trim_start_matches("FAILURE_KIND_").to_lowercase(),
    }
}

fn detail(t: &pb::Task) -> String {
    match &t.error {
        None => String::from_utf8_lossy(&t.output).replace('\n', "\\n"),
        Some(e) => {
            let stderr = String::from_utf8_lossy(&t.stderr);
            let extra = if stderr.trim().is_empty() { String::new() } else { format!(" [stderr: {}]", stderr.trim()) };
            format!("{}: {}{extra}", outcome(t), e.message)
        }
    }
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let cut: String = s.chars().take(max - 1).collect();
    format!("{cut}…")
}
