//! openraft's view of the state machine: applying committed entries to the replica, and
//! building and installing snapshots (files under `snapshots/`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot as RaftSnapshot};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};

use super::{io_err, read_err, Entry, LogId, Snapshot, SnapshotMeta, StorageErr, StoredMembership, TypeConfig};
use crate::replica::Replica;
use crate::state::Response;
use crate::storage::codec::{decode, encode};
use crate::storage::{snapshot, StorageError};

const LAST_APPLIED: &str = "last_applied";
const MEMBERSHIP: &str = "membership";
const SNAPSHOT_EXT: &str = "snap";

pub struct StateStore {
    replica: Arc<Replica>,
    dir: PathBuf,
    last_applied: Option<LogId>,
    membership: StoredMembership,
    incoming: Option<PathBuf>,
}

impl StateStore {
    pub fn open(replica: Arc<Replica>, snapshot_dir: PathBuf) -> Result<Self, StorageError> {
        std::fs::create_dir_all(&snapshot_dir)?;
        for entry in std::fs::read_dir(&snapshot_dir)?.flatten() {
            if entry.path().extension().is_some_and(|e| e == "tmp") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        let last_applied = replica.db.meta::<Option<LogId>>(LAST_APPLIED)?.flatten();
        let membership = replica.db.meta(MEMBERSHIP)?.unwrap_or_default();
        Ok(Self { replica, dir: snapshot_dir, last_applied, membership, incoming: None })
    }
}

/// Makes the received snapshot durable at `incoming`. openraft normally fills the file
/// `begin_receiving_snapshot` handed out, but a caller may hand back another file (a local
/// snapshot, say): then its bytes are copied in.
async fn store_received(mut snapshot: Box<tokio::fs::File>, incoming: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    use tokio::io::AsyncSeekExt;
    let given = snapshot.metadata().await?;
    let ours = tokio::fs::metadata(incoming).await?;
    if (given.dev(), given.ino()) != (ours.dev(), ours.ino()) {
        snapshot.seek(std::io::SeekFrom::Start(0)).await?;
        let mut file = tokio::fs::File::create(incoming).await?;
        tokio::io::copy(&mut snapshot, &mut file).await?;
        *snapshot = file;
    }
    snapshot.sync_all().await
}

/// The newest snapshot file in `dir` and its metadata.
fn newest_snapshot(dir: &Path) -> Result<Option<(SnapshotMeta, PathBuf)>, StorageError> {
    let mut best: Option<(SnapshotMeta, PathBuf)> = None;
    for entry in std::fs::read_dir(dir)?.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != SNAPSHOT_EXT) {
            continue;
        }
        let meta = snapshot_meta(&path)?;
        if best.as_ref().is_none_or(|(b, _)| b.last_log_id < meta.last_log_id) {
            best = Some((meta, path));
        }
    }
    Ok(best)
}

fn snapshot_meta(path: &Path) -> Result<SnapshotMeta, StorageError> {
    let meta = snapshot::read_meta(path)?;
    let last_log_id: Option<LogId> = meta.get(LAST_APPLIED).map(|v| decode(v)).transpose()?.flatten();
    let last_membership: StoredMembership = meta.get(MEMBERSHIP).map(|v| decode(v)).transpose()?.unwrap_or_default();
    let snapshot_id = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    Ok(SnapshotMeta { last_log_id, last_membership, snapshot_id })
}

fn snapshot_name(last: Option<LogId>) -> String {
    let millis = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    match last {
        Some(l) => format!("{:020}-{}-{millis}", l.index, l.leader_id.term),
        None => format!("{:020}-0-{millis}", 0),
    }
}

/// Keeps only `keep` in `dir`.
fn remove_others(dir: &Path, keep: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path != keep && path.extension().is_some_and(|e| e == SNAPSHOT_EXT) {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

async fn open_snapshot(meta: SnapshotMeta, path: &Path) -> Result<Snapshot, StorageErr> {
    let file = tokio::fs::File::open(path).await.map_err(read_err)?;
    Ok(RaftSnapshot { meta, snapshot: Box::new(file) })
}

pub struct SnapshotBuilder {
    replica: Arc<Replica>,
    dir: PathBuf,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageErr> {
        let replica = self.replica.clone();
        let dir = self.dir.clone();
        let (meta, path) = tokio::task::spawn_blocking(move || -> Result<_, StorageError> {
            // The log may be purged up to this snapshot: the state must be durable first.
            replica.sync()?;
            let tmp = dir.join(format!("building-{}.tmp", std::process::id()));
            snapshot::dump(&replica.db, &tmp)?;
            let mut meta = snapshot_meta(&tmp)?;
            meta.snapshot_id = snapshot_name(meta.last_log_id);
            let path = dir.join(format!("{}.{SNAPSHOT_EXT}", meta.snapshot_id));
            std::fs::rename(&tmp, &path)?;
            remove_others(&dir, &path);
            Ok((meta, path))
        })
        .await
        .map_err(io_err)?
        .map_err(io_err)?;
        tracing::info!(snapshot = %meta.snapshot_id, "built state machine snapshot");
        open_snapshot(meta, &path).await
    }
}

impl RaftStateMachine<TypeConfig> for StateStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageErr> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Vec<Response>>, StorageErr>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batches = Vec::new();
        for entry in entries {
            self.last_applied = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Blank => batches.push(None),
                EntryPayload::Normal(batch) => batches.push(Some(batch)),
                EntryPayload::Membership(m) => {
                    self.membership = StoredMembership::new(Some(entry.log_id), m);
                    batches.push(None);
                }
            }
        }
        if batches.is_empty() {
            return Ok(Vec::new());
        }
        let meta = vec![
            (LAST_APPLIED, encode(&self.last_applied).map_err(io_err)?),
            (MEMBERSHIP, encode(&self.membership).map_err(io_err)?),
        ];
        let replica = self.replica.clone();
        tokio::task::spawn_blocking(move || replica.apply(batches, meta)).await.map_err(io_err)?.map_err(io_err)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder { replica: self.replica.clone(), dir: self.dir.clone() }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<tokio::fs::File>, StorageErr> {
        let path = self.dir.join(format!("incoming-{}.tmp", std::process::id()));
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .await
            .map_err(io_err)?;
        self.incoming = Some(path);
        Ok(Box::new(file))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageErr> {
        let incoming = self
            .incoming
            .take()
            .ok_or_else(|| io_err(StorageError::Corrupt("snapshot installed without being received".into())))?;
        store_received(snapshot, &incoming).await.map_err(io_err)?;
        let path = self.dir.join(format!("{}.{SNAPSHOT_EXT}", meta.snapshot_id));
        let replica = self.replica.clone();
        let dir = self.dir.clone();
        let meta_rows = vec![
            (LAST_APPLIED, encode(&meta.last_log_id).map_err(io_err)?),
            (MEMBERSHIP, encode(&meta.last_membership).map_err(io_err)?),
        ];
        tokio::task::spawn_blocking(move || -> Result<(), StorageError> {
            std::fs::rename(&incoming, &path)?;
            replica.install(&path, &meta_rows)?;
            remove_others(&dir, &path);
            Ok(())
        })
        .await
        .map_err(io_err)?
        .map_err(io_err)?;
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        tracing::info!(snapshot = %meta.snapshot_id, "installed state machine snapshot");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageErr> {
        let dir = self.dir.clone();
        let found =
            tokio::task::spawn_blocking(move || newest_snapshot(&dir)).await.map_err(read_err)?.map_err(read_err)?;
        match found {
            Some((meta, path)) => Ok(Some(open_snapshot(meta, &path).await?)),
            None => Ok(None),
        }
    }
}
