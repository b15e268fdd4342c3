//! The gRPC definitions of wasmgrid, generated from `proto/wasmgrid/v1/*.proto`.
//!
//! - `Master`: the client API (modules, tasks, cluster status).
//! - `ExecutorGateway`: the executors' long-lived stream to the leader.
//! - `RaftPeer`: masters' internal Raft traffic, kept apart from the public API.
//! - `Worker`: the small status API an executor serves on its own address.

pub mod security;
pub mod split;

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod v1 {
    tonic::include_proto!("wasmgrid.v1");
}

pub use v1::*;

impl TaskState {
    /// Succeeded, failed or cancelled: the task's record will not change again.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }
}

/// Metadata key on UNAVAILABLE answers from a follower: the leader's client address.
pub const LEADER_METADATA: &str = "wasmgrid-leader";

/// Largest gRPC message any wasmgrid service accepts or sends (inputs and outputs are bounded
/// well below this by configuration; modules are streamed in chunks).
pub const MAX_MESSAGE_SIZE: usize = 256 * 1024 * 1024;

/// Largest message between masters: a Raft entry holds one client's or executor's message
/// of up to [`MAX_MESSAGE_SIZE`], encoded again, with the entries' own framing around it.
pub const PEER_MESSAGE_SIZE: usize = 2 * MAX_MESSAGE_SIZE;

/// Task ids one `WaitTasks` call may name; a client waits for more a share at a time.
pub const MAX_WAIT_IDS: usize = 100_000;

/// Size of one chunk of a streamed module.
pub const CHUNK_SIZE: usize = 1024 * 1024;
