//! What one durable write costs on the data disk: write 4 KiB and `fdatasync`, both at the
//! end of a growing file and over a zero-filled one (as the Raft log's segments are).

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use super::table::percentile;

pub struct Fsync {
    /// Appending 4 KiB (a new block and a new file size each time), then `fdatasync`.
    pub append: Duration,
    /// Rewriting 4 KiB of a zero-filled file, then `fdatasync`: the cheapest durable write,
    /// and what the Raft log pays for most group commits.
    pub rewrite: Duration,
}

/// The p50 of `rounds` writes + fdatasync each way, in files under `dir`.
pub fn fsync_p50(dir: &Path, rounds: usize) -> std::io::Result<Fsync> {
    Ok(Fsync { append: timed(dir, rounds, false)?, rewrite: timed(dir, rounds, true)? })
}

fn timed(dir: &Path, rounds: usize, zero_filled: bool) -> std::io::Result<Duration> {
    let path = dir.join("fsync-probe");
    let file = std::fs::OpenOptions::new().create(true).truncate(true).read(true).write(true).open(&path)?;
    let block = vec![0x5au8; 4096];
    if zero_filled {
        file.write_all_at(&vec![0u8; rounds * block.len()], 0)?;
        file.sync_all()?;
    }
    let mut times = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let t = Instant::now();
        file.write_all_at(&block, (round * block.len()) as u64)?;
        file.sync_data()?;
        times.push(t.elapsed());
    }
    drop(file);
    std::fs::remove_file(&path)?;
    Ok(percentile(&mut times, 0.5))
}
