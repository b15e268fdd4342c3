//! The content-addressed blob store: module bytes live in `blobs/<hex>` files, written
//! once (temp file, fsync, rename) and named by their sha256, so the state machine and its
//! snapshots only carry digests. Each write has a temp file of its own: two writes of the
//! same module at once (two uploads, or a follower's push and its own fetch) must not
//! truncate each other's file, or a short blob could be renamed into place.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

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
        static WRITES: AtomicU64 = AtomicU64::new(0);
        let n = WRITES.fetch_add(1, Ordering::Relaxed);
        let tmp = self.dir.join(format!("{}.{}.{n}.tmp", digest.hex(), std::process::id()));
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

    #[test]
    fn concurrent_puts_of_the_same_bytes_all_succeed_whole() {
        let bytes: Vec<u8> = (0..4u32 << 20).map(|i| (i % 251) as u8).collect();
        let d = Digest::of(&bytes);
        for _ in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let store = BlobStore::open(dir.path()).unwrap();
            std::thread::scope(|s| {
                let puts: Vec<_> = (0..6).map(|_| s.spawn(|| store.put(&d, &bytes))).collect();
                for p in puts {
                    p.join().unwrap().unwrap();
                }
            });
            assert_eq!(Digest::of(&store.get(&d).unwrap()), d);
            assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temp file is left");
        }
    }
}
