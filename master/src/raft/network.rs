//! Raft traffic between masters: openraft's messages, postcard-encoded, over the `RaftPeer`
//! gRPC service on each master's peer address.

use std::time::Duration;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use wasmgrid_common::Addr;
use wasmgrid_proto::raft_peer_client::RaftPeerClient;
use wasmgrid_proto::security::{AuthChannel, Security};
use wasmgrid_proto::RaftPayload;

use super::{Member, NodeId, TypeConfig};
use crate::storage::codec::{decode, encode};

type RpcErr<E = openraft::error::Infallible> = RPCError<NodeId, Member, RaftError<NodeId, E>>;

/// Creates one client per peer; connections are made lazily and re-made after failures.
#[derive(Clone, Default)]
pub struct Network {
    pub security: Security,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &Member) -> PeerClient {
        PeerClient { target, addr: node.peer_addr.clone(), client: None, security: self.security.clone() }
    }
}

pub struct PeerClient {
    target: NodeId,
    addr: String,
    client: Option<RaftPeerClient<AuthChannel>>,
    security: Security,
}

/// A channel to a peer's Raft service, created without connecting.
pub fn peer_channel(security: &Security, addr: &str) -> Result<AuthChannel, String> {
    let addr: Addr = addr.parse().map_err(|e| format!("{e}"))?;
    let endpoint = security
        .endpoint(addr.host(), addr.port())
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_while_idle(true);
    Ok(security.wrap(endpoint.connect_lazy()))
}

impl PeerClient {
    async fn call<Req, Resp, E>(&mut self, method: Method, req: &Req, ttl: Duration) -> Result<Resp, RpcErr<E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let data = encode(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        if self.client.is_none() {
            let channel = peer_channel(&self.security, &self.addr)
                .map_err(|e| RPCError::Unreachable(Unreachable::new(&std::io::Error::other(e))))?;
            self.client = Some(
                RaftPeerClient::new(channel)
                    .max_decoding_message_size(wasmgrid_proto::MAX_MESSAGE_SIZE)
                    .max_encoding_message_size(wasmgrid_proto::MAX_MESSAGE_SIZE),
            );
        }
        let Some(client) = self.client.as_mut() else {
            return Err(RPCError::Unreachable(Unreachable::new(&std::io::Error::other("no client"))));
        };
        let mut request = tonic::Request::new(RaftPayload { data });
        request.set_timeout(ttl);
        let result = match method {
            Method::Append => client.append_entries(request).await,
            Method::Vote => client.vote(request).await,
            Method::Snapshot => client.install_snapshot(request).await,
        };
        let reply = match result {
            Ok(r) => r.into_inner(),
            Err(status) => {
                self.client = None;
                return Err(RPCError::Unreachable(Unreachable::new(&status)));
            }
        };
        let answer: Result<Resp, RaftError<NodeId, E>> =
            decode(&reply.data).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        answer.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

#[derive(Clone, Copy)]
enum Method {
    Append,
    Vote,
    Snapshot,
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr> {
        self.call(Method::Append, &rpc, option.hard_ttl()).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcErr<InstallSnapshotError>> {
        self.call(Method::Snapshot, &rpc, option.hard_ttl()).await
    }

    async fn vote(&mut self, rpc: VoteRequest<NodeId>, option: RPCOption) -> Result<VoteResponse<NodeId>, RpcErr> {
        self.call(Method::Vote, &rpc, option.hard_ttl()).await
    }
}
