//! Upload validation: a module is accepted only if an executor can run it, and anything else
//! is refused with a message saying what is wrong and what was expected.
//!
//! Accepted are (1) a component exporting the task world's
//! `run: func(input: list<u8>) -> result<list<u8>, string>`, (2) a component exporting
//! `wasi:cli/run` (a `main()` built with the command adapter), and (3) a WASI preview1 core
//! module exporting `_start`. Components may import WASI interfaces only; core modules may
//! import `wasi_snapshot_preview1` only.

use wasmparser::{Parser, Payload, Validator, WasmFeatures};
use wit_parser::decoding::{decode, DecodedWasm};
use wit_parser::{Resolve, Type, TypeDefKind, WorldItem, WorldKey};

use crate::state::ModuleKind;

const TASK_SIGNATURE: &str = "run: func(input: list<u8>) -> result<list<u8>, string>";
/// WASI packages a component may import; the executor links them with everything denied
/// that is not safe by default (no filesystem, network or environment).
const WASI_PACKAGES: &[&str] = &["cli", "io", "clocks", "random", "filesystem", "sockets"];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid module: {0}")]
pub struct InvalidModule(pub String);

fn invalid(msg: impl Into<String>) -> InvalidModule {
    InvalidModule(msg.into())
}

/// Checks `bytes` and says what kind of program it is.
pub fn validate(bytes: &[u8]) -> Result<ModuleKind, InvalidModule> {
    if bytes.is_empty() {
        return Err(invalid("the file is empty"));
    }
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(invalid(
            "not a WebAssembly binary (no \\0asm header); upload a .wasm component or WASI command module",
        ));
    }
    let mut validator = Validator::new_with_features(WasmFeatures::default());
    validator
        .validate_all(bytes)
        .map_err(|e| invalid(format!("not valid WebAssembly: {}", e.message().trim_end_matches('.'))))?;
    if Parser::is_component(bytes) {
        validate_component(bytes)
    } else {
        validate_core(bytes)
    }
}

fn validate_core(bytes: &[u8]) -> Result<ModuleKind, InvalidModule> {
    let mut has_start = false;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.map_err(|e| invalid(e.message().to_string()))? {
            Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    let import = import.map_err(|e| invalid(e.message().to_string()))?;
                    if import.module != "wasi_snapshot_preview1" {
                        return Err(invalid(format!(
                            "the module imports `{}::{}`, which wasmgrid does not provide; command modules may import wasi_snapshot_preview1 only",
                            import.module, import.name
                        )));
                    }
                }
            }
            Payload::ExportSection(reader) => {
                for export in reader {
                    let export = export.map_err(|e| invalid(e.message().to_string()))?;
                    if export.name == "_start" && export.kind == wasmparser::ExternalKind::Func {
                        has_start = true;
                    }
                }
            }
            _ => {}
        }
    }
    if !has_start {
        return Err(invalid(
            "a core module must be a WASI command exporting `_start` (build a program with a main function for wasm32-wasip1); a task must be a component exporting run",
        ));
    }
    Ok(ModuleKind::Command)
}

fn validate_component(bytes: &[u8]) -> Result<ModuleKind, InvalidModule> {
    let decoded = decode(bytes).map_err(|e| invalid(format!("cannot read the component's interface: {e}")))?;
    let DecodedWasm::Component(resolve, world_id) = decoded else {
        return Err(invalid("this is a WIT package, not a component; upload the built component"));
    };
    let world = &resolve.worlds[world_id];
    for (key, item) in &world.imports {
        if let WorldItem::Type { .. } = item {
            continue;
        }
        let allowed = match key {
            WorldKey::Interface(id) => resolve.interfaces[*id]
                .package
                .map(|p| &resolve.packages[p].name)
                .is_some_and(|n| n.namespace == "wasi" && WASI_PACKAGES.contains(&n.name.as_str())),
            WorldKey::Name(_) => false,
        };
        if !allowed {
            return Err(invalid(format!(
                "the component imports `{}`, which wasmgrid does not provide; tasks may import WASI cli, io, clocks, random, filesystem and sockets only",
                resolve.name_world_key(key)
            )));
        }
    }
    let mut exports_cli_run = false;
    for (key, item) in &world.exports {
        match (key, item) {
            (WorldKey::Name(name), WorldItem::Function(f)) if name == "run" => {
                return if is_task_run(&resolve, f) {
                    Ok(ModuleKind::Component)
                } else {
                    Err(invalid(format!(
                        "the component exports `run` with the wrong signature; the task world needs {TASK_SIGNATURE}"
                    )))
                };
            }
            (WorldKey::Interface(_), _) => {
                let name = resolve.name_world_key(key);
                if name.starts_with("wasi:cli/run@0.2") || name == "wasi:cli/run" {
                    exports_cli_run = true;
                }
            }
            _ => {}
        }
    }
    if exports_cli_run {
        return Ok(ModuleKind::Command);
    }
    Err(invalid(format!(
        "the component exports neither {TASK_SIGNATURE} (the wasmgrid task world, see wit/task.wit) nor wasi:cli/run"
    )))
}

fn is_task_run(resolve: &Resolve, f: &wit_parser::Function) -> bool {
    let [param] = f.params.as_slice() else {
        return false;
    };
    is_bytes(resolve, &param.ty) && f.result.as_ref().is_some_and(|r| is_task_result(resolve, r))
}

/// `result<list<u8>, string>`, possibly behind type aliases.
fn is_task_result(resolve: &Resolve, t: &Type) -> bool {
    let Type::Id(id) = t else { return false };
    match &resolve.types[*id].kind {
        TypeDefKind::Result(r) => {
            r.ok.as_ref().is_some_and(|t| is_bytes(resolve, t)) && matches!(r.err, Some(Type::String))
        }
        TypeDefKind::Type(inner) => is_task_result(resolve, inner),
        _ => false,
    }
}

/// `list<u8>`, possibly behind type aliases.
fn is_bytes(resolve: &Resolve, t: &Type) -> bool {
    let Type::Id(id) = t else { return false };
    match &resolve.types[*id].kind {
        TypeDefKind::List(Type::U8) => true,
        TypeDefKind::Type(inner) => is_bytes(resolve, inner),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use wasmgrid_testkit as guests;

    use super::*;

    fn refused(bytes: &[u8]) -> String {
        validate(bytes).unwrap_err().0
    }

    #[test]
    fn accepts_task_components_and_wasi_commands() {
        assert_eq!(validate(&guests::echo()), Ok(ModuleKind::Component));
        assert_eq!(validate(&guests::wasi_cat()), Ok(ModuleKind::Command));
    }

    #[test]
    fn refuses_everything_else_saying_why() {
        assert!(refused(b"").contains("empty"));
        assert!(refused(b"hello, world, not wasm").contains("not a WebAssembly binary"));
        let echo = guests::echo();
        assert!(refused(&echo[..echo.len() / 2]).contains("not valid WebAssembly"));
        assert!(refused(&guests::core_without_start()).contains("_start"));
        let wrong = refused(&guests::wrong_signature());
        assert!(wrong.contains("wrong signature") && wrong.contains("list<u8>"), "{wrong}");
        let env_import = wat::parse_str(r#"(module (import "env" "f" (func)) (func (export "_start")))"#).unwrap();
        assert!(refused(&env_import).contains("env::f"));
    }
}
