//! The WAL's writer: one frame per write, written into the segment's zeroed
//! space and `fdatasync`ed on the caller's thread before the write returns.
//!
//! No thread is woken for a write: openraft 0.9 waits for each append's
//! flush before it does anything else, so a writer thread would only add two
//! wake-ups per entry (measured: 15% more CPU and 20% more time per commit
//! than writing in place). A write or fsync error is final (fail-stop): it
//! is returned for that write and every later one, and nothing is written
//! after it, since the kernel may have dropped the dirty pages that a
//! retried fsync would claim durable.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use openraft::{Entry, LogId, Vote};
use parking_lot::Mutex;
use taskraft_proto::{NodeId, TypeConfig};

use super::frame::{FrameBuf, RecordRef};
use super::recover::segment_name;
use super::segment::{self, Spare};
use super::{Loc, Segment, Shared};
use crate::metrics::{since, Metrics};

/// What a job writes.
pub enum Op {
    Entries(Vec<Arc<Entry<TypeConfig>>>),
    Truncate(u64),
    Purge(LogId<NodeId>),
    Vote(Vote<NodeId>),
    /// Not fsynced on its own: it rides with the next frame that is.
    Committed(Option<LogId<NodeId>>),
}

/// The state a new segment starts with, so that older segments can go.
pub struct Head {
    pub vote: Option<Vote<NodeId>>,
    pub committed: Option<LogId<NodeId>>,
    pub purged: Option<LogId<NodeId>>,
    /// Where the previous segment's frames end.
    pub sealed: Option<u64>,
}

impl Head {
    /// The log's state now, after a previous segment whose frames end at
    /// `sealed`. (`Wal::write` updates the state before the writer runs,
    /// so a new segment's head already holds the write in hand; its frame
    /// then repeats it, which reads the same.)
    pub fn of(shared: &Shared, sealed: Option<u64>) -> Head {
        Head { vote: shared.vote, committed: shared.committed, purged: shared.purged, sealed }
    }
}

pub struct Writer {
    pub dir: PathBuf,
    pub shared: Arc<Mutex<Shared>>,
    pub metrics: Arc<Metrics>,
    pub segment_bytes: u64,
    /// The segment being written (zeroed to `segment_bytes` when it was
    /// made), its number and the length of its frames.
    pub file: File,
    pub seq: u64,
    pub len: u64,
    /// The next segment's file, made ahead.
    pub spare: Spare,
    /// The first write error; nothing is written after it.
    pub failed: Option<String>,
}

impl Writer {
    /// Writes `op` durably, unless an earlier write failed.
    pub fn handle(&mut self, op: &Op) -> std::io::Result<()> {
        if let Some(error) = &self.failed {
            return Err(std::io::Error::other(error.clone()));
        }
        self.write(op).map_err(|e| {
            let error = format!("write-ahead log in {}: {e}", self.dir.display());
            tracing::error!(%error, "log write failed; this node stops writing (fail-stop)");
            self.failed = Some(error.clone());
            std::io::Error::other(error)
        })
    }

    /// Writes `op` as one frame and fsyncs it; then records where its
    /// entries are and drops segments that a purge emptied. A committed id
    /// is only remembered: it rides with the next frame.
    fn write(&mut self, op: &Op) -> std::io::Result<()> {
        if let Op::Committed(_) = op {
            return Ok(());
        }
        let started = Instant::now();
        let committed = self.shared.lock().committed;
        let mut frame = FrameBuf::new();
        frame.push(&RecordRef::Committed(&committed));
        let mut placed = Vec::new();
        let mut purge = false;
        match op {
            Op::Entries(entries) => {
                for entry in entries {
                    let (at, len) = frame.push(&RecordRef::Entry(entry));
                    placed.push((entry.log_id, at, len));
                }
            }
            Op::Truncate(index) => drop(frame.push(&RecordRef::Truncate(*index))),
            Op::Purge(log_id) => {
                frame.push(&RecordRef::Purge(log_id));
                purge = true;
            }
            Op::Vote(vote) => drop(frame.push(&RecordRef::Vote(vote))),
            Op::Committed(_) => {}
        }
        let bytes = frame.finish();
        if self.len + bytes.len() as u64 > self.segment_bytes {
            self.roll()?;
        }
        self.file.write_all_at(&bytes, self.len)?;
        self.file.sync_data()?;
        self.metrics.log_fsync.observe(since(started));
        let base = self.len;
        self.len += bytes.len() as u64;
        let mut shared = self.shared.lock();
        let seq = self.seq;
        for (log_id, at, len) in placed {
            shared.placed(log_id, Loc { seq, offset: base + at as u64, len });
        }
        if let Some(seg) = shared.segments.get_mut(&seq) {
            seg.len = self.len;
        }
        if purge {
            self.drop_purged(&mut shared);
        }
        Ok(())
    }

    /// Closes the current segment and starts the next.
    fn roll(&mut self) -> std::io::Result<()> {
        let seq = self.seq + 1;
        let head = Head::of(&self.shared.lock(), Some(self.len));
        let (file, len) =
            segment::create(&self.dir, seq, &head, Some(&mut self.spare), self.segment_bytes)?;
        self.spare = Spare::start(&self.dir, self.segment_bytes);
        let reader = File::open(self.dir.join(segment_name(seq)))?;
        self.shared
            .lock()
            .segments
            .insert(seq, Segment { file: Arc::new(reader), max_index: None, len });
        (self.file, self.seq, self.len) = (file, seq, len);
        Ok(())
    }

    /// Deletes the oldest segments while all their entries are purged. The
    /// current segment stays; every later segment begins with the state the
    /// deleted ones recorded.
    fn drop_purged(&self, shared: &mut Shared) {
        let Some(purged) = shared.purged else { return };
        while let Some((&seq, seg)) = shared.segments.first_key_value() {
            if seq == self.seq || seg.max_index.is_some_and(|m| m > purged.index) {
                break;
            }
            shared.segments.remove(&seq);
            let path = self.dir.join(segment_name(seq));
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), error = %e, "cannot delete a purged log segment");
                break;
            }
        }
    }
}
