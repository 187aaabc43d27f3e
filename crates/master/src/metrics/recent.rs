//! The most recent failures this node applied (failed attempts, expired
//! leases, cancellations), newest first, for the console.

use std::collections::VecDeque;

use parking_lot::Mutex;
use serde::Serialize;
use taskraft_core::{Lease, Status, Table};

/// Failures kept.
pub const KEPT: usize = 50;
/// Longest error text kept per failure (the rest is cut).
pub const ERROR_BYTES: usize = 512;

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
