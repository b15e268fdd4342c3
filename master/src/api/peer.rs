//! The `RaftPeer` service: Raft messages from other masters, handed to openraft; probes,
//! address announcements, and module blobs moving between masters.

use std::sync::Arc;

use std::pin::Pin;

use futures::Stream;
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::{Request, Response, Status, Streaming};
use wasmgrid_common::{Digest, Size};
use wasmgrid_proto as pb;
use wasmgrid_proto::raft_peer_server::RaftPeer;
use wasmgrid_proto::RaftPayload;

use crate::node::Node;
use crate::raft::{node_id, NodeId, TypeConfig};
use crate::state::Command;
use crate::storage::codec::{decode, encode};

pub struct PeerService {
    node: Arc<Node>,
}

impl PeerService {
    pub fn new(node: Arc<Node>) -> Self {
        Self { node }
    }
}

fn unpack<T: DeserializeOwned>(req: Request<RaftPayload>) -> Result<T, Status> {
    decode(&req.into_inner().data).map_err(|e| Status::invalid_argument(format!("malformed raft message: {e}")))
}

fn pack<T: Serialize>(value: &T) -> Result<Response<RaftPayload>, Status> {
    let data = encode(value).map_err(|e| Status::internal(e.to_string()))?;
    Ok(Response::new(RaftPayload { data }))
}

#[tonic::async_trait]
impl RaftPeer for PeerService {
    async fn append_entries(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let rpc: AppendEntriesRequest<TypeConfig> = unpack(req)?;
        pack(&self.node.raft.append_entries(rpc).await)
    }

    async fn vote(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let rpc: VoteRequest<NodeId> = unpack(req)?;
        pack(&self.node.raft.vote(rpc).await)
    }

    async fn install_snapshot(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let rpc: InstallSnapshotRequest<TypeConfig> = unpack(req)?;
        pack(&self.node.raft.install_snapshot(rpc).await)
    }

    async fn probe(&self, _: Request<pb::ProbeRequest>) -> Result<Response<pb::ProbeReply>, Status> {
        let initialized = self.node.raft.is_initialized().await.map_err(|e| Status::unavailable(e.to_string()))?;
        let known = self.node.leader();
        let leader = known.as_ref().map(|(_, m)| m.name.clone()).unwrap_or_default();
        let leader_api_addr = known.map(|(id, m)| self.node.api_addr(id, &m)).unwrap_or_default();
        let mut reply = pb::ProbeReply {
            initialized,
            name: self.node.config.name.clone(),
            leader,
            leader_api_addr,
            ..Default::default()
        };
        let metrics = self.node.metrics();
        reply.last_log_index = metrics.last_log_index.unwrap_or(0);
        crate::removal::fill_reply(&metrics, &mut reply);
        Ok(Response::new(reply))
    }

    async fn announce(&self, req: Request<pb::MemberInfo>) -> Result<Response<pb::AnnounceReply>, Status> {
        let info = req.into_inner();
        let id = node_id(&info.name);
        if self.node.metrics().membership_config.membership().get_node(&id).is_none() {
            return Err(Status::failed_precondition(format!("{} is not a member of this group", info.name)));
        }
        let known = self.node.replica.read().member_addrs().get(&id).cloned();
        if known.as_deref() != Some(info.api_addr.as_str()) {
            self.node.propose(Command::MemberAddr { node: id, api_addr: info.api_addr }).await?;
        }
        Ok(Response::new(pb::AnnounceReply {}))
    }

    async fn put_blob(&self, req: Request<Streaming<pb::BlobChunk>>) -> Result<Response<pb::PutBlobReply>, Status> {
        let mut stream = req.into_inner();
        let max = self.node.config.max_module_size;
        let mut digest = None;
        let mut bytes = Vec::new();
        while let Some(chunk) = stream.message().await? {
            if digest.is_none() {
                digest = Some(chunk.digest.parse::<Digest>().map_err(|e| Status::invalid_argument(e.to_string()))?);
            }
            if (bytes.len() + chunk.data.len()) as u64 > max {
                return Err(Status::invalid_argument(format!("blob larger than max-module-size = {}", Size(max))));
            }
            bytes.extend_from_slice(&chunk.data);
        }
        let digest = digest.ok_or_else(|| Status::invalid_argument("empty blob stream"))?;
        if Digest::of(&bytes) != digest {
            return Err(Status::invalid_argument("the blob does not match its digest"));
        }
        let blobs = self.node.replica.blobs.clone();
        tokio::task::spawn_blocking(move || blobs.put(&digest, &bytes))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Status::internal(format!("cannot store blob: {e}")))?;
        Ok(Response::new(pb::PutBlobReply {}))
    }

    type FetchBlobStream = Pin<Box<dyn Stream<Item = Result<pb::BlobChunk, Status>> + Send>>;

    async fn fetch_blob(&self, req: Request<pb::FetchBlobRequest>) -> Result<Response<Self::FetchBlobStream>, Status> {
        let digest: Digest = req.into_inner().digest.parse().map_err(|e| Status::invalid_argument(format!("{e}")))?;
        let blobs = self.node.replica.blobs.clone();
        let bytes = tokio::task::spawn_blocking(move || blobs.get(&digest))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|_| Status::not_found(format!("blob {digest} is not stored here")))?;
        let chunks: Vec<Result<pb::BlobChunk, Status>> = bytes
            .chunks(wasmgrid_proto::CHUNK_SIZE)
            .map(|c| Ok(pb::BlobChunk { digest: String::new(), data: c.to_vec() }))
            .collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }
}
