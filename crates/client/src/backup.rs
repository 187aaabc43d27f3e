//! Downloading a backup: stage it on the leader, read it in chunks, check
//! its size and CRC-32 as the bytes arrive. If the leader changes meanwhile
//! (the staged file is on the old one), the download starts over.

use std::io::Write;
use std::time::Duration;

use taskraft_proto::client::{BackupInfo, MAX_BACKUP_CHUNK};
use taskraft_proto::WireError;

use crate::{Client, ClientError, Result};

const ZERO: Duration = Duration::ZERO;

/// Times a download starts over after losing its staged backup.
const ATTEMPTS: usize = 3;

impl Client {
    /// Fills `out` with a consistent backup of the table; returns what it
    /// holds. After a failed attempt `out` is cleared and filled again.
    pub async fn backup(&self, out: &mut Vec<u8>) -> Result<BackupInfo> {
        let mut last = None;
        for _ in 0..ATTEMPTS {
            out.clear();
            match self.backup_once(out).await {
                Ok(info) => return Ok(info),
                Err(ClientError::Refused(WireError::NotFound(e))) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(ClientError::Refused(WireError::NotFound(last.unwrap_or_default())))
    }

    async fn backup_once(&self, out: &mut impl Write) -> Result<BackupInfo> {
        let info = self.call(ZERO, true, |c, ctx| async move { c.backup_open(ctx).await }).await?;
        let mut crc = crc32fast::Hasher::new();
        let mut offset = 0u64;
        while offset < info.bytes {
            let chunk = self
                .call(ZERO, true, |c, ctx| async move {
                    c.backup_read(ctx, info.id, offset, MAX_BACKUP_CHUNK).await
                })
                .await?;
            if chunk.is_empty() {
                return Err(ClientError::Unknown("the backup ended early".into()));
            }
            // The last four bytes are the CRC itself.
            let body_end = info.bytes - 4;
            let body = &chunk[..chunk.len().min(body_end.saturating_sub(offset) as usize)];
            crc.update(body);
            out.write_all(&chunk).map_err(|e| ClientError::Unknown(e.to_string()))?;
            offset += chunk.len() as u64;
        }
        if crc.finalize() != info.crc32 {
            return Err(ClientError::Unknown(
                "the backup's checksum does not match what the leader staged".into(),
            ));
        }
        Ok(info)
    }
}
