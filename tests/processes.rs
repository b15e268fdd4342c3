//! The real binaries as processes, for what only a crash can show.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use wasmgrid_client::proto as pb;
use wasmgrid_client::Client;
use wasmgrid_tests::guests;
use wasmgrid_tests::process::Proc;

fn master(dir: &std::path::Path, port: u16) -> Proc {
    let args = vec![
        "--master-addr".into(),
        format!("127.0.0.1:{port}"),
        "--data-dir".into(),
        dir.join("master").display().to_string(),
    ];
    Proc::start("master", &args, &dir.join("master.log"))
}

fn executor(dir: &std::path::Path, master: &Proc) -> Proc {
    let args = vec![
        "--join".into(),
        format!("http://{}", master.addr.host_port()),
        "--worker-addr".into(),
        "127.0.0.1:0".into(),
        "--name".into(),
        "exec-1".into(),
        "--data-dir".into(),
        dir.join("executor").display().to_string(),
        "--slots".into(),
        "2".into(),
    ];
    Proc::start("executor", &args, &dir.join("executor.log"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_master_restarts_with_everything_it_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = master(dir.path(), 0);
    let port = m.addr.port();
    let client = Arc::new(Client::new(vec![m.addr.clone()]).unwrap().with_deadline(Duration::from_secs(30)));
    let echo = client.upload_module(&guests::reverse(), Arc::new(|_| {})).await.unwrap();
    let fail = client.upload_module(&guests::fail(), Arc::new(|_| {})).await.unwrap();

    // Results recorded before the crash.
    let mut e = executor(dir.path(), &m);
    let spec =
        |module: &str, input: &str| pb::TaskSpec { module: module.into(), input: input.into(), ..Default::default() };
    let done = client.submit(vec![spec(&echo.digest, "abc"), spec(&fail.digest, "")]).await.unwrap();
    client.wait(&done, |_| {}).await.unwrap();
    e.kill();
    wait_until(|| async {
        let status = client.cluster_status().await.unwrap();
        status.executors.iter().all(|e| !e.connected && e.state == "disconnected")
    })
    .await;

    // A task acknowledged while no executor is connected.
    let pending = client.submit(vec![spec(&echo.digest, "after the crash")]).await.unwrap()[0];
    // A wait begun before the crash outlives it: it moves on to the master once it is back.
    let waiting = tokio::spawn({
        let client = client.clone();
        async move { client.wait_one(pending).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished());
    m.kill();

    let mut m = master(dir.path(), port);
    let modules = client.list_modules().await.unwrap();
    assert_eq!(modules.len(), 2);
    let first = client.get(done[0]).await.unwrap();
    assert_eq!((first.state(), first.output.as_slice()), (pb::TaskState::Succeeded, &b"cba"[..]));
    let second = client.get(done[1]).await.unwrap();
    assert_eq!(second.error.unwrap().kind(), pb::FailureKind::TaskError);
    assert_eq!(client.get(pending).await.unwrap().state(), pb::TaskState::Pending);
    assert_eq!(client.list(None, None).await.unwrap().len(), 3);

    // It runs once an executor joins.
    let _e = executor(dir.path(), &m);
    let t = client.wait_one(pending).await.unwrap();
    assert_eq!((t.state(), t.output.as_slice()), (pb::TaskState::Succeeded, &b"hsarc eht retfa"[..]));
    assert_eq!(t.attempts, 1);
    let heard = waiting.await.unwrap().unwrap();
    assert_eq!((heard.id, heard.state()), (pending, pb::TaskState::Succeeded));

    // A call cut by the master's crash (a run waited for in one call) is made again once
    // the master is back: it carries a request id, so repeating it is safe. A new client, as
    // a command line's first call: a cut it has no earlier answer to explain.
    let slow = client.upload_module(&guests::sleeper(1000), Arc::new(|_| {})).await.unwrap();
    let run = tokio::spawn({
        let fresh = Client::new(vec![m.addr.clone()]).unwrap().with_deadline(Duration::from_secs(30));
        let spec = spec(&slow.digest, "");
        async move { fresh.run(spec).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    m.kill();
    let _m = master(dir.path(), port);
    let t = run.await.unwrap().unwrap();
    assert_eq!(t.state(), pb::TaskState::Succeeded, "{:?}", t.error);
}

async fn wait_until<F, Fut>(mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..300 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("condition not reached in 6s");
}

/// A lone master takes the lead back in the same term when it restarts, with no new entry to
/// wait for: it must still answer only once the log it kept is applied again, or a module
/// acknowledged just before the crash looks unknown for a moment.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_master_answers_only_with_its_whole_log_applied() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = master(dir.path(), 0);
    let port = m.addr.port();
    let client = Client::new(vec![m.addr.clone()]).unwrap().with_deadline(Duration::from_secs(30));
    for round in 0..25 {
        let module = guests::task("(call $ok (i32.const 1024) (i32.const 2))", &format!("{round:02}"));
        let digest = client.upload_module(&module, Arc::new(|_| {})).await.unwrap().digest;
        m.kill();
        m = master(dir.path(), port);
        let modules = client.list_modules().await.unwrap();
        assert!(
            modules.iter().any(|x| x.digest == digest),
            "round {round}: module {digest} not listed after a restart"
        );
    }
}

/// A master whose Raft log cannot be written (the disk is full; here a file size limit)
/// exits, saying why, instead of staying up as a leader that can serve nothing and that
/// executors keep coming back to. Started again, it has every task it acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_master_that_cannot_write_its_log_exits_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("master").display().to_string();
    // 8 MiB per file (sh counts 512-byte blocks); writes past it fail with EFBIG instead of
    // the signal that would kill the process.
    let mut limited = std::process::Command::new("sh");
    limited
        .args(["-c", r#"ulimit -f 16384; trap "" XFSZ; exec "$0" "$@""#])
        .arg(wasmgrid_tests::process::bin("master"));
    limited.args(["--master-addr", "127.0.0.1:0", "--data-dir", &data_dir]);
    let mut m = Proc::start_command(limited, "master", &dir.path().join("master.log"));
    let port = m.addr.port();
    let client = Client::new(vec![m.addr.clone()]).unwrap().with_deadline(Duration::from_secs(2));
    let echo = client.upload_module(&guests::echo(), Arc::new(|_| {})).await.unwrap().digest;

    let mut acknowledged = Vec::new();
    for n in 0..20u8 {
        let input = vec![n; 1 << 20];
        let spec = pb::TaskSpec { module: echo.clone(), input, ..Default::default() };
        match client.submit(vec![spec]).await {
            Ok(ids) => acknowledged.push((ids[0], n)),
            Err(_) => break,
        }
    }
    assert!((3..20).contains(&acknowledged.len()), "{} acknowledged", acknowledged.len());
    let status = m.wait_exit(Duration::from_secs(15)).expect("the master exits on its own");
    assert_eq!(status.code(), Some(1));
    let log = std::fs::read_to_string(dir.path().join("master.log")).unwrap();
    assert!(log.contains("raft stopped:") && log.contains("File too large"), "{log}");

    let m = master(dir.path(), port);
    let _e = executor(dir.path(), &m);
    let client = Client::new(vec![m.addr.clone()]).unwrap().with_deadline(Duration::from_secs(30));
    for (id, n) in acknowledged {
        let t = client.wait_one(id).await.unwrap();
        assert_eq!(t.state(), pb::TaskState::Succeeded, "task {id}: {:?}", t.error);
        assert!(t.output.len() == 1 << 20 && t.output.iter().all(|b| *b == n), "task {id}'s output");
    }
}
