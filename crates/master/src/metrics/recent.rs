//! The most recent failures this node applied (failed attempts, expired
//! leases, cancellations), newest first, for the console.

use std::collections::VecDeque;

use parking_lot::Mutex;
use serde::Serialize;
use taskraft_core::{Status, Table, TaskId};

/// Failures kept.
pub const KEPT: usize = 50;

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
    /// Records that `task` just failed in the way `kind` says.
    pub fn record(&self, table: &Table, task: TaskId, kind: &'static str, at_ms: u64) {
        let Some(t) = table.get(task) else { return };
        let failure = Failure {
            task: task.0,
            attempt: t.attempt.0,
            kind,
            error: t.error.clone(),
            dead: t.status == Status::Dead,
            at_ms,
        };
        let mut ring = self.0.lock();
        if ring.len() == KEPT {
            ring.pop_back();
        }
        ring.push_front(failure);
    }

    /// The failures kept, newest first.
    pub fn list(&self) -> Vec<Failure> {
        self.0.lock().iter().cloned().collect()
    }
}
