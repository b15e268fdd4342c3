//! The `master-client` command line: a thin layer over [`Client`](crate::Client).

/// `println!`, except that the program ends quietly once the reader has gone
/// (`master-client task list | head -1`) instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout(), $($arg)*) {
            $crate::cli::stdout_failed(e);
        }
    }};
}

mod bench;
mod cluster;
mod executors;
mod files;
mod members;
mod modules;
mod render;
mod tasks;
mod values;

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};
use wasmgrid_common::AddrList;
use wasmgrid_proto::security::{Security, SecurityFiles};

use crate::Client;

#[derive(Debug, Parser)]
#[command(name = "master-client", version = wasmgrid_common::VERSION, about = "Upload WebAssembly modules, run tasks and watch a wasmgrid cluster")]
pub struct Cli {
    /// The masters, comma-separated; any one will do.
    #[arg(
        long,
        global = true,
        env = "WASMGRID_MASTER_ADDR",
        default_value = "127.0.0.1:10240",
        value_name = "HOST:PORT,..."
    )]
    pub master_addr: AddrList,
    /// File holding the cluster's shared secret (or set WASMGRID_TOKEN to the secret itself).
    #[arg(long, global = true, env = "WASMGRID_TOKEN_FILE", value_name = "FILE")]
    pub auth_token_file: Option<std::path::PathBuf>,
    /// CA certificate (PEM) the masters' certificates are verified against: talk TLS.
    #[arg(long, global = true, env = "WASMGRID_TLS_CA", value_name = "FILE")]
    pub tls_ca: Option<std::path::PathBuf>,
    /// How to print results: for people, or one JSON document per command.
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Upload and list modules.
    #[command(subcommand)]
    Module(modules::ModuleCommand),
    /// Submit, inspect, wait for and cancel tasks.
    #[command(subcommand)]
    Task(tasks::TaskCommand),
    /// The state of the cluster.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// The executors: list them, drain one.
    #[command(subcommand)]
    Executor(executors::ExecutorCommand),
    /// Load the cluster with tasks; report throughput and latency.
    Bench(bench::BenchArgs),
    /// The master group: list, add or remove masters at run time.
    #[command(subcommand)]
    Member(members::MemberCommand),
}

/// Runs the command; the exit code is 0 on success, 1 when a task failed or on any error.
pub async fn run(cli: Cli) -> i32 {
    let output = cli.output;
    match execute(cli).await {
        Ok(code) => code,
        Err(message) => {
            let code = report(&message);
            if output == Output::Json {
                // Every command prints one JSON document, a failed one too (a closed pipe
                // does not turn the failure into success).
                let line = message.lines().next().unwrap_or("failed");
                let document = serde_json::json!({ "error": { "message": line } });
                let _ = writeln!(std::io::stdout(), "{document:#}");
            }
            code
        }
    }
}

async fn execute(cli: Cli) -> Result<i32, String> {
    if let Some(a) = cli.master_addr.0.iter().find(|a| a.tls()).filter(|_| cli.tls_ca.is_none()) {
        return Err(format!("{a} asks for TLS: give --tls-ca, the CA of the masters' certificates"));
    }
    let client = Client::new(cli.master_addr.0.clone()).map_err(|e| e.to_string())?;
    let files = SecurityFiles {
        auth_token_file: cli.auth_token_file.clone(),
        tls_ca: cli.tls_ca.clone(),
        ..Default::default()
    };
    let security = Security::load(&files)
        .and_then(|s| s.with_token_fallback(std::env::var("WASMGRID_TOKEN").ok()))
        .map_err(|e| e.to_string())?;
    let client = client.with_security(security).with_notice(Arc::new(|note: &str| eprintln!("note: {note}")));
    // How long to look for a leader before giving up (humantime, e.g. 30s).
    let client = match std::env::var("WASMGRID_CLIENT_DEADLINE").ok().map(|d| d.parse::<wasmgrid_common::Dur>()) {
        Some(Ok(d)) => client.with_deadline(d.0),
        Some(Err(e)) => return Err(format!("WASMGRID_CLIENT_DEADLINE: {e}")),
        None => client,
    };
    let result = match cli.command {
        Command::Module(cmd) => modules::run(&client, cmd, cli.output).await,
        Command::Task(cmd) => tasks::run(&client, cmd, cli.output).await,
        Command::Cluster(cmd) => cluster::run(&client, cmd, cli.output).await,
        Command::Member(cmd) => members::run(&client, cmd, cli.output).await,
        Command::Executor(cmd) => executors::run(&client, cmd, cli.output).await,
        Command::Bench(args) => bench::run_bench(client, args, cli.output).await,
    };
    result.map_err(|e| wasmgrid_common::error_chain::describe(e.as_ref()))
}

/// The exit code of a program whose stdout reader goes away: 0 unless what it prints is
/// already known to be a failure (see [`fail_even_if_closed`]).
static EXIT_IF_CLOSED: AtomicI32 = AtomicI32::new(0);

/// What is printed from here on reports a failure: a reader that goes away (`| head -c 1`)
/// must not turn it into success (`set -o pipefail` scripts see the exit code).
pub(crate) fn fail_even_if_closed() {
    EXIT_IF_CLOSED.store(1, Ordering::Relaxed);
}

/// Set once stdout's reader has gone, for [`write_stdout`].
static STDOUT_GONE: AtomicBool = AtomicBool::new(false);

/// Writes `bytes` to stdout, or nothing once its reader has gone (see [`stdout_gone`]). For
/// output that must not end the program early: a failed task's message still goes to
/// stderr after its output was cut off. Other write errors end the program.
pub(crate) fn write_stdout(bytes: &[u8]) {
    if stdout_gone() {
        return;
    }
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => STDOUT_GONE.store(true, Ordering::Relaxed),
        Err(e) => stdout_failed(e),
    }
}

/// Whether stdout's reader has gone, as [`write_stdout`] found.
pub(crate) fn stdout_gone() -> bool {
    STDOUT_GONE.load(Ordering::Relaxed)
}

/// Writing to stdout failed: a closed pipe ends the program quietly (the reader has what it
/// wanted), with the exit code of what it was printing; anything else as an error.
pub(crate) fn stdout_failed(e: std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(EXIT_IF_CLOSED.load(Ordering::Relaxed));
    }
    std::process::exit(report(&format!("writing to stdout: {e}")));
}

fn report(message: &str) -> i32 {
    let line = message.lines().next().unwrap_or("failed");
    eprintln!("error: {line}");
    1
}
