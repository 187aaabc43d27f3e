//! The task table: taskraft's replicated state machine, as a pure function.
//!
//! ```text
//!           submit                 assign (lease n)            complete(lease n)
//!   (new) ─────────▶ idle ───────────────────────▶ in_progress ─────────────────▶ completed
//!                     ▲                                 │
//!                     │  lease n expired / worker       │ fail(lease n), attempts left
//!                     └──────── failed, attempts left ◀─┘
//!                                                       │ fail or expire, no attempts left
//!                                                       ▼
//!                                                     dead
//! ```
//!
//! [`Table::apply`] takes a [`Command`] and returns a [`Response`]. It reads no
//! clock, does no IO and draws no random numbers: time enters only as the
//! `now_ms` field of a command, chosen by the leader that proposed it. Every
//! replica that applies the same log therefore holds the same table, and
//! picks the same idle task for the same `Assign`.
//!
//! Invariants (checked by the unit and property tests):
//! - a lease `(task, attempt)` is honoured only while it is the task's current
//!   attempt and the task is in progress; anything else is `Stale` or
//!   `Duplicate` and changes nothing;
//! - a task reaches `completed` at most once, with the result of the lease
//!   holder that completed it;
//! - the counts by status always add up to the number of tasks;
//! - a purge removes only finished (completed, dead or cancelled) tasks, and ids are never reused.
//!
//! Deliberately left out: payload size limits (the API checks them before a
//! command is proposed) and the lease deadline policy after a leader change
//! (see [`lease`], which the leader's scanner uses), and when to purge (see
//! [`retention`]).

#![warn(clippy::all)]

mod command;
pub mod lease;
pub mod retention;
pub mod retry;
mod table;
mod task;

pub use command::{Command, NewTask, Outcome, PushWorker, Response, Submitted};
pub use table::{
    Counts, Page, PageLimits, QueueChange, QueueSettings, QueueStatus, RowsNow, Table, ANY_QUEUE,
    DEFAULT_QUEUE, MAX_WAKE,
};
pub use task::{Attempt, Lease, Status, Task, TaskId, WorkerId};
