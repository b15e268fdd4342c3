//! Raft plumbing: the type configuration, storage of the log and of the state machine, and
//! the network between masters. A single master is a one-member group on the same code path.

pub mod log_store;
pub mod network;
pub mod segments;
pub mod state_store;
#[cfg(test)]
mod storage_suite;

use std::collections::BTreeMap;
use std::fmt;

use openraft::{StorageError as RaftStorageError, StorageIOError};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::state::{Batch, Response};

openraft::declare_raft_types!(
    /// The Raft types of wasmgrid: entries carry batches of commands.
    pub TypeConfig:
        D = Batch,
        R = Vec<Response>,
        NodeId = NodeId,
        Node = Member,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = tokio::fs::File,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type NodeId = u64;
pub type Raft = openraft::Raft<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type StoredMembership = openraft::StoredMembership<NodeId, Member>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, Member>;
pub type Snapshot = openraft::Snapshot<TypeConfig>;
pub type Vote = openraft::Vote<NodeId>;
pub type StorageErr = RaftStorageError<NodeId>;

/// A master as the group knows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub name: String,
    /// Where its Raft peer service listens (`--advertise-peer-urls`).
    pub peer_addr: String,
    /// Where clients and executors reach it (`--advertise-addr`); empty until it says.
    pub api_addr: String,
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.peer_addr)
    }
}

/// Node ids are derived from member names, so `--initial-cluster m0=…,m1=…` is all a master
/// needs to know its peers' ids.
pub fn node_id(name: &str) -> NodeId {
    let h = Sha256::digest(name.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&h[..8]);
    // Zero is avoided so an id is never mistaken for "unset".
    u64::from_be_bytes(b).max(1)
}

/// The members map for `Raft::initialize`.
pub fn members(list: &[Member]) -> BTreeMap<NodeId, Member> {
    list.iter().map(|m| (node_id(&m.name), m.clone())).collect()
}

/// Wraps any storage failure as the error openraft expects.
pub(crate) fn io_err(e: impl std::error::Error + 'static) -> StorageErr {
    StorageIOError::write(&e).into()
}

pub(crate) fn read_err(e: impl std::error::Error + 'static) -> StorageErr {
    StorageIOError::read(&e).into()
}
