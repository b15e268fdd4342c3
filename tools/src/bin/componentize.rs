//! `componentize CORE.wasm OUT.wasm [--command]`: turns a core module built against the task
//! world (its component type embedded by `wit-bindgen c`) into a component, linking WASI
//! preview1 through the adapter pinned to our wasmtime version. `--command` uses the command
//! adapter instead, for `main()` programs that should export `wasi:cli/run`.

use anyhow::Context;
use clap::Parser;
use wasi_preview1_component_adapter_provider::{
    WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, WASI_SNAPSHOT_PREVIEW1_COMMAND_ADAPTER, WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
};
use wit_component::ComponentEncoder;

#[derive(Parser)]
#[command(about = "Turn a core wasm module into a component (WASI preview1 adapted)")]
struct Args {
    core: std::path::PathBuf,
    out: std::path::PathBuf,
    /// Use the command adapter (a `main()` program exporting wasi:cli/run).
    #[arg(long)]
    command: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let module = std::fs::read(&args.core).with_context(|| format!("cannot read {}", args.core.display()))?;
    let adapter =
        if args.command { WASI_SNAPSHOT_PREVIEW1_COMMAND_ADAPTER } else { WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER };
    let component = ComponentEncoder::default()
        .module(&module)?
        .adapter(WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, adapter)?
        .validate(true)
        .encode()
        .with_context(|| format!("cannot make a component of {}", args.core.display()))?;
    std::fs::write(&args.out, component).with_context(|| format!("cannot write {}", args.out.display()))?;
    Ok(())
}
