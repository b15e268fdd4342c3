//! The sandbox against hostile and well-behaved guests, with real wasmtime.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use wasmgrid_testkit as guests;

use super::*;

const MIB: u64 = 1024 * 1024;

fn settings() -> Settings {
    Settings { default_fuel: 1_000_000_000, max_output: 1024, max_stderr: 1024 }
}

fn sandbox() -> Sandbox {
    Sandbox::new(2, settings()).unwrap()
}

fn job(input: &[u8]) -> Job {
    Job {
        input: input.to_vec(),
        program_name: "test".into(),
        args: vec![],
        env: vec![],
        fuel: 0,
        memory: 64 * MIB,
        timeout: Duration::from_secs(10),
        cancel: CancellationToken::new(),
    }
}

async fn run(sb: &Sandbox, kind: Kind, bytes: &[u8], job: Job) -> Outcome {
    let compiled = sb.compile(bytes).unwrap();
    let program = sb.link(kind, &compiled).unwrap();
    sb.run(program.as_ref(), job).await
}

fn kind(o: &Outcome) -> Option<FailureKind> {
    o.failure.as_ref().map(|f| f.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn echo_returns_its_input_and_counts_fuel() {
    let sb = sandbox();
    let o = run(&sb, Kind::Component, &guests::echo(), job(b"hello")).await;
    assert_eq!(o.failure, None);
    assert_eq!(o.output, b"hello");
    assert!(o.fuel_consumed > 0);
    let o = run(&sb, Kind::Component, &guests::reverse(), job(b"abc")).await;
    assert_eq!(o.output, b"cba");
}

#[tokio::test(flavor = "multi_thread")]
async fn guest_errors_traps_and_limits_are_named() {
    let sb = sandbox();
    let o = run(&sb, Kind::Component, &guests::fail(), job(b"")).await;
    assert_eq!(o.failure, Some((FailureKind::TaskError, "the input was rejected".into())));

    let mut j = job(b"");
    j.fuel = 100_000;
    let o = run(&sb, Kind::Component, &guests::spin(), j).await;
    assert_eq!(kind(&o), Some(FailureKind::OutOfFuel));
    assert_eq!(o.fuel_consumed, 100_000);

    let mut j = job(b"");
    j.memory = 32 * MIB;
    let o = run(&sb, Kind::Component, &guests::hog(), j).await;
    assert_eq!(kind(&o), Some(FailureKind::MemoryLimit), "{:?}", o.failure);

    let o = run(&sb, Kind::Component, &guests::trap(), job(b"")).await;
    assert_eq!(kind(&o), Some(FailureKind::Trap));
    assert!(o.failure.unwrap().1.contains("unreachable"));

    let o = run(&sb, Kind::Component, &guests::recurse(), job(b"")).await;
    assert_eq!(kind(&o), Some(FailureKind::Trap));
    assert!(o.failure.unwrap().1.contains("stack overflow"));

    // After all of that, the same sandbox still runs a task correctly.
    let o = run(&sb, Kind::Component, &guests::echo(), job(b"still fine")).await;
    assert_eq!((o.failure, o.output), (None, b"still fine".to_vec()));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_endless_loop_stops_at_its_timeout() {
    let sb = sandbox();
    let mut j = job(b"");
    j.fuel = u64::MAX / 2;
    j.timeout = Duration::from_millis(300);
    let started = Instant::now();
    let o = run(&sb, Kind::Component, &guests::spin(), j).await;
    assert_eq!(kind(&o), Some(FailureKind::Timeout));
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_stops_a_running_guest_quickly() {
    let sb = sandbox();
    let mut j = job(b"");
    j.fuel = u64::MAX / 2;
    let cancel = j.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        cancel.cancel();
    });
    let started = Instant::now();
    let o = run(&sb, Kind::Component, &guests::spin(), j).await;
    assert_eq!(kind(&o), Some(FailureKind::Cancelled));
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread")]
async fn output_over_the_limit_is_refused() {
    let sb = sandbox();
    let o = run(&sb, Kind::Component, &guests::echo(), job(&[7u8; 2000])).await;
    assert_eq!(kind(&o), Some(FailureKind::OutputTooLarge));
    assert!(o.failure.unwrap().1.contains("max-output-size"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_error_message_is_cut_at_the_stderr_limit() {
    let sb = sandbox();
    // err(60,000 bytes): without a bound, a guest's message (stored and replicated with the
    // result) could be as large as its memory.
    let long = guests::task("(call $err (i32.const 4096) (i32.const 60000))", "");
    let o = run(&sb, Kind::Component, &long, job(b"")).await;
    let (kind, message) = o.failure.unwrap();
    assert_eq!(kind, FailureKind::TaskError, "{}", &message[..message.len().min(100)]);
    assert!(message.len() < 1024 + 100, "{} bytes", message.len());
    let tail = &message[1024..];
    assert_eq!(tail, "… (cut at max-stderr-size = 1KiB; 58.6KiB in all)");
}

/// More runs at once than the pool was sized for (the agent's slots keep it from happening)
/// fail as `executor_lost`, which is run again, never as `invalid_module`, which is final:
/// a busy pool says nothing about the module.
#[tokio::test(flavor = "multi_thread")]
async fn runs_beyond_the_pool_fail_as_retryable_not_as_an_invalid_module() {
    let sb = Sandbox::new(1, settings()).unwrap();
    let compiled = sb.compile(&guests::spin()).unwrap();
    let program = sb.link(Kind::Component, &compiled).unwrap();
    let runs = (0..40).map(|_| {
        let mut j = job(b"");
        j.timeout = Duration::from_millis(500);
        sb.run(program.as_ref(), j)
    });
    let outcomes = futures::future::join_all(runs).await;
    let kinds: Vec<_> = outcomes.iter().map(kind).collect();
    assert!(kinds.contains(&Some(FailureKind::Timeout)), "{kinds:?}");
    assert!(kinds.contains(&Some(FailureKind::ExecutorLost)), "the pool ran out: {kinds:?}");
    assert!(!kinds.contains(&Some(FailureKind::InvalidModule)), "{kinds:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn wasi_commands_read_stdin_write_stdout_and_exit() {
    let sb = sandbox();
    let o = run(&sb, Kind::Command, &guests::wasi_cat(), job(b"hi there")).await;
    assert_eq!((o.failure, o.exit_code, o.output), (None, Some(0), b"hi there".to_vec()));
    let o = run(&sb, Kind::Command, &guests::wasi_cat(), job(b"3 exit")).await;
    assert_eq!(o.exit_code, Some(3));
    assert_eq!(kind(&o), Some(FailureKind::TaskError));
    assert_eq!(o.output, b"3 exit");
    // Output past the limit: no exit code, whichever the program gave.
    let o = run(&sb, Kind::Command, &guests::wasi_cat(), job(&[b'x'; 3000])).await;
    assert_eq!((kind(&o), o.exit_code), (Some(FailureKind::OutputTooLarge), None));
    // Nor when the program returns from `_start` with no call into the host after its write
    // (C's `return 0` from main): it reached its end, but its output was refused.
    let one_write = wat::parse_str(
        r#"(module
          (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
          (memory (export "memory") 1)
          (func (export "_start")
            (i32.store (i32.const 0) (i32.const 1024))
            (i32.store (i32.const 4) (i32.const 3000))
            (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16)))))"#,
    )
    .unwrap();
    let o = run(&sb, Kind::Command, &one_write, job(b"")).await;
    assert_eq!((kind(&o), o.exit_code, o.output.len()), (Some(FailureKind::OutputTooLarge), None, 0));
}

/// The master refuses command modules by the list of WASI preview1 functions in
/// `wasmgrid_common::guest`: a module importing every one of them, with those signatures,
/// links here.
#[tokio::test(flavor = "multi_thread")]
async fn every_preview1_function_the_master_allows_links_with_its_signature() {
    let sb = sandbox();
    let types = |sig: &str| sig.chars().map(|c| if c == 'I' { " i64" } else { " i32" }).collect::<String>();
    let imports: String = wasmgrid_common::guest::PREVIEW1
        .iter()
        .map(|(name, params, results)| {
            format!(
                r#"(import "wasi_snapshot_preview1" "{name}" (func (param{}) (result{})))"#,
                types(params),
                types(results)
            )
        })
        .collect();
    let module =
        wat::parse_str(format!(r#"(module {imports} (memory (export "memory") 1) (func (export "_start")))"#)).unwrap();
    let o = run(&sb, Kind::Command, &module, job(b"")).await;
    assert_eq!((o.failure, o.exit_code), (None, Some(0)));
}

/// A 64-bit memory under a cap above the instance pool's 4GiB a memory: the growth past 4GiB
/// is within the cap but fails in wasmtime, and the run that then traps is `memory_limit`.
#[tokio::test(flavor = "multi_thread")]
async fn a_growth_past_the_pools_4gib_is_a_memory_limit() {
    let sb = sandbox();
    let module = wat::parse_str(
        r#"(module (memory (export "memory") i64 1)
          (func (export "_start")
            (if (i64.eq (memory.grow (i64.const 65537)) (i64.const -1)) (then unreachable))))"#,
    )
    .unwrap();
    let mut j = job(b"");
    j.memory = 8 << 30;
    let o = run(&sb, Kind::Command, &module, j).await;
    assert_eq!(kind(&o), Some(FailureKind::MemoryLimit), "{:?}", o.failure);
}

/// The master refuses at upload what `wasmgrid_common::guest::features` leaves out: it must
/// be what this engine refuses, probe by probe. Modules with several tables or memories run.
#[tokio::test(flavor = "multi_thread")]
async fn the_features_the_master_allows_are_the_engines() {
    let sb = sandbox();
    let probes = [
        "(table 10 externref)",
        "(memory 1 1 shared)",
        "(tag $e) (func (throw $e))",
        "(func (result i32) (i31.get_s (ref.i31 (i32.const 1))))",
        "(func (param v128) (result v128) (i32x4.add (local.get 0) (local.get 0)))",
        "(func $f (return_call $f))",
        "(memory $big i64 1)",
        "(table 2 funcref) (table 10 funcref) (memory 1)",
    ];
    for body in probes {
        let bytes = wat::parse_str(format!(r#"(module (memory (export "memory") 1) {body} (func (export "_start")))"#))
            .unwrap();
        let master = wasmparser::Validator::new_with_features(wasmgrid_common::guest::features()).validate_all(&bytes);
        let engine = sb.compile(&bytes);
        assert_eq!(master.is_ok(), engine.is_ok(), "{body}: master {:?}, engine {:?}", master.err(), engine.err());
        if engine.is_ok() {
            let o = run(&sb, Kind::Command, &bytes, job(b"")).await;
            assert_eq!(o.failure, None, "{body}");
        }
    }
}

/// Any `proc_exit` status is an exit code: wasmtime-wasi refuses 126 and above (shells keep
/// them for signals), but `exit(255)` and `exit(-1)` are common in C programs.
#[tokio::test(flavor = "multi_thread")]
async fn every_exit_status_is_an_exit_code_not_a_trap() {
    let sb = sandbox();
    for code in [0, 1, 125, 126, 255, 256, -1] {
        let exits = wat::parse_str(format!(
            r#"(module (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
              (memory (export "memory") 1)
              (func (export "_start") (call $exit (i32.const {code}))))"#
        ))
        .unwrap();
        let o = run(&sb, Kind::Command, &exits, job(b"")).await;
        assert_eq!(o.exit_code, Some(code), "{:?}", o.failure);
        let expected = if code == 0 { None } else { Some(FailureKind::TaskError) };
        assert_eq!(kind(&o), expected, "{:?}", o.failure);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn huge_tables_and_memories_are_refused_cleanly() {
    let sb = sandbox();
    let table =
        wat::parse_str(r#"(module (memory (export "memory") 1) (table 50000000 funcref) (func (export "_start")))"#)
            .unwrap();
    // Refused when linked (it does not fit the pooling allocator), or failing its run.
    let refused = match sb.compile(&table).and_then(|c| sb.link(Kind::Command, &c)) {
        Err(e) => e.to_string().contains("table"),
        Ok(program) => sb.run(program.as_ref(), job(b"")).await.failure.is_some(),
    };
    assert!(refused, "a 50M-element table must not instantiate");
    let memory = wat::parse_str(r#"(module (memory (export "memory") 30000) (func (export "_start")))"#).unwrap();
    let o = run(&sb, Kind::Command, &memory, job(b"")).await;
    assert_eq!(kind(&o), Some(FailureKind::MemoryLimit), "{:?}", o.failure);
    let o = run(&sb, Kind::Component, &guests::echo(), job(b"fine")).await;
    assert_eq!((o.failure, o.output), (None, b"fine".to_vec()));
}

/// Not a timing test: the echoes must all finish while the spinner still runs (it would
/// run for a minute if nothing stopped it), then the spinner is cancelled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spinning_guest_does_not_hold_up_the_others() {
    let sb = std::sync::Arc::new(sandbox());
    let stop = CancellationToken::new();
    let spinner = {
        let sb = sb.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut j = job(b"");
            j.fuel = u64::MAX / 2;
            j.timeout = Duration::from_secs(60);
            j.cancel = stop;
            run(&sb, Kind::Component, &guests::spin(), j).await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let echo = sb.link(Kind::Component, &sb.compile(&guests::echo()).unwrap()).unwrap();
    for _ in 0..20 {
        let o = sb.run(echo.as_ref(), job(b"quick")).await;
        assert_eq!(o.failure, None);
    }
    assert!(!spinner.is_finished(), "the echoes waited for the spinner to end");
    stop.cancel();
    assert_eq!(kind(&spinner.await.unwrap()), Some(FailureKind::Cancelled));
}

/// A core WASI command whose `_start` repeats `body` for ever, with a 64 MiB memory.
fn forever(imports: &str, body: &str) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(module {imports}
             (memory (export "memory") 1024)
             (func (export "_start") (loop $again {body} (br $again))))"#
    ))
    .unwrap()
}

/// Runs `program` with all the fuel in the world and the given timeout or cancel; returns
/// how it ended and when.
async fn stopped(
    sb: &Sandbox,
    program: &[u8],
    timeout: Duration,
    cancel_after: Option<Duration>,
) -> (Outcome, Duration) {
    let mut j = job(b"");
    j.fuel = u64::MAX / 2;
    j.timeout = timeout;
    j.memory = 128 * MIB;
    if let Some(after) = cancel_after {
        let cancel = j.cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            cancel.cancel();
        });
    }
    let started = Instant::now();
    let o = run(sb, Kind::Command, program, j).await;
    (o, started.elapsed())
}

/// Each `memory.fill` of 64 MiB costs one unit of fuel per byte, charged before it runs, so
/// the guest yields before every one and meets its timeout; if it cost a flat unit or two
/// (as before wasmtime 46), the loop would run for hours between yields.
#[tokio::test(flavor = "multi_thread")]
async fn a_loop_of_bulk_memory_operations_stops_at_its_timeout() {
    let sb = sandbox();
    let fill = forever("", "(memory.fill (i32.const 0) (i32.const 7) (i32.const 67108864))");
    let (o, took) = stopped(&sb, &fill, Duration::from_millis(300), None).await;
    assert_eq!(kind(&o), Some(FailureKind::Timeout), "{:?}", o.failure);
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert!(o.fuel_consumed >= 64 * MIB, "a fill is charged per byte: {} units", o.fuel_consumed);
}

/// `random_get` over 1 MiB is host work (milliseconds; more in a debug build) that costs the
/// guest a few units of fuel: fuel alone would let this loop run for hours. The check on
/// every host call stops it.
#[tokio::test(flavor = "multi_thread")]
async fn a_loop_of_host_calls_stops_at_its_timeout_or_cancel() {
    let sb = sandbox();
    let random = forever(
        r#"(import "wasi_snapshot_preview1" "random_get" (func $random (param i32 i32) (result i32)))"#,
        "(drop (call $random (i32.const 0) (i32.const 1048576)))",
    );
    let (o, took) = stopped(&sb, &random, Duration::from_millis(300), None).await;
    assert_eq!(kind(&o), Some(FailureKind::Timeout), "{:?}", o.failure);
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert!(o.failure.unwrap().1.contains("timeout of 300ms"));

    let (o, took) = stopped(&sb, &random, Duration::from_secs(60), Some(Duration::from_millis(200))).await;
    assert_eq!(kind(&o), Some(FailureKind::Cancelled), "{:?}", o.failure);
    assert!(took < Duration::from_secs(3), "took {took:?}");
}

/// A command that writes for ever stops at its first write past the output limit, as
/// `output_too_large`, instead of running (and costing a slot) until its timeout.
#[tokio::test(flavor = "multi_thread")]
async fn a_command_writing_for_ever_stops_at_the_output_limit() {
    let sb = sandbox();
    let write = forever(
        r#"(import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))"#,
        "(i32.store (i32.const 16) (i32.const 64)) (i32.store (i32.const 20) (i32.const 100))
         (drop (call $write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 32)))",
    );
    let (o, took) = stopped(&sb, &write, Duration::from_secs(20), None).await;
    assert_eq!(kind(&o), Some(FailureKind::OutputTooLarge), "{:?}", o.failure);
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert!(o.output.is_empty(), "refused output is not kept");
}

/// A WASI function that refuses its arguments with an error (not an errno) ends the run as
/// a trap named by that error, not by the backtrace wasmtime wraps it in.
#[tokio::test(flavor = "multi_thread")]
async fn a_host_error_is_named_by_its_cause() {
    let sb = sandbox();
    let misaligned = wat::parse_str(
        r#"(module
             (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
             (memory (export "memory") 1)
             (func (export "_start") (drop (call $poll (i32.const 0) (i32.const 100) (i32.const 1) (i32.const 200)))))"#,
    )
    .unwrap();
    let o = run(&sb, Kind::Command, &misaligned, job(b"")).await;
    let (kind, message) = o.failure.unwrap();
    assert_eq!(kind, FailureKind::Trap);
    assert!(message.starts_with("a call into the host (WASI) failed: "), "{message}");
    assert!(message.contains("not aligned"), "{message}");
}

/// A table grown past the executor's element limit is the memory rules' refusal, as a
/// memory grown past the cap is: a guest that traps on it fails as `memory_limit`, one that
/// checks for -1 and exits 0 succeeds. Its own maximum is its business.
#[tokio::test(flavor = "multi_thread")]
async fn a_table_grown_past_the_element_limit_is_a_memory_limit() {
    let sb = sandbox();
    let grow = |max: &str, to: u64, then: &str| {
        wat::parse_str(format!(
            r#"(module (memory (export "memory") 1) (table 1 {max} funcref)
                 (func (export "_start")
                   (if (i32.eq (table.grow (ref.null func) (i32.const {to})) (i32.const -1)) (then {then}))))"#
        ))
        .unwrap()
    };
    let past = wasmgrid_common::guest::MAX_TABLE_ELEMENTS;
    let o = run(&sb, Kind::Command, &grow("", past, "unreachable"), job(b"")).await;
    let (refused, message) = o.failure.unwrap();
    assert_eq!(refused, FailureKind::MemoryLimit, "{message}");
    assert!(message.contains("table limit of 1048576 elements reached"), "{message}");
    let o = run(&sb, Kind::Command, &grow("", past, "nop"), job(b"")).await;
    assert_eq!((o.failure, o.exit_code), (None, Some(0)));
    let o = run(&sb, Kind::Command, &grow("10", 20, "unreachable"), job(b"")).await;
    assert_eq!(kind(&o), Some(FailureKind::Trap));
}

/// A command whose start function exits (before `_start`) ends with that exit code, as it
/// would from `_start`.
#[tokio::test(flavor = "multi_thread")]
async fn a_command_that_exits_in_its_start_function_has_that_exit_code() {
    let sb = sandbox();
    let exits = wat::parse_str(
        r#"(module
          (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
          (memory (export "memory") 1)
          (func $init (call $exit (i32.const 5)))
          (start $init)
          (func (export "_start") unreachable))"#,
    )
    .unwrap();
    let o = run(&sb, Kind::Command, &exits, job(b"")).await;
    assert_eq!((kind(&o), o.exit_code), (Some(FailureKind::TaskError), Some(5)), "{:?}", o.failure);
}

/// A task component that calls `exit` returned no result: its own failure, said so.
#[test]
fn a_task_component_that_exits_failed_as_task_error() {
    let e = wasmtime::Error::new(I32Exit(3));
    let (kind, message) = classify(&e, 0, FailureKind::Trap);
    assert_eq!(kind, FailureKind::TaskError);
    assert_eq!(message, "the task called exit (status 3) instead of returning from run");
}

/// A refused `memory.grow` is the reason for a failure that follows it, not a verdict on a
/// guest that copes with it: one that checks for -1 and exits 0 succeeds, and one that
/// then spins until its timeout ends with `timeout`.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_allocation_names_the_failure_it_causes_only() {
    let sb = sandbox();
    let grow = |then: &str| {
        wat::parse_str(format!(
            r#"(module
                 (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
                 (memory (export "memory") 1)
                 (func (export "_start")
                   (if (i32.ne (memory.grow (i32.const 4000)) (i32.const -1)) (then (unreachable)))
                   {then}))"#
        ))
        .unwrap()
    };
    let mut j = job(b"");
    j.memory = 16 * MIB;
    let o = run(&sb, Kind::Command, &grow("(call $exit (i32.const 0))"), j.clone()).await;
    assert_eq!((o.failure, o.exit_code), (None, Some(0)));

    let o = run(&sb, Kind::Command, &grow("(call $exit (i32.const 1))"), j.clone()).await;
    assert_eq!(kind(&o), Some(FailureKind::MemoryLimit), "{:?}", o.failure);
    let o = run(&sb, Kind::Command, &grow("(unreachable)"), j.clone()).await;
    assert_eq!(kind(&o), Some(FailureKind::MemoryLimit), "{:?}", o.failure);
    assert!(o.failure.unwrap().1.contains("memory limit of 16MiB"));

    let (o, _) = stopped(&sb, &grow("(loop $again (br $again))"), Duration::from_millis(200), None).await;
    assert_eq!(kind(&o), Some(FailureKind::Timeout), "{:?}", o.failure);
}

/// The benchmark's baseline, an engine with epoch interruption and no fuel, still stops an
/// endless loop at its timeout and counts no fuel.
#[tokio::test(flavor = "multi_thread")]
async fn the_epoch_only_sandbox_stops_an_endless_loop_at_its_timeout() {
    let sb = Sandbox::with_metering(2, settings(), Metering::EpochOnly).unwrap();
    let (o, took) = stopped(&sb, &forever("", ""), Duration::from_millis(300), None).await;
    assert_eq!(kind(&o), Some(FailureKind::Timeout), "{:?}", o.failure);
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert_eq!(o.fuel_consumed, 0);
    let o = run(&sb, Kind::Component, &guests::echo(), job(b"still fine")).await;
    assert_eq!((o.failure, o.output), (None, b"still fine".to_vec()));
}
