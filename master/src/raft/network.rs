//! Raft traffic between masters: openraft's messages, postcard-encoded, over the `RaftPeer`
//! gRPC service on each master's peer address.

use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::{LogId, Vote};
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;
use tonic::Status;
use wasmgrid_common::Addr;
use wasmgrid_proto::raft_peer_client::RaftPeerClient;
use wasmgrid_proto::security::{AuthChannel, Security};
use wasmgrid_proto::RaftPayload;

use super::{Member, NodeId, TypeConfig};
use crate::storage::codec::{decode, encode};

type RpcErr<E = openraft::error::Infallible> = RPCError<NodeId, Member, RaftError<NodeId, E>>;

/// Bytes of entries in one AppendEntries, roughly, unless a single entry is larger.
const APPEND_BYTES: usize = 8 << 20;
/// How long an AppendEntries may take in all, however long openraft waits for it: this,
/// plus a second per [`APPEND_BYTES_PER_SECOND`] it carries (a large entry on a slow link
/// must still get through; a peer that does not answer holds the next request this long).
const APPEND_LIMIT: Duration = Duration::from_secs(5);
/// The slowest link between masters a large entry is given time for: 4MiB/s (32Mbit/s).
const APPEND_BYTES_PER_SECOND: usize = 4 << 20;

/// Creates one client per peer; connections are made lazily and re-made after failures.
#[derive(Clone, Default)]
pub struct Network {
    pub security: Security,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &Member) -> PeerClient {
        PeerClient {
            target,
            addr: node.peer_addr.clone(),
            client: None,
            security: self.security.clone(),
            sending: None,
        }
    }
}

pub struct PeerClient {
    target: NodeId,
    addr: String,
    client: Option<RaftPeerClient<AuthChannel>>,
    security: Security,
    /// The last AppendEntries sent, until it is answered (see [`PeerClient::append`]).
    sending: Option<(AppendKey, Transfer)>,
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
    fn client(&mut self) -> Result<RaftPeerClient<AuthChannel>, String> {
        if let Some(client) = &self.client {
            return Ok(client.clone());
        }
        let client = RaftPeerClient::new(peer_channel(&self.security, &self.addr)?)
            .max_decoding_message_size(wasmgrid_proto::PEER_MESSAGE_SIZE)
            .max_encoding_message_size(wasmgrid_proto::PEER_MESSAGE_SIZE);
        Ok(self.client.insert(client).clone())
    }

    async fn call<Resp, E>(&mut self, method: Method, data: Vec<u8>, ttl: Duration) -> Result<Resp, RpcErr<E>>
    where
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let mut client = self.client().map_err(unreachable)?;
        let mut request = tonic::Request::new(RaftPayload { data });
        request.set_timeout(ttl);
        let result = match method {
            Method::Vote => client.vote(request).await,
            Method::Snapshot => client.install_snapshot(request).await,
        };
        self.answer(result)
    }

    // openraft's error type, as its `RaftNetwork` methods return it.
    #[allow(clippy::result_large_err)]
    fn answer<Resp, E>(&mut self, result: Result<tonic::Response<RaftPayload>, Status>) -> Result<Resp, RpcErr<E>>
    where
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
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

    /// Sends an AppendEntries and lets it finish even when openraft stops waiting. openraft
    /// gives each one a heartbeat interval (100ms by default) before it retries, and a large
    /// entry (a 16MiB input) can take longer than that to cross a slow network and be synced
    /// by the follower: cut off at every retry, it would never arrive. Here it goes on to
    /// its end, one transfer at a time: a retry of the same entries waits for its answer
    /// instead of sending them again (see `append_entries`); any other request waits for it
    /// to end first.
    async fn append(&mut self, key: AppendKey, data: Vec<u8>) -> Result<tonic::Response<RaftPayload>, Status> {
        if let Some(earlier) = self.sending.as_mut() {
            let _ = (&mut earlier.1).await;
            self.sending = None;
        }
        let mut client = self.client().map_err(Status::unavailable)?;
        let limit = APPEND_LIMIT + Duration::from_secs((data.len() / APPEND_BYTES_PER_SECOND) as u64);
        let mut request = tonic::Request::new(RaftPayload { data });
        request.set_timeout(limit);
        let call = tokio::spawn(async move { client.append_entries(request).await });
        // A heartbeat is not worth waiting for again (and carries the newest commit index).
        let sending = self.sending.insert((key.filter(|k| k.2.is_some()), call));
        let result = (&mut sending.1).await;
        self.sending = None;
        result.unwrap_or_else(|e| Err(Status::internal(format!("append entries: {e}"))))
    }

    /// The answer to the transfer of the same entries still on its way, if there is one.
    async fn same_as_sending(&mut self, key: &AppendKey) -> Option<Result<tonic::Response<RaftPayload>, Status>> {
        let earlier = self.sending.as_mut().filter(|(k, _)| k.is_some() && k == key)?;
        let result = (&mut earlier.1).await;
        self.sending = None;
        Some(result.unwrap_or_else(|e| Err(Status::internal(format!("append entries: {e}")))))
    }
}

/// An AppendEntries on its way.
type Transfer = JoinHandle<Result<tonic::Response<RaftPayload>, Status>>;

/// What identifies an AppendEntries' entries: the vote it is sent under, the log id before
/// them and the last one's.
type AppendKey = Option<(Vote<NodeId>, Option<LogId<NodeId>>, Option<LogId<NodeId>>)>;

fn unreachable<E>(e: String) -> RpcErr<E>
where
    E: std::error::Error,
{
    RPCError::Unreachable(Unreachable::new(&std::io::Error::other(e)))
}

#[derive(Clone, Copy)]
enum Method {
    Vote,
    Snapshot,
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr> {
        let key = Some((rpc.vote, rpc.prev_log_id, rpc.entries.last().map(|e| e.log_id)));
        // A retry of entries still on their way: their answer is this request's (checked
        // before encoding them again, which for a large entry costs as much as a transfer).
        if let Some(result) = self.same_as_sending(&key).await {
            return self.answer(result);
        }
        let data = encode(&rpc).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        if rpc.entries.len() > 1 && data.len() > APPEND_BYTES {
            // Fewer entries at a time, so each request crosses (and is synced) quickly.
            let fit = (rpc.entries.len() * APPEND_BYTES / data.len()).max(1);
            return Err(RPCError::PayloadTooLarge(PayloadTooLarge::new_entries_hint(fit as u64)));
        }
        let result = self.append(key, data).await;
        self.answer(result)
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcErr<InstallSnapshotError>> {
        let data = encode(&rpc).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        self.call(Method::Snapshot, data, option.hard_ttl()).await
    }

    async fn vote(&mut self, rpc: VoteRequest<NodeId>, option: RPCOption) -> Result<VoteResponse<NodeId>, RpcErr> {
        let data = encode(&rpc).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        self.call(Method::Vote, data, option.hard_ttl()).await
    }
}
