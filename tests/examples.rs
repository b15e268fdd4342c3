//! Every example task (as built by `make examples` into examples/tasks/build/) through a real
//! master and executor, with its expected output or failure kind; and WASI command programs:
//! arguments and environment arrive intact, stdout is the output, exit codes are recorded,
//! host files stay out of reach.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::Arc;

use wasmgrid_client::proto as pb;
use wasmgrid_client::Client;
use wasmgrid_tests::Cluster;

const MIB: u64 = 1024 * 1024;

fn example(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/tasks/build").join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e} (run make examples)", path.display()))
}

struct Run<'a> {
    client: &'a Client,
    digests: std::collections::HashMap<&'static str, String>,
}

impl Run<'_> {
    async fn task(&mut self, name: &'static str, spec: pb::TaskSpec) -> pb::Task {
        if !self.digests.contains_key(name) {
            let m = self.client.upload_module(&example(name), Arc::new(|_| {})).await.unwrap();
            self.digests.insert(name, m.digest);
        }
        let spec = pb::TaskSpec { module: self.digests[name].clone(), ..spec };
        let id = self.client.submit(vec![spec]).await.unwrap()[0];
        self.client.wait_one(id).await.unwrap()
    }

    async fn ok(&mut self, name: &'static str, input: &str) -> String {
        let t = self.task(name, input_spec(input)).await;
        assert_eq!(t.state(), pb::TaskState::Succeeded, "{name}: {:?}", t.error);
        String::from_utf8(t.output).unwrap()
    }
}

fn input_spec(input: &str) -> pb::TaskSpec {
    pb::TaskSpec { input: input.as_bytes().to_vec(), ..Default::default() }
}

fn limits(input: &str, fuel: u64, memory: u64, timeout_ms: u64) -> pb::TaskSpec {
    pb::TaskSpec { limits: Some(pb::Limits { fuel, memory_bytes: memory, timeout_ms }), ..input_spec(input) }
}

fn kind(t: &pb::Task) -> pb::FailureKind {
    t.error.as_ref().map_or(pb::FailureKind::Unspecified, |e| e.kind())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_example_task_gives_its_expected_result() {
    let cluster = Cluster::start(1).await;
    let client = cluster.client();
    let mut run = Run { client: &client, digests: Default::default() };

    assert_eq!(run.ok("echo", "hello, wasmgrid").await, "hello, wasmgrid");
    assert_eq!(run.ok("echo", "").await, "");
    let counts = run.ok("wordcount", "The cat and the hat. THE END, and").await;
    assert_eq!(counts, r#"{"the":3,"and":2,"cat":1,"end":1,"hat":1}"#);
    assert_eq!(run.ok("fib", "25").await, "75025");
    assert_eq!(run.ok("fib", "").await, "75025");
    let t = run.task("fib", input_spec("ninety")).await;
    assert_eq!(kind(&t), pb::FailureKind::TaskError);
    let t = run.task("fib", limits("32", 1_000_000, 0, 0)).await;
    assert_eq!(kind(&t), pb::FailureKind::OutOfFuel);
    assert_eq!(run.ok("sha256", "abc").await, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    let long = "x".repeat(1000);
    assert_eq!(run.ok("sha256", &long).await, sha256_hex(long.as_bytes()));

    let t = run.task("spin", limits("", 20_000_000, 0, 0)).await;
    assert_eq!(kind(&t), pb::FailureKind::OutOfFuel);
    let t = run.task("spin", limits("", u64::MAX / 4, 0, 1000)).await;
    assert_eq!(kind(&t), pb::FailureKind::Timeout);
    let t = run.task("hog", limits("", 0, 32 * MIB, 0)).await;
    assert_eq!(kind(&t), pb::FailureKind::MemoryLimit, "{:?}", t.error);
    let t = run.task("trap", input_spec("")).await;
    assert_eq!(kind(&t), pb::FailureKind::Trap);

    // The Rust versions agree with the C ones.
    assert_eq!(run.ok("echo-rust", "hello").await, "hello");
    assert_eq!(run.ok("fib-rust", "25").await, "75025");
    assert_eq!(run.ok("wordcount-rust", "The cat and the hat. THE END, and").await, counts);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn command_programs_get_args_env_and_stdin_and_nothing_else() {
    let cluster = Cluster::start(1).await;
    let client = cluster.client();
    let mut run = Run { client: &client, digests: Default::default() };

    let args =
        vec!["with spaces".to_string(), "it's \"quoted\"".to_string(), "two\nlines".to_string(), "-n".to_string()];
    let spec = pb::TaskSpec {
        args: args.clone(),
        env: vec![pb::EnvVar { key: "UPPER_SUFFIX".into(), value: " = kept \"as is\"\n".into() }],
        ..input_spec("some input\n")
    };
    for program in ["upper", "upper-component"] {
        let t = run.task(program, spec.clone()).await;
        assert_eq!(t.state(), pb::TaskState::Succeeded, "{program}: {:?}", t.error);
        assert_eq!(t.exit_code, Some(0));
        let expected = format!(
            "{}\n{}\n{}\n{}\nSOME INPUT\n = kept \"as is\"\n",
            "WITH SPACES", "IT'S \"QUOTED\"", "TWO\nLINES", "-N"
        );
        assert_eq!(String::from_utf8(t.output).unwrap(), expected, "{program}");
    }

    // No host environment leaks in: without --env the suffix is absent.
    let t = run.task("upper", input_spec("quiet")).await;
    assert_eq!(t.output, b"QUIET");

    // No filesystem: the guest gets an error, not the file, and says so with its exit code.
    let t = run.task("readfile", pb::TaskSpec { args: vec!["/etc/passwd".into()], ..input_spec("") }).await;
    assert_eq!(t.state(), pb::TaskState::Failed);
    assert_eq!(kind(&t), pb::FailureKind::TaskError);
    assert_eq!(t.exit_code, Some(2));
    assert!(t.error.unwrap().message.contains("exited with code 2"));
    let stderr = String::from_utf8_lossy(&t.stderr);
    assert!(stderr.starts_with("cannot open /etc/passwd:"), "{stderr}");
    assert!(t.output.is_empty());
    cluster.stop().await;
}

/// sha256 of `data` in hex, computed here to check the guest.
fn sha256_hex(data: &[u8]) -> String {
    wasmgrid_common::Digest::of(data).hex()
}
