//! The table's image, as snapshots and backups carry it, and the snapshot
//! file.
//!
//! An image is the bincode encoding of `(next_id, rows, push_workers,
//! queue settings)`:
//! the highest task id ever given out travels with the rows, because purged
//! tasks leave no row behind and their ids must never be given out again.
//!
//! The current snapshot lives in one file beside sled's own: its meta,
//! length-prefixed, then the image. It is written to a temp file, fsynced,
//! then renamed over the old one, so a crash leaves either the old snapshot
//! or the new one and there is never more than one snapshot on disk.

use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{Snapshot, SnapshotMeta};
use parking_lot::Mutex;
use serde::Deserialize;
use std::collections::BTreeMap;

use taskraft_core::{PushWorker, QueueSettings, RowsNow, Table, Task};
use taskraft_proto::{NodeId, NodeInfo, TypeConfig};

use super::{decode, encode};

/// The snapshot file's name inside the data dir.
pub const SNAPSHOT_FILE: &str = "snapshot.bin";
/// The largest snapshot meta read back (a membership of a few nodes is
/// well under a KiB).
const MAX_META: usize = 1 << 20;
/// Bytes of the snapshot file written between two fsyncs.
const SNAPSHOT_SYNC_CHUNK: usize = 8 << 20;

/// A decoded image: everything needed to rebuild a [`Table`].
#[derive(Debug, Deserialize)]
pub struct Image {
    /// The highest task id ever given out.
    pub next_id: u64,
    /// Every row.
    pub tasks: Vec<Task>,
    /// Push worker registrations.
    pub push_workers: Vec<PushWorker>,
    /// Queue limits.
    pub queues: BTreeMap<String, QueueSettings>,
}

impl Image {
    /// The table this image holds.
    pub fn into_table(self) -> Table {
        Table::from_parts(self.next_id, self.tasks, self.push_workers)
            .with_queue_settings(self.queues)
    }
}

/// What an image encodes, borrowed from the rows.
type ImageRef<'a> = (u64, Vec<&'a Task>, Vec<&'a PushWorker>, &'a BTreeMap<String, QueueSettings>);

fn image_of(rows: &RowsNow) -> ImageRef<'_> {
    (rows.next_id(), rows.tasks().collect(), rows.push_workers().collect(), rows.queue_settings())
}

/// Encodes the image of `rows` into memory, in a buffer of the exact size:
/// grown by doubling, the buffer of a 161 MB image (a million tasks) held
/// up to twice that at its last copy.
pub(super) fn encode_image(rows: &RowsNow) -> Vec<u8> {
    let image = image_of(rows);
    let size = bincode::serialized_size(&image).expect("bincode sizes in-memory values");
    let mut out = Vec::with_capacity(size as usize);
    bincode::serialize_into(&mut out, &image).expect("bincode encodes in-memory values");
    out
}

/// Encodes the image of `rows` into `out` as it goes (backups stream it to
/// a file, so that a large table is never held twice in memory).
pub(super) fn write_image(rows: &RowsNow, out: impl Write) -> bincode::Result<()> {
    bincode::serialize_into(out, &image_of(rows))
}

/// Decodes an image. Never panics on malformed input.
pub fn decode_image(data: &[u8]) -> Result<Image, String> {
    decode(data).map_err(|e| format!("rows: {e}"))
}

/// A node's snapshot file. Cheap to clone: clones share the lock that
/// serializes its writes (a build and an install may overlap, and they
/// share the temporary file).
#[derive(Clone)]
pub(super) struct SnapshotFile {
    path: PathBuf,
    writing: Arc<Mutex<()>>,
}

impl SnapshotFile {
    /// The snapshot file of the data dir `dir`.
    pub fn in_dir(dir: &Path) -> SnapshotFile {
        SnapshotFile { path: dir.join(SNAPSHOT_FILE), writing: Arc::default() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the file, if there is one.
    pub fn read(&self) -> Result<Option<Snapshot<TypeConfig>>, String> {
        read_snapshot_file(&self.path)
    }

    /// Writes the file unless it already holds a snapshot at least as new.
    /// openraft builds a snapshot in its own task while later entries apply,
    /// so a build that began before an install from the leader can finish
    /// after it: its older image must not replace the installed one.
    pub fn write_newest(
        &self,
        meta: &SnapshotMeta<NodeId, NodeInfo>,
        data: &[u8],
    ) -> std::io::Result<()> {
        let _writing = self.writing.lock();
        if let Some(held) = self.read_meta() {
            if held.last_log_id >= meta.last_log_id {
                tracing::info!(held = ?held.last_log_id, this = ?meta.last_log_id, "the snapshot file already holds a snapshot as new; kept");
                return Ok(());
            }
        }
        write_snapshot_file(&self.path, meta, data)
    }

    /// The file's meta, if it is there and readable (a file that is not is
    /// replaced, and refused at the next start if it stays). Reads the
    /// header only, not the image.
    fn read_meta(&self) -> Option<SnapshotMeta<NodeId, NodeInfo>> {
        use std::io::Read;
        let mut file = std::fs::File::open(&self.path).ok()?;
        let mut head = vec![0u8; 8];
        file.read_exact(&mut head).ok()?;
        let len = u64::from_le_bytes(head[..8].try_into().ok()?);
        let len = usize::try_from(len).ok().filter(|l| *l <= MAX_META)?;
        head.resize(8 + len, 0);
        file.read_exact(&mut head[8..]).ok()?;
        parse_snapshot(&head).ok().map(|(meta, _)| meta)
    }
}

fn write_snapshot_file(
    path: &Path,
    meta: &SnapshotMeta<NodeId, NodeInfo>,
    data: &[u8],
) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp)?;
    let meta = encode(meta);
    file.write_all(&(meta.len() as u64).to_le_bytes())?;
    file.write_all(&meta)?;
    // Flushed chunk by chunk: one fsync of a file of hundreds of MB would
    // hold up the log's own small fsyncs (and so the heartbeats) behind it.
    for chunk in data.chunks(SNAPSHOT_SYNC_CHUNK) {
        file.write_all(chunk)?;
        file.sync_data()?;
    }
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn read_snapshot_file(path: &Path) -> Result<Option<Snapshot<TypeConfig>>, String> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let (meta, data) = parse_snapshot(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Some(Snapshot { meta, snapshot: Box::new(Cursor::new(data.to_vec())) }))
}

/// Splits a snapshot file into its meta and its image's bytes. Never panics
/// on malformed input; the error says what is wrong.
pub fn parse_snapshot(bytes: &[u8]) -> Result<(SnapshotMeta<NodeId, NodeInfo>, &[u8]), String> {
    let header: [u8; 8] =
        bytes.get(..8).and_then(|h| h.try_into().ok()).ok_or("truncated header")?;
    let len = usize::try_from(u64::from_le_bytes(header)).map_err(|_| "bad meta length")?;
    let end = 8usize.checked_add(len).ok_or("bad meta length")?;
    let meta =
        decode(bytes.get(8..end).ok_or("truncated meta")?).map_err(|e| format!("meta: {e}"))?;
    Ok((meta, &bytes[end..]))
}
