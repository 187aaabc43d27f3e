//! [`Table::page`]: listing a large table a bounded piece at a time.
//!
//! A page costs the leader at most `max_scan` rows examined and about
//! `max_bytes` of payloads and results copied, whatever the table's size and
//! however often it is asked: a loop of listing calls cannot exhaust it.
//! The cursor is a task id, so a walk over a table that changes meanwhile
//! sees every task that existed throughout the walk exactly once.

use super::Table;
use crate::task::{Status, Task, TaskId};

/// What one page may cost.
#[derive(Debug, Clone, Copy)]
pub struct PageLimits {
    /// Most tasks returned.
    pub rows: usize,
    /// Stop adding tasks once their payloads and results reach this many bytes
    /// (the first task is always returned, so a walk never stalls).
    pub bytes: usize,
    /// Most rows examined (matters with a status filter that matches few).
    pub scan: usize,
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<'a> {
    /// Matching tasks, in id order.
    pub tasks: Vec<&'a Task>,
    /// Where the next page starts (pass it as `after`), or `None` when the
    /// listing reached the end of the table.
    pub next_after: Option<TaskId>,
}

impl Table {
    /// Tasks with an id above `after` (and in `status`, if given), in id
    /// order, within `limits`.
    pub fn page(&self, status: Option<Status>, after: TaskId, limits: PageLimits) -> Page<'_> {
        let mut rows = self.tasks_after(after).peekable();
        let (mut tasks, mut bytes, mut last) = (Vec::new(), 0usize, None);
        for _ in 0..limits.scan {
            if tasks.len() >= limits.rows || (bytes >= limits.bytes && !tasks.is_empty()) {
                break;
            }
            let Some(task) = rows.next() else { break };
            last = Some(task.id);
            if status.is_none_or(|s| task.status == s) {
                bytes += task.data.len() + task.result.as_ref().map_or(0, Vec::len);
                tasks.push(task);
            }
        }
        let next_after = if rows.peek().is_some() { last } else { None };
        Page { tasks, next_after }
    }
}
