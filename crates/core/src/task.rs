//! The nouns of the table: tasks, their ids, attempts, leases and statuses.
//!
//! Fencing values are newtypes so that an attempt cannot be passed where a
//! task id is expected: a mixed-up attempt is a fencing bug, so it must not
//! compile.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A task's identity, assigned by the table in submission order (1, 2, 3 ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TaskId(pub u64);

/// How many times a task has been assigned. Each assignment increments it.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Attempt(pub u32);

/// A worker's self-chosen name, e.g. `w01`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct WorkerId(pub String);

/// The fencing token of one assignment: valid only while `attempt` is the
/// task's current attempt and the task is in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Lease {
    /// The task leased.
    pub task: TaskId,
    /// The assignment this lease belongs to.
    pub attempt: Attempt,
}

/// Where a task is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Status {
    /// Waiting to be assigned.
    Idle,
    /// Leased to a worker.
    InProgress,
    /// Finished with a result; final.
    Completed,
    /// Out of attempts; final (unless retried), with the last error kept.
    Dead,
    /// Waiting for its time: submitted with a delay, or backing off after a
    /// failed attempt. Never leased before `due_ms`; then idle.
    Scheduled,
    /// Cancelled before it finished; final (unless retried).
    Cancelled,
}

/// One row of the task table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    /// The task's id.
    pub id: TaskId,
    /// The payload handed to the worker.
    pub data: Vec<u8>,
    /// Optional idempotency key: a second submit with the same key returns this task.
    pub key: Option<String>,
    /// Higher runs first; ties go in submission order.
    pub priority: i32,
    /// The queue it belongs to.
    pub queue: String,
    /// Lifecycle status.
    pub status: Status,
    /// The current (or last) assignment; 0 before the first.
    pub attempt: Attempt,
    /// How many assignments the task gets before it is dead.
    pub max_attempts: u32,
    /// The worker holding (or that last held) the lease.
    pub worker: Option<WorkerId>,
    /// Start of the current lease, or of its last extension (leader's clock, ms).
    pub lease_start_ms: Option<u64>,
    /// The result of the completing lease holder.
    pub result: Option<Vec<u8>>,
    /// The last failure or expiry reason.
    pub error: Option<String>,
    /// When the task was submitted (leader's clock, ms).
    pub submitted_ms: u64,
    /// When the task became completed, dead or cancelled (leader's clock, ms).
    pub finished_ms: Option<u64>,
    /// While scheduled: the earliest time it may be leased (leader's clock, ms).
    pub due_ms: Option<u64>,
    /// Backoff after a failed attempt: the first delay (0: none) ...
    pub retry_base_ms: u64,
    /// ... doubling up to this (see [`crate::retry`]).
    pub retry_max_ms: u64,
    /// The attempt the current attempt budget counts from: 0, or the
    /// attempt at which `taskraft retry` gave the task a fresh budget.
    /// (`attempt` itself never goes back: it is the fencing token.)
    pub attempt_base: u32,
    /// Cancelled while in progress: the holder learns it on its next
    /// report, which ends the task `cancelled`.
    pub cancelling: bool,
    /// While idle: since when (leader's clock, ms), for aging.
    pub idle_since_ms: Option<u64>,
}

impl Task {
    /// Whether the task reached a final status (completed, dead or cancelled).
    pub fn finished(&self) -> bool {
        matches!(self.status, Status::Completed | Status::Dead | Status::Cancelled)
    }

    /// The lease of the current attempt, if the task is in progress.
    pub fn lease(&self) -> Option<Lease> {
        (self.status == Status::InProgress)
            .then_some(Lease { task: self.id, attempt: self.attempt })
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for Attempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "task {} attempt {}", self.task, self.attempt)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Status {
    /// The status as written in JSON output and CLI filters.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Idle => "idle",
            Status::InProgress => "in_progress",
            Status::Completed => "completed",
            Status::Dead => "dead",
            Status::Scheduled => "scheduled",
            Status::Cancelled => "cancelled",
        }
    }

    /// The names [`Status::parse`] takes, for error messages.
    pub const CHOICES: &'static str = "idle, scheduled, in_progress, completed, dead or cancelled";

    /// Parses a status name (one of [`Status::CHOICES`]).
    pub fn parse(s: &str) -> Option<Status> {
        match s {
            "idle" => Some(Status::Idle),
            "in_progress" | "in-progress" => Some(Status::InProgress),
            "completed" => Some(Status::Completed),
            "dead" => Some(Status::Dead),
            "scheduled" => Some(Status::Scheduled),
            "cancelled" => Some(Status::Cancelled),
            _ => None,
        }
    }
}
