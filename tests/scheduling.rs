//! Placement and backpressure with masters and executors in this process: priorities, memory
//! fit, fairness and slot limits at scale, the pending-queue bound.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use wasmgrid_client::proto as pb;
use wasmgrid_client::Client;
use wasmgrid_tests::{guests, Cluster, TestExecutor};

const MIB: u64 = 1024 * 1024;

fn spec(module: &str, input: &str) -> pb::TaskSpec {
    pb::TaskSpec { module: module.into(), input: input.as_bytes().to_vec(), ..Default::default() }
}

async fn upload(client: &Client, bytes: &[u8]) -> String {
    client.upload_module(bytes, Arc::new(|_| {})).await.unwrap().digest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_all_slots_busy_a_high_priority_task_submitted_last_starts_first() {
    let cluster = Cluster::start_with(1, |_| {}, |o| o.slots = Some(1)).await;
    let client = cluster.client();
    let sleeper = upload(&client, &guests::sleeper(400)).await;
    let busy = client.submit(vec![spec(&sleeper, "")]).await.unwrap()[0];
    let low = client.submit((0..3).map(|_| spec(&sleeper, "")).collect()).await.unwrap();
    let high = client.submit(vec![pb::TaskSpec { priority: 10, ..spec(&sleeper, "") }]).await.unwrap()[0];
    let mut all = vec![busy, high];
    all.extend(&low);
    let mut started = BTreeMap::new();
    client
        .wait(&all, |t| {
            started.insert(t.id, t.started_at_ms);
        })
        .await
        .unwrap();
    for l in &low {
        assert!(started[&high] < started[l], "the high-priority task started after task {l}: {started:?}");
    }
    assert!(started[&low[0]] <= started[&low[1]] && started[&low[1]] <= started[&low[2]], "FIFO within a priority");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_task_that_fits_no_executor_waits_with_its_reason_until_one_joins() {
    let cluster = Cluster::start_with(1, |_| {}, |o| o.memory = Some(wasmgrid_common::Size::mib(64))).await;
    let client = cluster.client();
    let echo = upload(&client, &guests::echo()).await;
    let big = pb::TaskSpec {
        limits: Some(pb::Limits { memory_bytes: 900 * MIB, ..Default::default() }),
        ..spec(&echo, "big")
    };
    let id = client.submit(vec![big]).await.unwrap()[0];
    let small = pb::TaskSpec {
        limits: Some(pb::Limits { memory_bytes: 16 * MIB, ..Default::default() }),
        ..spec(&echo, "small")
    };
    let small = client.submit(vec![small]).await.unwrap()[0];
    assert_eq!(client.wait_one(small).await.unwrap().output, b"small", "the big task blocks no one");
    let t = client.get(id).await.unwrap();
    assert_eq!(t.state(), pb::TaskState::Pending);
    assert_eq!(t.pending_reason, "needs 900MiB of memory, largest executor has 64MiB");

    let bigger =
        TestExecutor::start(std::slice::from_ref(&cluster.master.addr), &cluster.dir.path().join("big"), |o| {
            o.name = Some("big".into());
            o.memory = Some(wasmgrid_common::Size(2 << 30));
        })
        .await;
    let t = client.wait_one(id).await.unwrap();
    assert_eq!((t.state(), t.executor.as_str(), t.output.as_slice()), (pb::TaskState::Succeeded, "big", &b"big"[..]));
    bigger.stop().await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_tasks_on_twenty_executors_are_shared_fairly_within_slots() {
    const EXECUTORS: usize = 20;
    const TASKS: usize = 10_000;
    const SLOTS: u32 = 2;
    let cluster = Cluster::start_with(EXECUTORS, |_| {}, |o| o.slots = Some(SLOTS)).await;
    let client = cluster.client();
    let echo = upload(&client, &guests::echo()).await;
    // Every executor compiles the module first: on a loaded machine the twenty compiles (one
    // process) end seconds apart, and the first ready would take more than its share of
    // what is measured.
    let warm_up = client.submit((0..400).map(|i| spec(&echo, &format!("warm-up {i}"))).collect()).await.unwrap();
    client.wait(&warm_up, |_| {}).await.unwrap();
    let mut ids = Vec::with_capacity(TASKS);
    for batch in 0..TASKS / 1000 {
        let specs = (0..1000).map(|i| spec(&echo, &format!("{}", batch * 1000 + i))).collect();
        ids.extend(client.submit(specs).await.unwrap());
    }
    let mut per_executor: BTreeMap<String, usize> = BTreeMap::new();
    let mut failed = 0;
    client
        .wait(&ids, |t| {
            if t.state() != pb::TaskState::Succeeded {
                failed += 1;
            }
            *per_executor.entry(t.executor).or_default() += 1;
        })
        .await
        .unwrap();
    assert_eq!(failed, 0);
    assert_eq!(per_executor.len(), EXECUTORS, "every executor got work: {per_executor:?}");
    let max = *per_executor.values().max().unwrap();
    let min = *per_executor.values().min().unwrap();
    println!("{TASKS} tasks on {EXECUTORS} executors: fewest {min}, most {max}, ratio {:.2}", max as f64 / min as f64);
    assert!(max as f64 / min as f64 <= 2.0, "unfair share: {per_executor:?}");
    for e in &cluster.executors {
        assert!(e.agent.runs.peak() <= SLOTS as usize, "{} ran {} at once", e.name, e.agent.runs.peak());
    }
    cluster.stop().await;
}

/// Runs empty tasks of `module` (a `sleeper_for_input`) until it counts as short: some of
/// a batch wait in an executor's queue, beyond its slots. Batches, not a fixed number of
/// runs, since a run on a loaded machine may take longer than a short one.
async fn until_short(client: &Client, module: &str) {
    for _ in 0..30 {
        let ids = client.submit(vec![spec(module, ""); 20]).await.unwrap();
        let queued: u32 = client.cluster_status().await.unwrap().executors.iter().map(|e| e.queued).sum();
        // One run over 5 ms (a loaded machine) ends the streak: the module is short only if
        // every run of the batch was.
        let mut all_short = true;
        client
            .wait(&ids, |t| {
                assert_eq!(t.state(), pb::TaskState::Succeeded);
                all_short &= t.duration_ms <= 5;
            })
            .await
            .unwrap();
        if queued > 0 && all_short {
            return;
        }
    }
    panic!("the module never counted as short");
}

fn sleep_for(module: &str, d: Duration, timeout: Option<Duration>) -> pb::TaskSpec {
    let input = u64::try_from(d.as_nanos()).unwrap().to_le_bytes().to_vec();
    let limits = timeout.map(|t| pb::Limits { timeout_ms: t.as_millis() as u64, ..Default::default() });
    pb::TaskSpec { input, limits, ..spec(module, "") }
}

/// With one slot, the tasks of a module known to run short are all placed at once and wait
/// in the executor's queue, one run at a time. Should the module turn slow, the queued runs
/// wait longer than their timeout plus the leader's grace, and still run in full: the
/// executor's heartbeats say they have not started, so the leader does not expire them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_short_modules_tasks_queue_at_the_executor_and_the_wait_does_not_count_as_running() {
    let cluster = Cluster::start_with(
        1,
        |_| {},
        |o| {
            o.slots = Some(1);
            // Heartbeats every second: placement + 1 s + timeout + grace is 7 s.
            o.keepalive_ttl = Some(wasmgrid_common::Dur::secs(4));
        },
    )
    .await;
    let client = cluster.client();
    let sleeper = upload(&client, &guests::sleeper_for_input()).await;
    until_short(&client, &sleeper).await;

    let slow = sleep_for(&sleeper, Duration::from_secs(2), Some(Duration::from_secs(3)));
    let ids = client.submit(vec![slow; 5]).await.unwrap();
    for id in &ids {
        assert_eq!(client.get(*id).await.unwrap().state(), pb::TaskState::Running, "queued at the executor");
    }
    // The last one starts about 8 s after it was placed, past 7 s.
    client.wait(&ids, |t| assert_eq!(t.state(), pb::TaskState::Succeeded, "{:?}", t.error)).await.unwrap();
    assert_eq!(cluster.executors[0].agent.runs.peak(), 1, "one slot, one run at a time");
    cluster.stop().await;
}

/// A module that takes seconds to compile: its first run waits for it without counting it
/// against the task's timeout, on the executor or in the leader's backstop (the run counts as
/// waiting meanwhile), as it would have had it come as a trial (`task submit --wait`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_compile_does_not_count_against_the_first_runs_timeout() {
    let cluster = Cluster::start_with(
        1,
        |_| {},
        |o| {
            // Heartbeats every 15 s: the executor says at once that the run waits for its
            // module, or the leader's backstop (placement + timeout + 3 s) would end it.
            o.keepalive_ttl = Some(wasmgrid_common::Dur::secs(60));
        },
    )
    .await;
    let client = cluster.client();
    // About 9 s to compile in a debug build, well past the backstop's 3.1 s.
    let slow = upload(&client, &guests::many_functions(15_000)).await;
    let started = std::time::Instant::now();
    let mut task = spec(&slow, "");
    task.limits = Some(pb::Limits { timeout_ms: 100, ..Default::default() });
    // A cancel while the module compiles ends that run's wait, not the compile.
    let cancelled = client.submit(vec![task.clone()]).await.unwrap()[0];
    tokio::time::sleep(Duration::from_secs(1)).await;
    client.cancel(cancelled).await.unwrap();
    let id = client.submit(vec![task]).await.unwrap()[0];
    let t = client.wait_one(id).await.unwrap();
    assert_eq!((t.state(), t.output.as_slice()), (pb::TaskState::Succeeded, &b"ok"[..]), "{:?}", t.error);
    println!("compiled and ran in {:?}", started.elapsed());
    assert_eq!(cluster.executors[0].agent.modules.compiled_count(), 1, "the second run used the first one's compile");
    cluster.stop().await;
}

/// A draining executor finishes the run it started and gives back at once those still
/// waiting in its queue, so they run elsewhere instead of waiting out the drain, without
/// using up an attempt (one is all these tasks have).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_draining_executor_gives_back_the_runs_waiting_in_its_queue() {
    let cluster = Cluster::start_with(1, |_| {}, |o| o.slots = Some(1)).await;
    let client = cluster.client();
    let sleeper = upload(&client, &guests::sleeper_for_input()).await;
    until_short(&client, &sleeper).await;
    let one_attempt = pb::TaskSpec { max_attempts: 1, ..sleep_for(&sleeper, Duration::from_secs(4), None) };
    let ids = client.submit(vec![one_attempt; 3]).await.unwrap();
    let other =
        TestExecutor::start(std::slice::from_ref(&cluster.master.addr), &cluster.dir.path().join("other"), |o| {
            o.name = Some("other".into());
            o.slots = Some(2);
        })
        .await;
    cluster.wait_executors(2).await;
    client.drain_executor("executor-0").await.unwrap();
    let mut ran = BTreeMap::new();
    client
        .wait(&ids, |t| {
            assert_eq!(t.state(), pb::TaskState::Succeeded, "{:?}", t.error);
            ran.insert(t.id, (t.executor.clone(), t.attempts));
        })
        .await
        .unwrap();
    // Whichever of them took the slot first.
    let mut where_ran: Vec<(String, u32)> = ran.into_values().collect();
    where_ran.sort();
    // A run given back is allowed one more attempt: 2 of 2 for those, though they had 1.
    let expected = [("executor-0", 1), ("other", 2), ("other", 2)].map(|(e, a)| (e.to_string(), a));
    assert_eq!(where_ran, expected, "the started run finishes there, the waiting ones run elsewhere at once");
    other.stop().await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_pending_queue_bound_refuses_the_excess_and_accepts_again_once_drained() {
    let cluster = Cluster::start_with(0, |o| o.max_pending_tasks = Some(20), |_| {}).await;
    let client = cluster.client();
    let echo = upload(&client, &guests::echo()).await;
    let ids = client.submit((0..20).map(|_| spec(&echo, "x")).collect()).await.unwrap();
    let err = client.submit(vec![spec(&echo, "one too many")]).await.unwrap_err();
    assert_eq!(err.code(), Some(tonic::Code::ResourceExhausted), "{err}");
    assert!(err.to_string().contains("max-pending-tasks = 20"), "{err}");

    let executor =
        TestExecutor::start(std::slice::from_ref(&cluster.master.addr), &cluster.dir.path().join("e"), |_| {}).await;
    client.wait(&ids, |_| {}).await.unwrap();
    let id = client.submit(vec![spec(&echo, "accepted again")]).await.unwrap()[0];
    assert_eq!(client.wait_one(id).await.unwrap().output, b"accepted again");
    executor.stop().await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancelling_a_long_task_frees_its_slot_for_the_next() {
    let cluster = Cluster::start_with(1, |_| {}, |o| o.slots = Some(1)).await;
    let client = cluster.client();
    let sleeper = upload(&client, &guests::sleeper(60_000)).await;
    let long = client.submit(vec![spec(&sleeper, "")]).await.unwrap()[0];
    let echo = upload(&client, &guests::echo()).await;
    let next = client.submit(vec![spec(&echo, "next")]).await.unwrap()[0];
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(client.get(long).await.unwrap().state(), pb::TaskState::Running);
    client.cancel(long).await.unwrap();
    let t = tokio::time::timeout(Duration::from_secs(10), client.wait_one(next)).await.unwrap().unwrap();
    assert_eq!(t.output, b"next");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_executor_with_a_taken_name_is_refused_until_the_first_leaves() {
    let cluster = Cluster::start(1).await;
    let client = cluster.client();
    let executor = |status: &pb::ClusterStatusResponse| {
        let named: Vec<_> = status.executors.iter().filter(|e| e.name == "executor-0").collect();
        assert_eq!(named.len(), 1, "{status:?}");
        (named[0].addr.clone(), named[0].connected)
    };
    let first = executor(&client.cluster_status().await.unwrap());
    let dir = cluster.dir.path().join("impostor");
    let second = TestExecutor::start(std::slice::from_ref(&cluster.master.addr), &dir, |o| {
        o.name = Some("executor-0".into());
    })
    .await;
    // Refused: the first keeps its registration (no flapping between the two).
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(executor(&client.cluster_status().await.unwrap()), first);
        assert!(!second.agent.status.connected.load(std::sync::atomic::Ordering::Relaxed));
    }
    // Once the first has left, the name is free.
    let mut cluster = cluster;
    cluster.executors.remove(0).stop().await;
    let mut taken_over = false;
    for _ in 0..100 {
        let (addr, connected) = executor(&client.cluster_status().await.unwrap());
        if connected && addr != first.0 {
            taken_over = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(taken_over, "the second executor never got the free name");
    second.stop().await;
    cluster.stop().await;
}
