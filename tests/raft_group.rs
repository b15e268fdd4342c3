//! Three (and four) masters as real processes: leader failover with nothing lost, a master
//! rejoining from an empty disk, membership changes at run time, and a minority that refuses
//! writes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmgrid_client::proto as pb;
use wasmgrid_client::Client;
use wasmgrid_tests::group::Group;
use wasmgrid_tests::guests;

fn spec(module: &str, input: String) -> pb::TaskSpec {
    pb::TaskSpec { module: module.to_string(), input: input.into_bytes(), ..Default::default() }
}

fn reversed(s: &str) -> Vec<u8> {
    s.bytes().rev().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn submits_survive_two_leader_kills_and_each_task_runs_once() {
    let mut group = Group::start(3, &[]);
    group.start_executor("e1", 4);
    group.start_executor("e2", 4);
    let client = Arc::new(group.client());
    let leader = group.leader(Duration::from_secs(20)).await;
    println!("leader: {}", group.masters[leader].name);
    let module = client.upload_module(&guests::reverse(), Arc::new(|_| {})).await.unwrap().digest;

    const TASKS: usize = 400;
    let acknowledged: Arc<Mutex<BTreeMap<u64, String>>> = Arc::default();
    let submitter = {
        let client = client.clone();
        let acknowledged = acknowledged.clone();
        let module = module.clone();
        tokio::spawn(async move {
            for i in 0..TASKS {
                let input = format!("task number {i}");
                let ids = client.submit(vec![spec(&module, input.clone())]).await.expect("submit acknowledged");
                acknowledged.lock().unwrap().insert(ids[0], input);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };

    // Meanwhile, until both kills are over, one task at a time through RunTask (trial runs:
    // submit and result in one entry): every answered run must be stored once, with its output.
    let kills_over = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let runner = {
        let client = client.clone();
        let module = module.clone();
        let kills_over = kills_over.clone();
        tokio::spawn(async move {
            let mut answered = BTreeMap::new();
            for i in 0.. {
                if kills_over.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let input = format!("run number {i}");
                let t = client.run(spec(&module, input.clone())).await.expect("run answered");
                assert_eq!(t.state(), pb::TaskState::Succeeded, "run {i}: {:?}", t.error);
                assert_eq!(t.output, reversed(&input));
                answered.insert(t.id, input);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            answered
        })
    };

    for round in 0..2 {
        while acknowledged.lock().unwrap().len() < (round + 1) * TASKS / 3 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let old = group.leader(Duration::from_secs(20)).await;
        let killed = Instant::now();
        group.kill(old);
        let new = group.leader(Duration::from_secs(20)).await;
        let elected = killed.elapsed();
        // A write through the new leader: the failover is over when one is acknowledged.
        let probe = Client::new(vec![group.masters[new].api_addr()]).unwrap();
        probe.submit(vec![spec(&module, format!("probe {round}"))]).await.unwrap();
        let writable = killed.elapsed();
        println!(
            "failover {round}: killed {}, {} elected after {elected:?}, writes accepted after {writable:?}",
            group.masters[old].name, group.masters[new].name
        );
        assert!(writable < Duration::from_secs(10), "writes accepted only after {writable:?}");
        group.restart(old);
    }
    kills_over.store(true, std::sync::atomic::Ordering::Relaxed);
    submitter.await.unwrap();
    let ran: BTreeMap<u64, String> = runner.await.unwrap();
    println!("{} runs answered across the failovers", ran.len());
    assert!(ran.len() >= 20, "only {} runs", ran.len());

    let acknowledged = acknowledged.lock().unwrap().clone();
    assert_eq!(acknowledged.len(), TASKS);
    let ids: Vec<u64> = acknowledged.keys().copied().collect();
    let mut finished = BTreeMap::new();
    client
        .wait(&ids, |t| {
            finished.insert(t.id, t);
        })
        .await
        .unwrap();
    for (id, input) in &acknowledged {
        let t = &finished[id];
        assert_eq!(t.state(), pb::TaskState::Succeeded, "task {id}: {:?}", t.error);
        assert_eq!(t.output, reversed(input), "task {id}");
    }
    // Every task exactly once: the acknowledged ones, the runs and the two probes.
    let listed = client.list(None, None).await.unwrap();
    let unique: HashSet<u64> = listed.iter().map(|t| t.id).collect();
    assert_eq!(unique.len(), listed.len(), "a task is listed twice");
    assert_eq!(listed.len(), TASKS + ran.len() + 2, "two runs answered with the same task, or a run was stored twice");
    for id in &ids {
        assert!(unique.contains(id));
    }
    for (id, input) in &ran {
        let t = listed.iter().find(|t| t.id == *id).expect("an answered run is stored");
        assert_eq!((t.state(), t.output.clone()), (pb::TaskState::Succeeded, reversed(input)), "run {id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_master_with_a_new_empty_disk_catches_up_by_snapshot() {
    let mut group = Group::start(3, &["--snapshot-every", "20"]);
    let client = group.client();
    let leader = group.leader(Duration::from_secs(20)).await;
    let first = client.upload_module(&guests::echo(), Arc::new(|_| {})).await.unwrap();
    let follower = (leader + 1) % 3;
    group.wipe(follower);

    // While it is away: a new module and enough entries for snapshots and log purges.
    let second = client.upload_module(&guests::reverse(), Arc::new(|_| {})).await.unwrap();
    for i in 0..60 {
        client.submit(vec![spec(&second.digest, format!("{i}"))]).await.unwrap();
    }
    let snapshots = group.masters[leader].dir.join("snapshots");
    assert!(std::fs::read_dir(&snapshots).unwrap().count() > 0, "the leader took a snapshot");

    group.restart(follower);
    let blobs = group.masters[follower].dir.join("blobs");
    let name = group.masters[follower].name.clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = client.cluster_status().await.unwrap();
        let me = status.members.iter().find(|m| m.name == name).unwrap();
        let has_blobs =
            [&first.digest, &second.digest].iter().all(|d| blobs.join(d.trim_start_matches("sha256:")).is_file());
        if me.lag == 0 && me.last_log_index > 60 && has_blobs {
            break;
        }
        assert!(Instant::now() < deadline, "{name} did not catch up: {me:?}, blobs {has_blobs}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Still one group of three, and it serves.
    let status = client.cluster_status().await.unwrap();
    assert_eq!(status.members.len(), 3);
    assert_eq!(client.list(None, None).await.unwrap().len(), 60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn members_are_added_and_removed_while_serving() {
    let mut group = Group::start(3, &[]);
    group.start_executor("e1", 2);
    let client = group.client();
    group.leader(Duration::from_secs(20)).await;
    let module = client.upload_module(&guests::reverse(), Arc::new(|_| {})).await.unwrap().digest;
    let run = |input: &'static str| {
        let client = &client;
        let module = module.clone();
        async move {
            let id = client.submit(vec![spec(&module, input.to_string())]).await.unwrap()[0];
            assert_eq!(client.wait_one(id).await.unwrap().output, reversed(input));
        }
    };
    run("before").await;

    // Status read through a follower comes from the leader: only the leader holds the
    // executors' sessions and knows how far the other members have replicated.
    let leader = group.leader(Duration::from_secs(20)).await;
    let follower = Client::new(vec![group.masters[(leader + 1) % 3].api_addr()]).unwrap();
    let status = follower.cluster_status().await.unwrap();
    assert!(status.executors.iter().any(|e| e.name == "e1" && e.connected), "{status:?}");
    let members = follower.list_members().await.unwrap();
    assert!(members.members.iter().all(|m| m.last_log_index > 0), "{members:?}");

    // A new master becomes a voter only once it has nearly all of a log that keeps moving:
    // 1,500 entries behind at first, with submits going on throughout.
    for _ in 0..1500 {
        client.submit(vec![spec(&module, "backlog".into())]).await.unwrap();
    }
    let writing = tokio::spawn({
        let (client, module) = (group.client(), module.clone());
        async move {
            loop {
                client.submit(vec![spec(&module, "meanwhile".into())]).await.unwrap();
            }
        }
    });
    let new = group.start_new_master();
    let url = group.masters[new].peer_url();
    let members = client.add_member("m3", &url).await.unwrap();
    writing.abort();
    assert_eq!(members.members.len(), 4);
    assert!(members.members.iter().all(|m| m.role != "learner"));
    let added = members.members.iter().find(|m| m.name == "m3").unwrap();
    assert!(added.lag < 500, "m3 became a voter {} entries behind", added.lag);
    run("with four").await;

    let err = client.add_member("m3", &url).await.unwrap_err();
    assert!(err.to_string().contains("already a member"), "{err}");
    let err = client.add_member("m9", "http://127.0.0.1:1").await.unwrap_err();
    assert!(err.to_string().contains("cannot reach m9"), "{err}");

    // A removed master may never get the entry that removes it (a follower), or steps down
    // knowing it and hears from no leader (the leader itself): either way it hears of it
    // from the others, stops standing for election and sends clients to the leader
    // instead of answering "no leader is known yet".
    let removed_serves = |master: &wasmgrid_tests::group::MasterProc| {
        let (addr, name, module) = (master.api_addr(), master.name.clone(), module.clone());
        async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            let via = Client::new(vec![addr]).unwrap().with_deadline(Duration::from_secs(5));
            let status = via.cluster_status().await.unwrap();
            assert!(!status.leader.is_empty() && status.leader != name, "{status:?}");
            assert!(status.members.iter().all(|m| m.name != name), "{status:?}");
            via.submit(vec![spec(&module, format!("through {name}"))]).await.unwrap();
        }
    };
    let leader = group.leader(Duration::from_secs(20)).await;
    let follower = (0..4).find(|i| *i != leader).unwrap();
    let name = group.masters[follower].name.clone();
    let members = client.remove_member(&name).await.unwrap();
    assert_eq!(members.members.len(), 3);
    assert!(members.members.iter().all(|m| m.name != name));
    removed_serves(&group.masters[follower]).await;
    group.kill(follower);
    run("after removing a follower").await;
    let err = client.remove_member(&name).await.unwrap_err();
    assert!(err.to_string().contains(&format!("no member named {name}")), "{err}");

    // With one of the three left unreachable, removing another would lose the quorum.
    let left: Vec<usize> = (0..4).filter(|i| *i != follower).collect();
    let down = left.iter().copied().find(|i| *i != leader).unwrap();
    let keep = left.iter().copied().find(|i| *i != leader && *i != down).unwrap();
    group.kill(down);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let err = client.remove_member(&group.masters[keep].name).await.unwrap_err();
    assert!(err.to_string().contains("quorum"), "{err}");
    run("still serving").await;

    // Back to three, the leader removes itself.
    group.restart(down);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let leader = group.leader(Duration::from_secs(20)).await;
    let members = client.remove_member(&group.masters[leader].name).await.unwrap();
    assert_eq!(members.members.len(), 2, "{members:?}");
    removed_serves(&group.masters[leader]).await;
    group.kill(leader);
    run("after the leader removed itself").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_minority_refuses_writes_with_a_clear_error() {
    let mut group = Group::start(3, &["--write-timeout", "2s"]);
    let client = group.client();
    let leader = group.leader(Duration::from_secs(20)).await;
    let module = client.upload_module(&guests::echo(), Arc::new(|_| {})).await.unwrap().digest;
    let id = client.submit(vec![spec(&module, "kept".into())]).await.unwrap()[0];

    // Kill the two others: the survivor (the old leader) can no longer commit anything.
    for i in (0..3).filter(|i| *i != leader) {
        group.kill(i);
    }
    let survivor = Client::new(vec![group.masters[leader].api_addr()]).unwrap().with_deadline(Duration::from_secs(4));
    let started = Instant::now();
    let err = survivor.submit(vec![spec(&module, "lost?".into())]).await.unwrap_err();
    println!("write on a minority refused after {:?}: {err}", started.elapsed());
    let msg = err.to_string();
    assert!(msg.contains("majority") || msg.contains("leader"), "{msg}");
    let err = survivor.get(id).await.unwrap_err().to_string();
    assert!(err.contains("stale") || err.contains("leader"), "{err}");

    // A majority again: the acknowledged task is there and writes are accepted. (The refused
    // write may or may not appear: it was never acknowledged, so either is correct.)
    let other = (leader + 1) % 3;
    group.restart(other);
    group.leader(Duration::from_secs(20)).await;
    let listed = client.list(None, None).await.unwrap();
    assert!(listed.iter().any(|t| t.id == id));
    let id2 = client.submit(vec![spec(&module, "again".into())]).await.unwrap()[0];
    assert!(id2 > id);

    // Down to a follower: given every address, the error is the follower's own answer (no
    // leader), not the connect error of whichever dead master was tried last.
    // Deadlines of several lengths end the calls at different places in the round of
    // addresses: each time, the error is still the follower's.
    let last_leader = group.leader(Duration::from_secs(20)).await;
    group.kill(last_leader);
    for ms in [1000, 1300, 1700, 2100, 2600] {
        let all = Client::new(group.addrs()).unwrap().with_deadline(Duration::from_millis(ms));
        let err = all.get(id).await.unwrap_err().to_string();
        assert!(err.contains("leader"), "deadline {ms} ms: {err}");
    }

    // The last leader restarted alone takes its lead back (openraft keeps a restarted
    // leader's vote) but hears from no majority: it says so, and names no leader.
    for i in 0..3 {
        group.kill(i);
    }
    group.restart(last_leader);
    let alone = Client::new(vec![group.masters[last_leader].api_addr()]).unwrap().with_deadline(Duration::from_secs(1));
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let err = alone.get(id).await.unwrap_err().to_string();
        let status = alone.cluster_status().await.unwrap();
        if err.contains("lost contact with a majority") && status.leader.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "{err}; {status:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Given another address too, a status read passes over the leaderless view for one
    // that names a leader.
    let other = Group::start(1, &[]);
    other.leader(Duration::from_secs(20)).await;
    let both = vec![group.masters[last_leader].api_addr(), other.masters[0].api_addr()];
    let status = Client::new(both).unwrap().cluster_status().await.unwrap();
    assert_eq!(status.leader, other.masters[0].name, "{status:?}");
}

/// A 15MiB input makes an entry that takes a follower longer than a heartbeat interval to
/// receive and sync (here 20ms: a debug build, loopback), the time openraft gives each
/// AppendEntries before it retries. Cut off at each retry, it would never arrive and the
/// submit would never commit; carried on to its end, it lands, and the retry finds it there.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_entry_slower_to_replicate_than_a_heartbeat_still_commits() {
    let mut group = Group::start(3, &["--raft-heartbeat", "20ms"]);
    let client = group.client();
    let leader = group.leader(Duration::from_secs(20)).await;
    let module = client.upload_module(&guests::reverse(), Arc::new(|_| {})).await.unwrap().digest;
    let spec = pb::TaskSpec { module, input: vec![b'x'; 15 << 20], ..Default::default() };
    let submitted = tokio::time::timeout(Duration::from_secs(60), client.submit(vec![spec])).await;
    let id = submitted.expect("the submit commits within a minute").unwrap()[0];
    // Committed means on a majority: the others have it without the leader.
    group.kill(leader);
    let task = client.get(id).await.unwrap();
    assert_eq!(task.input_size, 15 << 20);
}

/// A master that comes back more than 1,000 entries behind the leader cannot win an election,
/// and without pre-vote its campaigns would raise its term and unseat the leader: it holds
/// back from elections until it has caught up (`master/src/catch_up.rs`), then stands again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_master_far_behind_holds_back_from_elections_until_it_has_caught_up() {
    let mut group = Group::start(3, &["--snapshot-every", "500"]);
    let client = group.client();
    let leader = group.leader(Duration::from_secs(20)).await;
    let module = client.upload_module(&guests::reverse(), Arc::new(|_| {})).await.unwrap().digest;
    let follower = (leader + 1) % 3;
    group.kill(follower);
    // One entry per submit: 1,200 entries, so it comes back more than 1,000 behind.
    for i in 0..1_200 {
        client.submit(vec![spec(&module, format!("{i}"))]).await.unwrap();
    }
    group.restart(follower);
    let name = group.masters[follower].name.clone();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = client.cluster_status().await.unwrap();
        let me = status.members.iter().find(|m| m.name == name).unwrap();
        if me.lag == 0 && me.last_log_index > 1_200 {
            break;
        }
        assert!(Instant::now() < deadline, "{name} did not catch up: {me:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Its probes run once a second: give it one round to notice it has caught up.
    let log = group.path().join(format!("{name}.log"));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&log).unwrap();
        let held = text.find("not standing for election until this master has caught up");
        let stands = text.rfind("standing for election again");
        if held.is_some() && stands > held {
            break;
        }
        assert!(Instant::now() < deadline, "{name} never held back, or never stood again:\n{text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(client.list(None, None).await.unwrap().len(), 1_200);
}
