//! One master and executors in this process: the task life cycle end to end, over real gRPC,
//! real redb files and real wasmtime.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmgrid_client::proto as pb;
use wasmgrid_client::{Client, ClientError};
use wasmgrid_tests::{guests, Cluster};

fn spec(module: &str, input: &[u8]) -> pb::TaskSpec {
    pb::TaskSpec { module: module.to_string(), input: input.to_vec(), ..Default::default() }
}

fn with_limits(mut s: pb::TaskSpec, fuel: u64, memory: u64, timeout_ms: u64) -> pb::TaskSpec {
    s.limits = Some(pb::Limits { fuel, memory_bytes: memory, timeout_ms });
    s
}

async fn upload(client: &Client, bytes: &[u8]) -> Result<pb::Module, ClientError> {
    client.upload_module(bytes, Arc::new(|_| {})).await
}

async fn run(client: &Client, s: pb::TaskSpec) -> pb::Task {
    let id = client.submit(vec![s]).await.unwrap()[0];
    client.wait_one(id).await.unwrap()
}

fn kind(t: &pb::Task) -> pb::FailureKind {
    t.error.as_ref().map_or(pb::FailureKind::Unspecified, |e| e.kind())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upload_submit_wait_and_dedup() {
    let cluster = Cluster::start(1).await;
    let client = cluster.client();
    let module = upload(&client, &guests::reverse()).await.unwrap();
    assert_eq!(module.kind(), pb::ModuleKind::Component);
    let again = upload(&client, &guests::reverse()).await.unwrap();
    assert_eq!(again.digest, module.digest);
    assert_eq!(client.list_modules().await.unwrap().len(), 1);
    let blobs = std::fs::read_dir(cluster.master.dir.join("blobs")).unwrap().count();
    assert_eq!(blobs, 1, "the same bytes are stored once");

    let t = run(&client, spec(&module.digest, b"wasmgrid")).await;
    assert_eq!(t.state(), pb::TaskState::Succeeded, "{t:?}");
    assert_eq!(t.output, b"dirgmsaw");
    assert_eq!(t.attempts, 1);
    assert_eq!(t.executor, "executor-0");
    assert!(t.fuel_consumed > 0);

    // A batch in one call, all in order.
    let inputs: Vec<Vec<u8>> = (0..50).map(|i| format!("task-{i}").into_bytes()).collect();
    let ids = client.submit(inputs.iter().map(|i| spec(&module.digest, i)).collect()).await.unwrap();
    let mut outputs = std::collections::HashMap::new();
    client
        .wait(&ids, |t| {
            outputs.insert(t.id, t.output);
        })
        .await
        .unwrap();
    for (id, input) in ids.iter().zip(&inputs) {
        let mut expected = input.clone();
        expected.reverse();
        assert_eq!(outputs[id], expected);
    }
    let listed = client.list(Some(pb::TaskState::Succeeded), None).await.unwrap();
    assert_eq!(listed.len(), 51);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn invalid_uploads_are_refused_with_a_reason() {
    let cluster = Cluster::start_with(0, |o| o.max_module_size = Some(wasmgrid_common::Size(200_000)), |_| {}).await;
    let client = cluster.client();
    let echo = guests::echo();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("random bytes", (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect(), "not a WebAssembly binary"),
        ("truncated", echo[..echo.len() / 2].to_vec(), "not valid WebAssembly"),
        ("core module without _start", guests::core_without_start(), "_start"),
        ("wrong run signature", guests::wrong_signature(), "wrong signature"),
        ("empty", Vec::new(), "empty"),
        ("too large", vec![0u8; 300_000], "max-module-size"),
    ];
    for (what, bytes, expected) in cases {
        let err = upload(&client, &bytes).await.unwrap_err();
        assert_eq!(err.code(), Some(tonic_code_invalid()), "{what}: {err}");
        assert!(err.to_string().contains(expected), "{what}: {err}");
    }
    assert!(client.list_modules().await.unwrap().is_empty());
    // The master still serves.
    assert!(upload(&client, &echo).await.is_ok());
    cluster.stop().await;
}

fn tonic_code_invalid() -> tonic::Code {
    tonic::Code::InvalidArgument
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failures_are_classified_and_the_executor_keeps_serving() {
    let cluster = Cluster::start(1).await;
    let client = cluster.client();
    let digest = |bytes: Vec<u8>| {
        let client = &client;
        async move { upload(client, &bytes).await.unwrap().digest }
    };
    const MIB: u64 = 1024 * 1024;

    let t = run(&client, spec(&digest(guests::fail()).await, b"")).await;
    assert_eq!((t.state(), kind(&t)), (pb::TaskState::Failed, pb::FailureKind::TaskError));
    assert_eq!(t.error.unwrap().message, "the input was rejected");

    let spin = digest(guests::spin()).await;
    let t = run(&client, with_limits(spec(&spin, b""), 1_000_000, 0, 0)).await;
    assert_eq!(kind(&t), pb::FailureKind::OutOfFuel);

    let started = Instant::now();
    let t = run(&client, with_limits(spec(&spin, b""), u64::MAX / 2, 0, 2_000)).await;
    assert_eq!(kind(&t), pb::FailureKind::Timeout);
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(2) && took < Duration::from_secs(6), "timeout took {took:?}");

    let t = run(&client, with_limits(spec(&digest(guests::hog()).await, b""), 0, 32 * MIB, 0)).await;
    assert_eq!(kind(&t), pb::FailureKind::MemoryLimit, "{:?}", t.error);

    let t = run(&client, spec(&digest(guests::trap()).await, b"")).await;
    assert_eq!(kind(&t), pb::FailureKind::Trap);
    let t = run(&client, spec(&digest(guests::recurse()).await, b"")).await;
    assert_eq!(kind(&t), pb::FailureKind::Trap);
    assert!(t.error.unwrap().message.contains("stack overflow"));

    let t = run(&client, spec(&digest(guests::echo()).await, b"still here")).await;
    assert_eq!((t.state(), t.output.as_slice()), (pb::TaskState::Succeeded, &b"still here"[..]));
    assert_eq!(t.executor, "executor-0");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancel_pending_and_running_tasks() {
    let cluster = Cluster::start(0).await;
    let client = cluster.client();
    let spin = upload(&client, &guests::spin()).await.unwrap().digest;

    // Pending: no executor yet.
    let id = client.submit(vec![spec(&spin, b"")]).await.unwrap()[0];
    assert_eq!(client.get(id).await.unwrap().state(), pb::TaskState::Pending);
    let t = client.cancel(id).await.unwrap();
    assert_eq!((t.state(), kind(&t)), (pb::TaskState::Cancelled, pb::FailureKind::Cancelled));
    let err = client.cancel(id).await.unwrap_err();
    assert!(err.to_string().contains("already finished"), "{err}");
    assert!(client.cancel(999_999).await.unwrap_err().to_string().contains("not found"));

    // Running: it stops on the executor and frees the slot.
    let executor = wasmgrid_tests::TestExecutor::start(
        std::slice::from_ref(&cluster.master.addr),
        &cluster.dir.path().join("e"),
        |o| {
            o.slots = Some(1);
        },
    )
    .await;
    cluster.wait_executors(1).await;
    let echo = upload(&client, &guests::echo()).await.unwrap().digest;
    run(&client, spec(&echo, b"warm up the module cache")).await;
    let id = client.submit(vec![with_limits(spec(&spin, b""), u64::MAX / 2, 0, 600_000)]).await.unwrap()[0];
    wait_state(&client, id, pb::TaskState::Running).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The next task waits for the executor's only slot, so it finishes only once the
    // cancelled run has really stopped there.
    let next = client.submit(vec![spec(&echo, b"slot is free")]).await.unwrap()[0];
    let started = Instant::now();
    client.cancel(id).await.unwrap();
    let next = client.wait_one(next).await.unwrap();
    let took = started.elapsed();
    assert_eq!(next.output, b"slot is free");
    println!("cancel to next task done on the freed slot: {took:?}");
    assert!(took < Duration::from_secs(1), "slot freed after {took:?}");
    executor.stop().await;
    cluster.stop().await;
}

async fn wait_state(client: &Client, id: u64, state: pb::TaskState) {
    for _ in 0..200 {
        if client.get(id).await.unwrap().state() == state {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("task {id} never reached {state:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_executor_fetches_and_compiles_a_module_once_even_across_restarts() {
    let cluster = Cluster::start(0).await;
    let client = cluster.client();
    let dir = cluster.dir.path().join("cached-executor");
    let join = [cluster.master.addr.clone()];
    let reverse = upload(&client, &guests::reverse()).await.unwrap().digest;

    let e = wasmgrid_tests::TestExecutor::start(&join, &dir, |o| o.name = Some("cached".into())).await;
    cluster.wait_executors(1).await;
    let ids = client.submit((0..5).map(|i| spec(&reverse, format!("{i}").as_bytes())).collect()).await.unwrap();
    client.wait(&ids, |_| {}).await.unwrap();
    assert_eq!(e.agent.modules.compiled_count(), 1, "five runs, one compile");
    e.stop().await;

    let e = wasmgrid_tests::TestExecutor::start(&join, &dir, |o| o.name = Some("cached".into())).await;
    cluster.wait_executors(1).await;
    let t = run(&client, spec(&reverse, b"again")).await;
    assert_eq!(t.output, b"niaga");
    assert_eq!(e.agent.modules.compiled_count(), 0, "a restart loads the compiled artefact");
    e.stop().await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn finished_tasks_are_forgotten_after_the_retention_period() {
    let retention = Some(wasmgrid_common::Dur::millis(1500));
    let cluster = Cluster::start_with(1, |o| o.result_retention = retention, |_| {}).await;
    let client = cluster.client();
    let echo = upload(&client, &guests::echo()).await.unwrap().digest;
    let old: Vec<u64> =
        client.submit((0..5).map(|i| spec(&echo, format!("old {i}").as_bytes())).collect()).await.unwrap();
    for id in &old {
        assert_eq!(client.wait_one(*id).await.unwrap().state(), pb::TaskState::Succeeded);
    }
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let young = run(&client, spec(&echo, b"young")).await;
    // Within a few retention passes the old ones are gone and the young one is still there.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let gone = client.get(old[0]).await.is_err_and(|e| e.code() == Some(tonic::Code::NotFound));
        if gone {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "old tasks still there after 10s");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let listed: Vec<u64> = client.list(None, None).await.unwrap().iter().map(|t| t.id).collect();
    assert_eq!(listed, vec![young.id], "only the young task is left");
    assert_eq!(client.get(young.id).await.unwrap().output, b"young");
    // A forgotten task is told apart from one that never was.
    let forgotten = client.get(old[1]).await.unwrap_err().to_string();
    assert!(forgotten.contains("forgotten") && forgotten.contains("result-retention = 1s 500ms"), "{forgotten}");
    let never = client.get(young.id + 100).await.unwrap_err().to_string();
    assert!(never.contains("not found") && !never.contains("forgotten"), "{never}");
    let waited = client.wait_one(old[2]).await.unwrap_err().to_string();
    assert!(waited.contains("forgotten"), "{waited}");
    let cancelled = client.cancel(old[3]).await.unwrap_err();
    assert_eq!(cancelled.code(), Some(tonic::Code::NotFound), "{cancelled}");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_module_the_executor_cannot_compile_is_not_compiled_again() {
    let cluster = Cluster::start(0).await;
    let client = cluster.client();
    let join = [cluster.master.addr.clone()];
    let e = wasmgrid_tests::TestExecutor::start(&join, &cluster.dir.path().join("e"), |o| o.slots = Some(4)).await;
    cluster.wait_executors(1).await;
    let refused = upload(&client, &guests::too_large_an_instance()).await.unwrap().digest;
    // Four at once, all waiting on the first compilation, then one after the verdict.
    let ids = client.submit((0..4).map(|_| spec(&refused, b"")).collect()).await.unwrap();
    let mut failed = Vec::new();
    client.wait(&ids, |t| failed.push(kind(&t))).await.unwrap();
    assert_eq!(failed, [pb::FailureKind::InvalidModule; 4]);
    let t = run(&client, spec(&refused, b"")).await;
    assert_eq!(kind(&t), pb::FailureKind::InvalidModule, "{:?}", t.error);
    assert_eq!(e.agent.modules.compiled_count(), 1, "five runs, one compilation");
    e.stop().await;
    cluster.stop().await;
}

/// A filtered listing of a long history reads a bounded stretch of it at a time, but every
/// answer has a task or is the end: a client that pages from the last task it was given (as
/// master-client did before `next_after`) is never handed the same empty page again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_filtered_listing_past_a_long_stretch_of_other_tasks_finds_the_one_after_it() {
    let cluster = Cluster::start(0).await;
    let client = cluster.client();
    let echo = upload(&client, &guests::echo()).await.unwrap().digest;
    for _ in 0..21 {
        client.submit(vec![spec(&echo, b""); 1000]).await.unwrap();
    }
    let last = client.submit(vec![spec(&echo, b"")]).await.unwrap()[0];
    client.cancel(last).await.unwrap();
    // Stored: a sync is due a second after the last, and an apply starts it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    client.submit(vec![spec(&echo, b"")]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut master = pb::master_client::MasterClient::connect(cluster.master.addr.url()).await.unwrap();
    let request = pb::ListTasksRequest { state: Some(pb::TaskState::Cancelled as i32), after_id: 0, limit: 10 };
    let page = master.list_tasks(request).await.unwrap().into_inner();
    assert_eq!(page.tasks.iter().map(|t| t.id).collect::<Vec<_>>(), vec![last]);
    assert!(!page.more);
    cluster.stop().await;
}
