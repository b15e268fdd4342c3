//! openraft's own storage test suite, run against the real log store and state machine on
//! files in a temporary directory.

use openraft::testing::{StoreBuilder, Suite};

use super::log_store::LogStore;
use super::state_store::StateStore;
use super::{io_err, StorageErr, TypeConfig};
use crate::replica::Replica;
use crate::storage::blobs::BlobStore;
use crate::storage::state_db::StateDb;

struct Files;

impl StoreBuilder<TypeConfig, LogStore, StateStore, tempfile::TempDir> for Files {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateStore), StorageErr> {
        let dir = tempfile::tempdir().map_err(io_err)?;
        let log = LogStore::open(&dir.path().join("raft-log")).map_err(io_err)?;
        let db = StateDb::open(&dir.path().join("state.redb")).map_err(io_err)?;
        let blobs = BlobStore::open(dir.path().join("blobs")).map_err(io_err)?;
        let replica = std::sync::Arc::new(Replica::open(db, blobs).map_err(io_err)?);
        let state = StateStore::open(replica, dir.path().join("snapshots")).map_err(io_err)?;
        Ok((dir, log, state))
    }
}

#[test]
fn log_and_state_pass_openraft_suite() {
    if let Err(e) = Suite::test_all(Files) {
        panic!("openraft storage suite: {e}");
    }
}
