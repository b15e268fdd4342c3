//! The sandbox: runs one program under a fuel budget, a memory cap and a wall-clock
//! timeout, with a closed WASI context (no filesystem, network or host environment).
//!
//! One engine and two linkers are built once; every run gets a fresh `Store` from the
//! pooling allocator. Guests run as async calls that yield every [`FUEL_YIELD_INTERVAL`]
//! units of fuel, so a timeout or cancellation drops the run at the next yield even when the
//! guest loops forever or waits in a WASI call; each call from the guest into the host
//! checks them too, so a loop of expensive host calls (which cost the guest little fuel)
//! stops as well. A trap, a refused allocation or an exhausted budget ends that run only;
//! the executor keeps serving.

mod capture;
pub mod engine;
mod host;
mod programs;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use wasmgrid_common::Size;
use wasmgrid_proto::FailureKind;
use wasmtime::component::{Component, Linker as ComponentLinker};
use wasmtime::{
    CallHook, Engine, Linker, Module, PoolConcurrencyLimitError, Store, StoreContextMut, Trap, UpdateDeadline,
    WasmBacktrace,
};
use wasmtime_wasi::{I32Exit, WasiCtxBuilder};

use self::capture::Capture;
use self::engine::EpochTicker;
pub use self::engine::Metering;
use self::host::{Host, Interrupted, MemoryCap};
pub use self::programs::Program;
use self::programs::{CommandComponent, CommandModule, Ended, Failed, TaskComponent};

/// Fuel between two voluntary yields of a running guest: well under a millisecond of plain
/// code, about 1 MB of `memory.fill` or `memory.copy`. A timeout or cancel takes effect at
/// the next yield.
pub const FUEL_YIELD_INTERVAL: u64 = 1_000_000;

/// Limits that are the executor's, not the task's.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Fuel of a task that does not set its own.
    pub default_fuel: u64,
    /// Largest output a task may return.
    pub max_output: usize,
    /// Stderr (and a task component's stdout) kept per run; the rest is dropped.
    pub max_stderr: usize,
}

/// One run to perform.
#[derive(Debug, Clone)]
pub struct Job {
    pub input: Vec<u8>,
    /// `argv[0]` for command programs.
    pub program_name: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Zero means the executor's default.
    pub fuel: u64,
    pub memory: u64,
    pub timeout: Duration,
    pub cancel: CancellationToken,
}

/// How a run went.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub failure: Option<(FailureKind, String)>,
    pub output: Vec<u8>,
    pub stderr: Vec<u8>,
    pub stderr_truncated: bool,
    pub fuel_consumed: u64,
    pub duration: Duration,
    pub exit_code: Option<i32>,
}

/// What kind of program a module is (from the master).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Component,
    Command,
}

/// A compiled module, before linking.
pub enum Compiled {
    Component(Component),
    Module(Module),
}

pub struct Sandbox {
    engine: Engine,
    components: ComponentLinker<Host>,
    modules: Linker<Host>,
    settings: Settings,
    metering: Metering,
    /// Only for an epoch-only sandbox.
    _ticker: Option<EpochTicker>,
}

/// True for the component binary format (as opposed to a core module).
pub fn is_component(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && &bytes[..4] == b"\0asm" && bytes[6..8] == [1, 0]
}

impl Sandbox {
    pub fn new(slots: u32, settings: Settings) -> anyhow::Result<Self> {
        Self::with_metering(slots, settings, Metering::Fuel)
    }

    /// A sandbox with the given metering: `EpochOnly` runs are bounded by time and memory
    /// only, for the benchmark that measures what fuel metering costs.
    pub fn with_metering(slots: u32, settings: Settings, metering: Metering) -> anyhow::Result<Self> {
        let engine = engine::build(slots, metering)?;
        let mut components = ComponentLinker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut components)?;
        let mut modules = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut modules, |h: &mut Host| &mut h.wasi)?;
        // wasmtime-wasi fails `proc_exit` with a status of 126 or more (shells keep those for
        // signals), which would make `exit(255)` or `exit(-1)` a trap: any status is the
        // program's exit code here (as the program gave it, -1 for `exit(-1)`).
        modules.allow_shadowing(true).func_wrap(
            "wasi_snapshot_preview1",
            "proc_exit",
            |_: wasmtime::Caller<'_, Host>, status: i32| -> wasmtime::Result<()> {
                Err(wasmtime_wasi::I32Exit(status).into())
            },
        )?;
        modules.allow_shadowing(false);
        let ticker = match metering {
            Metering::Fuel => None,
            Metering::EpochOnly => Some(EpochTicker::start(engine.clone())?),
        };
        Ok(Self { engine, components, modules, settings, metering, _ticker: ticker })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Compiles `bytes` (slow: call from a blocking thread).
    pub fn compile(&self, bytes: &[u8]) -> wasmtime::Result<Compiled> {
        if is_component(bytes) {
            Ok(Compiled::Component(Component::new(&self.engine, bytes)?))
        } else {
            Ok(Compiled::Module(Module::new(&self.engine, bytes)?))
        }
    }

    /// Links a compiled module as a program of `kind`.
    pub fn link(&self, kind: Kind, compiled: &Compiled) -> wasmtime::Result<Arc<dyn Program>> {
        Ok(match (kind, compiled) {
            (Kind::Component, Compiled::Component(c)) => Arc::new(TaskComponent::new(&self.components, c)?),
            (Kind::Command, Compiled::Component(c)) => Arc::new(CommandComponent::new(&self.components, c)?),
            (Kind::Command, Compiled::Module(m)) => Arc::new(CommandModule::new(&self.modules, m)?),
            (Kind::Component, Compiled::Module(_)) => {
                return Err(wasmtime::format_err!("a core module cannot be a task component"))
            }
        })
    }

    /// Runs `job` to its end: success, guest error, trap, exhausted limit, timeout or cancel.
    pub async fn run(&self, program: &dyn Program, job: Job) -> Outcome {
        let fuel = if job.fuel == 0 { self.settings.default_fuel } else { job.fuel };
        let logs = Capture::new(self.settings.max_stderr);
        let stdout = if program.is_command() { Capture::new(self.settings.max_output) } else { logs.clone() };
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(stdout.clone()).stderr(logs.clone());
        if program.is_command() {
            wasi.stdin(wasmtime_wasi::p2::pipe::MemoryInputPipe::new(job.input.clone()));
            let mut argv = vec![job.program_name.clone()];
            argv.extend(job.args.iter().cloned());
            wasi.args(&argv).envs(&job.env);
        }
        let started = Instant::now();
        let host = Host {
            wasi: wasi.build_p1(),
            limits: MemoryCap::new(job.memory),
            deadline: started.checked_add(job.timeout),
            cancel: job.cancel.clone(),
            output: program.is_command().then(|| stdout.clone()),
        };
        let mut store = Store::new(&self.engine, host);
        store.limiter(|h| &mut h.limits);
        store.call_hook(check_on_host_calls);
        match self.metering {
            Metering::Fuel => {
                if let Err(e) = store.set_fuel(fuel) {
                    return failed(FailureKind::Trap, format!("cannot set fuel: {e}"));
                }
                // The yields bound the run's time; the fuel count is also written back at
                // those points, so a run stopped mid-flight reports about what it used.
                if let Err(e) = store.fuel_async_yield_interval(Some(FUEL_YIELD_INTERVAL)) {
                    return failed(FailureKind::Trap, format!("cannot set the fuel yield interval: {e}"));
                }
            }
            Metering::EpochOnly => {
                store.set_epoch_deadline(1);
                store.epoch_deadline_callback(|_| Ok(UpdateDeadline::Yield(1)));
            }
        }

        let ended = {
            let run = program.run(&mut store, &job.input);
            tokio::select! {
                r = tokio::time::timeout(job.timeout, run) => r.map_err(|_| Interrupted::Timeout),
                _ = job.cancel.cancelled() => Err(Interrupted::Cancelled),
            }
        };
        // A host call that found the deadline passed or the run cancelled ended it with an
        // error: the same end as the select's.
        let ended = match ended {
            Ok(Err(failed)) => failed.interruption().map_or(Ok(Err(failed)), Err),
            other => other,
        };
        let duration = started.elapsed();
        let fuel_consumed = match self.metering {
            Metering::Fuel => fuel.saturating_sub(store.get_fuel().unwrap_or(0)),
            Metering::EpochOnly => 0,
        };
        let refused = store.data_mut().limits.refused.take();
        let (stdout_bytes, stdout_overflow) = stdout.take();
        let (stderr, stderr_truncated) =
            if program.is_command() { logs.take() } else { (stdout_bytes.clone(), stdout_overflow) };
        let mut out = Outcome { stderr, stderr_truncated, fuel_consumed, duration, ..Outcome::default() };
        if program.is_command() {
            out.output = stdout_bytes;
        }
        let failure = match ended {
            Err(Interrupted::Timeout) => Some((
                FailureKind::Timeout,
                format!("the task ran past its timeout of {}", humantime::format_duration(job.timeout)),
            )),
            Err(Interrupted::Cancelled) => Some((FailureKind::Cancelled, "cancelled while running".to_string())),
            Err(Interrupted::OutputTooLarge) => self.too_big(self.settings.max_output + 1),
            Ok(Err(Failed::Instantiate(e))) => Some(classify(&e, fuel, FailureKind::InvalidModule)),
            Ok(Err(Failed::Run(e))) => Some(classify(&e, fuel, FailureKind::Trap)),
            Ok(Ok(Ended::Output(output))) => {
                let too_big = self.too_big(output.len());
                out.output = output;
                too_big
            }
            Ok(Ok(Ended::Error(message))) => Some((FailureKind::TaskError, self.bounded(message))),
            Ok(Ok(Ended::Exited(code))) => {
                out.exit_code = Some(code);
                if stdout_overflow {
                    self.too_big(self.settings.max_output + 1)
                } else if code != 0 {
                    Some((FailureKind::TaskError, format!("the program exited with code {code}")))
                } else {
                    None
                }
            }
        };
        out.failure = match (refused, failure) {
            // A refused allocation explains a guest that then fails however it reacts to it
            // (a C program usually traps or gives up). A run that succeeds anyway, or that
            // its timeout, a cancel or its fuel ends, is reported as what it was.
            (Some(why), Some((FailureKind::Trap | FailureKind::TaskError | FailureKind::InvalidModule, _))) => {
                Some((FailureKind::MemoryLimit, why))
            }
            (_, failure) => failure,
        };
        if out.failure.as_ref().is_some_and(|(kind, _)| *kind == FailureKind::OutputTooLarge) {
            // Refused output is not kept, sent or stored; nor is an exit code, which the
            // program may or may not have reached whatever it did (a write past the limit
            // ends some runs before their exit).
            out.output = Vec::new();
            out.exit_code = None;
        }
        out
    }

    /// A task component's own error message, cut to `max-stderr-size` like its stderr: it is
    /// stored and replicated with the result, and nothing else bounds it but the guest's memory.
    fn bounded(&self, mut message: String) -> String {
        let max = self.settings.max_stderr;
        if message.len() <= max {
            return message;
        }
        let total = message.len();
        let mut cut = max;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push_str(&format!(
            "… (cut at max-stderr-size = {}; {} in all)",
            Size(max as u64).human(),
            Size(total as u64).human()
        ));
        message
    }

    fn too_big(&self, len: usize) -> Option<(FailureKind, String)> {
        let max = self.settings.max_output;
        (len > max).then(|| {
            let size = if len == max + 1 {
                format!("more than {}", Size(max as u64).human())
            } else {
                Size(len as u64).human_past(Size(max as u64))
            };
            (
                FailureKind::OutputTooLarge,
                format!("output too large: {size}, over the limit max-output-size = {}", Size(max as u64).human()),
            )
        })
    }
}

/// The call hook of every run: a call from the guest into the host (a WASI function, or one
/// of wasmtime's own, such as `memory.grow`) ends the run if its deadline has passed, it
/// was cancelled, or it is a command that wrote more output than it may (so a guest that
/// writes for ever stops at its next write, not at its timeout). Fuel bounds the guest's
/// own code; this bounds the host's work it asks for.
fn check_on_host_calls(store: StoreContextMut<'_, Host>, hook: CallHook) -> wasmtime::Result<()> {
    if matches!(hook, CallHook::CallingHost) {
        store.data().check()?;
    }
    Ok(())
}

fn failed(kind: FailureKind, message: String) -> Outcome {
    Outcome { failure: Some((kind, message)), ..Outcome::default() }
}

/// Names a wasmtime error: a pool with no instance, memory, table or stack free (more runs
/// at once than it was sized for) as `executor_lost`; exhausted fuel, stack overflow and
/// other traps by their code;
/// anything else as `otherwise` (an instantiation problem is an invalid module, a host
/// function's error a trap).
fn classify(e: &wasmtime::Error, fuel: u64, otherwise: FailureKind) -> (FailureKind, String) {
    if let Some(full) = e.downcast_ref::<PoolConcurrencyLimitError>() {
        // Says nothing about the module: run it again, here or elsewhere.
        return (FailureKind::ExecutorLost, format!("the executor had no instance free: {full}"));
    }
    // A task component that calls `exit` ends without a result (a command's exit is its exit
    // code, taken before this).
    if let Some(I32Exit(code)) = e.downcast_ref::<I32Exit>() {
        return (FailureKind::TaskError, format!("the task called exit (status {code}) instead of returning from run"));
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => (FailureKind::OutOfFuel, format!("the task used all of its {fuel} units of fuel")),
        Some(Trap::StackOverflow) => (FailureKind::Trap, "stack overflow: the task recursed too deeply".to_string()),
        Some(trap) => (FailureKind::Trap, trap.to_string()),
        // An error a host function raised carries the guest's backtrace as its context,
        // whose first line says nothing ("error while executing at wasm backtrace:"): name
        // the error itself.
        // Its own text is the host's ("Pointer not aligned to 4: Region {..}"): say whose.
        None if e.downcast_ref::<WasmBacktrace>().is_some() => {
            (otherwise, format!("a call into the host (WASI) failed: {}", first_line(e.root_cause())))
        }
        None => (otherwise, first_line(&format!("{e:#}"))),
    }
}

fn first_line(message: &dyn std::fmt::Display) -> String {
    message.to_string().lines().next().unwrap_or_default().to_string()
}

#[cfg(test)]
mod tests;
