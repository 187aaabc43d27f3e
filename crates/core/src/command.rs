//! Commands (replicated writes) and their responses.
//!
//! A command carries everything `apply` needs, including the leader's clock
//! (`now_ms`), so applying it is deterministic.

use serde::{Deserialize, Serialize};

use crate::table::QueueChange;
use crate::task::{Lease, Task, TaskId, WorkerId};

/// A push worker as the table records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushWorker {
    /// The worker's id.
    pub id: WorkerId,
    /// Where it serves `DoTask`.
    pub addr: String,
    /// Tasks it takes at once.
    pub capacity: u32,
    /// The registration lapses this long after its last renewal (ms).
    pub ttl_ms: u64,
    /// Leader's clock at the last registration or renewal (ms).
    pub renewed_ms: u64,
}

impl PushWorker {
    /// Whether the registration still holds at `now_ms`.
    pub fn live(&self, now_ms: u64) -> bool {
        now_ms <= self.renewed_ms.saturating_add(self.ttl_ms)
    }
}

/// One task to add to the table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewTask {
    /// The payload.
    pub data: Vec<u8>,
    /// Idempotency key: a task with this key already in the table is returned instead.
    pub key: Option<String>,
    /// Higher runs first.
    pub priority: i32,
    /// Assignments before the task is dead (at least 1).
    pub max_attempts: u32,
    /// Not leased before this long after the submit is applied (ms).
    pub delay_ms: u64,
    /// Not leased before this time (leader's clock, ms since the epoch).
    pub run_at_ms: Option<u64>,
    /// First backoff after a failed attempt; `None`: the cluster's
    /// `retry_base_ms` (filled in by the API before proposing; 0 in the table).
    pub retry_base_ms: Option<u64>,
    /// Longest backoff; `None`: the cluster's `retry_max_ms`.
    pub retry_max_ms: Option<u64>,
    /// The queue (None: `default`).
    pub queue: Option<String>,
}

/// A replicated write to the task table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Add tasks, idempotent by key.
    Submit { tasks: Vec<NewTask>, now_ms: u64 },
    /// Lease up to `max` idle tasks to `worker`: first those idle for at
    /// least `aging_ms` (0: never), longest waiting first, so that no task
    /// starves behind higher priorities; then by priority, then submission
    /// order.
    /// Only from `queues`, in that order of preference (empty or `*`: all).
    Assign { worker: WorkerId, max: u32, now_ms: u64, aging_ms: u64, queues: Vec<String> },
    /// Change a queue's limits.
    SetQueue { queue: String, change: QueueChange },
    /// Record the result of a lease.
    Complete { lease: Lease, worker: WorkerId, result: Vec<u8>, now_ms: u64 },
    /// Report that a lease's processing failed; re-queued while attempts remain.
    Fail { lease: Lease, worker: WorkerId, error: String, now_ms: u64 },
    /// Restart a lease's clock at `now_ms`.
    Extend { lease: Lease, worker: WorkerId, now_ms: u64 },
    /// Take back leases that ran out; leases no longer current are ignored.
    Expire { leases: Vec<Lease>, now_ms: u64 },
    /// Stop a task that has not finished: an idle or scheduled one is
    /// cancelled at once; an in-progress one is marked, and ends cancelled
    /// at its holder's next report (or when its lease expires).
    Cancel { task: TaskId, now_ms: u64 },
    /// Give a dead or cancelled task a fresh budget of `max_attempts`
    /// attempts: it is idle again.
    Retry { task: TaskId, max_attempts: u32, now_ms: u64 },
    /// Make every scheduled task that is due at `now_ms` idle.
    Wake { now_ms: u64 },
    /// Remove up to `max` finished (completed, dead or cancelled) tasks that finished before
    /// `finished_before_ms` (the leader's clock minus the retention),
    /// longest-finished first. Unfinished tasks are never removed.
    Purge { finished_before_ms: u64, max: u32, now_ms: u64 },
    /// Register (or renew) a push worker serving `DoTask` at `addr`. Refused
    /// (`Stale`) while another address holds a live registration of the same id.
    Register { worker: WorkerId, addr: String, capacity: u32, ttl_ms: u64, now_ms: u64 },
    /// Remove a push worker's registration.
    Deregister { worker: WorkerId, now_ms: u64 },
    /// Several commands in one log entry (group commit), applied in order.
    Batch(Vec<Command>),
}

impl Command {
    /// Whether applying this command may change the queue settings.
    pub fn touches_queues(&self) -> bool {
        match self {
            Command::SetQueue { .. } => true,
            Command::Batch(cmds) => cmds.iter().any(Command::touches_queues),
            _ => false,
        }
    }

    /// Whether applying this command may change the push worker registry.
    pub fn touches_registry(&self) -> bool {
        match self {
            Command::Register { .. } | Command::Deregister { .. } => true,
            Command::Batch(cmds) => cmds.iter().any(Command::touches_registry),
            _ => false,
        }
    }
}

/// What a lease-carrying command did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// The lease was current; the table changed.
    Accepted,
    /// The lease is not (or no longer) current: late, expired, someone else's. Nothing changed.
    Stale,
    /// The same lease already completed the task. Nothing changed.
    Duplicate,
    /// No such task. Nothing changed.
    NotFound,
    /// The task was cancelled: stop working on it. Its result is not recorded.
    Cancelled,
}

/// One submitted task's id, and whether it is new or an earlier submission with the same key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submitted {
    /// The task's id.
    pub id: TaskId,
    /// False when the key matched an existing task.
    pub created: bool,
}

/// The answer of [`crate::Table::apply`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// For `Submit`: one entry per submitted task, in order.
    Submitted(Vec<Submitted>),
    /// For `Assign`: the leased tasks (empty when nothing is idle).
    Assigned(Vec<Task>),
    /// For `Complete`, `Fail`, `Extend`, `Cancel`.
    Outcome(Outcome),
    /// For `Expire`: the leases actually taken back.
    Expired(Vec<Lease>),
    /// For `Purge`: the tasks removed.
    Purged(Vec<TaskId>),
    /// For `Batch`: one response per command, in order.
    Batch(Vec<Response>),
    /// For `Wake`: how many tasks became idle.
    Woken(u64),
    /// For entries that carry no command (Raft's blank and membership entries).
    Empty,
}
