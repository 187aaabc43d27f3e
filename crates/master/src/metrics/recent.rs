//! The most recent failures this node applied (failed attempts, expired
//! leases, cancellations), newest first, for the console; at start, the
//! table's most recently ended dead and cancelled tasks.

use std::collections::VecDeque;

use parking_lot::Mutex;
use serde::Serialize;
use taskraft_core::{Lease, Status, Table};

/// Failures kept.
pub const KEPT: usize = 50;
/// Longest error text kept per failure (the rest is cut).
pub const ERROR_BYTES: usize = 512;
/// Finished tasks looked at, at most, to seed the ring at start.
const SEED_SCAN: usize = 100_000;

/// One failure as the console shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    /// The task.
    pub task: u64,
    /// The attempt that failed.
    pub attempt: u32,
    /// `failed`, `expired` or `cancelled`.
    pub kind: &'static str,
    /// The task's error after it.
    pub error: Option<String>,
    /// Whether the task is now dead (out of attempts, or cancelled).
    pub dead: bool,
    /// When it was applied (the leader's clock in the command, ms).
    pub at_ms: u64,
}

/// The ring of recent failures.
#[derive(Default)]
pub struct Recent(Mutex<VecDeque<Failure>>);

impl Recent {
    /// Records that `lease` just failed in the way `kind` says.
    pub fn record(&self, table: &Table, lease: Lease, kind: &'static str, at_ms: u64) {
        let Some(t) = table.get(lease.task) else { return };
        let failure = Failure {
            task: lease.task.0,
            attempt: lease.attempt.0,
            kind,
            error: t.error.as_deref().map(cut),
            dead: t.status == Status::Dead,
            at_ms,
        };
        let mut ring = self.0.lock();
        if ring.len() == KEPT {
            ring.pop_back();
        }
        ring.push_front(failure);
    }

    /// Fills an empty ring from `table`'s most recently finished dead and
    /// cancelled tasks (looking at no more than [`SEED_SCAN`] finished
    /// tasks), so that a restarted master's console still lists them.
    pub fn seed(&self, table: &Table) {
        let mut ring = self.0.lock();
        if !ring.is_empty() {
            return;
        }
        let ended = table
            .finished_newest_first()
            .take(SEED_SCAN)
            .filter(|t| matches!(t.status, Status::Dead | Status::Cancelled))
            .take(KEPT);
        ring.extend(ended.map(|t| Failure {
            task: t.id.0,
            attempt: t.attempt.0,
            kind: if t.status == Status::Cancelled { "cancelled" } else { "failed" },
            error: t.error.as_deref().map(cut),
            dead: true,
            at_ms: t.finished_ms.unwrap_or(0),
        }));
    }

    /// The failures kept, newest first.
    pub fn list(&self) -> Vec<Failure> {
        self.0.lock().iter().cloned().collect()
    }
}

/// `error` cut to at most [`ERROR_BYTES`], on a character boundary.
fn cut(error: &str) -> String {
    if error.len() <= ERROR_BYTES {
        return error.to_owned();
    }
    let mut end = ERROR_BYTES;
    while !error.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &error[..end])
}

#[cfg(test)]
mod tests {
    use taskraft_core::{Command, NewTask, Response, TaskId, WorkerId};

    use super::*;

    #[test]
    fn a_restarted_master_lists_the_dead_and_cancelled_tasks_of_its_table() {
        let mut table = Table::default();
        let new = |d: &str| NewTask { data: d.into(), max_attempts: 1, ..Default::default() };
        table.apply(Command::Submit { tasks: vec![new("a"), new("b"), new("c")], now_ms: 0 });
        let w = WorkerId("w".into());
        let assign =
            Command::Assign { worker: w.clone(), max: 2, now_ms: 1, aging_ms: 0, queues: vec![] };
        let Response::Assigned(leased) = table.apply(assign) else { panic!("assigned") };
        let (a, b) = (leased[0].lease().unwrap(), leased[1].lease().unwrap());
        table.apply(Command::Fail { lease: a, worker: w.clone(), error: "boom".into(), now_ms: 5 });
        table.apply(Command::Complete { lease: b, worker: w, result: b"B".to_vec(), now_ms: 6 });
        table.apply(Command::Cancel { task: TaskId(3), now_ms: 7 });

        let recent = Recent::default();
        recent.seed(&table);
        let listed: Vec<(u64, &str, u64)> =
            recent.list().iter().map(|f| (f.task, f.kind, f.at_ms)).collect();
        assert_eq!(
            listed,
            vec![(3, "cancelled", 7), (1, "failed", 5)],
            "newest first, no completed"
        );
        assert_eq!(recent.list()[1].error.as_deref(), Some("boom"));
        // A ring that already holds failures is left as it is.
        recent.seed(&table);
        assert_eq!(recent.list().len(), 2);
    }
}
