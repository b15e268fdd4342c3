//! The content-addressed blob store: module bytes live in `blobs/<hex>` files, written
//! once (temp file, fsync, rename) and named by their sha256, so the state machine and its
//! snapshots only carry digests.

use std::io::Write;
use std::path::{Path, PathBuf};

use wasmgrid_common::Digest;

#[derive(Debug, Clone)]
pub struct BlobStore {
    dir: PathBuf,
}

impl BlobStore {
    pub fn open(dir: impl Into<PathBuf>) -> std::io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        // Leftovers of uploads interrupted by a crash.
        for entry in std::fs::read_dir(&dir)?.flatten() {
            if entry.file_name().to_string_lossy().ends_with(".tmp") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(Self { dir })
    }

    fn path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(digest.hex())
    }

    pub fn contains(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    /// Stores `bytes` under their digest durably; a second put of the same bytes is a no-op.
    pub fn put(&self, digest: &Digest, bytes: &[u8]) -> std::io::Result<()> {
        let path = self.path(digest);
        if path.is_file() {
            return Ok(());
        }
        let tmp = self.dir.join(format!("{}.{}.tmp", digest.hex(), std::process::id()));
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        sync_dir(&self.dir)
    }

    pub fn get(&self, digest: &Digest) -> std::io::Result<Vec<u8>> {
        std::fs::read(self.path(digest))
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_is_idempotent_and_content_addressed() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let d = Digest::of(b"hello");
        assert!(!store.contains(&d));
        store.put(&d, b"hello").unwrap();
        store.put(&d, b"hello").unwrap();
        assert_eq!(store.get(&d).unwrap(), b"hello");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
