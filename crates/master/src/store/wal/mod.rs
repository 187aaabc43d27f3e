//! The Raft log's own write-ahead log: segment files of checksummed frames,
//! each written and fsynced on the caller's thread (see [`writer`]).
//!
//! The log used to live in sled beside the task table; every flush then woke
//! sled's pool of IO threads, which cost more CPU than the rest of a commit.
//! This is the arrangement etcd (WAL beside bbolt) and TiKV (raft-engine
//! beside RocksDB) use: the table stays in sled, the log is a file that only
//! grows at its end.
//!
//! - `dir/NNNN….wal`: segments, numbered, each zeroed to
//!   [`Limits::segment_bytes`] before its first frame (see [`segment`]). A new
//!   one starts at each open and when the next frame would pass that size; it
//!   begins with the vote, committed id and purge point, so older segments
//!   whose entries are all purged can be deleted whole, and with where the
//!   previous segment's frames end.
//! - In memory: where every live entry is (segment, offset), and the entries
//!   written most recently themselves, up to [`Limits::cache_bytes`]; older entries
//!   are read back from their segment.
//!
//! See [`frame`] for the bytes and how a torn tail is told from corruption.

mod frame;
mod recover;
mod segment;
#[cfg(test)]
mod tests;
mod writer;

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::ops::RangeBounds;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::{Entry, LogId, Vote};
use parking_lot::Mutex;
use taskraft_proto::{NodeId, TypeConfig};

pub use writer::Op;

use crate::metrics::Metrics;

/// Sizes of a log; [`Limits::default`] in production, small ones in tests.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// A segment is closed once it holds this many bytes.
    pub segment_bytes: u64,
    /// Recent entries kept decoded in memory, counted in encoded bytes.
    pub cache_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { segment_bytes: 2 << 20, cache_bytes: 8 << 20 }
    }
}

/// Why a log directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("the Raft log file {path} is corrupt at byte {offset}: {what}")]
    Corrupt { path: String, offset: usize, what: String },
}

impl WalError {
    fn io(path: &Path, source: std::io::Error) -> WalError {
        WalError::Io { path: path.display().to_string(), source }
    }

    fn corrupt(path: &Path, offset: usize, what: &str) -> WalError {
        WalError::Corrupt { path: path.display().to_string(), offset, what: what.to_owned() }
    }
}

/// Where an entry's record is.
#[derive(Debug, Clone, Copy)]
pub struct Loc {
    seq: u64,
    offset: u64,
    len: u32,
}

/// One live entry.
pub struct Slot {
    log_id: LogId<NodeId>,
    /// Set once it is written.
    loc: Option<Loc>,
    /// Set until it is written, and while it is among the recent entries.
    entry: Option<Arc<Entry<TypeConfig>>>,
}

/// A segment file, open for reading.
pub struct Segment {
    file: Arc<File>,
    /// The highest index of an entry written to it.
    max_index: Option<u64>,
    len: u64,
}

/// What the appenders, the readers and the writer share.
#[derive(Default)]
pub struct Shared {
    slots: BTreeMap<u64, Slot>,
    segments: BTreeMap<u64, Segment>,
    vote: Option<Vote<NodeId>>,
    committed: Option<LogId<NodeId>>,
    purged: Option<LogId<NodeId>>,
    /// Written entries still held decoded, oldest first, with their sizes.
    recent: VecDeque<(LogId<NodeId>, usize)>,
    recent_bytes: usize,
    cache_bytes: usize,
}

impl Shared {
    /// Records that the entry `log_id` was written at `loc`.
    fn placed(&mut self, log_id: LogId<NodeId>, loc: Loc) {
        if let Some(seg) = self.segments.get_mut(&loc.seq) {
            seg.max_index = Some(seg.max_index.map_or(log_id.index, |m| m.max(log_id.index)));
        }
        let Some(slot) = self.slots.get_mut(&log_id.index).filter(|s| s.log_id == log_id) else {
            return;
        };
        slot.loc = Some(loc);
        self.recent.push_back((log_id, loc.len as usize));
        self.recent_bytes += loc.len as usize;
        while self.recent_bytes > self.cache_bytes {
            let Some((old, len)) = self.recent.pop_front() else { break };
            self.recent_bytes -= len;
            if let Some(slot) = self.slots.get_mut(&old.index).filter(|s| s.log_id == old) {
                if slot.loc.is_some() {
                    slot.entry = None;
                }
            }
        }
    }
}

/// A node's Raft log.
pub struct Wal {
    shared: Arc<Mutex<Shared>>,
    /// Held for a whole write; `shared` is locked inside it, never around it.
    writer: Mutex<writer::Writer>,
    dir: PathBuf,
}

impl Wal {
    /// Opens the log in `dir` (created if missing), cutting a torn tail.
    pub fn open(dir: &Path, metrics: Arc<Metrics>) -> Result<Wal, WalError> {
        Wal::open_with(dir, metrics, Limits::default())
    }

    /// [`Wal::open`] with other sizes.
    pub fn open_with(dir: &Path, metrics: Arc<Metrics>, limits: Limits) -> Result<Wal, WalError> {
        std::fs::create_dir_all(dir).map_err(|e| WalError::io(dir, e))?;
        let old = recover::recover(dir)?;
        for (path, at, bytes) in &old.cut {
            tracing::warn!(path = %path.display(), at, bytes, "cut a torn tail off the Raft log (a write the crash interrupted; it was never acknowledged)");
        }
        let mut shared = Shared {
            slots: old.slots,
            segments: old.segments,
            vote: old.vote,
            committed: old.committed,
            purged: old.purged,
            cache_bytes: limits.cache_bytes,
            ..Shared::default()
        };
        let (seq, sealed) =
            shared.segments.last_key_value().map_or((1, None), |(s, seg)| (s + 1, Some(seg.len)));
        let head = writer::Head::of(&shared, sealed);
        let (file, len) = segment::create(dir, seq, &head, None, limits.segment_bytes)
            .map_err(|e| WalError::io(dir, e))?;
        let reader =
            File::open(dir.join(recover::segment_name(seq))).map_err(|e| WalError::io(dir, e))?;
        shared.segments.insert(seq, Segment { file: Arc::new(reader), max_index: None, len });
        let shared = Arc::new(Mutex::new(shared));
        let writer = writer::Writer {
            dir: dir.to_owned(),
            shared: shared.clone(),
            metrics,
            segment_bytes: limits.segment_bytes,
            file,
            seq,
            len,
            spare: segment::Spare::start(dir, limits.segment_bytes),
            failed: None,
        };
        Ok(Wal { shared, writer: Mutex::new(writer), dir: dir.to_owned() })
    }

    /// Makes `op` visible to readers, then durable: it returns once the
    /// frame is fsynced (a committed id is only kept, see [`Op::Committed`]).
    pub fn write(&self, op: Op) -> std::io::Result<()> {
        // Held throughout, so that the files and the memory see the same order.
        let mut writer = self.writer.lock();
        {
            let mut shared = self.shared.lock();
            match &op {
                Op::Entries(entries) => {
                    for entry in entries {
                        let index = entry.log_id.index;
                        drop(shared.slots.split_off(&index));
                        let slot =
                            Slot { log_id: entry.log_id, loc: None, entry: Some(entry.clone()) };
                        shared.slots.insert(index, slot);
                    }
                }
                Op::Truncate(index) => drop(shared.slots.split_off(index)),
                Op::Purge(log_id) => {
                    shared.purged = Some(*log_id);
                    shared.slots = shared.slots.split_off(&(log_id.index + 1));
                }
                Op::Vote(vote) => shared.vote = Some(*vote),
                Op::Committed(c) => shared.committed = *c,
            }
        }
        writer.handle(&op)
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The entries with index in `range`, in order (stopping at a gap).
    pub fn read(&self, range: impl RangeBounds<u64>) -> Result<Vec<Entry<TypeConfig>>, WalError> {
        self.read_limited(range, u64::MAX)
    }

    /// Like [`Wal::read`], but stops before the entry that would take
    /// their records' bytes in the log past `max_bytes`; the first entry is
    /// read whatever its size. An entry not written yet counts nothing (at
    /// most the one append being written).
    pub fn read_limited(
        &self,
        range: impl RangeBounds<u64>,
        max_bytes: u64,
    ) -> Result<Vec<Entry<TypeConfig>>, WalError> {
        enum Got {
            Held(Arc<Entry<TypeConfig>>),
            OnDisk(Arc<File>, Loc),
        }
        let got: Vec<Got> = {
            let shared = self.shared.lock();
            let mut got = Vec::new();
            let mut next = None;
            let mut bytes = 0u64;
            for (&index, slot) in shared.slots.range(range) {
                bytes += slot.loc.map_or(0, |loc| u64::from(loc.len));
                if next.is_some_and(|n| n != index) || (next.is_some() && bytes > max_bytes) {
                    break;
                }
                next = Some(index + 1);
                got.push(match (&slot.entry, slot.loc) {
                    (Some(entry), _) => Got::Held(entry.clone()),
                    (None, Some(loc)) => match shared.segments.get(&loc.seq) {
                        Some(seg) => Got::OnDisk(seg.file.clone(), loc),
                        None => break,
                    },
                    (None, None) => break,
                });
            }
            got
        };
        got.into_iter()
            .map(|g| match g {
                Got::Held(entry) => Ok(Entry::clone(&entry)),
                Got::OnDisk(file, loc) => self.read_at(&file, loc),
            })
            .collect()
    }

    fn read_at(&self, file: &File, loc: Loc) -> Result<Entry<TypeConfig>, WalError> {
        let path = self.dir.join(recover::segment_name(loc.seq));
        let mut buf = vec![0; loc.len as usize];
        file.read_exact_at(&mut buf, loc.offset).map_err(|e| WalError::io(&path, e))?;
        match frame::decode(&buf) {
            Ok(frame::Record::Entry(entry)) => Ok(entry),
            Ok(_) => Err(WalError::corrupt(&path, loc.offset as usize, "not an entry record")),
            Err(what) => Err(WalError::corrupt(&path, loc.offset as usize, &what)),
        }
    }

    /// The last entry's id (or the purge point), and the purge point.
    pub fn log_state(&self) -> (Option<LogId<NodeId>>, Option<LogId<NodeId>>) {
        let shared = self.shared.lock();
        let last = shared.slots.last_key_value().map(|(_, s)| s.log_id).or(shared.purged);
        (last, shared.purged)
    }

    pub fn vote(&self) -> Option<Vote<NodeId>> {
        self.shared.lock().vote
    }

    pub fn committed(&self) -> Option<LogId<NodeId>> {
        self.shared.lock().committed
    }

    /// Whether nothing was ever written: no vote, no entry, no purge.
    pub fn is_blank(&self) -> bool {
        let shared = self.shared.lock();
        shared.vote.is_none() && shared.slots.is_empty() && shared.purged.is_none()
    }

    /// Segment files and their total size, in bytes.
    pub fn disk_usage(&self) -> (usize, u64) {
        let shared = self.shared.lock();
        (shared.segments.len(), shared.segments.values().map(|s| s.len).sum())
    }
}
