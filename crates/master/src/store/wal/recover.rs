//! Reading a WAL directory back at start.
//!
//! Segments are replayed in order. Zeros after a segment's last frame are
//! space it did not use; a torn tail (see [`super::frame`]) of the last
//! segment is cut off: it was never acknowledged. Anything else that does
//! not read back (a damaged frame with intact data after it, a damaged frame
//! in a segment that is not the last, a segment whose frames end before the
//! point its successor's head says it was closed at, an undecodable record)
//! refuses the start with the file and offset: the node must not serve, nor
//! vote with, a log it cannot trust.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::{LogId, Vote};
use taskraft_proto::NodeId;

use super::frame::{self, Record, Tail};
use super::{Loc, Segment, Slot, WalError};

/// The file name of segment `seq`.
pub fn segment_name(seq: u64) -> String {
    format!("{seq:020}.wal")
}

/// What the log held when the node stopped.
#[derive(Default)]
pub struct Recovered {
    pub slots: BTreeMap<u64, Slot>,
    pub vote: Option<Vote<NodeId>>,
    pub committed: Option<LogId<NodeId>>,
    pub purged: Option<LogId<NodeId>>,
    pub segments: BTreeMap<u64, Segment>,
    /// Torn tails cut off, as (file, offset, bytes dropped).
    pub cut: Vec<(PathBuf, usize, usize)>,
}

impl Recovered {
    /// Applies one record read at `loc` (entries only have a location).
    pub fn apply(&mut self, record: Record, loc: Loc) {
        match record {
            Record::Entry(entry) => {
                let index = entry.log_id.index;
                drop(self.slots.split_off(&index));
                if self.purged.is_some_and(|p| index <= p.index) {
                    return;
                }
                if let Some(seg) = self.segments.get_mut(&loc.seq) {
                    seg.max_index = Some(seg.max_index.map_or(index, |m| m.max(index)));
                }
                self.slots
                    .insert(index, Slot { log_id: entry.log_id, loc: Some(loc), entry: None });
            }
            Record::Truncate(index) => drop(self.slots.split_off(&index)),
            Record::Purge(log_id) => {
                if self.purged.is_none_or(|p| p < log_id) {
                    self.purged = Some(log_id);
                }
                self.slots = self.slots.split_off(&(log_id.index + 1));
            }
            Record::Vote(vote) => self.vote = Some(vote),
            Record::Committed(committed) => self.committed = committed,
            Record::Sealed(_) => {}
        }
    }
}

/// The segment numbers in `dir`, oldest first.
fn list(dir: &Path) -> Result<Vec<u64>, WalError> {
    let mut seqs = Vec::new();
    for item in std::fs::read_dir(dir).map_err(|e| WalError::io(dir, e))? {
        let item = item.map_err(|e| WalError::io(dir, e))?;
        let name = item.file_name();
        let Some(seq) = name.to_str().and_then(|n| n.strip_suffix(".wal")) else { continue };
        match seq.parse::<u64>() {
            Ok(seq) => seqs.push(seq),
            Err(_) => return Err(WalError::corrupt(&item.path(), 0, "not a segment name")),
        }
    }
    seqs.sort_unstable();
    Ok(seqs)
}

/// Reads every segment in `dir` (which exists), cutting a torn tail.
pub fn recover(dir: &Path) -> Result<Recovered, WalError> {
    let seqs = list(dir)?;
    let mut out = Recovered::default();
    for (i, &seq) in seqs.iter().enumerate() {
        let path = dir.join(segment_name(seq));
        let bytes = std::fs::read(&path).map_err(|e| WalError::io(&path, e))?;
        let (frames, tail) = frame::scan(&bytes);
        let last = i + 1 == seqs.len();
        let len = match tail {
            Tail::Clean => bytes.len(),
            Tail::Unused(at) => at,
            Tail::Torn(at) if last => {
                let file = OpenOptions::new().write(true).open(&path);
                let cut = file.and_then(|f| f.set_len(at as u64).and_then(|()| f.sync_all()));
                cut.map_err(|e| WalError::io(&path, e))?;
                out.cut.push((path.clone(), at, bytes.len() - at));
                at
            }
            Tail::Torn(at) => {
                let what = "damaged frame (a later segment exists, so it had been written whole)";
                return Err(WalError::corrupt(&path, at, what));
            }
            Tail::Corrupt(at) => {
                let what = "checksum mismatch with intact frames after it";
                return Err(WalError::corrupt(&path, at, what));
            }
        };
        let file = File::open(&path).map_err(|e| WalError::io(&path, e))?;
        out.segments
            .insert(seq, Segment { file: Arc::new(file), max_index: None, len: len as u64 });
        for range in frames {
            let base = range.start;
            for record in frame::records(&bytes[range]) {
                let (at, raw) = record.map_err(|what| WalError::corrupt(&path, base, &what))?;
                let record = frame::decode(raw)
                    .map_err(|what| WalError::corrupt(&path, base + at, &what))?;
                if let Record::Sealed(end) = record {
                    check_sealed(dir, &out, seq, end)?;
                }
                out.apply(record, Loc { seq, offset: (base + at) as u64, len: raw.len() as u32 });
            }
        }
    }
    Ok(out)
}

/// Checks that segment `seq - 1`, if it is still there, has its frames up to
/// `end`, where segment `seq`'s head says it was closed.
fn check_sealed(dir: &Path, out: &Recovered, seq: u64, end: u64) -> Result<(), WalError> {
    let Some(prev) = seq.checked_sub(1).and_then(|p| out.segments.get(&p)) else { return Ok(()) };
    if prev.len == end {
        return Ok(());
    }
    let path = dir.join(segment_name(seq - 1));
    let what =
        format!("its frames end here, but it was closed at byte {end}: written bytes are lost");
    Err(WalError::corrupt(&path, prev.len as usize, &what))
}
