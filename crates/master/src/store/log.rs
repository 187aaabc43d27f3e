//! [`LogStore`]: openraft's `RaftLogStorage` on the node's [`Wal`].
//!
//! Every write returns after its fsync (on this thread: see the log's
//! writer for why; a long append inside `block_in_place`); `append` reports to
//! openraft's callback only then, so an entry this node acknowledges
//! survives its crash. The committed id is a
//! hint that rides with the next fsync.

use std::fmt::Debug;
use std::ops::RangeBounds;
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{Entry, LogId, OptionalSend, StorageError, StorageIOError, Vote};
use taskraft_proto::{NodeId, TypeConfig};

use super::wal::{Op, Wal};
use crate::metrics::Metrics;

/// The Raft log and vote of one node. Cheap to clone: clones share the log.
#[derive(Clone)]
pub struct LogStore {
    wal: Arc<Wal>,
    metrics: Arc<Metrics>,
    /// Whether the store was opened on tokio's multi-thread runtime, where
    /// an append may block its worker thread (`block_in_place`).
    multi_thread: bool,
}

fn write_err(e: std::io::Error) -> StorageError<NodeId> {
    StorageIOError::write_logs(&e).into()
}

impl LogStore {
    pub(super) fn new(wal: Wal, metrics: Arc<Metrics>) -> LogStore {
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        LogStore { wal: Arc::new(wal), metrics, multi_thread }
    }

    /// Whether this node has never voted, nor held a log entry: a data dir
    /// that was just created (or wiped). Such a node must find out from its
    /// peers whether a cluster exists before it takes part in one.
    pub fn is_blank(&self) -> bool {
        self.wal.is_blank()
    }

    /// How many segment files the log has, and their bytes.
    pub fn disk_usage(&self) -> (usize, u64) {
        self.wal.disk_usage()
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        self.wal.read(range).map_err(|e| StorageIOError::read_logs(&e).into())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let (last, purged) = self.wal.log_state();
        Ok(LogState { last_purged_log_id: purged, last_log_id: last })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.wal.write(Op::Vote(*vote)).map_err(|e| StorageIOError::write_vote(&e).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        Ok(self.wal.vote())
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        // Not fsynced on its own: the committed id lets a restarted node
        // re-apply its log early. Losing its latest value in a crash only
        // delays that until the leader says what is committed.
        self.wal.write(Op::Committed(committed)).map_err(write_err)?;
        self.metrics.committed_index.set(committed.map_or(0, |l| l.index) as i64);
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        Ok(self.wal.committed())
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
        let entries = entries.into_iter().map(Arc::new).collect();
        // A long append's fsync blocks this thread inside `block_in_place`:
        // tokio hands its other tasks to another worker meanwhile. Without
        // that, a follower fsyncing a large append stalled the tasks that
        // answer its leader (measured: elections and a master at 4 GB
        // during a 1,000,000-task load). A short one is cheaper in place.
        let written = if self.multi_thread {
            self.wal.write_with(Op::Entries(entries), &|io| tokio::task::block_in_place(io))
        } else {
            self.wal.write(Op::Entries(entries))
        };
        match written {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                let error = StorageIOError::write_logs(&e).into();
                callback.log_io_completed(Err(e));
                Err(error)
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.wal.write(Op::Truncate(log_id.index)).map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.wal.write(Op::Purge(log_id)).map_err(write_err)
    }
}
