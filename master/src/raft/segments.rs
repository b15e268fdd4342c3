//! An append-only file log of Raft entries, in segment files of about 64 MiB under
//! `raft-log/`: the write path is one `write` and one `fdatasync` per group of entries, with
//! no B-tree in the way.
//!
//! A record is `[len u32][crc32 u32][index u64][payload]`, little-endian; the CRC covers the
//! index and the payload. On open, a torn record at the end of the last segment (a crash in
//! the middle of a write) is cut off; a bad record anywhere else is refused as corruption.
//! Purging deletes whole segments behind the purge point.
//!
//! Segments are zero-filled ahead of the records ([`ZERO_AHEAD`] at a time), so most appends
//! rewrite blocks the file already has: `fdatasync` then writes the data alone, with no
//! journal commit for a new block or a new file size (on ext4 a 4 KiB append + sync took
//! about twice as long as the same rewrite). Everything past the last record is zeros,
//! which is how a reopen tells the end of the records from a torn write.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const HEADER: usize = 16;
const SEGMENT_SIZE: u64 = 64 * 1024 * 1024;
const SUFFIX: &str = ".seg";
/// How far past the records a segment is zero-filled, each time appends reach its end.
const ZERO_AHEAD: u64 = 1024 * 1024;

struct Segment {
    first: u64,
    path: PathBuf,
    file: File,
    /// End of the records.
    len: u64,
    /// End of the file: zeros from `len` on.
    allocated: u64,
}

/// Makes the appends before it was taken durable.
pub struct Syncer {
    file: Option<File>,
    dir: Option<PathBuf>,
}

impl Syncer {
    pub fn sync(self) -> io::Result<()> {
        if let Some(file) = self.file {
            file.sync_data()?;
        }
        if let Some(dir) = self.dir {
            sync_dir(&dir)?;
        }
        Ok(())
    }
}

/// Where one entry lives.
#[derive(Clone, Copy)]
struct Loc {
    segment: usize,
    offset: u64,
    len: u32,
}

pub struct Segments {
    dir: PathBuf,
    segments: Vec<Segment>,
    /// Locations of entries `first..=last`, in order.
    locs: VecDeque<Loc>,
    /// Index of the first entry in `locs`.
    first: u64,
    /// The active segment was created since the last sync: the directory needs one too.
    new_segment: bool,
}

fn corrupt(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

fn checksum(index: u64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&index.to_le_bytes());
    h.update(payload);
    h.finalize()
}

impl Segments {
    /// Opens (or creates) the log in `dir`, recovering from a torn last write. Segments that
    /// hold nothing after `purged` are deleted first: a crash may have undone their deletion.
    pub fn open(dir: &Path, purged: Option<u64>) -> io::Result<Self> {
        if !dir.exists() {
            std::fs::create_dir_all(dir)?;
            if let Some(parent) = dir.parent() {
                sync_dir(parent)?;
            }
        }
        let mut paths: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)?
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let first = name.strip_suffix(SUFFIX)?.parse::<u64>().ok()?;
                Some((first, e.path()))
            })
            .collect();
        paths.sort();
        if let Some(purged) = purged {
            // A segment is wholly purged when the next one starts at or before purged + 1.
            let before = paths.len();
            while paths.len() > 1 && paths[1].0 <= purged + 1 {
                std::fs::remove_file(&paths[0].1)?;
                paths.remove(0);
            }
            if paths.len() < before {
                sync_dir(dir)?;
            }
        }
        let mut log =
            Self { dir: dir.to_path_buf(), segments: Vec::new(), locs: VecDeque::new(), first: 0, new_segment: false };
        let count = paths.len();
        for (n, (first, path)) in paths.into_iter().enumerate() {
            let last_segment = n + 1 == count;
            log.load_segment(first, path, last_segment)?;
        }
        Ok(log)
    }

    fn load_segment(&mut self, first: u64, path: PathBuf, last_segment: bool) -> io::Result<()> {
        let mut file = OpenOptions::new().read(true).write(true).open(&path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let segment = self.segments.len();
        if self.locs.is_empty() {
            self.first = first;
        } else if first != self.first + self.locs.len() as u64 {
            return Err(corrupt(format!("raft log segment {} does not follow the one before it", path.display())));
        }
        let mut offset = 0usize;
        let mut expected = first;
        let mut allocated = bytes.len() as u64;
        while offset < bytes.len() {
            match parse(&bytes[offset..], expected) {
                Some(len) => {
                    self.locs.push_back(Loc { segment, offset: offset as u64, len: len as u32 });
                    offset += HEADER + len;
                    expected += 1;
                }
                None if bytes[offset..].iter().all(|b| *b == 0) => break,
                None if last_segment => {
                    tracing::warn!(segment = %path.display(), offset, "cutting off a torn record at the end of the raft log");
                    file.set_len(offset as u64)?;
                    file.sync_all()?;
                    allocated = offset as u64;
                    break;
                }
                None => {
                    return Err(corrupt(format!("raft log segment {} is corrupt at byte {offset}", path.display())))
                }
            }
        }
        self.segments.push(Segment { first, path, file, len: offset as u64, allocated });
        Ok(())
    }

    /// Index of the first entry held, if any.
    pub fn first_index(&self) -> Option<u64> {
        (!self.locs.is_empty()).then_some(self.first)
    }

    /// Index of the last entry held, if any.
    pub fn last_index(&self) -> Option<u64> {
        (!self.locs.is_empty()).then(|| self.first + self.locs.len() as u64 - 1)
    }

    /// Appends `(index, payload)` records; indexes must continue the log (or start it).
    pub fn append(&mut self, records: &[(u64, &[u8])]) -> io::Result<()> {
        let mut buf = Vec::new();
        for (index, payload) in records {
            match self.last_index() {
                Some(last) if *index != last + 1 => {
                    return Err(corrupt(format!("raft log append of {index} after {last}")));
                }
                None => {
                    self.first = *index;
                }
                _ => {}
            }
            if self.segments.last().is_none_or(|s| s.len + buf.len() as u64 >= SEGMENT_SIZE) {
                self.flush_buf(&mut buf)?;
                self.new_segment(*index)?;
            }
            let segment = self.segments.len() - 1;
            let offset = self.segments[segment].len + buf.len() as u64;
            let len = u32::try_from(payload.len()).map_err(|_| corrupt("raft entry larger than 4GiB".into()))?;
            buf.extend_from_slice(&len.to_le_bytes());
            buf.extend_from_slice(&checksum(*index, payload).to_le_bytes());
            buf.extend_from_slice(&index.to_le_bytes());
            buf.extend_from_slice(payload);
            self.locs.push_back(Loc { segment, offset, len });
        }
        self.flush_buf(&mut buf)
    }

    fn flush_buf(&mut self, buf: &mut Vec<u8>) -> io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let Some(seg) = self.segments.last_mut() else { return Ok(()) };
        let end = seg.len + buf.len() as u64;
        seg.file.write_all_at(buf, seg.len)?;
        if end > seg.allocated {
            // Not past the size at which the segment is closed, unless the records are.
            let ahead = (end + ZERO_AHEAD).min(SEGMENT_SIZE.max(end));
            let zeros = vec![0u8; usize::try_from(ahead - end).unwrap_or(0)];
            seg.file.write_all_at(&zeros, end)?;
            seg.allocated = end + zeros.len() as u64;
        }
        seg.len = end;
        buf.clear();
        Ok(())
    }

    fn new_segment(&mut self, first: u64) -> io::Result<()> {
        // Only the last segment is synced by `sync`: the one being closed is synced now.
        if let Some(seg) = self.segments.last() {
            seg.file.sync_data()?;
        }
        let path = self.dir.join(format!("{first:020}{SUFFIX}"));
        let file = OpenOptions::new().create(true).truncate(true).read(true).write(true).open(&path)?;
        self.segments.push(Segment { first, path, file, len: 0, allocated: 0 });
        self.new_segment = true;
        Ok(())
    }

    /// Makes everything appended so far durable.
    pub fn sync(&mut self) -> io::Result<()> {
        self.syncer()?.sync()
    }

    /// What `sync` needs, to run without holding the log (appends may go on meanwhile).
    pub fn syncer(&mut self) -> io::Result<Syncer> {
        let file = self.segments.last().map(|s| s.file.try_clone()).transpose()?;
        let dir = std::mem::take(&mut self.new_segment).then(|| self.dir.clone());
        Ok(Syncer { file, dir })
    }

    /// The payload of entry `index`, if held.
    pub fn read(&self, index: u64) -> io::Result<Option<Vec<u8>>> {
        let Some(loc) = index.checked_sub(self.first).and_then(|i| self.locs.get(i as usize)) else {
            return Ok(None);
        };
        let seg = &self.segments[loc.segment];
        let mut buf = vec![0u8; HEADER + loc.len as usize];
        seg.file.read_exact_at(&mut buf, loc.offset)?;
        match parse(&buf, index) {
            Some(_) => Ok(Some(buf.split_off(HEADER))),
            None => Err(corrupt(format!("raft log entry {index} in {} is corrupt", seg.path.display()))),
        }
    }

    /// Removes entries `since..`.
    pub fn truncate(&mut self, since: u64) -> io::Result<()> {
        let Some(last) = self.last_index() else { return Ok(()) };
        if since > last {
            return Ok(());
        }
        let keep = since.saturating_sub(self.first) as usize;
        let cut = self.locs.get(keep).copied();
        self.locs.truncate(keep);
        if let Some(cut) = cut {
            while self.segments.len() > cut.segment + 1 {
                if let Some(seg) = self.segments.last() {
                    std::fs::remove_file(&seg.path)?;
                }
                self.segments.pop();
            }
            let seg = &mut self.segments[cut.segment];
            // Cut, not zeroed: no stale record may stay behind the end, where a crash after
            // a rewrite of the same length could make it look like the next one.
            seg.file.set_len(cut.offset)?;
            seg.len = cut.offset;
            seg.allocated = cut.offset;
            seg.file.sync_all()?;
            // The deletions must not come back after a crash: old records would reappear.
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// Forgets entries `..=upto`, deleting the segments that hold nothing newer.
    pub fn purge(&mut self, upto: u64) -> io::Result<()> {
        while !self.locs.is_empty() && self.first <= upto {
            self.locs.pop_front();
            self.first += 1;
        }
        if self.locs.is_empty() {
            // Nothing is left: the next append starts a fresh segment, so a restart never
            // finds it behind older records in the same file.
            self.first = upto + 1;
            while let Some(seg) = self.segments.last() {
                std::fs::remove_file(&seg.path)?;
                self.segments.pop();
            }
            return sync_dir(&self.dir);
        }
        // A segment can go once the next one starts at or before the first entry kept.
        let mut removed = 0;
        while self.segments.len() > 1 && self.segments[1].first <= self.first.max(upto + 1) {
            std::fs::remove_file(&self.segments[0].path)?;
            self.segments.remove(0);
            removed += 1;
            for loc in &mut self.locs {
                loc.segment -= 1;
            }
        }
        if removed > 0 {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The payload length of a valid record for `index` at the start of `bytes`.
fn parse(bytes: &[u8], index: u64) -> Option<usize> {
    if bytes.len() < HEADER {
        return None;
    }
    let len = u32::from_le_bytes(bytes[0..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(bytes[4..8].try_into().ok()?);
    let at = u64::from_le_bytes(bytes[8..16].try_into().ok()?);
    let payload = bytes.get(HEADER..HEADER + len)?;
    (at == index && checksum(at, payload) == crc).then_some(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(i: u64) -> Vec<u8> {
        format!("entry {i}").into_bytes()
    }

    fn append(log: &mut Segments, range: std::ops::RangeInclusive<u64>) {
        let items: Vec<(u64, Vec<u8>)> = range.map(|i| (i, payload(i))).collect();
        let refs: Vec<(u64, &[u8])> = items.iter().map(|(i, p)| (*i, p.as_slice())).collect();
        log.append(&refs).unwrap();
        log.sync().unwrap();
    }

    /// The first segment's file, and where its records end.
    fn first_segment(log: &Segments) -> (PathBuf, u64) {
        (log.segments[0].path.clone(), log.segments[0].len)
    }

    fn file_len(path: &Path) -> u64 {
        std::fs::metadata(path).unwrap().len()
    }

    /// Writes `bytes` at `offset` behind the log's back, as a crash or a bad disk would.
    fn scribble(path: &Path, offset: u64, bytes: &[u8]) {
        OpenOptions::new().write(true).open(path).unwrap().write_all_at(bytes, offset).unwrap();
    }

    #[test]
    fn appends_reads_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Segments::open(dir.path(), None).unwrap();
        assert_eq!(log.last_index(), None);
        append(&mut log, 1..=100);
        assert_eq!(log.read(42).unwrap(), Some(payload(42)));
        assert_eq!(log.read(101).unwrap(), None);
        drop(log);
        let log = Segments::open(dir.path(), None).unwrap();
        assert_eq!((log.first_index(), log.last_index()), (Some(1), Some(100)));
        assert_eq!(log.read(100).unwrap(), Some(payload(100)));
    }

    #[test]
    fn a_torn_tail_is_cut_off_and_corruption_elsewhere_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Segments::open(dir.path(), None).unwrap();
        append(&mut log, 1..=10);
        let (path, end) = first_segment(&log);
        drop(log);
        // The last three bytes of the last record never reached the disk.
        scribble(&path, end - 3, &[0, 0, 0]);
        let mut log = Segments::open(dir.path(), None).unwrap();
        assert_eq!(log.last_index(), Some(9));
        assert_eq!(file_len(&path), log.segments[0].len, "the torn record is cut off");
        append(&mut log, 10..=12);
        drop(log);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[HEADER + 2] ^= 0xFF;
        std::fs::write(&path, &bytes).unwrap();
        // Still the last segment: the log is cut back to before the damaged record.
        assert_eq!(Segments::open(dir.path(), None).unwrap().last_index(), None);
    }

    #[test]
    fn records_rewrite_a_zero_filled_tail_and_a_reopen_finds_their_end() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Segments::open(dir.path(), None).unwrap();
        append(&mut log, 1..=10);
        let (path, end) = first_segment(&log);
        let size = file_len(&path);
        assert_eq!(size, end + ZERO_AHEAD);
        append(&mut log, 11..=20);
        assert_eq!(file_len(&path), size, "appends rewrite the zeros");
        drop(log);
        let mut log = Segments::open(dir.path(), None).unwrap();
        assert_eq!((log.first_index(), log.last_index()), (Some(1), Some(20)));
        assert_eq!(file_len(&path), size, "the zeros mark the end; nothing is cut");
        append(&mut log, 21..=21);
        assert_eq!(log.read(21).unwrap(), Some(payload(21)));
        drop(log);
        let log = Segments::open(dir.path(), None).unwrap();
        assert_eq!(log.last_index(), Some(21));
        assert_eq!(log.read(20).unwrap(), Some(payload(20)));
    }

    #[test]
    fn bytes_behind_the_zeros_of_the_last_segment_are_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Segments::open(dir.path(), None).unwrap();
        append(&mut log, 1..=5);
        let (path, end) = first_segment(&log);
        drop(log);
        // A torn write whose first sectors did not reach the disk but a later one did.
        scribble(&path, end + 4096, b"later sector");
        let mut log = Segments::open(dir.path(), None).unwrap();
        assert_eq!(log.last_index(), Some(5));
        assert_eq!(file_len(&path), end);
        append(&mut log, 6..=6);
        drop(log);
        assert_eq!(Segments::open(dir.path(), None).unwrap().last_index(), Some(6));
    }

    #[test]
    fn a_closed_segment_may_end_in_zeros() {
        let (a, b, both) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        for (dir, range) in [(&a, 1..=3), (&b, 4..=5)] {
            let mut log = Segments::open(dir.path(), None).unwrap();
            append(&mut log, range);
            let path = log.segments[0].path.clone();
            std::fs::copy(&path, both.path().join(path.file_name().unwrap())).unwrap();
        }
        let log = Segments::open(both.path(), None).unwrap();
        assert_eq!((log.first_index(), log.last_index()), (Some(1), Some(5)));
        assert_eq!(log.read(3).unwrap(), Some(payload(3)));
        // Anything else behind a closed segment's records is corruption.
        let (first, end) = first_segment(&log);
        drop(log);
        scribble(&first, end + 10, b"x");
        assert!(Segments::open(both.path(), None).is_err());
    }

    #[test]
    fn truncate_and_purge() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Segments::open(dir.path(), None).unwrap();
        append(&mut log, 5..=20);
        log.truncate(15).unwrap();
        assert_eq!(log.last_index(), Some(14));
        let (path, end) = first_segment(&log);
        assert_eq!(file_len(&path), end, "no stale record stays behind the end");
        append(&mut log, 15..=16);
        assert_eq!(log.read(16).unwrap(), Some(payload(16)));
        log.purge(10).unwrap();
        assert_eq!(log.first_index(), Some(11));
        assert_eq!(log.read(10).unwrap(), None);
        assert_eq!(log.read(11).unwrap(), Some(payload(11)));
        log.purge(16).unwrap();
        assert_eq!(log.first_index(), None);
        append(&mut log, 17..=17);
        drop(log);
        let log = Segments::open(dir.path(), None).unwrap();
        assert_eq!(log.read(17).unwrap(), Some(payload(17)));
    }

    #[test]
    fn a_purged_segment_that_a_crash_brought_back_is_dropped_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Segments::open(dir.path(), None).unwrap();
        append(&mut log, 1..=10);
        let old = log.segments[0].path.clone();
        let old_bytes = std::fs::read(&old).unwrap();
        log.purge(10).unwrap();
        append(&mut log, 11..=12);
        drop(log);
        // The deletion did not reach the disk before a crash.
        std::fs::write(&old, old_bytes).unwrap();
        let log = Segments::open(dir.path(), Some(10)).unwrap();
        assert_eq!((log.first_index(), log.last_index()), (Some(11), Some(12)));
        assert!(!old.exists());
        assert!(Segments::open(dir.path(), None).is_ok());
    }
}
