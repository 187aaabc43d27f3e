//! The table's rows in its sled tree: their keys, and the batches that
//! write them (the changes since the last batch, or a whole table).

use std::collections::BTreeSet;
use std::time::Instant;

use openraft::{LogId, StoredMembership};
use taskraft_core::{Table, TaskId};
use taskraft_proto::{NodeId, NodeInfo};

use super::super::encode;
use super::Applied;

pub(super) const LAST_APPLIED: &[u8] = b"m:last_applied";
pub(super) const MEMBERSHIP: &[u8] = b"m:membership";
pub(super) const PUSH_WORKERS: &[u8] = b"m:push_workers";
pub(super) const QUEUES: &[u8] = b"m:queues";
pub(super) const NEXT_ID: &[u8] = b"m:next_id";
pub(super) const ROW_PREFIX: u8 = b't';

/// What changed in the table since the tree was last written.
#[derive(Default)]
pub(super) struct Dirty {
    pub rows: BTreeSet<TaskId>,
    pub membership: bool,
    pub registry: bool,
    pub queues: bool,
    /// When the oldest unwritten change was applied.
    pub since: Option<Instant>,
    /// When the tree was last flushed.
    pub flushed: Option<Instant>,
}

impl Dirty {
    /// The batch that writes the changed rows of `a` and its applied id.
    pub(super) fn batch(&mut self, a: &Applied) -> sled::Batch {
        let mut batch = sled::Batch::default();
        for id in std::mem::take(&mut self.rows) {
            match a.table.get(id) {
                Some(task) => batch.insert(&row_key(id), encode(task)),
                None => batch.remove(&row_key(id)),
            }
        }
        if std::mem::take(&mut self.membership) {
            batch.insert(MEMBERSHIP, encode(&a.membership));
        }
        if std::mem::take(&mut self.registry) {
            batch.insert(PUSH_WORKERS, encode(&a.table.push_workers().collect::<Vec<_>>()));
        }
        if std::mem::take(&mut self.queues) {
            batch.insert(QUEUES, encode(a.table.queue_settings()));
        }
        batch.insert(NEXT_ID, encode(&a.table.next_id()));
        batch.insert(LAST_APPLIED, encode(&a.last_applied));
        self.since = None;
        batch
    }
}

fn row_key(id: TaskId) -> [u8; 9] {
    let mut k = [ROW_PREFIX; 9];
    k[1..].copy_from_slice(&id.0.to_be_bytes());
    k
}

/// Adds to `batch` everything that makes the table tree hold `table`,
/// applied up to `last_applied` with `membership` (a snapshot installed, a
/// backup restored).
/// One batch that replaces the whole tree with `table` at `last_applied`:
/// rows absent from `table` do not survive it.
pub(super) fn replacing_batch(
    tree: &sled::Tree,
    table: &Table,
    last_applied: Option<LogId<NodeId>>,
    membership: &StoredMembership<NodeId, NodeInfo>,
) -> sled::Result<sled::Batch> {
    let mut batch = sled::Batch::default();
    for kv in tree.iter() {
        batch.remove(kv?.0);
    }
    table_batch(&mut batch, table, last_applied, membership);
    Ok(batch)
}

pub(in crate::store) fn table_batch(
    batch: &mut sled::Batch,
    table: &Table,
    last_applied: Option<LogId<NodeId>>,
    membership: &StoredMembership<NodeId, NodeInfo>,
) {
    for task in table.tasks() {
        batch.insert(&row_key(task.id), encode(task));
    }
    batch.insert(LAST_APPLIED, encode(&last_applied));
    batch.insert(MEMBERSHIP, encode(membership));
    batch.insert(PUSH_WORKERS, encode(&table.push_workers().collect::<Vec<_>>()));
    batch.insert(QUEUES, encode(table.queue_settings()));
    batch.insert(NEXT_ID, encode(&table.next_id()));
}
