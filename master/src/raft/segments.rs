//! An append-only file log of Raft entries, in segment files of about 64 MiB under
//! `raft-log/`: the write path is one `write` and one `fdatasync` per group of entries, with
//! no B-tree in the way.
//!
//! A record is `[len u32][crc32 u32][index u64][payload]`, little-endian; the CRC covers the
//! index and the payload. On open, a torn record at the end of the last segment (a crash in
//! the middle of a write) is cut off; a bad record anywhere else is refused as corruption.
//! Purging deletes whole segments behind the purge point.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

const HEADER: usize = 16;
const SEGMENT_SIZE: u64 = 64 * 1024 * 1024;
const SUFFIX: &str = ".seg";

struct Segment {
    first: u64,
    path: PathBuf,
    file: File,
    len: u64,
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
        while offset < bytes.len() {
            match parse(&bytes[offset..], expected) {
                Some(len) => {
                    self.locs.push_back(Loc { segment, offset: offset as u64, len: len as u32 });
                    offset += HEADER + len;
                    expected += 1;
                }
                None if last_segment => {
                    tracing::warn!(segment = %path.display(), offset, "cutting off a torn record at the end of the raft log");
                    file.set_len(offset as u64)?;
                    file.sync_all()?;
                    break;
                }
                None => {
                    return Err(corrupt(format!("raft log segment {} is corrupt at byte {offset}", path.display())))
                }
            }
        }
        self.segments.push(Segment { first, path, file, len: offset as u64 });
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
        seg.file.write_all_at(buf, seg.len)?;
        seg.len += buf.len() as u64;
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
        self.segments.push(Segment { first, path, file, len: 0 });
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
            seg.file.set_len(cut.offset)?;
            seg.len = cut.offset;
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
        let path = log.segments[0].path.clone();
        drop(log);
        let len = std::fs::metadata(&path).unwrap().len();
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(len - 3).unwrap();
        let mut log = Segments::open(dir.path(), None).unwrap();
        assert_eq!(log.last_index(), Some(9));
        append(&mut log, 10..=12);
        drop(log);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[HEADER + 2] ^= 0xFF;
        std::fs::write(&path, &bytes).unwrap();
        // Still the last segment: the log is cut back to before the damaged record.
        assert_eq!(Segments::open(dir.path(), None).unwrap().last_index(), None);
    }

    #[test]
    fn truncate_and_purge() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Segments::open(dir.path(), None).unwrap();
        append(&mut log, 5..=20);
        log.truncate(15).unwrap();
        assert_eq!(log.last_index(), Some(14));
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
