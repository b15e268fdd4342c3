//! What one durable write costs on the data disk: append 4 KiB and `fdatasync`, as the Raft
//! log does for each group commit.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use super::table::percentile;

/// The p50 of `rounds` append + fdatasync pairs in a file under `dir`.
pub fn fsync_p50(dir: &Path, rounds: usize) -> std::io::Result<Duration> {
    let path = dir.join("fsync-probe");
    let mut file = std::fs::OpenOptions::new().create(true).truncate(true).write(true).open(&path)?;
    let block = vec![0x5au8; 4096];
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        file.write_all(&block)?;
        file.sync_data()?;
        times.push(t.elapsed());
    }
    drop(file);
    std::fs::remove_file(&path)?;
    Ok(percentile(&mut times, 0.5))
}
