//! [`LogStore`]: openraft's `RaftLogStorage` on the `log` and `meta` trees.
//!
//! Every write is flushed before it is reported done; in particular `append`
//! calls `log_io_completed` only after the fsync, so an entry acknowledged to
//! the leader survives a crash of this node.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;
use std::time::Instant;

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{Entry, LogId, OptionalSend, StorageError, StorageIOError, Vote};
use taskraft_proto::{NodeId, TypeConfig};

use super::{decode, encode};
use crate::metrics::{since, Metrics};

/// The Raft log and vote of one node. Cheap to clone: clones share the trees.
#[derive(Clone)]
pub struct LogStore {
    log: sled::Tree,
    meta: sled::Tree,
    metrics: Arc<Metrics>,
}

fn key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

impl LogStore {
    pub(super) fn new(log: sled::Tree, meta: sled::Tree, metrics: Arc<Metrics>) -> LogStore {
        LogStore { log, meta, metrics }
    }

    /// Whether this node has never voted, nor held a log entry: a data dir
    /// that was just created (or wiped). Such a node must find out from its
    /// peers whether a cluster exists before it takes part in one.
    pub fn is_blank(&self) -> bool {
        let never_voted = matches!(self.meta.get("vote"), Ok(None));
        let no_log = self.log.is_empty() && matches!(self.meta.get("last_purged"), Ok(None));
        never_voted && no_log
    }

    fn get_meta<T: serde::de::DeserializeOwned>(
        &self,
        name: &str,
    ) -> Result<Option<T>, StorageError<NodeId>> {
        let Some(bytes) = self.meta.get(name).map_err(|e| StorageIOError::read(&e))? else {
            return Ok(None);
        };
        decode(&bytes).map(Some).map_err(|e| StorageIOError::read(&e).into())
    }

    async fn put_meta<T: serde::Serialize>(
        &self,
        name: &str,
        value: &T,
    ) -> Result<(), StorageError<NodeId>> {
        self.meta.insert(name, encode(value)).map_err(|e| StorageIOError::write(&e))?;
        self.meta.flush_async().await.map_err(|e| StorageIOError::write(&e))?;
        Ok(())
    }

    fn last_entry_id(&self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        let Some((_, bytes)) = self.log.last().map_err(|e| StorageIOError::read_logs(&e))? else {
            return Ok(None);
        };
        let entry: Entry<TypeConfig> = decode(&bytes).map_err(|e| StorageIOError::read_logs(&e))?;
        Ok(Some(entry.log_id))
    }

    /// Removes the entries with index in `range`, then flushes.
    async fn remove(&self, range: impl RangeBounds<[u8; 8]>) -> Result<(), StorageError<NodeId>> {
        let mut batch = sled::Batch::default();
        for kv in self.log.range(range) {
            let (k, _) = kv.map_err(|e| StorageIOError::write_logs(&e))?;
            batch.remove(k);
        }
        self.log.apply_batch(batch).map_err(|e| StorageIOError::write_logs(&e))?;
        self.log.flush_async().await.map_err(|e| StorageIOError::write_logs(&e))?;
        Ok(())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let mut entries = Vec::new();
        for kv in self.log.range(key(start)..) {
            let (k, v) = kv.map_err(|e| StorageIOError::read_logs(&e))?;
            let index = u64::from_be_bytes(k.as_ref().try_into().expect("log keys are 8 bytes"));
            if !range.contains(&index) {
                break;
            }
            entries.push(decode(&v).map_err(|e| StorageIOError::read_logs(&e))?);
        }
        Ok(entries)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let last_purged: Option<LogId<NodeId>> = self.get_meta("last_purged")?;
        let last = self.last_entry_id()?.or(last_purged);
        Ok(LogState { last_purged_log_id: last_purged, last_log_id: last })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.put_meta("vote", vote).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        self.get_meta("vote")
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        // Not flushed on its own: the committed id is a hint that lets a
        // restarted node re-apply its log early. Losing its latest value in
        // a crash only delays that until the leader says what is committed;
        // the next log append's flush (which covers the whole Db) persists it.
        self.meta.insert("committed", encode(&committed)).map_err(|e| StorageIOError::write(&e))?;
        self.metrics.committed_index.set(committed.map_or(0, |l| l.index) as i64);
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        Ok(self.get_meta::<Option<LogId<NodeId>>>("committed")?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let started = Instant::now();
        let mut batch = sled::Batch::default();
        for entry in entries {
            batch.insert(&key(entry.log_id.index), encode(&entry));
        }
        self.log.apply_batch(batch).map_err(|e| StorageIOError::write_logs(&e))?;
        // The fsync comes before the callback: openraft counts this node
        // towards a quorum as soon as the callback reports success.
        match self.log.flush_async().await {
            Ok(_) => {
                self.metrics.log_fsync.observe(since(started));
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(StorageIOError::write_logs(&e).into())
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.remove(key(log_id.index)..).await
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        // Record the purge point first: a crash between the two steps leaves
        // entries that are merely ignored, never a hole.
        self.put_meta("last_purged", &log_id).await?;
        self.remove(..=key(log_id.index)).await
    }
}
