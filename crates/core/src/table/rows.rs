//! [`RowsNow`]: the rows of a table at one moment, taken without copying a
//! task, for a snapshot or a backup to encode while the table goes on.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{QueueSettings, Table};
use crate::command::PushWorker;
use crate::task::{Task, TaskId};

/// What a table's image holds, as it was when [`Table::rows_now`] took it.
/// The tasks are shared with the table: taking them copies the index of
/// rows (pointers), not the rows, and a row the table changes afterwards is
/// copied then, once. So a snapshot of a large table holds up the applies
/// only while the index is copied, not while the rows are encoded.
#[derive(Debug, Clone)]
pub struct RowsNow {
    tasks: BTreeMap<TaskId, Arc<Task>>,
    push_workers: Vec<PushWorker>,
    queue_settings: BTreeMap<String, QueueSettings>,
    next_id: u64,
}

impl RowsNow {
    /// Every task, in id order.
    pub fn tasks(&self) -> impl Iterator<Item = &Task> {
        self.tasks.values().map(Arc::as_ref)
    }

    /// The push worker registrations.
    pub fn push_workers(&self) -> impl Iterator<Item = &PushWorker> {
        self.push_workers.iter()
    }

    /// The queue settings.
    pub fn queue_settings(&self) -> &BTreeMap<String, QueueSettings> {
        &self.queue_settings
    }

    /// The highest task id ever given out.
    pub fn next_id(&self) -> u64 {
        self.next_id
    }
}

impl Table {
    /// The rows as they are now (see [`RowsNow`]).
    pub fn rows_now(&self) -> RowsNow {
        RowsNow {
            tasks: self.tasks.clone(),
            push_workers: self.push_workers().cloned().collect(),
            queue_settings: self.queue_settings().clone(),
            next_id: self.next_id(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Command, NewTask, Response, WorkerId};

    /// The rows taken stay as they were while the table goes on changing,
    /// and the table's own rows are untouched by the taking.
    #[test]
    fn rows_taken_keep_their_moment_while_the_table_changes() {
        let mut t = Table::default();
        let task = NewTask { data: vec![1; 8], max_attempts: 1, ..NewTask::default() };
        t.apply(Command::Submit { tasks: vec![task; 3], now_ms: 1 });
        let before: Vec<Task> = t.tasks().cloned().collect();
        let rows = t.rows_now();
        let worker = WorkerId("w".into());
        let assign = Command::Assign { worker, max: 2, now_ms: 2, aging_ms: 0, queues: vec![] };
        let Response::Assigned(leased) = t.apply(assign) else { panic!("assign answers Assigned") };
        assert_eq!(leased.len(), 2);
        t.apply(Command::Purge { finished_before_ms: 10, max: 10, now_ms: 10 });
        let extra = NewTask { data: vec![2; 8], max_attempts: 1, ..NewTask::default() };
        t.apply(Command::Submit { tasks: vec![extra], now_ms: 3 });
        assert_eq!(rows.tasks().cloned().collect::<Vec<_>>(), before, "the moment it was taken");
        assert_eq!(rows.next_id(), 3);
        assert_eq!(t.tasks().count(), 4);
        assert!(t.tasks().filter(|x| x.attempt.0 == 1).count() == 2, "the table changed");
    }
}
