//! `RunTask` (`task submit --wait`, `bench --sync`): one task, submitted and waited for in one
//! call. With a free slot and an empty queue the task runs first, as a trial, and its submit
//! and result go into the log together; otherwise it is submitted and waited for as usual.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmgrid_client::proto as pb;
use wasmgrid_client::Client;
use wasmgrid_tests::{guests, Cluster};

fn spec(module: &str, input: &[u8], timeout_ms: u64) -> pb::TaskSpec {
    pb::TaskSpec {
        module: module.to_string(),
        input: input.to_vec(),
        limits: Some(pb::Limits { timeout_ms, ..Default::default() }),
        ..Default::default()
    }
}

async fn upload(client: &Client, bytes: &[u8]) -> String {
    client.upload_module(bytes, Arc::new(|_| {})).await.unwrap().digest
}

async fn commit_index(client: &Client) -> u64 {
    client.cluster_status().await.unwrap().commit_index
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_run_on_a_free_slot_costs_one_log_entry_and_is_stored_like_any_task() {
    let cluster = Cluster::start(1).await;
    let client = cluster.client();
    let module = upload(&client, &guests::reverse()).await;

    const RUNS: u64 = 10;
    let before = commit_index(&client).await;
    let mut ids = Vec::new();
    for i in 0..RUNS {
        let input = format!("run {i}");
        let t = client.run(spec(&module, input.as_bytes(), 0)).await.unwrap();
        assert_eq!(t.state(), pb::TaskState::Succeeded, "{t:?}");
        assert_eq!(t.output, input.bytes().rev().collect::<Vec<u8>>());
        assert_eq!((t.attempts, t.executor.as_str()), (1, "executor-0"));
        assert!(t.fuel_consumed > 0 && t.started_at_ms <= t.finished_at_ms && t.created_at_ms > 0);
        assert_eq!(client.get(t.id).await.unwrap(), t, "the stored record is the one returned");
        ids.push(t.id);
    }
    // Submit + result as two entries would be 2 per run; background entries are rare.
    let entries = commit_index(&client).await - before;
    assert!(entries < RUNS + RUNS / 2, "{entries} log entries for {RUNS} runs");

    let listed: Vec<u64> =
        client.list(Some(pb::TaskState::Succeeded), None).await.unwrap().iter().map(|t| t.id).collect();
    assert_eq!(listed, ids);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_run_longer_than_the_trial_budget_is_run_again_and_keeps_its_own_timeout() {
    let cluster = Cluster::start(1).await;
    let client = cluster.client();
    let sleeper = upload(&client, &guests::sleeper(600)).await;
    let spin = upload(&client, &guests::spin()).await;

    // The trial is cut at its budget (250 ms), then the task runs in full the ordinary way.
    let started = Instant::now();
    let t = client.run(spec(&sleeper, b"", 10_000)).await.unwrap();
    assert_eq!(t.state(), pb::TaskState::Succeeded, "{t:?}");
    assert_eq!(t.output, b"slept");
    assert_eq!(t.attempts, 1, "the cut-short trial is not an attempt");
    assert!(started.elapsed() >= Duration::from_millis(800), "not cut at the budget: {:?}", started.elapsed());

    // A task whose own timeout is within the budget fails with it, as a trial.
    let t = client.run(spec(&spin, b"", 50)).await.unwrap();
    let error = t.error.unwrap();
    assert_eq!(error.kind(), pb::FailureKind::Timeout);
    assert!(error.message.contains("50ms"), "{}", error.message);
    assert_eq!(t.created_at_ms, t.started_at_ms, "ran as a trial");

    // A task that never ends fails with the timeout it asked for, not the trial's budget.
    let t = client.run(spec(&spin, b"", 1_500)).await.unwrap();
    assert_eq!(t.state(), pb::TaskState::Failed);
    let error = t.error.unwrap();
    assert_eq!(error.kind(), pb::FailureKind::Timeout);
    assert!(error.message.contains("1s 500ms"), "{}", error.message);
    let trap = upload(&client, &guests::trap()).await;
    let t = client.run(spec(&trap, b"", 0)).await.unwrap();
    assert_eq!((t.state(), t.error.unwrap().kind()), (pb::TaskState::Failed, pb::FailureKind::Trap));
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_run_with_every_slot_busy_waits_its_turn_in_the_queue() {
    // Two slots: two sleepers run, two more queue; the run is submitted and waits its turn.
    let cluster = Cluster::start(1).await;
    let client = Arc::new(cluster.client());
    let sleeper = upload(&client, &guests::sleeper(400)).await;
    let reverse = upload(&client, &guests::reverse()).await;
    let queued = client.submit((0..4).map(|_| spec(&sleeper, b"", 0)).collect()).await.unwrap();
    let status = client.cluster_status().await.unwrap();
    assert_eq!(status.pending_tasks, 2, "{status:?}");

    let t = client.run(spec(&reverse, b"abc", 0)).await.unwrap();
    assert_eq!(t.output, b"cba");
    let mut last_queued_start = 0;
    for id in queued {
        last_queued_start = last_queued_start.max(client.get(id).await.unwrap().started_at_ms);
    }
    assert!(t.started_at_ms >= last_queued_start, "the run started before a task queued ahead of it");
    assert!(t.started_at_ms - t.created_at_ms >= 300, "it did not wait in the queue: {t:?}");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_runs_are_refused_with_a_reason() {
    let cluster = Cluster::start(1).await;
    let client = cluster.client();
    let unknown = format!("sha256:{}", "ab".repeat(32));
    let err = client.run(spec(&unknown, b"", 0)).await.unwrap_err();
    assert!(err.to_string().contains("unknown module"), "{err}");
    let err = client.run(spec("not-a-digest", b"", 0)).await.unwrap_err();
    assert!(err.to_string().contains("digest"), "{err}");
    assert_eq!(client.cluster_status().await.unwrap().running_tasks, 0);
    cluster.stop().await;
}
