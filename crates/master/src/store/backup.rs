//! Backups: a consistent image of the table in one checksummed file, and the
//! offline restore that seeds the data dirs of a new cluster from it.
//!
//! The file:
//!
//! ```text
//! "TRBACKUP"  u32 LE version (2)
//! u64 LE header length, header (bincode BackupHeader)
//! the table's image (as in snapshots: next id, rows, push workers)
//! u32 LE CRC-32 of every byte before it
//! ```
//!
//! A restore writes what `Raft::initialize` would (one membership entry at
//! log index 0, every node of the config a voter) and a table already applied
//! up to that entry. Every node gets the same, so the new cluster elects a
//! leader as a freshly initialized one does, with the table in place.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use openraft::{Entry, EntryPayload, LogId, Membership, StoredMembership};
use serde::{Deserialize, Serialize};
use taskraft_core::{Counts, RowsNow, Table};
use taskraft_proto::{NodeId, NodeInfo, TypeConfig};

use super::snapshot::{decode_image, write_image};
use super::state_machine::table_batch;
use super::wal::{Op, Wal, WalError};
use super::{decode, encode, open_db, OpenError, WAL_DIR};
use crate::metrics::Metrics;

const MAGIC: &[u8; 8] = b"TRBACKUP";
/// 2: task rows gained scheduling, retry, cancel and aging fields.
const VERSION: u32 = 2;

/// What a backup says of itself, checked again when it is restored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupHeader {
    /// The cluster it was taken from.
    pub cluster: String,
    /// The leader's clock when it was taken (ms since the Unix epoch).
    pub taken_ms: u64,
    /// The log index the table reflects.
    pub last_applied: Option<u64>,
    /// Tasks by status.
    pub counts: Counts,
    /// The table's digest: the restored table must have the same.
    pub digest: u64,
}

/// Why a backup could not be read or restored.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The file is not a backup, or it was damaged.
    #[error("{0}")]
    Bad(String),
    /// A target data dir is not empty.
    #[error("the data dir {0} is not empty: restore seeds only a new cluster; stop the cluster that uses it and move the dir away, or point data_dir elsewhere")]
    NotEmpty(String),
    /// A data dir could not be written.
    #[error(transparent)]
    Store(#[from] OpenError),
    /// A file could not be read or written.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A writer that counts and checksums what passes through it.
struct Checksummed<W> {
    inner: W,
    crc: crc32fast::Hasher,
    bytes: u64,
}

impl<W: Write> Write for Checksummed<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes a backup of `rows` to `out`, encoding them as it goes; returns
/// the bytes written and their CRC-32 (the file's last four bytes).
pub fn write_backup(
    header: &BackupHeader,
    rows: &RowsNow,
    out: impl Write,
) -> std::io::Result<(u64, u32)> {
    let mut w = Checksummed { inner: out, crc: crc32fast::Hasher::new(), bytes: 0 };
    w.write_all(MAGIC)?;
    w.write_all(&VERSION.to_le_bytes())?;
    let head = encode(header);
    w.write_all(&(head.len() as u64).to_le_bytes())?;
    w.write_all(&head)?;
    write_image(rows, &mut w).map_err(std::io::Error::other)?;
    let crc = w.crc.clone().finalize();
    w.inner.write_all(&crc.to_le_bytes())?;
    w.inner.flush()?;
    Ok((w.bytes + 4, crc))
}

/// Checks and decodes a whole backup file: magic, version, checksum, header,
/// rows, and that the rebuilt table has the digest the header promises.
/// Never panics on malformed input.
pub fn read_backup(bytes: &[u8]) -> Result<(BackupHeader, Table), RestoreError> {
    let bad = |what: &str| RestoreError::Bad(format!("not a taskraft backup, or damaged: {what}"));
    if bytes.len() < 24 || &bytes[..8] != MAGIC {
        return Err(bad("no TRBACKUP header"));
    }
    let (body, trailer) = bytes.split_at(bytes.len() - 4);
    let stored = u32::from_le_bytes(trailer.try_into().expect("4 bytes"));
    if crc32fast::hash(body) != stored {
        return Err(bad("the checksum does not match (truncated or corrupted file)"));
    }
    let version = u32::from_le_bytes(body[8..12].try_into().expect("4 bytes"));
    if version != VERSION {
        return Err(RestoreError::Bad(format!(
            "backup format version {version}; this taskraft reads version {VERSION}"
        )));
    }
    let len = u64::from_le_bytes(body[12..20].try_into().expect("8 bytes"));
    let end = usize::try_from(len).ok().and_then(|l| l.checked_add(20)).unwrap_or(usize::MAX);
    let head = body.get(20..end).ok_or_else(|| bad("truncated header"))?;
    let header: BackupHeader = decode(head).map_err(|e| bad(&format!("header: {e}")))?;
    let table = decode_image(&body[end..]).map_err(|e| bad(&e))?.into_table();
    if table.digest() != header.digest || table.counts() != header.counts {
        return Err(bad("the rows do not match the header's digest and counts"));
    }
    Ok((header, table))
}

/// Whether `dir` is absent or an empty directory.
fn is_empty_dir(dir: &Path) -> std::io::Result<bool> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(e),
    }
}

/// Seeds the empty data dirs `dirs` (node id → dir) of a new cluster named
/// `cluster_name` whose voters are `members` with `table`. Checks every dir
/// before it writes any.
pub fn seed(
    dirs: &BTreeMap<NodeId, std::path::PathBuf>,
    members: &BTreeMap<NodeId, NodeInfo>,
    cluster_name: &str,
    table: &Table,
) -> Result<(), RestoreError> {
    for dir in dirs.values() {
        if !is_empty_dir(dir)? {
            return Err(RestoreError::NotEmpty(dir.display().to_string()));
        }
    }
    let voters: BTreeSet<NodeId> = members.keys().copied().collect();
    let membership = Membership::new(vec![voters], members.clone());
    let first = LogId::<NodeId>::default();
    let entry = Entry::<TypeConfig> {
        log_id: first,
        payload: EntryPayload::Membership(membership.clone()),
    };
    let stored = StoredMembership::new(Some(first), membership);
    for dir in dirs.values() {
        let shown = dir.display().to_string();
        let sled_err = |source| OpenError::Sled { dir: shown.clone(), source };
        let db = open_db(dir, cluster_name)?;
        let log = |source| OpenError::Log { dir: shown.clone(), source };
        let wal = Wal::open(&dir.join(WAL_DIR), Arc::new(Metrics::new(0))).map_err(log)?;
        let written = wal.write(Op::Entries(vec![Arc::new(entry.clone())]));
        written.map_err(|e| {
            log(WalError::Io { path: dir.join(WAL_DIR).display().to_string(), source: e })
        })?;
        let mut batch = sled::Batch::default();
        table_batch(&mut batch, table, Some(first), &stored);
        db.open_tree("table").map_err(sled_err)?.apply_batch(batch).map_err(sled_err)?;
        db.flush().map_err(sled_err)?;
    }
    Ok(())
}
