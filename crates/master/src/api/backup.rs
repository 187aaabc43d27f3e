//! Backups: `backup_open` writes a consistent image of the table to an
//! unlinked temp file in the data dir (so a crash leaves nothing behind and
//! no second copy of the table is held in memory); `backup_read` serves it
//! in chunks. Sessions are few and short-lived: at most
//! [`MAX_SESSIONS`] at once, each dropped after its last byte is read or
//! after [`IDLE`] without reads.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use parking_lot::{Mutex, MutexGuard};
use taskraft_proto::client::{BackupInfo, MAX_BACKUP_CHUNK};

use super::*;
use crate::store::backup::{write_backup, BackupHeader};

/// Backups staged at once on one node.
const MAX_SESSIONS: usize = 2;
/// A session without reads for this long is dropped.
const IDLE: Duration = Duration::from_secs(60);

/// Staged backups of one node.
#[derive(Default)]
pub(super) struct Backups {
    next: AtomicU64,
    sessions: Mutex<BTreeMap<u64, Session>>,
}

struct Session {
    file: File,
    bytes: u64,
    last_read: Instant,
}

impl Backups {
    /// Drops idle sessions and returns the lock on the rest.
    fn live(&self) -> MutexGuard<'_, BTreeMap<u64, Session>> {
        let mut sessions = self.sessions.lock();
        sessions.retain(|_, s| s.last_read.elapsed() < IDLE);
        sessions
    }
}

impl Api {
    pub(super) async fn backup_open_now(&self) -> Result<BackupInfo, WireError> {
        if self.0.backups.live().len() >= MAX_SESSIONS {
            return Err(WireError::Unavailable(format!(
                "{MAX_SESSIONS} backups are already being read from this node; retry later"
            )));
        }
        self.linearizable().await?;
        let id = self.0.backups.next.fetch_add(1, Ordering::Relaxed) + 1;
        let path = self.0.data_dir.join(format!("backup-{id}.tmp"));
        let (applied, cluster) = (self.0.applied.clone(), self.0.settings.name.clone());
        let staged = tokio::task::spawn_blocking(move || {
            let file = File::options().read(true).write(true).create_new(true).open(&path)?;
            // Unlinked at once: the open file is all the session needs.
            std::fs::remove_file(&path)?;
            // The rows of this moment; applies go on while they are written.
            let (header, rows) = {
                let a = applied.read();
                let header = BackupHeader {
                    cluster,
                    taken_ms: now_ms(),
                    last_applied: a.last_applied.map(|l| l.index),
                    counts: a.table.counts(),
                    digest: a.table.digest(),
                };
                (header, a.table.rows_now())
            };
            let (bytes, crc32) = write_backup(&header, &rows, std::io::BufWriter::new(&file))?;
            Ok::<_, std::io::Error>((file, bytes, crc32, header))
        })
        .await
        .map_err(|e| WireError::Unavailable(format!("backup task failed: {e}")))?;
        let (file, bytes, crc32, header) =
            staged.map_err(|e| WireError::Unavailable(format!("cannot stage the backup: {e}")))?;
        let session = Session { file, bytes, last_read: Instant::now() };
        self.0.backups.live().insert(id, session);
        info!(id, bytes, tasks = header.counts.total(), "backup staged");
        Ok(BackupInfo {
            id,
            bytes,
            crc32,
            last_applied: header.last_applied,
            counts: header.counts,
            digest: header.digest,
        })
    }

    pub(super) async fn backup_read_now(
        &self,
        id: u64,
        offset: u64,
        len: u32,
    ) -> Result<Vec<u8>, WireError> {
        if len == 0 || len > MAX_BACKUP_CHUNK {
            return Err(WireError::Invalid(format!(
                "a chunk of {len} bytes; ask for 1 to {MAX_BACKUP_CHUNK}"
            )));
        }
        let mut sessions = self.0.backups.live();
        let Some(session) = sessions.get_mut(&id) else {
            return Err(WireError::NotFound(format!(
                "no backup {id} on this node (finished, idle for a minute, or taken on another leader); start again"
            )));
        };
        if offset >= session.bytes {
            return Err(WireError::Invalid(format!(
                "offset {offset} is past the backup's {} bytes",
                session.bytes
            )));
        }
        let n = (session.bytes - offset).min(len as u64) as usize;
        let mut chunk = vec![0u8; n];
        session
            .file
            .read_exact_at(&mut chunk, offset)
            .map_err(|e| WireError::Unavailable(format!("cannot read the staged backup: {e}")))?;
        session.last_read = Instant::now();
        if offset + n as u64 == session.bytes {
            sessions.remove(&id);
        }
        Ok(chunk)
    }
}
