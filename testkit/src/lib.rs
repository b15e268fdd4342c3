//! What the tests, the demo and the benchmark share: [`process`] runs the real binaries as
//! children, and the test guests below are written in WAT and encoded as task components (or
//! WASI command modules) in process, so the tests need no outside toolchain.
//!
//! A task component's core module exports `memory`, a bump `cabi_realloc` and
//! `run(ptr, len) -> retptr`, where the return area holds `result<list<u8>, string>` as the
//! canonical ABI lays it out: a tag byte at 0, then pointer and length at 4 and 8.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod process;
pub mod tls;

use wit_component::{ComponentEncoder, StringEncoding};
use wit_parser::Resolve;

/// The task world, as in `wit/task.wit`.
pub const TASK_WIT: &str = include_str!("../../wit/task.wit");

const PRELUDE: &str = r#"
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
    (local $ret i32)
    (local.set $ret (i32.and (i32.add (global.get $heap) (i32.const 7)) (i32.const -8)))
    (global.set $heap (i32.add (local.get $ret) (local.get 3)))
    (block $ok
      (br_if $ok (i32.le_u (global.get $heap) (i32.mul (memory.size) (i32.const 65536))))
      (if (i32.eq (memory.grow (i32.add (i32.shr_u (global.get $heap) (i32.const 16)) (i32.const 1))) (i32.const -1))
        (then unreachable)))
    (local.get $ret))
  ;; ok(list) at the return area (address 16)
  (func $ok (param $ptr i32) (param $len i32) (result i32)
    (i32.store8 (i32.const 16) (i32.const 0))
    (i32.store (i32.const 20) (local.get $ptr))
    (i32.store (i32.const 24) (local.get $len))
    (i32.const 16))
  ;; err(string) at the return area
  (func $err (param $ptr i32) (param $len i32) (result i32)
    (i32.store8 (i32.const 16) (i32.const 1))
    (i32.store (i32.const 20) (local.get $ptr))
    (i32.store (i32.const 24) (local.get $len))
    (i32.const 16))
"#;

/// A task component whose `run(ptr, len)` has `body`; `data` goes at address 1024.
pub fn task(body: &str, data: &str) -> Vec<u8> {
    let wat = format!(
        r#"(module {PRELUDE}
          (data (i32.const 1024) "{data}")
          (func (export "run") (param $ptr i32) (param $len i32) (result i32) {body}))"#
    );
    component_from_core(&wat, TASK_WIT, "task")
}

/// Encodes the core module in `wat` as a component of `world` in `wit`.
pub fn component_from_core(wat: &str, wit: &str, world: &str) -> Vec<u8> {
    let mut module = wat::parse_str(wat).expect("test guest WAT must parse");
    let mut resolve = Resolve::default();
    let pkg = resolve.push_str("guest.wit", wit).expect("test WIT must parse");
    let world = resolve.select_world(&[pkg], Some(world)).expect("world exists");
    wit_component::embed_component_metadata(&mut module, &resolve, world, StringEncoding::UTF8, false)
        .expect("metadata embeds");
    ComponentEncoder::default()
        .module(&module)
        .expect("module is valid")
        .validate(true)
        .encode()
        .expect("component encodes")
}

/// Returns its input unchanged.
pub fn echo() -> Vec<u8> {
    task("(call $ok (local.get $ptr) (local.get $len))", "")
}

/// Returns its input reversed (so tests can tell the output is computed).
pub fn reverse() -> Vec<u8> {
    task(
        r#"(local $i i32) (local $out i32)
        (local.set $out (i32.add (local.get $ptr) (local.get $len)))
        (block $done (loop $next
          (br_if $done (i32.ge_u (local.get $i) (local.get $len)))
          (i32.store8 (i32.add (local.get $out) (local.get $i))
            (i32.load8_u (i32.sub (i32.add (local.get $ptr) (local.get $len)) (i32.add (local.get $i) (i32.const 1)))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $next)))
        (global.set $heap (i32.add (local.get $out) (local.get $len)))
        (call $ok (local.get $out) (local.get $len))"#,
        "",
    )
}

/// Fails with `err("the input was rejected")`.
pub fn fail() -> Vec<u8> {
    task("(call $err (i32.const 1024) (i32.const 22))", "the input was rejected")
}

/// Loops forever.
pub fn spin() -> Vec<u8> {
    task("(loop $forever (br $forever)) (unreachable)", "")
}

/// Grows its memory a page at a time until refused, then traps.
pub fn hog() -> Vec<u8> {
    task("(loop $more (br_if $more (i32.ne (memory.grow (i32.const 1)) (i32.const -1)))) (unreachable)", "")
}

/// Executes `unreachable`.
pub fn trap() -> Vec<u8> {
    task("(unreachable)", "")
}

/// Recurses without end.
pub fn recurse() -> Vec<u8> {
    let wat = format!(
        r#"(module {PRELUDE}
          (func $deeper (param i32) (result i32) (call $deeper (i32.add (local.get 0) (i32.const 1))))
          (func (export "run") (param $ptr i32) (param $len i32) (result i32)
            (drop (call $deeper (i32.const 0))) (call $ok (local.get $ptr) (local.get $len))))"#
    );
    component_from_core(&wat, TASK_WIT, "task")
}

/// Burns about `n` loop iterations of fuel, then echoes (for fuel accounting tests).
pub fn busy(n: u32) -> Vec<u8> {
    task(
        &format!(
            "(local $i i32) (block $done (loop $l (br_if $done (i32.ge_u (local.get $i) (i32.const {n}))) (local.set $i (i32.add (local.get $i) (i32.const 1))) (br $l))) (call $ok (local.get $ptr) (local.get $len))"
        ),
        "",
    )
}

/// A component exporting `run` with the wrong signature (string -> string).
pub fn wrong_signature() -> Vec<u8> {
    let wit = "package test:bad; world bad { export run: func(input: string) -> string; }";
    let wat = format!(r#"(module {PRELUDE} (func (export "run") (param i32 i32) (result i32) (i32.const 16)))"#);
    component_from_core(&wat, wit, "bad")
}

/// A valid WASI command that the executor's engine refuses to compile: its 70,000 globals
/// make an instance larger than the pooling allocator's 1 MiB limit.
pub fn too_large_an_instance() -> Vec<u8> {
    let globals = "(global (mut i32) (i32.const 0))".repeat(70_000);
    wat::parse_str(format!(r#"(module (memory (export "memory") 1) {globals} (func (export "_start")))"#)).unwrap()
}

/// A core module with no `_start`.
pub fn core_without_start() -> Vec<u8> {
    wat::parse_str(r#"(module (func (export "main")))"#).unwrap()
}

/// A WASI preview1 command: copies stdin to stdout, then exits with the code given as the
/// first byte of its input minus '0' when that byte is a digit (so "3..." exits 3).
pub fn wasi_cat() -> Vec<u8> {
    wat::parse_str(
        r#"(module
          (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
          (memory (export "memory") 2)
          (global $first (mut i32) (i32.const -1))
          (func (export "_start")
            (local $n i32)
            (loop $more
              ;; iovec at 0: buf 1024, len 4096; nread at 16
              (i32.store (i32.const 0) (i32.const 1024))
              (i32.store (i32.const 4) (i32.const 4096))
              (drop (call $read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 16)))
              (local.set $n (i32.load (i32.const 16)))
              (if (i32.gt_u (local.get $n) (i32.const 0)) (then
                (if (i32.lt_s (global.get $first) (i32.const 0)) (then (global.set $first (i32.load8_u (i32.const 1024)))))
                (i32.store (i32.const 4) (local.get $n))
                (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 20)))
                (br $more))))
            (if (i32.and (i32.ge_u (global.get $first) (i32.const 49)) (i32.le_u (global.get $first) (i32.const 57)))
              (then (call $exit (i32.sub (global.get $first) (i32.const 48)))))))"#,
    )
    .unwrap()
}

/// A WASI command that sleeps `ms` milliseconds (a WASI clock wait, no CPU), then prints
/// `slept` and exits 0: a long task that costs nothing.
pub fn sleeper(ms: u64) -> Vec<u8> {
    let ns = ms * 1_000_000;
    wat::parse_str(format!(
        r#"(module
          (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
          (memory (export "memory") 1)
          (data (i32.const 512) "slept")
          (func (export "_start")
            ;; one relative monotonic-clock subscription at 0, events at 64
            (i64.store (i32.const 0) (i64.const 7))
            (i32.store8 (i32.const 8) (i32.const 0))
            (i32.store (i32.const 16) (i32.const 1))
            (i64.store (i32.const 24) (i64.const {ns}))
            (i64.store (i32.const 32) (i64.const 0))
            (i32.store16 (i32.const 40) (i32.const 0))
            (drop (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)))
            (i32.store (i32.const 256) (i32.const 512))
            (i32.store (i32.const 260) (i32.const 5))
            (drop (call $write (i32.const 1) (i32.const 256) (i32.const 1) (i32.const 264)))))"#
    ))
    .unwrap()
}

/// A component exporting a function under an interface's name: wit-parser 0.263 panics on
/// it while decoding.
pub fn function_exported_as_an_interface() -> Vec<u8> {
    wat::parse_str(
        r#"(component
          (core module $m (func (export "run") (param i32) (result i32) (local.get 0)))
          (core instance $i (instantiate $m))
          (func $run (param "x" u32) (result u32) (canon lift (core func $i "run")))
          (export "wasmgrid:task/run@0.1.0" (func $run)))"#,
    )
    .unwrap()
}

/// A WASI command with `n` small functions besides `_start`, which prints `ok`: compiling it
/// takes about a second per few thousand functions in a debug build.
pub fn many_functions(n: usize) -> Vec<u8> {
    let funcs: String = (0..n)
        .map(|i| format!("(func $f{i} (param i32) (result i32) (i32.add (local.get 0) (i32.const {i})))\n"))
        .collect();
    wat::parse_str(format!(
        r#"(module
          (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
          (memory (export "memory") 1)
          (data (i32.const 512) "ok")
          {funcs}
          (func (export "_start")
            (drop (call $f0 (i32.const 1)))
            (i32.store (i32.const 256) (i32.const 512))
            (i32.store (i32.const 260) (i32.const 2))
            (drop (call $write (i32.const 1) (i32.const 256) (i32.const 1) (i32.const 264)))))"#
    ))
    .unwrap()
}

/// A WASI command that sleeps as many nanoseconds as the first 8 bytes of its stdin say
/// (little-endian; no input: no sleep), then prints `slept`: its runs are as short or as
/// long as each task's input asks.
pub fn sleeper_for_input() -> Vec<u8> {
    wat::parse_str(
        r#"(module
          (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
          (memory (export "memory") 1)
          (data (i32.const 512) "slept")
          (func (export "_start")
            ;; stdin into 600..608 (zeros when empty)
            (i32.store (i32.const 300) (i32.const 600))
            (i32.store (i32.const 304) (i32.const 8))
            (drop (call $read (i32.const 0) (i32.const 300) (i32.const 1) (i32.const 308)))
            ;; one relative monotonic-clock subscription at 0, events at 64
            (i64.store (i32.const 0) (i64.const 7))
            (i32.store8 (i32.const 8) (i32.const 0))
            (i32.store (i32.const 16) (i32.const 1))
            (i64.store (i32.const 24) (i64.load (i32.const 600)))
            (i64.store (i32.const 32) (i64.const 0))
            (i32.store16 (i32.const 40) (i32.const 0))
            (drop (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)))
            (i32.store (i32.const 256) (i32.const 512))
            (i32.store (i32.const 260) (i32.const 5))
            (drop (call $write (i32.const 1) (i32.const 256) (i32.const 1) (i32.const 264)))))"#,
    )
    .unwrap()
}

/// A task component that returns `bytes` bytes of zeros (it grows its memory to hold them).
pub fn big_output(bytes: u32) -> Vec<u8> {
    let pages = bytes / 65536 + 2;
    task(&format!("(drop (memory.grow (i32.const {pages}))) (call $ok (i32.const 65536) (i32.const {bytes}))"), "")
}
