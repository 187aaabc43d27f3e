//! [`StateMachine`]: openraft's `RaftStateMachine`, a thin adapter around
//! `taskraft_core::Table`.
//!
//! It decodes entries, calls `Table::apply`, and writes the rows the entries
//! touched together with the applied log id in one atomic `sled::Batch`
//! (not fsynced: after a crash the log replays what the table lost). Rows
//! are written every [`WRITE_EVERY`] or [`WRITE_ROWS`] and the tree flushed
//! every [`FLUSH_EVERY`], not per apply: each sled write wakes sled's whole
//! IO pool. The batches are applied and flushed by the [`writer`], on a
//! thread of its own; an apply waits only for room in its queue. Batches
//! stay small: 200 ms batches made a bulk load hold ~3x the memory in sled
//! (docs/performance.md). Outcomes such as `Stale` are responses that were
//! applied; a sled error or an undecodable snapshot is a `StorageError`,
//! which stops the node (a batch's error stops the next apply, before it
//! changes the table).
//!
//! The table also lives in memory ([`Applied`], behind a `parking_lot::RwLock` that is
//! never held across an `.await`), where the client API and the leader's
//! scanner read it. Each apply bumps a watch channel so that long-polls wake.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::storage::{RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{
    Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, StorageError, StorageIOError,
    StoredMembership,
};
use parking_lot::{RwLock, RwLockWriteGuard};
use taskraft_core::{PushWorker, QueueSettings, Response, RowsNow, Table, Task};
use taskraft_proto::{NodeId, NodeInfo, TypeConfig};
use tokio::sync::watch;

use super::cover::{CoverSender, CoverWatch};
use super::decode;
use super::snapshot::{decode_image, encode_image, SnapshotFile};
use crate::metrics::events::{observe, Probe};
use crate::metrics::{since, Metrics};

mod rows;
mod snapshots;
mod writer;

pub(super) use rows::table_batch;
pub use rows::TASKS_PER_ROW;
use rows::{
    replacing_batch, row_of, Dirty, LAST_APPLIED, MEMBERSHIP, NEXT_ID, ONE_TASK_PREFIX,
    PUSH_WORKERS, QUEUES, ROW_PREFIX,
};
pub use snapshots::SnapshotBuilder;
use writer::TableWriter;

/// Changed rows are written to the table tree at least this often...
const WRITE_EVERY: Duration = Duration::from_millis(50);
/// ...and as soon as this many rows are waiting (up to 256 tasks: large
/// batches cost sled far more memory than the same rows written in small
/// ones).
const WRITE_ROWS: usize = 8;
/// The table tree is flushed at least this often while entries apply:
/// sled holds what it has not flushed in memory.
const FLUSH_EVERY: Duration = Duration::from_millis(200);

fn table_err(e: String) -> StorageError<NodeId> {
    StorageIOError::write_state_machine(&std::io::Error::other(e)).into()
}

/// Takes the write lock without blocking the runtime's thread. A reader on
/// a blocking thread (a backup writing the table to its file) may hold the
/// read lock for seconds, and a single-threaded master must go on answering
/// its leader meanwhile. Short waits yield; longer ones sleep 1 ms a time.
async fn write_lock(applied: &RwLock<Applied>) -> RwLockWriteGuard<'_, Applied> {
    let mut tries = 0u32;
    loop {
        if let Some(guard) = applied.try_write() {
            return guard;
        }
        tries += 1;
        if tries < 64 {
            tokio::task::yield_now().await;
        } else {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// The applied state: the table and the log position it reflects.
#[derive(Debug, Clone, Default)]
pub struct Applied {
    /// The task table.
    pub table: Table,
    /// The last entry applied to `table`.
    pub last_applied: Option<LogId<NodeId>>,
    /// The last membership applied.
    pub membership: StoredMembership<NodeId, NodeInfo>,
}

/// The state machine of one node. Clones share the tree and the memory.
#[derive(Clone)]
pub struct StateMachine {
    tree: sled::Tree,
    /// Writes the changed rows to `tree`, off the runtime's thread.
    writer: Arc<TableWriter>,
    snapshot_file: SnapshotFile,
    applied: Arc<RwLock<Applied>>,
    /// Changes not yet in the tree; locked after `applied`, never before.
    dirty: Arc<parking_lot::Mutex<Dirty>>,
    applied_index: Arc<watch::Sender<u64>>,
    /// Bumped when an apply changed the push-worker registry.
    registry: Arc<watch::Sender<u64>>,
    /// Task events, snapshot sizes and times.
    metrics: Arc<Metrics>,
    /// How far the table or the snapshot file is durable, for the log's purges.
    cover: CoverSender,
}

impl StateMachine {
    /// Loads the table from its tree. The error says what could not be decoded.
    pub(super) fn open(
        tree: sled::Tree,
        dir: &Path,
        metrics: Arc<Metrics>,
    ) -> Result<StateMachine, String> {
        let mut rows = Vec::new();
        for kv in tree.scan_prefix([ROW_PREFIX]) {
            let (_, v) = kv.map_err(|e| e.to_string())?;
            rows.extend(decode::<Vec<Task>>(&v).map_err(|e| format!("task row: {e}"))?);
        }
        // Storage format 3 kept one task per row: read them, and rewrite the
        // table in rows of many below.
        let mut regroup = false;
        for kv in tree.scan_prefix([ONE_TASK_PREFIX]) {
            let (_, v) = kv.map_err(|e| e.to_string())?;
            rows.push(decode::<Task>(&v).map_err(|e| format!("task row: {e}"))?);
            regroup = true;
        }
        let get = |k: &[u8]| tree.get(k).map_err(|e| e.to_string());
        let last_applied = match get(LAST_APPLIED)? {
            Some(v) => decode(&v).map_err(|e| format!("applied log id: {e}"))?,
            None => None,
        };
        let membership = match get(MEMBERSHIP)? {
            Some(v) => decode(&v).map_err(|e| format!("membership: {e}"))?,
            None => StoredMembership::default(),
        };
        let workers: Vec<PushWorker> = match get(PUSH_WORKERS)? {
            Some(v) => decode(&v).map_err(|e| format!("push workers: {e}"))?,
            None => Vec::new(),
        };
        let queues: BTreeMap<String, QueueSettings> = match get(QUEUES)? {
            Some(v) => decode(&v).map_err(|e| format!("queue settings: {e}"))?,
            None => BTreeMap::new(),
        };
        let next_id: u64 = match get(NEXT_ID)? {
            Some(v) => decode(&v).map_err(|e| format!("next task id: {e}"))?,
            None => 0,
        };
        let mut table = Table::from_parts(next_id, rows, workers).with_queue_settings(queues);
        let (mut last_applied, mut membership) = (last_applied, membership);
        let snapshot_file = SnapshotFile::in_dir(dir);
        if let Some(snapshot) = snapshot_file.read()? {
            let image = decode_image(snapshot.snapshot.get_ref())
                .map_err(|e| format!("{}: {e}", snapshot_file.path().display()))?;
            // A table behind this node's own snapshot lost writes: a crash
            // while a snapshot was installed, between its file and its rows,
            // or a damaged table file that sled recovered to an older state.
            // The snapshot is a durable image of a later committed state:
            // start from it.
            let meta = snapshot.meta;
            if meta.last_log_id > last_applied {
                tracing::warn!(table = ?last_applied, snapshot = ?meta.last_log_id, "the table is behind this node's snapshot; rebuilt from the snapshot");
                table = image.into_table();
                let batch = replacing_batch(&tree, &table, meta.last_log_id, &meta.last_membership)
                    .map_err(|e| e.to_string())?;
                tree.apply_batch(batch).map_err(|e| e.to_string())?;
                tree.flush().map_err(|e| e.to_string())?;
                (last_applied, membership) = (meta.last_log_id, meta.last_membership);
                // That batch replaced every row, one-task rows included.
                regroup = false;
            }
        }
        if regroup {
            let batch = replacing_batch(&tree, &table, last_applied, &membership)
                .map_err(|e| e.to_string())?;
            tree.apply_batch(batch).map_err(|e| e.to_string())?;
            tree.flush().map_err(|e| e.to_string())?;
            tracing::info!(
                tasks = table.tasks().count(),
                "task rows of storage format 3 rewritten in rows of {TASKS_PER_ROW}"
            );
        }
        let index = last_applied.map_or(0, |l: LogId<NodeId>| l.index);
        let cover = CoverSender::new(last_applied.map(|l| l.index));
        metrics.recent.seed(&table);
        let applied = Applied { table, last_applied, membership };
        let writer = TableWriter::start(tree.clone()).map_err(|e| format!("table writer: {e}"))?;
        Ok(StateMachine {
            writer: Arc::new(writer),
            tree,
            snapshot_file,
            applied: Arc::new(RwLock::new(applied)),
            dirty: Arc::default(),
            applied_index: Arc::new(watch::channel(index).0),
            registry: Arc::new(watch::channel(0).0),
            metrics,
            cover,
        })
    }

    /// How far the table or the snapshot file is durable: the log purges
    /// no further (see [`super::cover`]).
    pub(super) fn cover(&self) -> CoverWatch {
        self.cover.subscribe()
    }

    /// openraft's storage suite purges log entries that its state machine
    /// never applied, which Raft itself never does.
    #[cfg(test)]
    pub(super) fn cover_everything(&self) {
        self.cover.reach(Some(u64::MAX));
    }

    /// The in-memory applied state, for readers.
    pub fn applied(&self) -> Arc<RwLock<Applied>> {
        self.applied.clone()
    }

    /// A watch of the last applied index; changes after every apply.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.applied_index.subscribe()
    }

    /// A watch that changes after every apply that changed the push-worker
    /// registry (a registration, renewal or removal; a snapshot installed).
    pub fn subscribe_registry(&self) -> watch::Receiver<u64> {
        self.registry.subscribe()
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, NodeInfo>), StorageError<NodeId>>
    {
        let a = self.applied.read();
        Ok((a.last_applied, a.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        // An error here stops openraft's state machine task: see CoverSender::guard.
        let guard = self.cover.guard();
        let applied = self.apply_entries(entries).await;
        if applied.is_ok() {
            guard.disarm();
        }
        applied
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.snapshot_builder().await
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, NodeInfo>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let guard = self.cover.guard();
        let installed = self.install(meta, snapshot.into_inner()).await;
        if installed.is_ok() {
            guard.disarm();
        }
        installed
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let file = self.snapshot_file.clone();
        tokio::task::spawn_blocking(move || file.read())
            .await
            .expect("snapshot read does not panic")
            .map_err(|e| StorageIOError::read_snapshot(None, &std::io::Error::other(e)).into())
    }
}

impl StateMachine {
    /// [`RaftStateMachine::apply`].
    async fn apply_entries<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>>,
    {
        let mut responses = Vec::new();
        let mut registry_changed = false;
        let mut queues_changed = false;
        let mut membership_changed = false;
        // Room for this apply's batch first: it also says whether an earlier
        // batch failed, before the table changes.
        let slot = self.writer.slot().await.map_err(table_err)?;
        let index = {
            let mut a = write_lock(&self.applied).await;
            let mut touched = BTreeSet::new();
            for entry in entries {
                a.last_applied = Some(entry.log_id);
                responses.push(match entry.payload {
                    EntryPayload::Blank => Response::Empty,
                    EntryPayload::Normal(cmd) => {
                        registry_changed |= cmd.touches_registry();
                        queues_changed |= cmd.touches_queues();
                        let probe = Probe::of(&cmd, &a.table);
                        let response = a.table.apply_touching(cmd, &mut touched);
                        observe(&self.metrics, &probe, &response, &a.table);
                        response
                    }
                    EntryPayload::Membership(m) => {
                        a.membership = StoredMembership::new(Some(entry.log_id), m);
                        membership_changed = true;
                        Response::Empty
                    }
                });
            }
            // Flushed only now and then: the entries are durable in the log,
            // and after a crash openraft re-applies (last_applied, committed]
            // from it. One batch keeps rows and applied id consistent; every
            // snapshot flushes the table before openraft may purge the log up
            // to it.
            let mut dirty = self.dirty.lock();
            dirty.rows.extend(touched.into_iter().map(row_of));
            dirty.membership |= membership_changed;
            dirty.registry |= registry_changed;
            dirty.queues |= queues_changed;
            let since = *dirty.since.get_or_insert_with(Instant::now);
            let mut batch = None;
            if dirty.rows.len() >= WRITE_ROWS || since.elapsed() >= WRITE_EVERY {
                batch = Some(dirty.batch(&a));
            }
            let flushed = *dirty.flushed.get_or_insert_with(Instant::now);
            let flush = flushed.elapsed() >= FLUSH_EVERY;
            if flush {
                dirty.flushed = Some(Instant::now());
            }
            slot.write(batch, flush);
            a.last_applied.map_or(0, |l| l.index)
        };
        self.applied_index.send_replace(index);
        if registry_changed {
            self.registry.send_modify(|v| *v += 1);
        }
        Ok(responses)
    }
}
