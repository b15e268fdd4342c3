//! Snapshot files: a dump of every table of `state.redb` taken in one read transaction, so
//! the dump is exactly the state at the log id recorded in its own `meta` table.
//!
//! Format: the magic line, then length-prefixed postcard frames, one row each, then `End`.
//! Module bytes are not in it: they stay in the blob store and travel separately.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::codec::{decode, encode};
use super::state_db::{StateDb, EXECUTORS, INPUTS, LIVE, META, MODULES, OUTPUTS, REQUESTS, TASKS};
use super::StorageError;

const MAGIC: &[u8; 8] = b"WGSNAP1\n";
/// Largest frame a reader accepts (one task's input or output plus slack).
const MAX_FRAME: usize = 512 * 1024 * 1024;

/// Values (and byte keys) are encoded as bytes, not as sequences of u8: the same in
/// postcard, and much faster for large inputs and outputs.
#[derive(Debug, Serialize, Deserialize)]
enum Frame {
    Str {
        table: u8,
        key: String,
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
    Bytes {
        table: u8,
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
    Int {
        table: u8,
        key: u64,
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
    End,
}

const T_META: u8 = 0;
const T_MODULES: u8 = 1;
const T_EXECUTORS: u8 = 2;
const T_TASKS: u8 = 3;
const T_LIVE: u8 = 4;
const T_INPUTS: u8 = 5;
const T_OUTPUTS: u8 = 6;
const T_REQUESTS: u8 = 7;

/// Writes the whole state to `path` (fsynced); returns the `meta` table as it was dumped.
pub fn dump(db: &StateDb, path: &Path) -> Result<BTreeMap<String, Vec<u8>>, StorageError> {
    let tx = db.db.begin_read()?;
    let mut w = BufWriter::new(File::create(path)?);
    w.write_all(MAGIC)?;
    let mut meta = BTreeMap::new();
    for row in tx.open_table(META)?.iter()? {
        let (k, v) = row?;
        meta.insert(k.value().to_string(), v.value().to_vec());
        write_frame(&mut w, &Frame::Str { table: T_META, key: k.value().into(), value: v.value().into() })?;
    }
    for row in tx.open_table(EXECUTORS)?.iter()? {
        let (k, v) = row?;
        write_frame(&mut w, &Frame::Str { table: T_EXECUTORS, key: k.value().into(), value: v.value().into() })?;
    }
    for (table, def) in [(T_MODULES, MODULES), (T_REQUESTS, REQUESTS)] {
        for row in tx.open_table(def)?.iter()? {
            let (k, v) = row?;
            write_frame(&mut w, &Frame::Bytes { table, key: k.value().into(), value: v.value().into() })?;
        }
    }
    for (table, def) in [(T_TASKS, TASKS), (T_INPUTS, INPUTS), (T_OUTPUTS, OUTPUTS)] {
        for row in tx.open_table(def)?.iter()? {
            let (k, v) = row?;
            write_frame(&mut w, &Frame::Int { table, key: k.value(), value: v.value().into() })?;
        }
    }
    for row in tx.open_table(LIVE)?.iter()? {
        let (k, _) = row?;
        write_frame(&mut w, &Frame::Int { table: T_LIVE, key: k.value(), value: Vec::new() })?;
    }
    write_frame(&mut w, &Frame::End)?;
    let f = w.into_inner().map_err(|e| e.into_error())?;
    f.sync_all()?;
    Ok(meta)
}

/// Reads the `meta` rows at the head of a snapshot file.
pub fn read_meta(path: &Path) -> Result<BTreeMap<String, Vec<u8>>, StorageError> {
    let mut r = open(path)?;
    let mut meta = BTreeMap::new();
    loop {
        match read_frame(&mut r)? {
            Frame::Str { table: T_META, key, value } => {
                meta.insert(key, value);
            }
            _ => return Ok(meta),
        }
    }
}

fn open(path: &Path) -> Result<BufReader<File>, StorageError> {
    let mut r = BufReader::new(File::open(path)?);
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic)?;
    if &magic != MAGIC {
        return Err(StorageError::Corrupt(format!("{} is not a wasmgrid snapshot", path.display())));
    }
    Ok(r)
}

/// Replaces the whole state with the dump at `path`, durably.
pub fn load(db: &StateDb, path: &Path) -> Result<(), StorageError> {
    let mut r = open(path)?;
    let tx = db.db.begin_write()?;
    {
        clear(&tx, META)?;
        clear(&tx, EXECUTORS)?;
        clear(&tx, MODULES)?;
        clear(&tx, REQUESTS)?;
        clear(&tx, TASKS)?;
        clear(&tx, INPUTS)?;
        clear(&tx, OUTPUTS)?;
        tx.delete_table(LIVE)?;
        let mut meta = tx.open_table(META)?;
        let mut executors = tx.open_table(EXECUTORS)?;
        let mut modules = tx.open_table(MODULES)?;
        let mut requests = tx.open_table(REQUESTS)?;
        let mut tasks = tx.open_table(TASKS)?;
        let mut inputs = tx.open_table(INPUTS)?;
        let mut outputs = tx.open_table(OUTPUTS)?;
        let mut live = tx.open_table(LIVE)?;
        loop {
            match read_frame(&mut r)? {
                Frame::End => break,
                Frame::Str { table: T_META, key, value } => {
                    meta.insert(key.as_str(), value.as_slice())?;
                }
                Frame::Str { table: T_EXECUTORS, key, value } => {
                    executors.insert(key.as_str(), value.as_slice())?;
                }
                Frame::Bytes { table: T_MODULES, key, value } => {
                    modules.insert(key.as_slice(), value.as_slice())?;
                }
                Frame::Bytes { table: T_REQUESTS, key, value } => {
                    requests.insert(key.as_slice(), value.as_slice())?;
                }
                Frame::Int { table: T_TASKS, key, value } => {
                    tasks.insert(key, value.as_slice())?;
                }
                Frame::Int { table: T_INPUTS, key, value } => {
                    inputs.insert(key, value.as_slice())?;
                }
                Frame::Int { table: T_OUTPUTS, key, value } => {
                    outputs.insert(key, value.as_slice())?;
                }
                Frame::Int { table: T_LIVE, key, .. } => {
                    live.insert(key, ())?;
                }
                other => return Err(StorageError::Corrupt(format!("unexpected snapshot frame {other:?}"))),
            }
        }
    }
    tx.commit()?;
    Ok(())
}

fn clear<K: redb::Key + 'static, V: redb::Value + 'static>(
    tx: &redb::WriteTransaction,
    def: TableDefinition<K, V>,
) -> Result<(), StorageError> {
    // Deleting and re-creating a table is cheaper than removing its rows one by one.
    tx.delete_table(def)?;
    tx.open_table(def)?;
    Ok(())
}

fn write_frame(w: &mut impl Write, frame: &Frame) -> Result<(), StorageError> {
    let bytes = encode(frame)?;
    let len = u32::try_from(bytes.len()).map_err(|_| StorageError::Corrupt("snapshot frame too large".into()))?;
    w.write_all(&len.to_le_bytes())?;
    w.write_all(&bytes)?;
    Ok(())
}

fn read_frame(r: &mut impl Read) -> Result<Frame, StorageError> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(StorageError::Corrupt(format!("snapshot frame of {len} bytes")));
    }
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf)?;
    decode(&buf)
}
