//! [`LogStore`]: openraft's `RaftLogStorage` on the node's [`Wal`].
//!
//! Every write returns after its fsync; `append` reports to openraft's
//! callback only then, so an entry this node acknowledges survives its
//! crash. A write runs on the calling thread (see the log's writer for
//! why), except a long append: see [`is_long`]. The committed id is a
//! hint that rides with the next fsync. A purge waits until the table or
//! a snapshot file durably holds what it drops (see [`super::cover`]).
//! Before it writes an append, the store shows it to its [`AppendHook`]
//! (the leader sends it to the followers then, see `network::early`).

use std::fmt::Debug;
use std::ops::RangeBounds;
use std::sync::{Arc, OnceLock};

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{Entry, LogId, OptionalSend, StorageError, StorageIOError, Vote};
use taskraft_proto::{NodeId, TypeConfig};

use super::cover::CoverWatch;
use super::failpoint;
use super::wal::{Op, Wal};
use crate::metrics::Metrics;

/// The Raft log and vote of one node. Cheap to clone: clones share the log.
#[derive(Clone)]
pub struct LogStore {
    wal: Arc<Wal>,
    metrics: Arc<Metrics>,
    cover: CoverWatch,
    hook: Arc<OnceLock<AppendHook>>,
}

/// Shown each append that is not long ([`is_long`]) before it is written:
/// the id of the entry before them, the entries, and the last committed id
/// the store was told.
/// Returns whether it started sending something, which the store then
/// lets run before its fsync blocks the thread.
pub type AppendHook = Box<
    dyn Fn(Option<LogId<NodeId>>, &[Arc<Entry<TypeConfig>>], Option<LogId<NodeId>>) -> bool
        + Send
        + Sync,
>;

/// The most a replication read returns: it stops before the entry that
/// would take it past this many bytes in the log (one entry always goes).
/// The network then cuts an append to its stream's budget, which starts
/// here; a record is a few bytes longer than its entry's encoding, so a
/// full read passes a full budget uncut.
pub const MAX_REPLICATION_READ_BYTES: u64 = 256 << 10;

/// An append of at least this many encoded bytes is a long one: a group
/// of 64 small submits is a few KiB, one submit of 1,000 tasks ~100 KiB.
pub const LONG_APPEND_BYTES: u64 = 32 << 10;

/// Whether writing `entries` should leave the runtime's thread to tokio's
/// blocking pool. A long append's fsync must not stall the tasks that
/// answer the leader: without that, in the 1,000,000-task load, a follower
/// fsyncing 300-entry appends of 1,000-task submits stalled them
/// (elections, the leader re-sending 30 MB appends, a follower at 4 GB).
/// A short one costs less in place than the hand-off (measured: handing
/// every append off cost 20-30 % of the throughput under load). With a
/// threshold of 256 KiB, the 1,000,000-task load (appends of one or two
/// ~100 KiB entries, written in place) saw elections again and masters at
/// 2.6 GB (one thread) and 4.4 GB (one per core).
pub fn is_long(entries: &[Arc<Entry<TypeConfig>>]) -> bool {
    let mut bytes = 0;
    for entry in entries {
        bytes += bincode::serialized_size(&**entry).unwrap_or(LONG_APPEND_BYTES);
        if bytes >= LONG_APPEND_BYTES {
            return true;
        }
    }
    false
}

fn write_err(e: std::io::Error) -> StorageError<NodeId> {
    StorageIOError::write_logs(&e).into()
}

impl LogStore {
    pub(super) fn new(wal: Wal, metrics: Arc<Metrics>, cover: CoverWatch) -> LogStore {
        LogStore { wal: Arc::new(wal), metrics, cover, hook: Arc::default() }
    }

    /// Sets the hook every later append is shown (once; later calls are ignored).
    pub fn on_append(&self, hook: AppendHook) {
        let _ = self.hook.set(hook);
    }

    /// Whether this node has never voted, nor held a log entry: a data dir
    /// that was just created (or wiped). Such a node must find out from its
    /// peers whether a cluster exists before it takes part in one.
    pub fn is_blank(&self) -> bool {
        self.wal.is_blank()
    }

    /// The index of the last entry in the log (written, or being written).
    pub fn last_index(&self) -> u64 {
        self.wal.log_state().0.map_or(0, |l| l.index)
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

    /// openraft reads up to 300 entries per append, whatever their size; a
    /// follower far behind on 100 KB entries would cost 30 MB read and
    /// decoded per append, to send 256 KiB of it.
    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        self.wal
            .read_limited(start..end, MAX_REPLICATION_READ_BYTES)
            .map_err(|e| StorageIOError::read_logs(&e).into())
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

    /// The vote, never as committed: with a committed vote naming itself,
    /// openraft 0.9 restarts a node as the leader of that same term at once.
    /// Entries it sent before its own fsync (`network::early`) may then be
    /// on followers but not in its log, and its next entry would reuse
    /// their log id for other contents, which followers take for the same
    /// entry. Read as not committed, the vote makes it campaign in a new
    /// term, whose entries' ids are new. (A vote only loses knowledge this
    /// way: it is still the node's vote for that term.)
    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        Ok(self.wal.vote().map(|vote| Vote { committed: false, ..vote }))
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
        let entries: Vec<_> = entries.into_iter().map(Arc::new).collect();
        let long = is_long(&entries);
        let mut sent = false;
        if let (Some(hook), false) = (self.hook.get(), long) {
            let (prev, _) = self.wal.log_state();
            sent = hook(prev, &entries, self.wal.committed());
            if sent {
                // Let the sends reach their sockets before the fsync.
                tokio::task::yield_now().await;
            }
        }
        // openraft awaits this append before it runs anything else, so no
        // other write can overtake it on the blocking pool.
        let written = if sent && failpoint::fires(self.wal.dir()) {
            // Long enough for the followers to hold what was sent.
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            Err(std::io::Error::other("failpoint: the leader's write fails after its early append"))
        } else if long {
            let wal = self.wal.clone();
            tokio::task::spawn_blocking(move || wal.write(Op::Entries(entries)))
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(format!("log append task: {e}"))))
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
        if !self.cover.covers(log_id.index) {
            // A snapshot from the leader is being installed (openraft does
            // not wait for it): Raft waits here, the install goes on.
            tracing::info!(index = log_id.index, "the log purge waits for the snapshot install");
            self.cover.reached(log_id.index).await.map_err(|why| {
                StorageError::from(StorageIOError::write_logs(&std::io::Error::other(why)))
            })?;
        }
        self.wal.write(Op::Purge(log_id)).map_err(write_err)
    }
}
