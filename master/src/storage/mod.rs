//! Durable storage of a master, all under `--data-dir`:
//! - `raft-log/`: the Raft log in segment files, and the vote, commit index and purge point
//!   (see `raft::log_store` and `raft::segments`);
//! - `state.redb`: the applied state: tasks, inputs, outputs, modules, executors;
//! - `blobs/`: module bytes, content-addressed, referenced by digest from the state;
//! - `snapshots/`: the latest state machine snapshot, for followers that fall behind.

pub mod blobs;
pub mod codec;
pub mod snapshot;
pub mod state_db;

/// A storage failure; these are fatal to the request (and to Raft when they hit the log).
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("storage: {0}")]
    Db(#[from] redb::Error),
    #[error("storage encoding: {0}")]
    Codec(#[from] postcard::Error),
    #[error("storage i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("storage: {0}")]
    Corrupt(String),
    #[error("storage: {} is in use by another process: is a master already running with this --data-dir?", .0.display())]
    InUse(std::path::PathBuf),
}

macro_rules! from_redb {
    ($($t:ty),*) => {
        $(impl From<$t> for StorageError {
            fn from(e: $t) -> Self {
                Self::Db(e.into())
            }
        })*
    };
}
from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);
