//! Calls from this master to the others' peer service, besides Raft itself: probing before
//! initializing a group, announcing this master's client address, and moving module blobs.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use wasmgrid_common::Digest;
use wasmgrid_proto as pb;
use wasmgrid_proto::raft_peer_client::RaftPeerClient;
use wasmgrid_proto::security::{AuthChannel, Security};

use crate::raft::network::peer_channel;

pub struct Peers {
    security: Security,
    channels: Mutex<HashMap<String, AuthChannel>>,
}

impl Peers {
    pub fn new(security: Security) -> Self {
        Self { security, channels: Mutex::new(HashMap::new()) }
    }

    fn client(&self, addr: &str) -> Result<RaftPeerClient<AuthChannel>, String> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        let channel = match channels.get(addr) {
            Some(c) => c.clone(),
            None => {
                let c = peer_channel(&self.security, addr)?;
                channels.insert(addr.to_string(), c.clone());
                c
            }
        };
        Ok(RaftPeerClient::new(channel)
            .max_decoding_message_size(wasmgrid_proto::PEER_MESSAGE_SIZE)
            .max_encoding_message_size(wasmgrid_proto::PEER_MESSAGE_SIZE))
    }

    /// Asks the master at `addr` whether it belongs to an initialized group.
    pub async fn probe(&self, addr: &str) -> Result<pb::ProbeReply, String> {
        let mut req = tonic::Request::new(pb::ProbeRequest {});
        req.set_timeout(Duration::from_secs(1));
        // The whole call, handshakes included: founding masters probe each other before they
        // serve, and a TLS handshake with a listener nobody serves yet never ends by itself.
        let mut client = self.client(addr)?;
        match tokio::time::timeout(Duration::from_secs(2), client.probe(req)).await {
            Ok(reply) => Ok(reply.map_err(|s| s.message().to_string())?.into_inner()),
            Err(_) => Err(format!("no answer from {addr} within 2s")),
        }
    }

    /// Tells the leader at `addr` where clients reach this master.
    pub async fn announce(&self, addr: &str, info: pb::MemberInfo) -> Result<(), String> {
        let mut req = tonic::Request::new(info);
        req.set_timeout(Duration::from_secs(5));
        self.client(addr)?.announce(req).await.map_err(|s| s.message().to_string())?;
        Ok(())
    }

    /// Stores a blob on the master at `addr` (durably, when this returns `Ok`).
    pub async fn put_blob(&self, addr: &str, digest: Digest, bytes: std::sync::Arc<Vec<u8>>) -> Result<(), String> {
        let chunks: Vec<pb::BlobChunk> = bytes
            .chunks(wasmgrid_proto::CHUNK_SIZE)
            .enumerate()
            .map(|(i, c)| pb::BlobChunk {
                digest: if i == 0 { digest.to_string() } else { String::new() },
                data: c.to_vec(),
            })
            .collect();
        let chunks =
            if chunks.is_empty() { vec![pb::BlobChunk { digest: digest.to_string(), data: vec![] }] } else { chunks };
        self.client(addr)?.put_blob(tokio_stream::iter(chunks)).await.map_err(|s| s.message().to_string())?;
        Ok(())
    }

    /// Fetches a blob from the master at `addr`, checking it against its digest.
    pub async fn fetch_blob(&self, addr: &str, digest: Digest) -> Result<Vec<u8>, String> {
        let req = pb::FetchBlobRequest { digest: digest.to_string() };
        let mut stream = self.client(addr)?.fetch_blob(req).await.map_err(|s| s.message().to_string())?.into_inner();
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.message().await.map_err(|s| s.message().to_string())? {
            bytes.extend_from_slice(&chunk.data);
        }
        if Digest::of(&bytes) != digest {
            return Err("the bytes received do not match the digest".into());
        }
        Ok(bytes)
    }
}
