//! The write-ahead log's bytes on disk: frames of records.
//!
//! A segment file is a sequence of frames. The writer thread writes one frame
//! per fsync, and writes a frame only after every frame before it was
//! fsynced. A frame is
//!
//! ```text
//! [header crc: u32][payload length: u32][payload crc: u32][payload]
//! ```
//!
//! (little-endian), the header crc covering the two words after it. The
//! payload is a sequence of records, each `[length: u32][bincode bytes]`.
//!
//! Because a frame is written only once the frames before it are durable, a
//! crash can tear only the last frame of the last segment. [`scan`] tells the
//! two cases apart: a bad frame followed by nothing valid is a torn tail (it
//! was never acknowledged); a bad frame followed by a valid frame was
//! fsynced once, so the file was damaged afterwards: corruption.

use std::ops::Range;

use openraft::{Entry, LogId, Vote};
use serde::{Deserialize, Serialize};
use taskraft_proto::{NodeId, TypeConfig};

/// Bytes before a frame's payload.
pub const HEADER: usize = 12;

/// One change to the log or its metadata, in the order it was made.
#[derive(Debug, Deserialize)]
pub enum Record {
    /// An entry; it replaces any entry at its index or after.
    Entry(Entry<TypeConfig>),
    /// Entries at this index and after are gone.
    Truncate(u64),
    /// Entries up to this id are gone (they are in a snapshot).
    Purge(LogId<NodeId>),
    /// The vote, as openraft saved it.
    Vote(Vote<NodeId>),
    /// The last committed id openraft reported (a hint, see `save_committed`).
    Committed(Option<LogId<NodeId>>),
    /// In a segment's head: the previous segment's frames end at this byte.
    Sealed(u64),
}

/// [`Record`] as written: the same encoding, borrowing the entry.
#[derive(Debug, Serialize)]
pub enum RecordRef<'a> {
    Entry(&'a Entry<TypeConfig>),
    Truncate(u64),
    Purge(&'a LogId<NodeId>),
    Vote(&'a Vote<NodeId>),
    Committed(&'a Option<LogId<NodeId>>),
    Sealed(u64),
}

/// A frame being built in a buffer.
pub struct FrameBuf {
    buf: Vec<u8>,
}

impl FrameBuf {
    /// An empty frame.
    pub fn new() -> FrameBuf {
        FrameBuf { buf: vec![0; HEADER] }
    }

    /// Adds `record`; returns where its bincode bytes start in the frame and
    /// how long they are.
    pub fn push(&mut self, record: &RecordRef<'_>) -> (usize, u32) {
        let at = self.buf.len();
        self.buf.extend_from_slice(&[0; 4]);
        bincode::serialize_into(&mut self.buf, record).expect("bincode encodes in-memory values");
        let len = (self.buf.len() - at - 4) as u32;
        self.buf[at..at + 4].copy_from_slice(&len.to_le_bytes());
        (at + 4, len)
    }

    /// The finished frame's bytes.
    pub fn finish(mut self) -> Vec<u8> {
        let len = (self.buf.len() - HEADER) as u32;
        let crc = crc32fast::hash(&self.buf[HEADER..]);
        self.buf[4..8].copy_from_slice(&len.to_le_bytes());
        self.buf[8..12].copy_from_slice(&crc.to_le_bytes());
        let head = crc32fast::hash(&self.buf[4..12]);
        self.buf[0..4].copy_from_slice(&head.to_le_bytes());
        self.buf
    }
}

fn word(buf: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(buf[at..at + 4].try_into().expect("four bytes"))
}

/// The payload length of a whole, intact frame starting at `at`, if there is one.
pub fn frame_at(buf: &[u8], at: usize) -> Option<usize> {
    let head = buf.get(at..at.checked_add(HEADER)?)?;
    if word(head, 0) != crc32fast::hash(&head[4..12]) {
        return None;
    }
    let len = word(head, 4) as usize;
    let payload = buf.get(at + HEADER..(at + HEADER).checked_add(len)?)?;
    (len > 0 && word(head, 8) == crc32fast::hash(payload)).then_some(len)
}

/// How a segment's bytes end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tail {
    /// Every byte belongs to an intact frame.
    Clean,
    /// From this offset on, only zeros: space made for frames not written
    /// (yet). A write that never reached the disk leaves the same.
    Unused(usize),
    /// From this offset on, no intact frame: a write cut short by a crash.
    Torn(usize),
    /// A damaged frame at this offset with an intact frame after it.
    Corrupt(usize),
}

/// The intact frames of a segment (their payload ranges) and how it ends.
pub fn scan(buf: &[u8]) -> (Vec<Range<usize>>, Tail) {
    let mut frames = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        match frame_at(buf, at) {
            Some(len) => {
                frames.push(at + HEADER..at + HEADER + len);
                at += HEADER + len;
            }
            None if buf[at..].iter().all(|b| *b == 0) => return (frames, Tail::Unused(at)),
            None => {
                let later = (at + 1..buf.len()).any(|o| frame_at(buf, o).is_some());
                return (frames, if later { Tail::Corrupt(at) } else { Tail::Torn(at) });
            }
        }
    }
    (frames, Tail::Clean)
}

/// The records of a frame's payload: where each starts, and its bytes.
pub fn records(payload: &[u8]) -> impl Iterator<Item = Result<(usize, &[u8]), String>> {
    let mut at = 0;
    std::iter::from_fn(move || {
        if at >= payload.len() {
            return None;
        }
        let Some(head) = payload.get(at..at + 4) else {
            at = payload.len();
            return Some(Err("a record length is cut short".into()));
        };
        let len = word(head, 0) as usize;
        let start = at + 4;
        let Some(bytes) = payload.get(start..start + len) else {
            at = payload.len();
            return Some(Err(format!("a record of {len} bytes overruns its frame")));
        };
        at = start + len;
        Some(Ok((start, bytes)))
    })
}

/// Decodes one record's bytes.
pub fn decode(bytes: &[u8]) -> Result<Record, String> {
    bincode::deserialize(bytes).map_err(|e| format!("undecodable record: {e}"))
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, EntryPayload};
    use proptest::prelude::*;

    use super::*;

    fn entry(index: u64) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Blank,
        }
    }

    fn frame(indexes: Range<u64>) -> Vec<u8> {
        let mut f = FrameBuf::new();
        for i in indexes {
            f.push(&RecordRef::Entry(&entry(i)));
        }
        f.finish()
    }

    #[test]
    fn records_round_trip_through_a_frame() {
        let mut f = FrameBuf::new();
        let (at, len) = f.push(&RecordRef::Entry(&entry(7)));
        f.push(&RecordRef::Truncate(3));
        let bytes = f.finish();
        let (frames, tail) = scan(&bytes);
        assert_eq!(tail, Tail::Clean);
        let got: Vec<_> = records(&bytes[frames[0].clone()]).map(|r| r.unwrap()).collect();
        assert_eq!(got[0].0 + HEADER, at);
        assert_eq!(got[0].1.len(), len as usize);
        assert!(matches!(decode(got[0].1), Ok(Record::Entry(e)) if e.log_id.index == 7));
        assert!(matches!(decode(got[1].1), Ok(Record::Truncate(3))));
    }

    #[test]
    fn zeros_after_the_frames_are_unused_space() {
        assert_eq!(scan(&[0; 64]), (vec![], Tail::Unused(0)));
        let mut bytes = frame(1..3);
        let end = bytes.len();
        bytes.extend([0; 100]);
        assert_eq!(scan(&bytes).1, Tail::Unused(end));
    }

    #[test]
    fn a_frame_cut_short_in_zeroed_space_is_torn() {
        let mut bytes = frame(1..3);
        let end = bytes.len();
        bytes.extend(&frame(3..5)[..20]);
        bytes.extend([0; 100]);
        assert_eq!(scan(&bytes).1, Tail::Torn(end));
    }

    #[test]
    fn a_flipped_byte_before_an_intact_frame_is_corruption() {
        let mut bytes = frame(1..4);
        let first = bytes.len();
        bytes.extend(frame(4..6));
        bytes[first / 2] ^= 0x40;
        assert_eq!(scan(&bytes).1, Tail::Corrupt(0));
    }

    proptest! {
        /// A file cut anywhere keeps every frame that was whole, and ends torn.
        #[test]
        fn a_cut_keeps_the_whole_frames(sizes in prop::collection::vec(1u64..5, 1..6), cut in any::<prop::sample::Index>()) {
            let mut bytes = Vec::new();
            let mut ends = Vec::new();
            let mut next = 1;
            for n in sizes {
                bytes.extend(frame(next..next + n));
                next += n;
                ends.push(bytes.len());
            }
            let cut = cut.index(bytes.len() + 1);
            let (frames, tail) = scan(&bytes[..cut]);
            let whole = ends.iter().filter(|e| **e <= cut).count();
            prop_assert_eq!(frames.len(), whole);
            let start = if whole == 0 { 0 } else { ends[whole - 1] };
            // A cut of a few bytes can leave only zero bytes of the next frame.
            let partial = if bytes[start..cut].iter().all(|b| *b == 0) { Tail::Unused(start) } else { Tail::Torn(start) };
            let expected = if ends.contains(&cut) { Tail::Clean } else { partial };
            prop_assert_eq!(tail, if cut == 0 { Tail::Clean } else { expected });
        }

        /// A byte flipped inside any frame but the last is always reported.
        #[test]
        fn a_flip_before_the_last_frame_is_corruption(n in 2usize..5, pick in any::<prop::sample::Index>(), bit in 0u8..8) {
            let mut bytes = Vec::new();
            let mut ends = Vec::new();
            for i in 0..n as u64 {
                bytes.extend(frame(i * 2 + 1..i * 2 + 3));
                ends.push(bytes.len());
            }
            let at = pick.index(ends[n - 2]);
            bytes[at] ^= 1 << bit;
            prop_assert!(matches!(scan(&bytes).1, Tail::Corrupt(_)));
        }
    }
}
