//! The table's rows in its sled tree: their keys, and the batches that
//! write them (the changes since the last batch, or a whole table).
//!
//! Tasks are stored [`TASKS_PER_ROW`] to a row: the row of group `g` holds
//! the tasks with ids `g * TASKS_PER_ROW ..` up to the next group, in id
//! order (a row with none is removed). sled's cost is per key (a tree
//! descent, node splits and copies, its page log), and tasks change in
//! runs of neighbouring ids: a submit's new ids, the oldest idle tasks
//! leased, then completed. With a row per task, sled took a third of the
//! masters' CPU in W1 with 64 producers (docs/performance.md).

use std::collections::BTreeSet;
use std::time::Instant;

use openraft::{LogId, StoredMembership};
use taskraft_core::{Table, Task, TaskId};
use taskraft_proto::{NodeId, NodeInfo};

use super::super::encode;
use super::Applied;

pub(super) const LAST_APPLIED: &[u8] = b"m:last_applied";
pub(super) const MEMBERSHIP: &[u8] = b"m:membership";
pub(super) const PUSH_WORKERS: &[u8] = b"m:push_workers";
pub(super) const QUEUES: &[u8] = b"m:queues";
pub(super) const NEXT_ID: &[u8] = b"m:next_id";
/// The prefix of a row of tasks.
pub(super) const ROW_PREFIX: u8 = b'g';
/// The prefix of a row of one task, as storage format 3 wrote them: read,
/// then rewritten as rows of [`TASKS_PER_ROW`].
pub(super) const ONE_TASK_PREFIX: u8 = b't';
/// Tasks per row: a few KiB of 64-byte tasks, rewritten whole when one of
/// them changes.
pub const TASKS_PER_ROW: u64 = 32;

/// The row that holds task `id`.
pub(super) fn row_of(id: TaskId) -> u64 {
    id.0 / TASKS_PER_ROW
}

/// What changed in the table since the tree was last written.
#[derive(Default)]
pub(super) struct Dirty {
    /// The rows (see [`row_of`]) that hold a changed task.
    pub rows: BTreeSet<u64>,
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
        for row in std::mem::take(&mut self.rows) {
            let first = row * TASKS_PER_ROW;
            let tasks: Vec<&Task> = a
                .table
                .tasks_in(TaskId(first)..TaskId(first.saturating_add(TASKS_PER_ROW)))
                .collect();
            if tasks.is_empty() {
                batch.remove(&row_key(row));
            } else {
                batch.insert(&row_key(row), encode(&tasks));
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

fn row_key(row: u64) -> [u8; 9] {
    let mut k = [ROW_PREFIX; 9];
    k[1..].copy_from_slice(&row.to_be_bytes());
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
    let mut tasks = table.tasks().peekable();
    while let Some(first) = tasks.next() {
        let row = row_of(first.id);
        let mut group = vec![first];
        while let Some(next) = tasks.next_if(|t| row_of(t.id) == row) {
            group.push(next);
        }
        batch.insert(&row_key(row), encode(&group));
    }
    batch.insert(LAST_APPLIED, encode(&last_applied));
    batch.insert(MEMBERSHIP, encode(membership));
    batch.insert(PUSH_WORKERS, encode(&table.push_workers().collect::<Vec<_>>()));
    batch.insert(QUEUES, encode(table.queue_settings()));
    batch.insert(NEXT_ID, encode(&table.next_id()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::decode;
    use proptest::prelude::*;
    use taskraft_core::{Command, NewTask};

    /// The tree's tasks, read back the way `StateMachine::open` reads them.
    fn stored(tree: &sled::Tree) -> Vec<Task> {
        let rows = tree.scan_prefix([ROW_PREFIX]).map(|kv| kv.expect("row").1);
        rows.flat_map(|v| decode::<Vec<Task>>(&v).expect("a row of tasks")).collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Submits, cancels and purges across row boundaries, written now and
        /// then from the changed rows (and once whole): the tree holds the table.
        #[test]
        fn rows_written_from_the_changes_read_back_as_the_table(
            ops in prop::collection::vec((0u8..4, 1u64..80), 1..40)
        ) {
            let db = sled::Config::new().temporary(true).open().unwrap();
            let tree = db.open_tree("table").unwrap();
            let membership = StoredMembership::default();
            let mut a = Applied { table: Table::default(), last_applied: None, membership };
            let mut dirty = Dirty::default();
            for (step, (kind, n)) in ops.into_iter().enumerate() {
                let now_ms = step as u64 + 1;
                let task = NewTask { data: vec![1; 8], max_attempts: 1, ..NewTask::default() };
                let cmd = match kind {
                    0 => Command::Submit { tasks: vec![task; n as usize], now_ms },
                    1 => Command::Cancel { task: TaskId(n), now_ms },
                    2 => Command::Purge { finished_before_ms: now_ms, max: n as u32, now_ms },
                    _ => {
                        tree.apply_batch(dirty.batch(&a)).unwrap();
                        continue;
                    }
                };
                let mut touched = BTreeSet::new();
                a.table.apply_touching(cmd, &mut touched);
                dirty.rows.extend(touched.into_iter().map(row_of));
            }
            tree.apply_batch(dirty.batch(&a)).unwrap();
            let tasks: Vec<Task> = a.table.tasks().cloned().collect();
            prop_assert_eq!(stored(&tree), tasks.clone());
            let whole = db.open_tree("whole").unwrap();
            let mut batch = sled::Batch::default();
            table_batch(&mut batch, &a.table, None, &a.membership);
            whole.apply_batch(batch).unwrap();
            prop_assert_eq!(stored(&whole), tasks);
        }
    }
}
