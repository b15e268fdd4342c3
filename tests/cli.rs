//! The command-line contract, driven through the real binaries: flags, config files, text
//! and JSON output, exit codes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use wasmgrid_tests::guests;
use wasmgrid_tests::process::{bin, Proc};

fn master(dir: &Path) -> Proc {
    master_with(dir, &[])
}

fn master_with(dir: &Path, extra: &[&str]) -> Proc {
    let mut args = vec![
        "--master-addr".into(),
        "127.0.0.1:0".into(),
        "--data-dir".into(),
        dir.join("master").display().to_string(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    Proc::start("master", &args, &dir.join("master.log"))
}

fn executor(dir: &Path, master: &Proc) -> Proc {
    let args = vec![
        "--join".into(),
        master.addr.to_string(),
        "--worker-addr".into(),
        "127.0.0.1:0".into(),
        "--data-dir".into(),
        dir.join("executor").display().to_string(),
    ];
    Proc::start("executor", &args, &dir.join("executor.log"))
}

fn client(master: &Proc, args: &[&str]) -> Output {
    Command::new(bin("master-client"))
        .env("WASMGRID_MASTER_ADDR", format!("http://{}", master.addr.host_port()))
        .args(args)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(o)))
}

#[test]
fn upload_submit_and_wait_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let m = master(dir.path());
    let e = executor(dir.path(), &m);
    let reverse = dir.path().join("reverse.wasm");
    std::fs::write(&reverse, guests::reverse()).unwrap();
    let fail = dir.path().join("fail.wasm");
    std::fs::write(&fail, guests::fail()).unwrap();

    let up = client(&m, &["module", "upload", reverse.to_str().unwrap()]);
    assert!(up.status.success(), "{}", stderr(&up));
    let digest = stdout(&up).trim().to_string();
    assert!(digest.starts_with("sha256:") && digest.len() == 71, "{digest}");

    let listed = json(&client(&m, &["--output", "json", "module", "list"]));
    assert_eq!(listed[0]["digest"], digest.as_str());
    assert_eq!(listed[0]["kind"], "component");

    // Text: the raw output on stdout, exit 0.
    let run = client(&m, &["task", "submit", &digest, "--input", "hello", "--wait"]);
    assert!(run.status.success(), "{}", stderr(&run));
    assert_eq!(stdout(&run), "olleh");

    // A path instead of a digest is uploaded first; JSON has the contract's fields.
    let run = client(&m, &["--output", "json", "task", "submit", reverse.to_str().unwrap(), "--input", "ab", "--wait"]);
    let t = json(&run);
    assert_eq!(t["state"], "succeeded");
    assert_eq!(t["output_b64"], "YmE=");
    assert_eq!(t["attempts"], 1);
    assert!(t["executor"].is_string() && t["fuel_consumed"].as_u64().unwrap() > 0);
    assert!(t["duration_ms"].is_u64() && t["error"].is_null() && t["exit_code"].is_null());
    let id = t["id"].as_str().unwrap().to_string();

    // Failure: stderr says why, exit 1.
    let run = client(&m, &["task", "submit", fail.to_str().unwrap(), "--wait"]);
    assert_eq!(run.status.code(), Some(1));
    assert!(stderr(&run).contains("task_error: the input was rejected"), "{}", stderr(&run));
    let run = client(&m, &["--output", "json", "task", "submit", fail.to_str().unwrap(), "--wait"]);
    assert_eq!(run.status.code(), Some(1));
    assert_eq!(json(&run)["error"]["kind"], "task_error");
    assert_eq!(json(&run)["error"]["message"], "the input was rejected");
    // A command program's own stderr comes through on stderr, before the failure line.
    let readfile = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/tasks/build/readfile.wasm");
    let run = client(&m, &["task", "submit", readfile.to_str().unwrap(), "--arg", "/etc/hosts", "--wait"]);
    assert_eq!(run.status.code(), Some(1));
    let said = stderr(&run);
    let (guest, ours) = (said.find("cannot open /etc/hosts"), said.find("task_error: the program exited with code 2"));
    assert!(guest.is_some() && ours.is_some() && guest < ours, "{said}");

    // Input from stdin, and get / wait / list.
    let mut child = Command::new(bin("master-client"))
        .args(["--master-addr", &m.addr.to_string(), "task", "submit", &digest, "--input-file", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"from stdin").unwrap();
    let submitted = child.wait_with_output().unwrap();
    let new_id = stdout(&submitted).trim().to_string();
    assert!(new_id.parse::<u64>().is_ok(), "{new_id}");
    assert_eq!(stdout(&client(&m, &["task", "wait", &new_id])), "nidts morf");
    assert_eq!(json(&client(&m, &["--output", "json", "task", "get", &id]))["output_b64"], "YmE=");
    let all = json(&client(&m, &["--output", "json", "task", "list"]));
    assert_eq!(all.as_array().unwrap().len(), 6);
    let failed = json(&client(&m, &["--output", "json", "task", "list", "--state", "failed"]));
    assert_eq!(failed.as_array().unwrap().len(), 3);

    let status = json(&client(&m, &["--output", "json", "cluster", "status"]));
    assert_eq!(status["leader"], "master");
    assert_eq!(status["members"].as_array().unwrap().len(), 1);
    assert_eq!(status["executors"].as_array().unwrap().len(), 1);
    let executors = json(&client(&m, &["--output", "json", "executor", "list"]));
    assert_eq!(executors.as_array().unwrap().len(), 1);
    assert_eq!(executors[0]["name"], status["executors"][0]["name"]);
    assert!(executors[0]["slots"].as_u64().unwrap() > 0);

    // The benchmark: one JSON document with the contract's fields.
    let bench =
        json(&client(&m, &["--output", "json", "bench", "--module", &digest, "--tasks", "200", "--concurrency", "50"]));
    assert_eq!((bench["tasks"].as_u64(), bench["failed"].as_u64()), (Some(200), Some(0)));
    for field in ["seconds", "throughput", "latency_p50_ms", "latency_p99_ms"] {
        assert!(bench[field].as_f64().unwrap() > 0.0, "{field}: {bench}");
    }
    let sync = json(&client(&m, &["--output", "json", "bench", "--module", &digest, "--tasks", "20", "--sync"]));
    assert_eq!(sync["tasks"], 20);

    // Errors are one line on stderr and a non-zero exit.
    let missing = client(&m, &["task", "get", "424242"]);
    assert_eq!(missing.status.code(), Some(1));
    assert_eq!(stderr(&missing).lines().count(), 1);
    assert!(stderr(&missing).contains("not found"));
    // With --output json, a JSON document on stdout too.
    let missing = client(&m, &["--output", "json", "task", "get", "424242"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(json(&missing)["error"]["message"].as_str().unwrap().contains("not found"), "{}", stdout(&missing));
    let bad = client(&m, &["task", "submit", "no-such-file.wasm"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr(&bad).contains("neither"), "{}", stderr(&bad));
    let prefix = client(&m, &["task", "submit", &digest[..15]]);
    assert_eq!(prefix.status.code(), Some(1));
    assert!(stderr(&prefix).contains("is not a whole digest, nor a file"), "{}", stderr(&prefix));

    // Several tasks waited for: each output under a header, as `head` shows several files.
    let submit = |input: &str| stdout(&client(&m, &["task", "submit", &digest, "--input", input])).trim().to_string();
    let (one, two) = (submit("one"), submit("two"));
    let waited = client(&m, &["task", "wait", &one, &two]);
    let expected = format!("==> task {one} succeeded <==\neno\n\n==> task {two} succeeded <==\nowt\n");
    assert_eq!((waited.status.code(), stdout(&waited)), (Some(0), expected));
    let waited = json(&client(&m, &["--output", "json", "task", "wait", &one, &two]));
    assert_eq!((waited[0]["output"].as_str(), waited[1]["output"].as_str()), (Some("eno"), Some("owt")));
    // One failed: the JSON has both, the exit code and stderr say which failed.
    let failing = stdout(&client(&m, &["task", "submit", fail.to_str().unwrap()])).trim().to_string();
    let waited = client(&m, &["--output", "json", "task", "wait", &one, &failing]);
    assert_eq!((waited.status.code(), json(&waited)[1]["state"].as_str()), (Some(1), Some("failed")));
    assert!(stderr(&waited).contains(&format!("1 of the 2 tasks did not succeed: {failing}")), "{}", stderr(&waited));

    // A reader that stops reading (`| head -1`) ends the client quietly.
    for args in [&["task", "list"][..], &["task", "submit", &digest, "--input", "x", "--wait"]] {
        let cut = client_into_closed_pipe(&m, args);
        assert_eq!((cut.status.code(), stderr(&cut)), (Some(0), String::new()), "{args:?}");
    }
    // Unless what it printed was a failure: a program that wrote output, then exited 3.
    let cat = dir.path().join("cat.wasm");
    std::fs::write(&cat, guests::wasi_cat()).unwrap();
    let cat = cat.to_str().unwrap();
    let failed = stdout(&client(&m, &["task", "submit", cat, "--input", "3 then exit"])).trim().to_string();
    for args in [
        &["task", "submit", cat, "--input", "3 then exit", "--wait"][..],
        &["task", "wait", &failed],
        &["task", "wait", &failed, &one],
        &["--output", "json", "task", "wait", &failed],
        &["--output", "json", "task", "submit", cat, "--input", "3 then exit", "--wait"],
        &["bench", "--module", fail.to_str().unwrap(), "--tasks", "2", "--concurrency", "2"],
    ] {
        let cut = client_into_closed_pipe(&m, args);
        assert_eq!(cut.status.code(), Some(1), "{args:?}: {}", stderr(&cut));
        let said = stderr(&cut);
        assert!(
            ["exited with code 3", "did not succeed", "2 of the 2 tasks failed"].iter().any(|s| said.contains(s)),
            "{args:?}: {said}"
        );
    }

    // An address where no master answers (an executor's status port) is passed over for
    // the next; given only such addresses, the client says so at once.
    let addrs = format!("{},{}", e.addr.host_port(), m.addr.host_port());
    let found = client_at(&addrs, &["task", "get", &id]);
    assert!(found.status.success(), "{}", stderr(&found));
    // Nor does a listener that accepts connections and never answers hold the client up
    // for long (it used to take 30 s of missed pings).
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addrs = format!("{},{}", silent.local_addr().unwrap(), m.addr.host_port());
    let started = std::time::Instant::now();
    let found = client_at(&addrs, &["task", "get", &id]);
    assert!(found.status.success(), "{}", stderr(&found));
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "took {:?}", started.elapsed());
    let none = client_at(&e.addr.host_port(), &["task", "get", &id]);
    assert_eq!(none.status.code(), Some(1));
    assert!(stderr(&none).contains("no wasmgrid master at"), "{}", stderr(&none));
    assert!(stderr(&none).contains("not the master's API"), "a reason, not an empty one: {}", stderr(&none));

    // A task no executor has the memory for: --wait says so after a few seconds, and waits on.
    let big = Command::new("timeout")
        .arg("8")
        .arg(bin("master-client"))
        .env("WASMGRID_MASTER_ADDR", m.addr.host_port())
        .args(["task", "submit", &digest, "--memory", "100GiB", "--wait"])
        .output()
        .unwrap();
    assert_eq!(big.status.code(), Some(124), "still waiting: {}", stderr(&big));
    let said = stderr(&big);
    assert!(said.contains("note: the task needs 100GiB of memory and the largest executor has"), "{said}");
    // The listing shows why it waits, and no time yet.
    let listed = stdout(&client(&m, &["task", "list", "--state", "pending"]));
    let line =
        listed.lines().find(|l| l.contains("(waiting: needs 100GiB of memory")).unwrap_or_else(|| panic!("{listed}"));
    assert!(line.contains(" pending ") && line.contains(" - "), "{line}");

    // Draining one executor prints its one record, heartbeat included.
    let listed = json(&client(&m, &["--output", "json", "executor", "list"]));
    let name = listed[0]["name"].as_str().unwrap().to_string();
    let drained = json(&client(&m, &["--output", "json", "executor", "drain", &name]));
    assert_eq!(
        (drained["name"].as_str(), drained["state"].as_str()),
        (Some(name.as_str()), Some("draining")),
        "{drained}"
    );
    assert!(drained["last_heartbeat_ms_ago"].is_u64(), "{drained}");
}

/// The client with its stdout into a pipe whose reader has gone (`| head -c 0`).
fn client_into_closed_pipe(master: &Proc, args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    Command::new(bin("master-client"))
        .env("WASMGRID_MASTER_ADDR", master.addr.host_port())
        .args(args)
        .stdout(writer)
        .output()
        .unwrap()
}

fn client_at(addrs: &str, args: &[&str]) -> Output {
    Command::new(bin("master-client")).env("WASMGRID_MASTER_ADDR", addrs).args(args).output().unwrap()
}

#[test]
fn bench_submits_fit_the_masters_message_size_and_counts_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let m =
        master_with(dir.path(), &["--max-message-size", "4MiB", "--max-input-size", "2MiB", "--max-batch-size", "3"]);
    let _e = executor(dir.path(), &m);
    let echo = dir.path().join("echo.wasm");
    std::fs::write(&echo, guests::echo()).unwrap();
    let echo = echo.display().to_string();

    // Six 1 MiB inputs with room for all in flight: one submit of them all would be 6 MiB.
    let args = ["--output", "json", "bench", "--module", &echo, "--tasks", "6", "--concurrency", "40"];
    let big = client(&m, &[&args[..], &["--input-size", "1048576"]].concat());
    assert!(big.status.success(), "{}", stderr(&big));
    assert_eq!((json(&big)["tasks"].as_u64(), json(&big)["failed"].as_u64()), (Some(6), Some(0)));
    // 40 in flight would be submitted 10 at a time: this master takes 3.
    let small = client(&m, &["--output", "json", "bench", "--module", &echo, "--tasks", "30", "--concurrency", "40"]);
    assert!(small.status.success(), "{}", stderr(&small));
    assert_eq!(json(&small)["tasks"].as_u64(), Some(30));

    // An endless input or module is refused at the masters' limit, not read until the client
    // runs out of memory.
    // Under a memory limit, so that a client that reads on fails here, not on the machine.
    let limited = |args: &[&str]| {
        Command::new("sh")
            .args(["-c", r#"ulimit -v 4000000; exec "$0" "$@""#])
            .arg(bin("master-client"))
            .args(args)
            .env("WASMGRID_MASTER_ADDR", m.addr.host_port())
            .output()
            .unwrap()
    };
    let endless = limited(&["task", "submit", &echo, "--input-file", "/dev/zero"]);
    assert_eq!(endless.status.code(), Some(1));
    assert!(
        stderr(&endless).contains("/dev/zero is larger than the masters' max-input-size (2MiB)"),
        "{}",
        stderr(&endless)
    );
    let large = dir.path().join("large-input");
    std::fs::write(&large, vec![b'x'; 3 << 20]).unwrap();
    let huge = dir.path().join("huge-input");
    std::fs::write(&huge, vec![b'x'; 17 << 20]).unwrap();
    let refused = client(&m, &["task", "submit", &echo, "--input-file", huge.to_str().unwrap()]);
    assert!(stderr(&refused).contains("huge-input is larger than the masters' max-input-size"), "{}", stderr(&refused));
    let refused = client(&m, &["task", "submit", &echo, "--input-file", large.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(stderr(&refused).contains("max-input-size = 2MiB"), "{}", stderr(&refused));
    let endless = limited(&["module", "upload", "/dev/zero"]);
    assert_eq!(endless.status.code(), Some(1));
    assert!(
        stderr(&endless).contains("/dev/zero is larger than the masters' max-module-size (64MiB)"),
        "{}",
        stderr(&endless)
    );
    let status = json(&client(&m, &["--output", "json", "cluster", "status"]));
    assert_eq!(
        (status["max_input_size"].as_u64(), status["max_module_size"].as_u64()),
        (Some(2 << 20), Some(64 << 20))
    );

    // Failed tasks: the table, then one line on stderr that says so, exit 1.
    let fail = dir.path().join("fail.wasm");
    std::fs::write(&fail, guests::fail()).unwrap();
    let failing = client(&m, &["bench", "--module", fail.to_str().unwrap(), "--tasks", "3", "--concurrency", "3"]);
    assert_eq!(failing.status.code(), Some(1));
    assert!(stderr(&failing).contains("3 of the 3 tasks failed"), "{}", stderr(&failing));

    // A zero limit is refused, not quietly the default; like a malformed --env, it is a usage
    // error (exit 2).
    for flag in ["--fuel", "--memory", "--timeout", "--max-attempts"] {
        let value = if flag == "--timeout" { "0s" } else { "0" };
        let zero = client(&m, &["task", "submit", &echo, "--input", "x", flag, value]);
        assert_eq!(zero.status.code(), Some(2), "{flag} 0");
        let said = stderr(&zero);
        assert!(said.contains(flag) && said.contains("must be more than 0"), "{said}");
    }
    let env = client(&m, &["task", "submit", &echo, "--env", "NOEQUALS"]);
    assert_eq!(env.status.code(), Some(2));
    assert!(stderr(&env).contains("`NOEQUALS` is not KEY=VALUE"), "{}", stderr(&env));
    let zeros: [&[&str]; 3] = [
        &["bench", "--module", &echo, "--tasks", "0"],
        &["bench", "--module", &echo, "--concurrency", "0"],
        &["task", "list", "--limit", "0"],
    ];
    for args in zeros {
        let zero = client(&m, args);
        assert_eq!(zero.status.code(), Some(2), "{args:?}");
        assert!(stderr(&zero).contains("must be more than 0"), "{}", stderr(&zero));
    }
}

/// A module the component decoder panics on is refused with a reason; the master logs the
/// panic it caught as one error line, not as a crash dump on its stderr.
#[test]
fn a_module_that_panics_the_decoder_is_refused_and_logged_as_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let m = master(dir.path());
    let path = dir.path().join("choker.wasm");
    std::fs::write(&path, guests::function_exported_as_an_interface()).unwrap();
    let out = client(&m, &["module", "upload", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("cannot read the component's interface"), "{}", stderr(&out));
    let log = std::fs::read_to_string(dir.path().join("master.log")).unwrap();
    assert!(log.contains("panic: internal error"), "{log}");
    assert!(!log.contains("panicked at"), "{log}");
    let status = client(&m, &["cluster", "status"]);
    assert!(status.status.success(), "the master still serves: {}", stderr(&status));
}

#[test]
fn no_master_gives_a_clear_error() {
    let out = Command::new(bin("master-client"))
        .args(["--master-addr", "127.0.0.1:1", "cluster", "status"])
        .env("WASMGRID_CLIENT_DEADLINE", "1s")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no master answered"), "{}", stderr(&out));
    // https:// without the CA to check the masters' certificates against is refused at once.
    let out =
        Command::new(bin("master-client")).args(["--master-addr", "https://127.0.0.1:1", "task", "list"]).output();
    let out = out.unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--tls-ca"), "{}", stderr(&out));
}

#[test]
fn versions_sample_configs_and_bad_configuration() {
    for name in ["master", "executor", "master-client"] {
        let v = Command::new(bin(name)).arg("-V").output().unwrap();
        assert!(v.status.success());
        assert!(stdout(&v).contains(env!("CARGO_PKG_VERSION")), "{name}: {}", stdout(&v));
    }
    let dir = tempfile::tempdir().unwrap();
    for name in ["master", "executor"] {
        let sample = Command::new(bin(name)).arg("--print-sample-config").output().unwrap();
        assert!(sample.status.success());
        let path = dir.path().join(format!("{name}.toml"));
        std::fs::write(&path, &sample.stdout).unwrap();
        assert!(toml_keys(&stdout(&sample)) > 5);
    }

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "master-addr = \"127.0.0.1:0\"\nmax-modul-size = \"1MiB\"\n").unwrap();
    let out = Command::new(bin("master")).args(["--config", bad.to_str().unwrap()]).output().unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("max-modul-size"), "{}", stderr(&out));

    std::fs::write(&bad, "max-module-size = \"huge\"\n").unwrap();
    let out = Command::new(bin("master")).args(["--config", bad.to_str().unwrap()]).output().unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("max-module-size") && stderr(&out).contains("huge"), "{}", stderr(&out));

    let out = Command::new(bin("executor")).args(["--join", "a:1,,b"]).output().unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--join"), "{}", stderr(&out));
    let out = Command::new(bin("executor")).args(["--join", "localhost"]).output().unwrap();
    assert!(stderr(&out).contains("no port"), "{}", stderr(&out));
    let out = Command::new(bin("master")).args(["--master-addr", "nope"]).output().unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--master-addr"), "{}", stderr(&out));
}

fn toml_keys(text: &str) -> usize {
    text.lines().filter(|l| !l.trim_start().starts_with('#') && l.contains(" = ")).count()
}

/// `componentize` names the file it cannot use, and why.
#[test]
fn componentize_says_what_is_wrong_with_its_input() {
    let dir = tempfile::tempdir().unwrap();
    let run = |input: &Path, extra: &[&str]| {
        Command::new(bin("componentize")).arg(input).arg(dir.path().join("out.wasm")).args(extra).output().unwrap()
    };
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "hello").unwrap();
    let out = run(&text, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("notes.txt is not a wasm module"), "{}", stderr(&out));
    // A main() program needs --command; with it, it becomes a component.
    let command = dir.path().join("cat.wasm");
    std::fs::write(&command, guests::wasi_cat()).unwrap();
    let out = run(&command, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("cat.wasm exports _start") && stderr(&out).contains("--command"), "{}", stderr(&out));
    let out = run(&command, &["--command"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(std::fs::read(dir.path().join("out.wasm")).unwrap().starts_with(b"\0asm"));
}

/// A second master on a data dir in use stops at once, saying so, and leaves the first
/// one's log alone.
#[test]
fn a_data_dir_in_use_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let m = master(dir.path());
    let echo = dir.path().join("echo.wasm");
    std::fs::write(&echo, guests::echo()).unwrap();
    let id = stdout(&client(&m, &["task", "submit", echo.to_str().unwrap(), "--input", "kept"])).trim().to_string();
    let data_dir = dir.path().join("master");
    let log_files = || {
        let mut files: Vec<_> = std::fs::read_dir(data_dir.join("raft-log"))
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.file_name(), std::fs::read(e.path()).unwrap())
            })
            .collect();
        files.sort();
        files
    };
    let before = log_files();
    let second = Command::new(bin("master"))
        .args(["--master-addr", "127.0.0.1:0", "--data-dir", data_dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(1));
    assert!(stderr(&second).contains("is in use by another process"), "{}", stderr(&second));
    assert!(log_files() == before, "the refused master touched the log");
    let more = client(&m, &["task", "submit", echo.to_str().unwrap(), "--input", "more"]);
    assert!(more.status.success(), "{}", stderr(&more));
    let got = json(&client(&m, &["--output", "json", "task", "get", &id]));
    assert_eq!(got["id"].as_str(), Some(id.as_str()));
}
