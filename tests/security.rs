//! A cluster with a shared token and TLS, as real processes: the right client and executor
//! work end to end; no token, a wrong token or plaintext are refused, on every service; an
//! executor with the wrong token never joins.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tonic::Code;
use wasmgrid_client::proto as pb;
use wasmgrid_client::{Client, ClientError};
use wasmgrid_proto::security::{Security, SecurityFiles};
use wasmgrid_testkit::process::Proc;
use wasmgrid_testkit::tls::{tls_files, TlsFiles};

const TOKEN: &str = "s3cret-token-for-tests";

struct Secured {
    dir: tempfile::TempDir,
    tls: TlsFiles,
    master: Proc,
}

fn token_file(dir: &Path, name: &str, token: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, format!("{token}\n")).unwrap();
    path.display().to_string()
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

impl Secured {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let tls = tls_files(dir.path());
        let token = token_file(dir.path(), "token", TOKEN);
        let master = Proc::start(
            "master",
            &[
                "--master-addr".into(),
                "127.0.0.1:0".into(),
                "--data-dir".into(),
                s(&dir.path().join("m")),
                "--auth-token-file".into(),
                token,
                "--tls-cert".into(),
                s(&tls.cert),
                "--tls-key".into(),
                s(&tls.key),
                "--tls-ca".into(),
                s(&tls.ca),
            ],
            &dir.path().join("master.log"),
        );
        Self { dir, tls, master }
    }

    fn executor(&self, name: &str, token: &str) -> Proc {
        let token = token_file(self.dir.path(), &format!("{name}.token"), token);
        Proc::start(
            "executor",
            &[
                "--join".into(),
                self.master.addr.to_string(),
                "--worker-addr".into(),
                "127.0.0.1:0".into(),
                "--name".into(),
                name.into(),
                "--data-dir".into(),
                s(&self.dir.path().join(name)),
                "--auth-token-file".into(),
                token,
                "--tls-ca".into(),
                s(&self.tls.ca),
                "--tls-cert".into(),
                s(&self.tls.cert),
                "--tls-key".into(),
                s(&self.tls.key),
            ],
            &self.dir.path().join(format!("{name}.log")),
        )
    }

    fn client(&self, token: Option<&str>, tls: bool) -> Client {
        let files = SecurityFiles {
            auth_token_file: token.map(|t| token_file(self.dir.path(), "client.token", t).into()),
            tls_ca: tls.then(|| self.tls.ca.clone()),
            ..Default::default()
        };
        Client::new(vec![self.master.addr.clone()])
            .unwrap()
            .with_security(Security::load(&files).unwrap())
            .with_deadline(Duration::from_secs(3))
    }
}

fn refused(e: &ClientError) -> (Option<Code>, String) {
    (e.code(), e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_a_token_and_tls_only_the_right_parties_get_in() {
    let cluster = Secured::start();
    let _good = cluster.executor("good", TOKEN);
    let bad = cluster.executor("intruder", "not-the-token");
    let client = cluster.client(Some(TOKEN), true);

    // The right client and executor: end to end.
    let digest = client.upload_module(&wasmgrid_testkit::echo(), Arc::new(|_| {})).await.unwrap().digest;
    let spec = pb::TaskSpec { module: digest, input: b"over tls".to_vec(), ..Default::default() };
    let id = client.submit(vec![spec]).await.unwrap()[0];
    let task = client.wait_one(id).await.unwrap();
    assert_eq!((task.state(), task.output.as_slice()), (pb::TaskState::Succeeded, &b"over tls"[..]));
    assert_eq!(task.executor, "good");

    // No token, a wrong token: refused as unauthenticated, with a message that says why.
    let (code, message) = refused(&cluster.client(None, true).cluster_status().await.unwrap_err());
    assert_eq!(code, Some(Code::Unauthenticated), "{message}");
    assert!(message.contains("auth token"), "{message}");
    let (code, message) = refused(&cluster.client(Some("guess"), true).list_modules().await.unwrap_err());
    assert_eq!(code, Some(Code::Unauthenticated), "{message}");
    assert!(message.contains("wrong auth token"), "{message}");

    // Plaintext to a TLS master: a clear failure, not a hang.
    let started = Instant::now();
    let e = cluster.client(Some(TOKEN), false).cluster_status().await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(e.to_string().contains("TLS"), "{e}");

    // A CA that did not sign the master's certificate: refused at once, not retried.
    let other = tempfile::tempdir().unwrap();
    let other_ca = tls_files(other.path()).ca;
    let files = SecurityFiles { tls_ca: Some(other_ca), ..Default::default() };
    let wrong_ca =
        Client::new(vec![cluster.master.addr.clone()]).unwrap().with_security(Security::load(&files).unwrap());
    let started = Instant::now();
    let e = wrong_ca.cluster_status().await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    assert!(e.to_string().contains("certificate"), "{e}");

    // The executor and Raft peer services refuse a caller without the token too.
    let tls_only =
        Security::load(&SecurityFiles { tls_ca: Some(cluster.tls.ca.clone()), ..Default::default() }).unwrap();
    let channel = tls_only.endpoint("127.0.0.1", cluster.master.addr.port()).unwrap().connect().await.unwrap();
    let mut peer = pb::raft_peer_client::RaftPeerClient::new(channel.clone());
    assert_eq!(peer.probe(pb::ProbeRequest {}).await.unwrap_err().code(), Code::Unauthenticated);
    let mut gateway = pb::executor_gateway_client::ExecutorGatewayClient::new(channel);
    let fetch = gateway.fetch_module(pb::FetchModuleRequest { digest: "00".repeat(32) }).await;
    assert_eq!(fetch.unwrap_err().code(), Code::Unauthenticated);

    // The intruder has been trying all along; it never shows up.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let status = client.cluster_status().await.unwrap();
    let names: Vec<&str> = status.executors.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["good"]);
    // And its log says why, at the default level.
    let log = std::fs::read_to_string(&bad.log).unwrap();
    assert!(log.contains("wrong auth token"), "{log}");
}

/// Three masters that share the token and speak TLS to each other form a group, replicate
/// and elect a new leader when the first one is killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_secured_group_forms_and_fails_over() {
    let certs = tempfile::tempdir().unwrap();
    let tls = tls_files(certs.path());
    let token = token_file(certs.path(), "token", TOKEN);
    let args =
        ["--auth-token-file", &token, "--tls-cert", &s(&tls.cert), "--tls-key", &s(&tls.key), "--tls-ca", &s(&tls.ca)];
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // All at once: founding masters probe each other before they serve, over TLS.
    let mut group = wasmgrid_tests::group::Group::start_at_once(3, &args);
    let files = SecurityFiles {
        auth_token_file: Some(token.clone().into()),
        tls_ca: Some(tls.ca.clone()),
        ..Default::default()
    };
    let client = Client::new(group.addrs())
        .unwrap()
        .with_security(Security::load(&files).unwrap())
        .with_deadline(Duration::from_secs(20));
    let digest = client.upload_module(&wasmgrid_testkit::echo(), Arc::new(|_| {})).await.unwrap().digest;
    let status = client.cluster_status().await.unwrap();
    assert_eq!(status.members.len(), 3);
    let leader = group.masters.iter().position(|m| m.name == status.leader).unwrap();
    group.kill(leader);
    let modules = client.list_modules().await.unwrap();
    assert!(modules.iter().any(|m| m.digest == digest), "the module survived on the new leader");
    let status = client.cluster_status().await.unwrap();
    assert_ne!(status.leader, group.masters[leader].name);
}

/// A certificate or key file that is not one is named at start-up, before the master sets
/// up its data dir; swapped for each other, each is refused.
#[test]
fn unusable_tls_files_are_named_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let tls = tls_files(dir.path());
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let data = dir.path().join("data");
    for (cert, key, named) in [(&garbage, &tls.key, "TLS certificate"), (&tls.cert, &tls.cert, "TLS key")] {
        let out = std::process::Command::new(wasmgrid_testkit::process::bin("master"))
            .args([
                "--master-addr",
                "127.0.0.1:0",
                "--data-dir",
                &s(&data),
                "--tls-cert",
                &s(cert),
                "--tls-key",
                &s(key),
            ])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(named) && stderr.contains("is not usable"), "{stderr}");
        assert!(!data.exists(), "nothing set up");
    }
}
