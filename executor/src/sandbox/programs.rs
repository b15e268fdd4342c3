//! The plugin point of the sandbox: one [`Program`] per kind of task, each knowing how to
//! instantiate itself in a prepared store and run to an end. Everything else (limits,
//! capture, timeouts, classification of failures) is shared and lives in `run`.

use wasmtime::component::{Component, InstancePre as ComponentPre, Linker as ComponentLinker};
use wasmtime::{InstancePre, Linker, Module, Store};
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi::I32Exit;

use super::host::{Host, Interrupted};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "task",
        exports: { default: async },
    });
}

/// How a run ended when the guest itself ended it.
pub enum Ended {
    /// A task component returned `ok(output)`.
    Output(Vec<u8>),
    /// A task component returned `err(message)`.
    Error(String),
    /// A command program exited (its output is what it wrote to stdout).
    Exited(i32),
}

/// Where a run failed, so instantiation problems can be told from guest traps.
pub enum Failed {
    Instantiate(wasmtime::Error),
    Run(wasmtime::Error),
}

impl Failed {
    /// Set when a host call ended the run because its deadline passed or it was cancelled.
    pub fn interruption(&self) -> Option<Interrupted> {
        let (Self::Instantiate(e) | Self::Run(e)) = self;
        e.downcast_ref::<Interrupted>().copied()
    }
}

/// A compiled, pre-linked program, ready for fresh stores.
#[wasmtime_wasi::async_trait]
pub trait Program: Send + Sync {
    /// True for WASI command programs: input is stdin, output is stdout.
    fn is_command(&self) -> bool;

    async fn run(&self, store: &mut Store<Host>, input: &[u8]) -> Result<Ended, Failed>;
}

/// A component exporting the task world's `run`.
pub struct TaskComponent(bindings::TaskPre<Host>);

/// A component exporting `wasi:cli/run`.
pub struct CommandComponent(CommandPre<Host>);

/// A WASI preview1 core module exporting `_start`.
pub struct CommandModule(InstancePre<Host>);

impl TaskComponent {
    pub fn new(linker: &ComponentLinker<Host>, component: &Component) -> wasmtime::Result<Self> {
        let pre: ComponentPre<Host> = linker.instantiate_pre(component)?;
        Ok(Self(bindings::TaskPre::new(pre)?))
    }
}

impl CommandComponent {
    pub fn new(linker: &ComponentLinker<Host>, component: &Component) -> wasmtime::Result<Self> {
        Ok(Self(CommandPre::new(linker.instantiate_pre(component)?)?))
    }
}

impl CommandModule {
    pub fn new(linker: &Linker<Host>, module: &Module) -> wasmtime::Result<Self> {
        Ok(Self(linker.instantiate_pre(module)?))
    }
}

#[wasmtime_wasi::async_trait]
impl Program for TaskComponent {
    fn is_command(&self) -> bool {
        false
    }

    async fn run(&self, store: &mut Store<Host>, input: &[u8]) -> Result<Ended, Failed> {
        let task = self.0.instantiate_async(&mut *store).await.map_err(Failed::Instantiate)?;
        match task.call_run(&mut *store, input).await {
            Ok(Ok(output)) => Ok(Ended::Output(output)),
            Ok(Err(message)) => Ok(Ended::Error(message)),
            Err(e) => Err(Failed::Run(e)),
        }
    }
}

#[wasmtime_wasi::async_trait]
impl Program for CommandComponent {
    fn is_command(&self) -> bool {
        true
    }

    async fn run(&self, store: &mut Store<Host>, _input: &[u8]) -> Result<Ended, Failed> {
        let command = self.0.instantiate_async(&mut *store).await.map_err(Failed::Instantiate)?;
        match command.wasi_cli_run().call_run(&mut *store).await {
            Ok(Ok(())) => Ok(Ended::Exited(0)),
            Ok(Err(())) => Ok(Ended::Exited(1)),
            Err(e) => exit_code(e),
        }
    }
}

#[wasmtime_wasi::async_trait]
impl Program for CommandModule {
    fn is_command(&self) -> bool {
        true
    }

    async fn run(&self, store: &mut Store<Host>, _input: &[u8]) -> Result<Ended, Failed> {
        // A start function may end the program already (`proc_exit` in it): an exit code.
        let instance = match self.0.instantiate_async(&mut *store).await {
            Ok(instance) => instance,
            Err(e) if e.downcast_ref::<I32Exit>().is_some() => return exit_code(e),
            Err(e) => return Err(Failed::Instantiate(e)),
        };
        let start = instance.get_typed_func::<(), ()>(&mut *store, "_start").map_err(Failed::Instantiate)?;
        match start.call_async(&mut *store, ()).await {
            Ok(()) => Ok(Ended::Exited(0)),
            Err(e) => exit_code(e),
        }
    }
}

/// `exit(n)` reaches the host as an `I32Exit` error: it is an end, not a failure.
fn exit_code(e: wasmtime::Error) -> Result<Ended, Failed> {
    match e.downcast_ref::<I32Exit>() {
        Some(I32Exit(code)) => Ok(Ended::Exited(*code)),
        None => Err(Failed::Run(e)),
    }
}
