//! `task submit|get|wait|list|cancel`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use wasmgrid_common::{Digest, Dur, Size};
use wasmgrid_proto as pb;

use super::files::{self, Contents};
use super::modules::upload;
use super::render::{failure_line, print_json, state, task_json, task_text};
use super::values::{env_var, more_than_zero, timeout};
use super::Output;
use crate::Client;

#[derive(Debug, Subcommand)]
pub enum TaskCommand {
    /// Submit a task; prints its id (with --wait, its output).
    Submit(SubmitArgs),
    /// Show a task.
    Get { id: u64 },
    /// Wait for tasks to finish; prints their output (exit 1 if any failed).
    Wait {
        #[arg(required = true)]
        ids: Vec<u64>,
    },
    /// List tasks, optionally in one state.
    List {
        #[arg(long, value_enum)]
        state: Option<StateArg>,
        /// At most this many (the oldest first).
        #[arg(long, value_parser = more_than_zero::<usize>)]
        limit: Option<usize>,
    },
    /// Cancel a pending or running task.
    Cancel { id: u64 },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum StateArg {
    Pending,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl From<StateArg> for pb::TaskState {
    fn from(s: StateArg) -> Self {
        match s {
            StateArg::Pending => Self::Pending,
            StateArg::Running => Self::Running,
            StateArg::Succeeded => Self::Succeeded,
            StateArg::Failed => Self::Failed,
            StateArg::Cancelled => Self::Cancelled,
        }
    }
}

#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// A module digest (sha256:...) or a .wasm file, uploaded first.
    pub module: String,
    /// The task input, as text.
    #[arg(long, conflicts_with = "input_file")]
    pub input: Option<String>,
    /// Read the task input from a file, or from stdin with `-`.
    #[arg(long, value_name = "PATH|-")]
    pub input_file: Option<PathBuf>,
    /// Fuel budget (about one unit per wasm instruction); default: the executor's.
    #[arg(long, value_parser = more_than_zero::<u64>)]
    pub fuel: Option<u64>,
    /// Memory cap, e.g. 64MiB; default: the master's default-memory.
    #[arg(long, value_parser = more_than_zero::<Size>)]
    pub memory: Option<Size>,
    /// Wall-clock limit, e.g. 30s; default: the master's default-timeout.
    #[arg(long, value_parser = timeout)]
    pub timeout: Option<Dur>,
    /// Runs allowed when executors are lost under the task.
    #[arg(long, value_parser = more_than_zero::<u32>)]
    pub max_attempts: Option<u32>,
    /// Higher runs first; FIFO within a priority.
    #[arg(long, allow_negative_numbers = true, default_value_t = 0)]
    pub priority: i32,
    /// An argument of a command program (repeatable, in order).
    #[arg(long = "arg", value_name = "VALUE", allow_hyphen_values = true)]
    pub args: Vec<String>,
    /// An environment variable of a command program (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = env_var)]
    pub env: Vec<pb::EnvVar>,
    /// Wait for the task and print its output (or its failure, with exit status 1).
    #[arg(long)]
    pub wait: bool,
}

pub async fn run(client: &Client, cmd: TaskCommand, output: Output) -> anyhow::Result<i32> {
    match cmd {
        TaskCommand::Submit(args) => submit(client, args, output).await,
        TaskCommand::Get { id } => {
            let t = client.get(id).await?;
            match output {
                Output::Json => print_json(&task_json(&t)),
                Output::Text => out!("{}", task_text(&t)),
            }
            Ok(0)
        }
        TaskCommand::Wait { ids } => wait(client, &ids, output).await,
        TaskCommand::List { state: wanted, limit } => {
            let tasks = client.list(wanted.map(Into::into), limit).await?;
            match output {
                Output::Json => print_json(&tasks.iter().map(task_json).collect()),
                Output::Text => {
                    out!(
                        "{:>8}  {:<10} {:<19} {:>8} {:>9}  {:<20} ERROR",
                        "ID",
                        "STATE",
                        "MODULE",
                        "ATTEMPTS",
                        "TIME",
                        "EXECUTOR"
                    );
                    for t in &tasks {
                        // A failure, or why a pending task waits (as `task get` says).
                        let error = match &t.error {
                            Some(_) => failure_line(t),
                            None if !t.pending_reason.is_empty() => format!("(waiting: {})", t.pending_reason),
                            None => String::new(),
                        };
                        // A duration once the task has one: a running task's is not known yet.
                        let time = if t.state().is_final() { format!("{}ms", t.duration_ms) } else { "-".into() };
                        out!(
                            "{:>8}  {:<10} {:<19} {:>8} {:>9}  {:<20} {}",
                            t.id,
                            state(t.state()),
                            short_digest(&t.module),
                            t.attempts,
                            time,
                            t.executor,
                            error
                        );
                    }
                }
            }
            Ok(0)
        }
        TaskCommand::Cancel { id } => {
            let t = client.cancel(id).await?;
            match output {
                Output::Json => print_json(&task_json(&t)),
                Output::Text => out!("task {id} {}", state(t.state())),
            }
            Ok(0)
        }
    }
}

/// `task wait ID...`: each task's outcome once it has finished; exit 1 if any did not succeed.
async fn wait(client: &Client, ids: &[u64], output: Output) -> anyhow::Result<i32> {
    let mut done = Vec::new();
    client.wait(ids, |t| done.push(t)).await?;
    done.sort_by_key(|t| ids.iter().position(|i| *i == t.id));
    let unsuccessful: Vec<String> =
        done.iter().filter(|t| t.state() != pb::TaskState::Succeeded).map(|t| t.id.to_string()).collect();
    if !unsuccessful.is_empty() {
        super::fail_even_if_closed();
    }
    match output {
        Output::Json => {
            // The exit code says some failed; stderr says which, as in text. Said first, so a
            // reader that goes away cannot cut it off.
            if !unsuccessful.is_empty() {
                eprintln!(
                    "{} of the {} tasks did not succeed: {}",
                    unsuccessful.len(),
                    done.len(),
                    unsuccessful.join(", ")
                );
            }
            match done.as_slice() {
                [one] => print_json(&task_json(one)),
                all => print_json(&all.iter().map(task_json).collect()),
            }
        }
        Output::Text if done.len() == 1 => print_outcome(&done[0]),
        Output::Text => {
            // Like `head` given several files: a header before each output.
            for (i, t) in done.iter().enumerate() {
                if super::stdout_gone() {
                    // The reader has what it wanted: only failures are still said.
                    if t.state() != pb::TaskState::Succeeded {
                        say_failure(t);
                    }
                    continue;
                }
                let header = format!("{}==> task {} {} <==\n", if i == 0 { "" } else { "\n" }, t.id, state(t.state()));
                super::write_stdout(header.as_bytes());
                print_outcome(t);
                if !t.output.is_empty() && !t.output.ends_with(b"\n") {
                    super::write_stdout(b"\n");
                }
            }
        }
    }
    Ok(i32::from(!unsuccessful.is_empty()))
}

async fn submit(client: &Client, args: SubmitArgs, output: Output) -> anyhow::Result<i32> {
    let module = resolve_module(client, &args.module).await?;
    let input = match (&args.input, &args.input_file) {
        (Some(text), _) => text.clone().into_bytes(),
        (None, Some(p)) => files::read(client, p, Contents::Input).await?,
        (None, None) => Vec::new(),
    };
    let spec = pb::TaskSpec {
        module,
        input,
        limits: Some(pb::Limits {
            fuel: args.fuel.unwrap_or(0),
            memory_bytes: args.memory.map_or(0, Size::bytes),
            timeout_ms: args.timeout.map_or(0, Dur::as_millis),
        }),
        max_attempts: args.max_attempts.unwrap_or(0),
        priority: args.priority,
        args: args.args,
        env: args.env,
    };
    if !args.wait {
        let ids = client.submit(vec![spec]).await?;
        let id = *ids.first().context("the master returned no task id")?;
        match output {
            // The task is submitted whatever happens next: a failed read of its record must
            // not exit 1, or a script that retries would submit it twice.
            Output::Json => match client.get(id).await {
                Ok(t) => print_json(&task_json(&t)),
                Err(e) => {
                    eprintln!("warning: task {id} was submitted, but its record could not be read back: {e}");
                    print_json(&serde_json::json!({ "id": id.to_string() }));
                }
            },
            Output::Text => out!("{id}"),
        }
        return Ok(0);
    }
    let memory = args.memory.map(Size::bytes);
    let run = client.run(spec);
    let note = async {
        tokio::time::sleep(std::time::Duration::from_secs(3)).await;
        if let Some(why) = why_waiting(client, memory).await {
            eprintln!("note: {why}");
        }
    };
    tokio::pin!(run, note);
    let mut noted = false;
    let t = loop {
        tokio::select! {
            t = &mut run => break t?,
            () = &mut note, if !noted => noted = true,
        }
    };
    let failed = t.state() != pb::TaskState::Succeeded;
    match output {
        Output::Json => {
            if failed {
                super::fail_even_if_closed();
                say_failure(&t);
            }
            print_json(&task_json(&t));
        }
        Output::Text => print_outcome(&t),
    }
    Ok(i32::from(failed))
}

/// Why a task may not run soon, when the cluster shows a reason: no executor connected, or
/// none with the memory it asks for.
async fn why_waiting(client: &Client, memory: Option<u64>) -> Option<String> {
    let status = client.cluster_status().await.ok()?;
    let largest = status.executors.iter().filter(|e| e.connected && e.state == "alive").map(|e| e.memory_bytes).max();
    match (largest, memory) {
        (None, _) => Some("no executor is connected and taking tasks; the task waits for one".into()),
        (Some(largest), Some(need)) if need > largest => Some(format!(
            "the task needs {} of memory and the largest executor has {}; it waits for one with enough",
            Size(need).human(),
            Size(largest).human()
        )),
        _ => None,
    }
}

/// A digest as given, or a file uploaded first.
pub async fn resolve_module(client: &Client, module: &str) -> anyhow::Result<String> {
    if Digest::looks_like(module) {
        return Ok(module.to_string());
    }
    let path = Path::new(module);
    if !path.exists() {
        let bare_hex = module.len() >= 12 && module.bytes().all(|b| b.is_ascii_hexdigit());
        if module.to_ascii_lowercase().starts_with("sha256:") || bare_hex {
            bail!(
                "module {module:?} is not a whole digest, nor a file: a digest is `sha256:` (in lowercase) and 64 \
                 hex digits, as `module upload` and `module list` print it (prefixes are not taken)"
            );
        }
        bail!("module {module:?} is neither a sha256: digest nor an existing .wasm file");
    }
    Ok(upload(client, path).await?.digest)
}

/// The raw output on stdout; a failure on stderr, even when stdout's reader has gone (the
/// guest may have written some output before it failed).
fn print_outcome(t: &pb::Task) {
    super::write_stdout(&t.output);
    // The guest's own stderr (a component's log lines) comes through as a local run's would.
    if !t.stderr.is_empty() {
        let mut stderr = std::io::stderr().lock();
        let _ = stderr.write_all(&t.stderr);
        if !t.stderr.ends_with(b"\n") {
            let _ = stderr.write_all(b"\n");
        }
        if t.stderr_truncated {
            let _ = stderr.write_all(b"[the task's stderr was cut at the executor's max-stderr-size]\n");
        }
    }
    if t.state() != pb::TaskState::Succeeded {
        say_failure(t);
    }
}

/// A task that did not succeed, on stderr: `task 7 failed: trap: ...`.
fn say_failure(t: &pb::Task) {
    eprintln!("task {} {}: {}", t.id, state(t.state()), failure_line(t));
}

fn short_digest(d: &str) -> String {
    d.get(..19).unwrap_or(d).to_string()
}
