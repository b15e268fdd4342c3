//! Upload validation: a module is accepted only if an executor can run it, and anything else
//! is refused with a message saying what is wrong and what was expected.
//!
//! Accepted are (1) a component exporting the task world's
//! `run: func(input: list<u8>) -> result<list<u8>, string>`, (2) a component exporting
//! `wasi:cli/run` (a `main()` built with the command adapter), and (3) a WASI preview1 core
//! module exporting `_start`. Components may import WASI interfaces only; core modules may
//! import `wasi_snapshot_preview1` only.

use wasmgrid_common::guest::{preview1_signature, MAX_MEMORIES, MAX_TABLES, MAX_TABLE_ELEMENTS, PREVIEW1_MODULE};
use wasmparser::{CompositeInnerType, ExternalKind, FuncType, Parser, Payload, TypeRef, ValType, Validator};
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

/// Checks `bytes` and says what kind of program it is; it may define at most `max_functions`
/// functions.
pub fn validate(bytes: &[u8], max_functions: u32) -> Result<ModuleKind, InvalidModule> {
    if bytes.is_empty() {
        return Err(invalid("the file is empty"));
    }
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(invalid(
            "not a WebAssembly binary (no \\0asm header); upload a .wasm component or WASI command module",
        ));
    }
    // Before validating them all: validation takes time for each function too.
    let defined = defined(bytes);
    if defined.functions > u64::from(max_functions) {
        return Err(invalid(format!(
            "the module defines {} functions, more than max-module-functions = {max_functions} (compiling one costs each executor memory per function)",
            defined.functions
        )));
    }
    if defined.memories > u64::from(MAX_MEMORIES) || defined.tables > u64::from(MAX_TABLES) {
        return Err(invalid(format!(
            "the module defines {} memories and {} tables; executors run at most {MAX_MEMORIES} and {MAX_TABLES}",
            defined.memories, defined.tables
        )));
    }
    // The executors' features, not wasmparser's: anything else could never run there.
    let mut validator = Validator::new_with_features(wasmgrid_common::guest::features());
    validator
        .validate_all(bytes)
        .map_err(|e| invalid(format!("not valid WebAssembly: {}", e.message().trim_end_matches('.'))))?;
    if Parser::is_component(bytes) {
        validate_component(bytes)
    } else {
        validate_core(bytes)
    }
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Defined {
    functions: u64,
    memories: u64,
    tables: u64,
}

/// The functions, memories and tables `bytes` defines, in every core module it holds; what
/// cannot be read is left to the validator to refuse.
fn defined(bytes: &[u8]) -> Defined {
    let mut d = Defined::default();
    for payload in Parser::new(0).parse_all(bytes) {
        match payload {
            Ok(Payload::FunctionSection(reader)) => d.functions += u64::from(reader.count()),
            Ok(Payload::MemorySection(reader)) => d.memories += u64::from(reader.count()),
            Ok(Payload::TableSection(reader)) => d.tables += u64::from(reader.count()),
            Ok(_) => {}
            Err(_) => break,
        }
    }
    d
}

fn validate_core(bytes: &[u8]) -> Result<ModuleKind, InvalidModule> {
    let read = |e: wasmparser::BinaryReaderError| invalid(e.message().to_string());
    // Function types by type index (None: not a function type), and each function's type
    // index, imports first, as the function index space counts them.
    let mut types: Vec<Option<FuncType>> = Vec::new();
    let mut functions: Vec<u32> = Vec::new();
    let (mut start, mut exports_memory, mut needs_memory) = (None, false, false);
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.map_err(read)? {
            Payload::TypeSection(reader) => {
                for group in reader {
                    for ty in group.map_err(read)?.into_types() {
                        types.push(match ty.composite_type.inner {
                            CompositeInnerType::Func(f) => Some(f),
                            _ => None,
                        });
                    }
                }
            }
            Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    let import = import.map_err(read)?;
                    // wasmgrid's own proc_exit takes no memory; every other WASI call does.
                    needs_memory |= import.name != "proc_exit";
                    let TypeRef::Func(ty) = import.ty else {
                        return Err(invalid(format!(
                            "the module imports `{}::{}`, which is not a function; command modules may import WASI preview1 functions only",
                            import.module, import.name
                        )));
                    };
                    check_wasi_import(import.module, import.name, func_type(&types, ty))?;
                    functions.push(ty);
                }
            }
            Payload::FunctionSection(reader) => {
                for ty in reader {
                    functions.push(ty.map_err(read)?);
                }
            }
            Payload::TableSection(reader) => {
                for table in reader {
                    let initial = table.map_err(read)?.ty.initial;
                    if initial > MAX_TABLE_ELEMENTS {
                        return Err(invalid(format!(
                            "a table starts with {initial} elements; tables may hold at most {MAX_TABLE_ELEMENTS}"
                        )));
                    }
                }
            }
            Payload::ExportSection(reader) => {
                for export in reader {
                    let export = export.map_err(read)?;
                    match (export.name, export.kind) {
                        ("_start", ExternalKind::Func) => start = Some(export.index),
                        ("memory", ExternalKind::Memory) => exports_memory = true,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    let Some(start) = start else {
        return Err(invalid(
            "a core module must be a WASI command exporting `_start` (build a program with a main function for wasm32-wasip1); a task must be a component exporting run",
        ));
    };
    let start_type = functions.get(start as usize).and_then(|ty| func_type(&types, *ty));
    if !start_type.is_some_and(|f| f.params().is_empty() && f.results().is_empty()) {
        return Err(invalid("`_start` must take no parameters and return nothing (the WASI command entry point)"));
    }
    if needs_memory && !exports_memory {
        return Err(invalid(
            "the module imports WASI functions but exports no memory named `memory`, which WASI reads and writes through",
        ));
    }
    Ok(ModuleKind::Command)
}

fn func_type(types: &[Option<FuncType>], index: u32) -> Option<&FuncType> {
    types.get(index as usize).and_then(Option::as_ref)
}

/// A command module's import: a WASI preview1 function, with its signature.
fn check_wasi_import(module: &str, name: &str, ty: Option<&FuncType>) -> Result<(), InvalidModule> {
    if module != PREVIEW1_MODULE {
        return Err(invalid(format!(
            "the module imports `{module}::{name}`, which wasmgrid does not provide; command modules may import {PREVIEW1_MODULE} only"
        )));
    }
    let Some((params, results)) = preview1_signature(name) else {
        return Err(invalid(format!("the module imports `{module}::{name}`, which is not a WASI preview1 function")));
    };
    let written = |types: &[ValType]| -> String {
        types
            .iter()
            .map(|t| match t {
                ValType::I32 => 'i',
                ValType::I64 => 'I',
                _ => '?',
            })
            .collect()
    };
    if !ty.is_some_and(|f| written(f.params()) == params && written(f.results()) == results) {
        let shown =
            |sig: &str| sig.chars().map(|c| if c == 'I' { "i64" } else { "i32" }).collect::<Vec<_>>().join(", ");
        return Err(invalid(format!(
            "the module imports `{module}::{name}` with the wrong signature; WASI's is ({}) -> ({})",
            shown(params),
            shown(results)
        )));
    }
    Ok(())
}

fn validate_component(bytes: &[u8]) -> Result<ModuleKind, InvalidModule> {
    // wit-parser 0.263 panics on some malformed components (an interface-style export name
    // on a bare function): a refusal like any other, not a crash of the upload.
    let decoded = std::panic::catch_unwind(|| decode(bytes))
        .map_err(|panic| {
            let why = wasmgrid_common::logging::panic_message(panic.as_ref());
            invalid(format!("cannot read the component's interface: the decoder failed ({why})"))
        })?
        .map_err(|e| invalid(format!("cannot read the component's interface: {e}")))?;
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

    fn validate_all_sizes(bytes: &[u8]) -> Result<ModuleKind, InvalidModule> {
        validate(bytes, u32::MAX)
    }

    fn refused(bytes: &[u8]) -> String {
        validate_all_sizes(bytes).unwrap_err().0
    }

    #[test]
    fn counts_the_functions_of_every_core_module() {
        assert_eq!(defined(&guests::many_functions(40)).functions, 41, "and _start");
        // The task component holds its core module's functions, and the adapter's, if any.
        assert!(defined(&guests::echo()).functions >= 3);
        let many = validate(&guests::many_functions(40), 40).unwrap_err().0;
        assert!(many.contains("defines 41 functions, more than max-module-functions = 40"), "{many}");
        assert_eq!(validate(&guests::many_functions(40), 41), Ok(ModuleKind::Command));
    }

    #[test]
    fn accepts_task_components_and_wasi_commands() {
        assert_eq!(validate_all_sizes(&guests::echo()), Ok(ModuleKind::Component));
        assert_eq!(validate_all_sizes(&guests::wasi_cat()), Ok(ModuleKind::Command));
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

    /// Command modules that could never run are refused at upload, not at their first run.
    #[test]
    fn refuses_commands_that_could_never_link_or_start() {
        let module = |body: &str| wat::parse_str(format!("(module {body})")).unwrap();
        let start = r#"(memory (export "memory") 1) (func (export "_start"))"#;
        let unknown = refused(&module(&format!(
            r#"(import "wasi_snapshot_preview1" "does_not_exist" (func (param i32))) {start}"#
        )));
        assert!(unknown.contains("not a WASI preview1 function"), "{unknown}");
        let signature =
            refused(&module(&format!(r#"(import "wasi_snapshot_preview1" "proc_exit" (func (param i64))) {start}"#)));
        assert!(signature.contains("wrong signature; WASI's is (i32) -> ()"), "{signature}");
        let memory = refused(&module(
            r#"(import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32))) (func (export "_start"))"#,
        ));
        assert!(memory.contains("exports no memory"), "{memory}");
        let exits =
            module(r#"(import "wasi_snapshot_preview1" "proc_exit" (func (param i32))) (func (export "_start"))"#);
        assert_eq!(validate_all_sizes(&exits), Ok(ModuleKind::Command), "proc_exit alone needs no memory");
        let global = refused(&module(&format!(r#"(import "wasi_snapshot_preview1" "g" (global i32)) {start}"#)));
        assert!(global.contains("not a function"), "{global}");
        let entry = refused(&module(r#"(func (export "_start") (param i32))"#));
        assert!(entry.contains("no parameters"), "{entry}");
        let table = refused(&module(&format!(r#"(table 100000000 funcref) {start}"#)));
        assert!(table.contains("at most 1048576"), "{table}");
        // What WASI programs do import is accepted, pure computations need no memory.
        assert_eq!(validate_all_sizes(&guests::sleeper(1)), Ok(ModuleKind::Command));
        assert_eq!(validate_all_sizes(&module(r#"(func (export "_start"))"#)), Ok(ModuleKind::Command));
    }

    /// What the executors' wasmtime would refuse is refused here: proposals its build leaves
    /// out, more memories or tables than its pool holds.
    #[test]
    fn refuses_what_the_executors_engine_would() {
        let module = |body: &str| {
            wat::parse_str(format!(r#"(module (memory (export "memory") 1) {body} (func (export "_start")))"#)).unwrap()
        };
        let externref = refused(&module("(table 10 externref)"));
        assert!(externref.contains("not valid WebAssembly"), "{externref}");
        assert!(refused(&module("(memory 1 1 shared)")).contains("not valid WebAssembly"));
        let many = refused(&module(&"(memory 1) ".repeat(8)));
        assert!(many.contains("9 memories"), "{many}");
        // WebAssembly 2.0 tables and multi-memory within the limits are fine.
        assert_eq!(
            validate_all_sizes(&module("(table 2 funcref) (table 10 funcref) (memory 1)")),
            Ok(ModuleKind::Command)
        );
    }

    /// wit-parser panics on this one (a function exported under an interface's name).
    #[test]
    fn a_component_the_decoder_chokes_on_is_refused() {
        let bytes = guests::function_exported_as_an_interface();
        let why = refused(&bytes);
        assert!(why.contains("cannot read the component's interface"), "{why}");
    }
}
