//! Hostile and oversized input against real servers: inputs, uploads and outputs over their
//! limits are refused naming the limit; garbage, HTTP/1, truncated HTTP/2 and half-open
//! connections on every listening port leave every server up and serving.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use wasmgrid_client::proto as pb;
use wasmgrid_client::Client;
use wasmgrid_common::Addr;
use wasmgrid_tests::group::Group;
use wasmgrid_tests::{guests, Cluster};

const MIB: usize = 1024 * 1024;

async fn upload(client: &Client, bytes: &[u8]) -> String {
    client.upload_module(bytes, Arc::new(|_| {})).await.unwrap().digest
}

async fn echo_works(client: &Client, digest: &str) {
    let spec = pb::TaskSpec { module: digest.into(), input: b"still here".to_vec(), ..Default::default() };
    let id = client.submit(vec![spec]).await.unwrap()[0];
    let t = client.wait_one(id).await.unwrap();
    assert_eq!((t.state(), t.output.as_slice()), (pb::TaskState::Succeeded, &b"still here"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn oversized_input_upload_and_output_are_refused_naming_the_limit() {
    let cluster = Cluster::start(1).await;
    let client = cluster.client();
    let echo = upload(&client, &guests::echo()).await;

    let e = client.upload_module(&vec![0u8; 100 * MIB], Arc::new(|_| {})).await.unwrap_err();
    assert!(e.to_string().contains("max-module-size"), "{e}");

    let spec = pb::TaskSpec { module: echo.clone(), input: vec![b'x'; 20 * MIB], ..Default::default() };
    let e = client.submit(vec![spec]).await.unwrap_err();
    assert!(e.to_string().contains("max-input-size"), "{e}");
    // Arguments and environment travel and are stored with the input: they count too.
    let args = vec!["a".repeat(MIB); 12];
    let env = vec![pb::EnvVar { key: "K".into(), value: "v".repeat(6 * MIB) }];
    let spec = pb::TaskSpec { module: echo.clone(), input: b"small".to_vec(), args, env, ..Default::default() };
    let e = client.submit(vec![spec]).await.unwrap_err();
    assert!(e.to_string().contains("arguments and environment come to"), "{e}");

    let big = upload(&client, &guests::big_output(40 * MIB as u32)).await;
    let limits = pb::Limits { memory_bytes: 64 * MIB as u64, ..Default::default() };
    let spec = pb::TaskSpec { module: big, limits: Some(limits), ..Default::default() };
    let id = client.submit(vec![spec]).await.unwrap()[0];
    let t = client.wait_one(id).await.unwrap();
    let error = t.error.clone().unwrap();
    assert_eq!(error.kind(), pb::FailureKind::OutputTooLarge, "{error:?}");
    assert!(error.message.contains("max-output-size"), "{}", error.message);
    assert!(t.output.is_empty());

    // A wait names at most MAX_WAIT_IDS tasks (each costs the master memory until it ends).
    let mut master = pb::master_client::MasterClient::connect(cluster.master.addr.url()).await.unwrap();
    let ids = (1..=pb::MAX_WAIT_IDS as u64 + 1).collect();
    let e = master.wait_tasks(pb::WaitTasksRequest { ids }).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("at most 100000"), "{e:?}");

    echo_works(&client, &echo).await;
    cluster.stop().await;
}

/// Writes `bytes` to `addr` and reads whatever comes back, for at most a second.
fn poke(addr: &str, bytes: &[u8]) {
    let Ok(mut s) = TcpStream::connect(addr) else { return };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    let _ = s.write_all(bytes);
    let mut sink = [0u8; 4096];
    let _ = s.read(&mut sink);
}

fn hostile_payloads() -> Vec<Vec<u8>> {
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    let mut truncated_frame = preface.clone();
    // A SETTINGS frame header that promises 4096 bytes, then stops.
    truncated_frame.extend_from_slice(&[0x00, 0x10, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00, 1, 2, 3]);
    let mut huge_headers = preface.clone();
    // A HEADERS frame of the largest length with garbage in it.
    huge_headers.extend_from_slice(&[0xff, 0xff, 0xff, 0x01, 0x04, 0x00, 0x00, 0x00, 0x01]);
    huge_headers.extend((0..20_000u32).map(|i| (i * 31 % 256) as u8));
    vec![
        (0..65_536u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect(),
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        b"POST /wasmgrid.v1.Master/ClusterStatus HTTP/1.1\r\nContent-Length: 99999999\r\n\r\nabc".to_vec(),
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".to_vec(),
        preface,
        truncated_frame,
        huge_headers,
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn garbage_on_every_port_leaves_every_server_serving() {
    let mut group = Group::start(1, &[]);
    group.start_executor("e1", 2);
    let client = group.client();
    let echo = upload(&client, &guests::echo()).await;
    echo_works(&client, &echo).await;
    let status = client.cluster_status().await.unwrap();
    let master = &group.masters[0];
    let mut ports: Vec<String> = vec![master.api_addr().host_port(), format!("127.0.0.1:{}", master.peer_port)];
    ports.extend(status.executors.iter().map(|e| e.addr.parse::<Addr>().unwrap().host_port()));
    assert_eq!(ports.len(), 3, "{ports:?}");

    // Half-open connections that never say anything, held for the whole test.
    let idle: Vec<TcpStream> =
        ports.iter().flat_map(|p| (0..20).filter_map(move |_| TcpStream::connect(p).ok())).collect();
    for port in &ports {
        for payload in hostile_payloads() {
            poke(port, &payload);
        }
    }
    // Everything still serves: the API, the executor (a task runs), the peer port and the
    // executor's own status API answer.
    echo_works(&client, &echo).await;
    let status = client.cluster_status().await.unwrap();
    assert!(status.executors.iter().all(|e| e.connected), "{:?}", status.executors);
    let mut peer =
        pb::raft_peer_client::RaftPeerClient::connect(format!("http://127.0.0.1:{}", master.peer_port)).await.unwrap();
    assert!(peer.probe(pb::ProbeRequest {}).await.unwrap().into_inner().initialized);
    let mut worker = pb::worker_client::WorkerClient::connect(format!("http://{}", ports[2])).await.unwrap();
    assert_eq!(worker.status(pb::WorkerStatusRequest {}).await.unwrap().into_inner().name, "e1");
    drop(idle);
    assert!(group.masters[0].proc.as_mut().unwrap().child.try_wait().unwrap().is_none(), "the master is alive");
    assert!(group.executors[0].child.try_wait().unwrap().is_none(), "the executor is alive");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_submit_over_the_message_limit_is_refused_naming_it() {
    let cluster = Cluster::start_with(
        1,
        |o| {
            o.max_message_size = Some(wasmgrid_common::Size::mib(8));
            o.max_input_size = Some(wasmgrid_common::Size::mib(4));
        },
        |_| {},
    )
    .await;
    let client = cluster.client();
    let echo = upload(&client, &guests::echo()).await;
    let spec = pb::TaskSpec { module: echo.clone(), input: vec![b'x'; 3 * MIB], ..Default::default() };
    let e = client.submit(vec![spec; 4]).await.unwrap_err();
    assert!(e.to_string().contains("max-message-size"), "{e}");
    // A module larger than the limit still uploads: it is streamed in chunks.
    let padded = guests::task("(call $ok (i32.const 1024) (i32.const 1))", &"a".repeat(12 * MIB));
    assert!(padded.len() > 12 * MIB);
    upload(&client, &padded).await;
    // max-message-size bounds what clients send; executors' results are bounded by their own
    // max-output-size (16MiB here), and one larger than the clients' limit still arrives.
    let big = upload(&client, &guests::big_output(12 * MIB as u32)).await;
    let limits = pb::Limits { memory_bytes: 64 * MIB as u64, ..Default::default() };
    let id = client.submit(vec![pb::TaskSpec { module: big, limits: Some(limits), ..Default::default() }]).await;
    let t = tokio::time::timeout(Duration::from_secs(60), client.wait_one(id.unwrap()[0])).await;
    let t = t.expect("a 12MiB result reaches a master whose clients' limit is 8MiB").unwrap();
    assert_eq!((t.state(), t.output.len()), (pb::TaskState::Succeeded, 12 * MIB), "{:?}", t.error);
    echo_works(&client, &echo).await;
    cluster.stop().await;
}

/// A client that stalls mid-upload is told the master is stopping; one that stops reading a
/// wait stream has it cut after a grace period. Neither holds the master's exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clients_that_stall_do_not_hold_a_masters_exit() {
    use pb::upload_module_request::Part;
    let mut group = Group::start(1, &[]);
    group.start_executor("e1", 2);
    let client = group.client();
    let echo = upload(&client, &guests::echo()).await;
    // 64 MiB of finished results for a wait nobody reads: more than its stream buffers.
    let spec = pb::TaskSpec { module: echo, input: vec![7; 64 * 1024], ..Default::default() };
    let mut ids = Vec::new();
    for _ in 0..8 {
        ids.extend(client.submit(vec![spec.clone(); 128]).await.unwrap());
    }
    client.wait(&ids, |_| {}).await.unwrap();
    let addr = group.masters[0].api_addr();
    let mut master = pb::master_client::MasterClient::connect(addr.url()).await.unwrap().max_decoding_message_size(MIB);
    let unread = master.wait_tasks(pb::WaitTasksRequest { ids }).await.unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(pb::UploadModuleRequest { part: Some(Part::Header(pb::UploadHeader { size: MIB as u64 })) }).await.unwrap();
    tx.send(pb::UploadModuleRequest { part: Some(Part::Chunk(vec![0; 1024])) }).await.unwrap();
    let stalled =
        tokio::spawn(async move { master.upload_module(tokio_stream::wrappers::ReceiverStream::new(rx)).await });
    tokio::time::sleep(Duration::from_millis(500)).await;

    let proc = group.masters[0].proc.as_mut().unwrap();
    proc.signal(libc::SIGTERM);
    let status = proc.wait_exit(Duration::from_secs(15));
    assert!(status.is_some_and(|s| s.success()), "the master exits: {status:?}");
    let refused = stalled.await.unwrap().unwrap_err();
    assert!(refused.message().contains("shutting down"), "{refused:?}");
    drop((tx, unread));
}
