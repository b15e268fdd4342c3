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

fn main() {
    if let Err(e) = componentize(Args::parse()) {
        eprintln!("componentize: {}", wasmgrid_common::error_chain::describe(e.as_ref()));
        std::process::exit(1);
    }
}

fn componentize(args: Args) -> anyhow::Result<()> {
    let name = args.core.display();
    let module = std::fs::read(&args.core).with_context(|| format!("cannot read {name}"))?;
    if !module.starts_with(b"\0asm") {
        anyhow::bail!("{name} is not a wasm module (it does not start with the wasm header)");
    }
    if !args.command && exports_start(&module) {
        anyhow::bail!(
            "{name} exports _start: it is a main() program; give --command to make a wasi:cli/run \
             component of it (or submit it as it is, a WASI command module)"
        );
    }
    let adapter =
        if args.command { WASI_SNAPSHOT_PREVIEW1_COMMAND_ADAPTER } else { WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER };
    let component = ComponentEncoder::default()
        .module(&module)
        .with_context(|| format!("{name} is not a core wasm module built against the task world"))?
        .adapter(WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, adapter)?
        .validate(true)
        .encode()
        .with_context(|| format!("cannot make a component of {name}"))?;
    std::fs::write(&args.out, component).with_context(|| format!("cannot write {}", args.out.display()))?;
    Ok(())
}

/// Whether `module` is a core module exporting a `_start` function.
fn exports_start(module: &[u8]) -> bool {
    wasmparser::Parser::new(0).parse_all(module).any(|payload| match payload {
        Ok(wasmparser::Payload::ExportSection(exports)) => {
            exports.into_iter().any(|e| e.is_ok_and(|e| e.name == "_start" && e.kind == wasmparser::ExternalKind::Func))
        }
        _ => false,
    })
}
