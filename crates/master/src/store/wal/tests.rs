//! The log against its own files: reopen, torn tails, corruption, purge, and
//! a writer process killed at random moments.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, Vote};
use rand::{Rng, SeedableRng};
use taskraft_proto::TypeConfig;

use super::recover::segment_name;
use super::{Limits, Op, Wal, WalError};
use crate::metrics::Metrics;

fn id(term: u64, index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn entries(term: u64, indexes: std::ops::Range<u64>) -> Op {
    let entries = indexes.map(|i| {
        Arc::new(Entry::<TypeConfig> { log_id: id(term, i), payload: EntryPayload::Blank })
    });
    Op::Entries(entries.collect())
}

fn open(dir: &Path, limits: Limits) -> Result<Wal, WalError> {
    Wal::open_with(dir, Arc::new(Metrics::new(1)), limits)
}

fn small() -> Limits {
    Limits { segment_bytes: 600, cache_bytes: 100 }
}

fn indexes(wal: &Wal) -> Vec<u64> {
    wal.read(..).unwrap().iter().map(|e| e.log_id.index).collect()
}

/// The segment files in `dir`, oldest first.
fn segments(dir: &Path) -> Vec<std::path::PathBuf> {
    let files = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path());
    let mut files: Vec<_> = files.filter(|p| p.extension().is_some_and(|e| e == "wal")).collect();
    files.sort();
    files
}

/// Writes entries 1..=40 in groups of four to a small-segment log in `dir`.
fn ten_groups_of_four(dir: &Path) {
    let wal = open(dir, small()).unwrap();
    for start in (1..40).step_by(4) {
        wal.write(entries(1, start..start + 4)).unwrap();
    }
}

/// Where the frames of the segment at `path` end (zeros follow).
fn frames_end(path: &Path) -> u64 {
    let bytes = std::fs::read(path).unwrap();
    super::frame::scan(&bytes).0.last().map_or(0, |r| r.end as u64)
}

#[test]
fn what_was_written_reads_back_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let wal = open(dir.path(), small()).unwrap();
        assert!(wal.is_blank());
        wal.write(Op::Vote(Vote::new(3, 2))).unwrap();
        for start in (1..60).step_by(3) {
            wal.write(entries(1, start..start + 3)).unwrap();
        }
        wal.write(Op::Truncate(50)).unwrap();
        wal.write(entries(2, 50..52)).unwrap();
        wal.write(Op::Committed(Some(id(2, 51)))).unwrap();
        wal.write(Op::Purge(id(1, 9))).unwrap();
        // Entries evicted from the cache come back from their segment.
        assert_eq!(indexes(&wal), (10..52).collect::<Vec<_>>());
    }
    let wal = open(dir.path(), small()).unwrap();
    assert!(!wal.is_blank());
    assert_eq!(indexes(&wal), (10..52).collect::<Vec<_>>());
    assert_eq!(wal.read(50..51).unwrap()[0].log_id, id(2, 50));
    assert_eq!(wal.read(20..=22).unwrap().len(), 3);
    assert_eq!(wal.vote(), Some(Vote::new(3, 2)));
    assert_eq!(wal.committed(), Some(id(2, 51)));
    assert_eq!(wal.log_state(), (Some(id(2, 51)), Some(id(1, 9))));
}

#[test]
fn a_limited_read_stops_before_the_entry_that_passes_its_bytes_and_reads_one_at_least() {
    let dir = tempfile::tempdir().unwrap();
    let wal = open(dir.path(), Limits { segment_bytes: 1 << 20, cache_bytes: 100 }).unwrap();
    wal.write(entries(1, 1..21)).unwrap();
    let read = |range: std::ops::Range<u64>, max| -> Vec<u64> {
        wal.read_limited(range, max).unwrap().iter().map(|e| e.log_id.index).collect()
    };
    let all = read(1..21, u64::MAX);
    assert_eq!(all, (1..21).collect::<Vec<_>>());
    // Blank entries of one term all take the same bytes in the log.
    assert_eq!(read(1..21, 1), vec![1], "one entry always goes");
    assert_eq!(read(1..21, 0), vec![1], "one entry always goes");
    // The bytes of one entry's record: the least budget that reads two holds two.
    let two = (1..4096).find(|b| read(1..21, *b).len() == 2).expect("a record's size");
    let per = two / 2;
    assert_eq!(per * 2, two, "records of one size");
    assert_eq!(read(1..21, per * 5).len(), 5, "five records of {per} bytes");
    assert_eq!(read(1..21, per * 5 - 1).len(), 4);
    assert_eq!(read(1..21, per * 6 - 1).len(), 5);
    assert_eq!(read(7..9, 1), vec![7]);
    assert!(read(30..40, 1).is_empty());
}

#[test]
fn a_purge_deletes_the_segments_it_empties_and_keeps_the_state() {
    let dir = tempfile::tempdir().unwrap();
    {
        let wal = open(dir.path(), small()).unwrap();
        wal.write(Op::Vote(Vote::new(5, 1))).unwrap();
        for start in (1..200).step_by(4) {
            wal.write(entries(1, start..start + 4)).unwrap();
        }
        let before = wal.disk_usage().0;
        wal.write(Op::Purge(id(1, 190))).unwrap();
        let after = wal.disk_usage().0;
        assert!(before > 10 && after <= 3, "segments {before} -> {after}");
        assert_eq!(segments(dir.path()).len(), after);
    }
    let wal = open(dir.path(), small()).unwrap();
    assert_eq!(indexes(&wal), (191..201).collect::<Vec<_>>());
    assert_eq!(wal.vote(), Some(Vote::new(5, 1)));
    assert_eq!(wal.log_state().1, Some(id(1, 190)));
}

/// A torn last write, in both shapes: the file cut (a log written by
/// appending) or the write's end never reaching the zeroed space it went
/// to (a crash in the middle of a frame, see `segment`).
#[test]
fn a_torn_end_anywhere_in_the_last_segment_keeps_every_acknowledged_group() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for round in 0..40 {
        let dir = tempfile::tempdir().unwrap();
        let big = Limits { segment_bytes: 1 << 20, cache_bytes: 1 << 20 };
        let mut ends = Vec::new();
        {
            let wal = open(dir.path(), big).unwrap();
            for start in (1..40).step_by(3) {
                wal.write(entries(1, start..start + 3)).unwrap();
                ends.push((wal.disk_usage().1, start + 2));
            }
        }
        let last = segments(dir.path()).pop().unwrap();
        let len = frames_end(&last);
        let original = std::fs::read(&last).unwrap();
        let mut cut = rng.gen_range(0..=len);
        let file = std::fs::OpenOptions::new().write(true).open(&last).unwrap();
        let how = if round % 2 == 0 { "cut" } else { "zeroed" };
        if round % 2 == 0 {
            file.set_len(cut).unwrap();
        } else {
            file.write_all_at(&vec![0; (len - cut) as usize], cut).unwrap();
            // Zeros written over zeros change nothing: the tear starts at
            // the first byte that was not zero.
            let before = &original[cut as usize..len as usize];
            cut += before.iter().position(|b| *b != 0).unwrap_or(before.len()) as u64;
        }
        let wal = open(dir.path(), big).unwrap();
        let kept = ends.iter().filter(|(end, _)| *end <= cut).map(|(_, i)| *i).max().unwrap_or(0);
        assert_eq!(indexes(&wal), (1..=kept).collect::<Vec<_>>(), "{how} at {cut} of {len}");
        // The log goes on after the cut.
        wal.write(entries(1, kept + 1..kept + 2)).unwrap();
        drop(wal);
        assert_eq!(indexes(&open(dir.path(), big).unwrap()).len() as u64, kept + 1);
    }
}

#[test]
fn a_flipped_byte_inside_the_log_is_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let wal = open(dir.path(), Limits::default()).unwrap();
        for start in (1..30).step_by(3) {
            wal.write(entries(1, start..start + 3)).unwrap();
        }
    }
    let path = segments(dir.path()).pop().unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let at = frames_end(&path) as usize / 2;
    bytes[at] ^= 0x10;
    std::fs::write(&path, bytes).unwrap();
    let err = open(dir.path(), Limits::default()).err().expect("refused");
    let text = err.to_string();
    assert!(text.contains("is corrupt at byte") && text.contains(&segment_name(1)), "{text}");
    assert!(text.contains("checksum mismatch"), "{text}");
}

#[test]
fn a_cut_segment_before_the_last_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    ten_groups_of_four(dir.path());
    let first = segments(dir.path()).remove(0);
    let len = frames_end(&first);
    std::fs::OpenOptions::new().write(true).open(&first).unwrap().set_len(len - 5).unwrap();
    let err = open(dir.path(), small()).err().expect("refused");
    assert!(err.to_string().contains("a later segment exists"), "{err}");
}

#[test]
fn segments_are_zeroed_ahead_and_their_unused_space_reads_as_the_end() {
    let dir = tempfile::tempdir().unwrap();
    ten_groups_of_four(dir.path());
    let files = segments(dir.path());
    assert!(files.len() > 3, "{files:?}");
    for file in &files {
        let size = std::fs::metadata(file).unwrap().len();
        assert_eq!(size, small().segment_bytes, "{} is made to its full size", file.display());
        assert!(frames_end(file) < size, "{} has unused space", file.display());
    }
    let wal = open(dir.path(), small()).unwrap();
    assert_eq!(indexes(&wal), (1..41).collect::<Vec<_>>());
}

#[test]
fn whole_frames_lost_at_the_end_of_a_closed_segment_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    ten_groups_of_four(dir.path());
    // Zero the first segment's last frame: what is left reads as whole frames
    // and unused space, so only the next segment's head can tell.
    let first = segments(dir.path()).remove(0);
    let mut bytes = std::fs::read(&first).unwrap();
    let frames = super::frame::scan(&bytes).0;
    assert!(frames.len() >= 2, "{frames:?}");
    let last = frames.last().unwrap();
    bytes[last.start - super::frame::HEADER..last.end].fill(0);
    std::fs::write(&first, bytes).unwrap();
    let err = open(dir.path(), small()).err().expect("refused");
    let text = err.to_string();
    assert!(text.contains(&segment_name(1)) && text.contains("written bytes are lost"), "{text}");
}

/// The child side of the crash test: appends groups forever, printing the
/// last index of each group once it is durable.
#[test]
#[ignore = "run by a_writer_killed_at_random_keeps_every_acknowledged_entry"]
fn crash_child() {
    let Ok(dir) = std::env::var("TASKRAFT_WAL_CRASH_DIR") else { return };
    let wal = open(Path::new(&dir), small()).unwrap();
    let mut next = wal.log_state().0.map_or(1, |l| l.index + 1);
    let mut out = std::io::stdout();
    loop {
        wal.write(entries(1, next..next + 3)).unwrap();
        next += 3;
        use std::io::Write;
        writeln!(out, "{}", next - 1).unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn a_writer_killed_at_random_keeps_every_acknowledged_entry() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    for round in 0..8 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "store::wal::tests::crash_child", "--ignored", "--nocapture"])
            .env("TASKRAFT_WAL_CRASH_DIR", dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let wait = rng.gen_range(5..60);
        let mut acked = 0;
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_millis(wait) || acked == 0 {
            match lines.next() {
                Some(Ok(line)) if line.trim().parse::<u64>().is_ok() => {
                    acked = line.trim().parse().unwrap()
                }
                Some(_) => {}
                None => panic!("the writer exited before it was killed"),
            }
            assert!(start.elapsed() < Duration::from_secs(20), "no progress");
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let wal = open(dir.path(), small()).unwrap();
        let got = indexes(&wal);
        let last = *got.last().unwrap();
        assert!(last >= acked, "round {round}: acknowledged up to {acked}, reopened up to {last}");
        assert_eq!(wal.log_state().0.map(|l| l.index), Some(last), "round {round}: a hole");
        // Keep the log short: purge most of it, as snapshots do.
        wal.write(Op::Purge(id(1, last.saturating_sub(5)))).unwrap();
    }
}
