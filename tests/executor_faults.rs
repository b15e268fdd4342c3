//! Executors that die, freeze, stop answering or leave, as real processes: tasks still
//! finish, once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmgrid_client::bench::BenchOptions;
use wasmgrid_client::proto as pb;
use wasmgrid_client::Client;
use wasmgrid_tests::group::Group;
use wasmgrid_tests::guests;

fn spec(module: &str) -> pb::TaskSpec {
    pb::TaskSpec { module: module.into(), ..Default::default() }
}

async fn upload(client: &Client, bytes: &[u8]) -> String {
    client.upload_module(bytes, Arc::new(|_| {})).await.unwrap().digest
}

async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "{what} within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The task ids an executor process says it is running (its own status API).
async fn worker_running(addr: &wasmgrid_common::Addr) -> Vec<u64> {
    let Ok(mut worker) = pb::worker_client::WorkerClient::connect(addr.url()).await else { return vec![] };
    worker.status(pb::WorkerStatusRequest {}).await.map(|r| r.into_inner().running).unwrap_or_default()
}

fn executor_index(group: &Group, name: &str) -> usize {
    (0..group.executors.len()).find(|i| format!("e{}", i + 1) == name).expect("known executor")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_executors_tasks_run_elsewhere_and_all_succeed() {
    let mut group = Group::start(1, &[]);
    group.start_executor("e1", 2);
    group.start_executor("e2", 2);
    let client = group.client();
    let sleeper = upload(&client, &guests::sleeper(3000)).await;
    let ids = client.submit((0..4).map(|_| spec(&sleeper)).collect()).await.unwrap();
    wait_until("all four running at once", Duration::from_secs(10), || async {
        let s = client.cluster_status().await.unwrap();
        s.running_tasks == 4 && s.executors.iter().all(|e| e.slots_in_use == 2)
    })
    .await;
    let victim = client.get(ids[0]).await.unwrap().executor;
    let moved: Vec<u64> = {
        let s = client.cluster_status().await.unwrap();
        s.executors.iter().find(|e| e.name == victim).unwrap().running.clone()
    };
    let victim_index = executor_index(&group, &victim);
    group.executors[victim_index].kill();

    let mut done = Vec::new();
    client.wait(&ids, |t| done.push(t)).await.unwrap();
    for t in &done {
        assert_eq!(t.state(), pb::TaskState::Succeeded, "task {}: {:?}", t.id, t.error);
        assert_eq!(t.output, b"slept");
        if moved.contains(&t.id) {
            assert!(t.attempts >= 2, "task {} moved but has {} attempts", t.id, t.attempts);
            assert_ne!(t.executor, victim);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_frozen_executor_that_thaws_does_not_change_the_recorded_result() {
    let mut group = Group::start(1, &[]);
    group.start_executor("e1", 1);
    group.start_executor("e2", 1);
    let client = group.client();
    let sleeper = upload(&client, &guests::sleeper(2000)).await;
    let id = client.submit(vec![spec(&sleeper)]).await.unwrap()[0];
    wait_until("the task running", Duration::from_secs(10), || async {
        client.get(id).await.unwrap().state() == pb::TaskState::Running
    })
    .await;
    let first = client.get(id).await.unwrap().executor;
    let frozen = executor_index(&group, &first);
    group.executors[frozen].signal(libc::SIGSTOP);

    // Past its 3s lease the task moves, and finishes on the other executor.
    let t = client.wait_one(id).await.unwrap();
    assert_eq!(t.state(), pb::TaskState::Succeeded);
    assert_ne!(t.executor, first);
    assert_eq!(t.attempts, 2);

    group.executors[frozen].signal(libc::SIGCONT);
    // The thawed executor finishes its stale run and reports it: that changes nothing.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let after = client.get(id).await.unwrap();
    assert_eq!(
        (after.executor.as_str(), after.attempts, after.finished_at_ms),
        (t.executor.as_str(), 2, t.finished_at_ms)
    );
    assert_eq!(client.list(None, None).await.unwrap().len(), 1);
    // And it registers again and takes work.
    wait_until("the thawed executor back", Duration::from_secs(15), || async {
        let s = client.cluster_status().await.unwrap();
        s.executors.iter().any(|e| e.name == first && e.state == "alive" && e.connected)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_timeout_holds_even_when_the_executor_stops_answering() {
    let mut group = Group::start(1, &[]);
    group.start_executor_with("e1", 1, &["--keepalive-ttl", "60s"]);
    let client = group.client();
    let sleeper = upload(&client, &guests::sleeper_for_input()).await;
    // The module loaded first: a run that waits for its module to load is flagged waiting,
    // and its backstop then counts from a heartbeat interval (15 s here) after that.
    let warm = client.submit(vec![spec(&sleeper)]).await.unwrap()[0];
    client.wait_one(warm).await.unwrap();
    let thirty_seconds = 30_000_000_000u64.to_le_bytes().to_vec();
    let limits = Some(pb::Limits { timeout_ms: 1000, ..Default::default() });
    let task = pb::TaskSpec { limits, input: thirty_seconds, ..spec(&sleeper) };
    let id = client.submit(vec![task]).await.unwrap()[0];
    wait_until("the task running", Duration::from_secs(10), || async {
        client.get(id).await.unwrap().state() == pb::TaskState::Running
    })
    .await;
    group.executors[0].signal(libc::SIGSTOP);
    let started = Instant::now();
    let t = client.wait_one(id).await.unwrap();
    assert_eq!(t.error.as_ref().unwrap().kind(), pb::FailureKind::Timeout, "{:?}", t.error);
    assert!(t.error.unwrap().message.contains("did not report"));
    assert!(started.elapsed() < Duration::from_secs(8), "took {:?}", started.elapsed());
    group.executors[0].signal(libc::SIGCONT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_drains_an_executor_and_the_cli_drains_another() {
    let mut group = Group::start(1, &[]);
    group.start_executor("e1", 1);
    let client = group.client();
    let sleeper = upload(&client, &guests::sleeper(1500)).await;
    let running = client.submit(vec![spec(&sleeper)]).await.unwrap()[0];
    // Running on the executor itself, not only assigned to it.
    let worker = group.executors[0].addr.clone();
    wait_until("the task running on e1", Duration::from_secs(10), || async {
        worker_running(&worker).await.contains(&running)
    })
    .await;
    group.executors[0].signal(libc::SIGTERM);
    wait_until("e1 draining", Duration::from_secs(5), || async {
        client.cluster_status().await.unwrap().executors.iter().any(|e| e.state == "draining")
    })
    .await;
    let later = client.submit(vec![spec(&sleeper)]).await.unwrap()[0];
    let t = client.wait_one(running).await.unwrap();
    assert_eq!((t.state(), t.executor.as_str()), (pb::TaskState::Succeeded, "e1"), "the running task finishes there");
    let status = group.executors[0].wait_exit(Duration::from_secs(15)).expect("e1 exits after draining");
    assert!(status.success(), "{status:?}");
    assert!(client.cluster_status().await.unwrap().executors.is_empty(), "e1 deregistered");
    let pending = client.get(later).await.unwrap();
    assert_eq!(pending.state(), pb::TaskState::Pending, "nothing new went to the draining executor");

    // `master-client executor drain` does the same from afar.
    group.start_executor("e2", 1);
    let t = client.wait_one(later).await.unwrap();
    assert_eq!(t.executor, "e2");
    let drained = client.drain_executor("e2").await.unwrap();
    assert_eq!(drained.state, "draining");
    let status = group.executors[1].wait_exit(Duration::from_secs(15)).expect("e2 exits after draining");
    assert!(status.success());
    let err = client.drain_executor("nope").await.unwrap_err();
    assert!(err.to_string().contains("no executor named nope"), "{err}");

    // With no master left to say goodbye to, an idle executor still stops promptly.
    group.start_executor("e3", 1);
    wait_until("e3 connected", Duration::from_secs(10), || async {
        client.cluster_status().await.unwrap().executors.iter().any(|e| e.name == "e3" && e.connected)
    })
    .await;
    group.kill(0);
    group.executors[2].signal(libc::SIGTERM);
    // Within its 5 s wait for a new leader, not after the 20 s it used to take.
    let status = group.executors[2].wait_exit(Duration::from_secs(12)).expect("e3 exits without a master");
    assert!(status.success(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_on_the_leader_hands_over_to_a_follower() {
    let mut group = Group::start(3, &[]);
    let client = group.client();
    let leader = group.leader(Duration::from_secs(20)).await;
    let echo = upload(&client, &guests::echo()).await;
    let started = Instant::now();
    group.masters[leader].proc.as_ref().unwrap().signal(libc::SIGTERM);
    let status = group.masters[leader].proc.as_mut().unwrap().wait_exit(Duration::from_secs(10));
    assert!(status.is_some_and(|s| s.success()), "the leader exits cleanly: {status:?}");
    group.masters[leader].proc = None;
    client.submit(vec![spec(&echo)]).await.unwrap();
    let took = started.elapsed();
    println!("SIGTERM on the leader to the next acknowledged write: {took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
}

/// A leader that freezes (a stopped process, a paused VM) says nothing and closes nothing.
/// Its executor finds the new leader well within its own lease (it gives its runs up then)
/// and the one the new leader gives it from its election, and the run on it goes on: no
/// attempt is lost. The default lease, 10 s: a short one would hide a slow detection.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_run_outlives_a_leader_that_freezes() {
    let mut group = Group::start(3, &[]);
    let leader = group.leader(Duration::from_secs(20)).await;
    group.start_executor_with("e1", 1, &[]);
    let client = Arc::new(group.client().with_deadline(Duration::from_secs(60)));
    let sleeper = upload(&client, &guests::sleeper(8_000)).await;
    let id = client.submit(vec![pb::TaskSpec { max_attempts: 1, ..spec(&sleeper) }]).await.unwrap()[0];
    wait_until("the run started", Duration::from_secs(20), || async {
        client.get(id).await.unwrap().state() == pb::TaskState::Running
    })
    .await;
    let frozen = group.masters[leader].proc.as_ref().unwrap();
    frozen.signal(libc::SIGSTOP);
    let t = tokio::time::timeout(Duration::from_secs(60), client.wait_one(id)).await;
    group.masters[leader].proc.as_ref().unwrap().signal(libc::SIGCONT);
    let t = t.expect("the wait ends").unwrap();
    assert_eq!((t.state(), t.attempts), (pb::TaskState::Succeeded, 1), "{:?}", t.error);
    // It left after two missed heartbeats (2.5 s apart) and a look or two more, not at a
    // later heartbeat: leaving at 7.5-10 s loses the run about half the time.
    let log = std::fs::read_to_string(group.path().join("e1.log")).unwrap();
    let quiet: u64 = log
        .split("the leader has said nothing for ")
        .nth(1)
        .and_then(|rest| rest.split("ms").next())
        .and_then(|ms| ms.parse().ok())
        .unwrap_or_else(|| panic!("the executor did not notice the silence: {log}"));
    assert!(quiet < 6_500, "noticed after {quiet} ms");
}

/// A master that froze accepts connections and never answers: a client that asks it first
/// gives up on it within a few seconds (pings) and asks the next.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_frozen_master_first_in_the_list_costs_a_call_seconds() {
    let group = Group::start(3, &[]);
    let leader = group.leader(Duration::from_secs(20)).await;
    let frozen = (leader + 1) % 3;
    let mut addrs = vec![group.masters[frozen].api_addr()];
    addrs.extend(group.addrs());
    group.masters[frozen].proc.as_ref().unwrap().signal(libc::SIGSTOP);
    let client = Client::new(addrs).unwrap();
    let started = Instant::now();
    let status = client.cluster_status().await;
    let took = started.elapsed();
    group.masters[frozen].proc.as_ref().unwrap().signal(libc::SIGCONT);
    assert!(status.is_ok(), "{status:?}");
    // About 4 s of pings; it was 8 s.
    assert!(took < Duration::from_secs(7), "{took:?}");
}

/// A leader that hands over closes its executors' sessions and takes no new ones, so they
/// go to a follower. Here the executor reached the leader through a follower's hint, which left
/// its round robin pointing back at the leader, and the hand-over lasts its full second since
/// one follower is down and misses the last write.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn executors_closed_by_a_leader_handing_over_do_not_reconnect_to_it() {
    let mut group = Group::start(3, &[]);
    let client = group.client();
    let leader = group.leader(Duration::from_secs(20)).await;
    let follower = (leader + 1) % 3;
    let join = [group.masters[follower].api_addr(), group.masters[leader].api_addr()];
    group.start_executor_joined("e1", 1, &join, &["--keepalive-ttl", "3s"]);
    wait_until("e1 connected", Duration::from_secs(10), || async {
        client.cluster_status().await.unwrap().executors.iter().any(|e| e.name == "e1" && e.connected)
    })
    .await;
    group.kill(3 - leader - follower);
    upload(&client, &guests::echo()).await;
    let master = group.masters[leader].proc.as_mut().unwrap();
    master.signal(libc::SIGTERM);
    let status = master.wait_exit(Duration::from_secs(10));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    let log = std::fs::read_to_string(group.path().join(format!("m{leader}.log"))).unwrap();
    let handing_over = log.find("handing over").expect("the leader handed over");
    assert!(!log[handing_over..].contains("executor registered"), "e1 came back to the leader: {log}");
}

/// An executor lost for longer than `result-retention` is forgotten, as an old result is;
/// one that still runs keeps its place.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_executor_lost_past_the_retention_is_forgotten() {
    let mut group = Group::start(1, &["--result-retention", "2s"]);
    group.start_executor("e1", 1);
    group.start_executor("e2", 1);
    let client = group.client();
    wait_until("both connected", Duration::from_secs(10), || async {
        client.cluster_status().await.unwrap().executors.iter().filter(|e| e.connected).count() == 2
    })
    .await;
    group.executors[0].kill();
    wait_until("e1 lost", Duration::from_secs(10), || async {
        client.cluster_status().await.unwrap().executors.iter().any(|e| e.name == "e1" && e.state == "lost")
    })
    .await;
    wait_until("e1 forgotten", Duration::from_secs(10), || async {
        client.cluster_status().await.unwrap().executors.iter().all(|e| e.name != "e1")
    })
    .await;
    let left = client.cluster_status().await.unwrap().executors;
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!((left[0].name.as_str(), left[0].state.as_str()), ("e2", "alive"));
}

/// An executor told of only one master finds the next leader when that one dies: the
/// leaders it talks to list the whole group.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_executor_joined_to_one_master_finds_the_next_leader_when_it_dies() {
    let mut group = Group::start(3, &[]);
    let client = group.client();
    let leader = group.leader(Duration::from_secs(20)).await;
    // Once every master has said where it serves (masters started with --initial-cluster
    // know each other's peer addresses only).
    wait_until("the masters' addresses known", Duration::from_secs(10), || async {
        client.cluster_status().await.unwrap().members.iter().all(|m| !m.api_addr.is_empty())
    })
    .await;
    let join = [group.masters[leader].api_addr()];
    group.start_executor_joined("e1", 1, &join, &["--keepalive-ttl", "3s"]);
    wait_until("e1 connected", Duration::from_secs(10), || async {
        client.cluster_status().await.unwrap().executors.iter().any(|e| e.name == "e1" && e.connected)
    })
    .await;
    let echo = upload(&client, &guests::echo()).await;
    group.kill(leader);
    let id = client.submit(vec![spec(&echo)]).await.unwrap()[0];
    let ran = tokio::time::timeout(Duration::from_secs(30), client.wait_one(id)).await;
    let t = ran.expect("the task runs on e1 under the new leader").unwrap();
    assert_eq!((t.state(), t.executor.as_str()), (pb::TaskState::Succeeded, "e1"));
}

/// A leader cut off from its group cannot commit a submit it took: SIGTERM ends that wait too,
/// rather than holding the exit for the write timeout (10 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_on_a_leader_cut_off_from_its_group_does_not_wait_for_a_write() {
    let mut group = Group::start(3, &[]);
    let leader = group.leader(Duration::from_secs(20)).await;
    let client =
        Arc::new(Client::new(vec![group.masters[leader].api_addr()]).unwrap().with_deadline(Duration::from_secs(20)));
    let echo = upload(&client, &guests::echo()).await;
    for i in 0..3 {
        if i != leader {
            group.kill(i);
        }
    }
    // Within the leader's grace for silent followers, it takes the submit and cannot commit it.
    let submit = tokio::spawn({
        let client = client.clone();
        async move { client.submit(vec![spec(&echo)]).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let master = group.masters[leader].proc.as_mut().unwrap();
    master.signal(libc::SIGTERM);
    // The hand-over waits 1 s for the dead followers; the stop grace would cut the write at 5.
    let status = master.wait_exit(Duration::from_millis(4500));
    assert!(status.is_some_and(|s| s.success()), "the leader exits before its write timeout: {status:?}");
    assert!(!submit.is_finished(), "the submit was not acknowledged: it goes on, looking for a master");
    submit.abort();
}

/// A client waiting for a long task holds a stream open on the master: SIGTERM ends it (the
/// client asks again elsewhere) instead of waiting for the task, hours maybe, to exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_ends_the_waits_a_master_holds_open_and_it_exits() {
    let mut group = Group::start(1, &[]);
    group.start_executor("e1", 1);
    let client = Arc::new(group.client());
    let sleeper = upload(&client, &guests::sleeper(120_000)).await;
    let id = client.submit(vec![spec(&sleeper)]).await.unwrap()[0];
    let waiting = tokio::spawn({
        let client = client.clone();
        async move { client.wait_one(id).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let master = group.masters[0].proc.as_mut().unwrap();
    master.signal(libc::SIGTERM);
    let status = master.wait_exit(Duration::from_secs(10));
    assert!(status.is_some_and(|s| s.success()), "the master exits though a wait was open: {status:?}");
    assert!(!waiting.is_finished(), "the wait goes on, looking for a master");
    waiting.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_run_whose_executor_dies_mid_trial_is_submitted_and_runs_elsewhere() {
    let mut group = Group::start(1, &[]);
    group.start_executor("e1", 1);
    group.start_executor("e2", 1);
    let client = Arc::new(group.client());
    let sleeper = upload(&client, &guests::sleeper(150)).await;
    wait_until("both executors registered", Duration::from_secs(10), || async {
        client.cluster_status().await.unwrap().executors.len() == 2
    })
    .await;
    // Warm up: the module is compiled where trials go, so the next trial is mid-sleep soon.
    for _ in 0..2 {
        assert_eq!(client.run(spec(&sleeper)).await.unwrap().output, b"slept");
    }
    let run = {
        let client = client.clone();
        let sleeper = sleeper.clone();
        tokio::spawn(async move { client.run(spec(&sleeper)).await })
    };
    // Kill once the trial is running (it is not an assigned task, so only `busy` shows it).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut busy = 0;
        for e in &group.executors {
            if let Ok(mut worker) = pb::worker_client::WorkerClient::connect(e.addr.url()).await {
                busy += worker.status(pb::WorkerStatusRequest {}).await.map_or(0, |s| s.into_inner().busy);
            }
        }
        if busy > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the trial never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    group.executors[0].kill();
    group.executors[1].kill();
    group.start_executor("e3", 1);

    let t = tokio::time::timeout(Duration::from_secs(30), run).await.expect("the run is answered").unwrap().unwrap();
    assert_eq!((t.state(), t.output.as_slice(), t.executor.as_str()), (pb::TaskState::Succeeded, &b"slept"[..], "e3"));
    assert_eq!(client.list(None, None).await.unwrap().len(), 3, "one task per run");
    // The path under test was taken: the leader saw the trial's executor go.
    let log = std::fs::read_to_string(group.dir.path().join("m0.log")).unwrap();
    assert!(log.contains("a trial got no result"), "the run was not a trial when its executor died");
}

/// An executor that joins while tasks wait is given some at once: by the apply of its own
/// registration. Its first message must still be the welcome, or it drops the stream and
/// starts over (it did, once per join with a backlog).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_executor_joining_a_backlog_is_welcomed_before_its_first_tasks() {
    let mut group = Group::start(1, &[]);
    let client = group.client();
    let module = upload(&client, &guests::reverse()).await;
    let ids = client.submit((0..20).map(|_| spec(&module)).collect()).await.unwrap();
    group.start_executor("e1", 4);
    client.wait(&ids, |_| {}).await.unwrap();
    let log = std::fs::read_to_string(group.path().join("e1.log")).unwrap();
    assert!(!log.contains("did not welcome"), "{log}");
    assert_eq!(log.matches("connected to the leader").count(), 1, "one session: {log}");
}

/// openraft keeps a leader cut off from the other masters leading. Its executors' results
/// could never commit there: it closes their sessions so they look for the leader the
/// majority elects (here the others are frozen, then thawed, and the executor gets back to
/// work with the group).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_cut_off_from_the_majority_lets_its_executors_go() {
    let mut group = Group::start(3, &[]);
    let leader = group.leader(Duration::from_secs(20)).await;
    group.start_executor("e1", 2);
    let client = group.client();
    let module = upload(&client, &guests::reverse()).await;
    let ids = client.submit(vec![spec(&module)]).await.unwrap();
    client.wait(&ids, |_| {}).await.unwrap();

    let others: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    for i in &others {
        group.masters[*i].proc.as_ref().unwrap().signal(libc::SIGSTOP);
    }
    let log = group.path().join("e1.log");
    wait_until("the executor is let go", Duration::from_secs(30), || async {
        std::fs::read_to_string(&log).unwrap().contains("lost contact with a majority")
    })
    .await;
    for i in &others {
        group.masters[*i].proc.as_ref().unwrap().signal(libc::SIGCONT);
    }
    let ids = client.submit(vec![spec(&module)]).await.unwrap();
    let task = client.wait_one(ids[0]).await.unwrap();
    assert_eq!(task.state(), pb::TaskState::Succeeded, "{:?}", task.error);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_long_run_outlives_a_master_restart_after_a_quiet_spell_longer_than_the_lease() {
    let mut group = Group::start(1, &[]);
    // A lease long enough for a debug master to restart and welcome the executor back with
    // seconds to spare on a loaded machine: the heartbeat answers keep the last contact
    // within 1.5 s of the kill.
    group.start_executor_with("e1", 1, &["--keepalive-ttl", "6s"]);
    let client = group.client();
    let sleeper = upload(&client, &guests::sleeper(16_000)).await;
    let id = client.submit(vec![spec(&sleeper)]).await.unwrap()[0];
    wait_until("the run starts", Duration::from_secs(20), || async {
        client.get(id).await.is_ok_and(|t| t.state() == pb::TaskState::Running)
    })
    .await;
    // Longer than the executor's 6 s lease with nothing to assign or acknowledge: the leader
    // still answers its heartbeats, so the executor knows it was in touch until the crash.
    tokio::time::sleep(Duration::from_secs(7)).await;
    group.kill(0);
    // Down for longer than a tick of the executor's lease watch (a restart, an election).
    tokio::time::sleep(Duration::from_secs(1)).await;
    group.restart(0);
    let task = client.wait_one(id).await.unwrap();
    assert_eq!(task.state(), pb::TaskState::Succeeded, "{task:?}");
    assert_eq!(task.attempts, 1, "the run went on through the restart: {task:?}");
    let log = std::fs::read_to_string(group.path().join("e1.log")).unwrap();
    assert!(!log.contains("stopped the running tasks"), "{log}");
}

/// A benchmark whose wait fails (here the master is gone for longer than the client's
/// deadline) ends with that error: its submits used to wait for ever for the in-flight window
/// the failed wait held.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_benchmark_whose_wait_fails_ends_with_the_error() {
    let mut group = Group::start(1, &[]);
    group.start_executor("e1", 1);
    let client = Arc::new(group.client().with_deadline(Duration::from_secs(2)));
    let sleeper = upload(&client, &guests::sleeper(60_000)).await;
    let opts =
        BenchOptions { module: sleeper, tasks: 3, concurrency: 1, input_size: 0, sync: false, fuel: 0, memory: 0 };
    let bench = tokio::spawn({
        let client = client.clone();
        async move { wasmgrid_client::bench::run(client, &opts, &|_| {}).await }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    group.kill(0);
    let ended = tokio::time::timeout(Duration::from_secs(30), bench).await.expect("the benchmark ends").unwrap();
    assert!(ended.is_err(), "{ended:?}");
}
