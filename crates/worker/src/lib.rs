//! The pull worker: request → process → submit, forever, against whichever
//! master leads.
//!
//! - [`handler`]: what processing means (`echo`, `upper`, `sleep:MS`, or an
//!   external command);
//! - [`Worker`]: the loop, with lease heartbeats and a graceful drain;
//! - [`push::serve`]: the push-mode `DoTask` server, registered with the cluster.
//!
//! Processing is at-least-once: a task whose lease ran out (a slow handler
//! with extension turned off, a paused process, a partition) is handed to
//! another worker, and the first worker's late result is answered `Stale`
//! and not recorded. Handlers should therefore be idempotent.

#![warn(clippy::all)]

pub mod handler;
mod pull;
pub mod push;

pub use handler::Handler;
pub use pull::{Summary, Worker, WorkerOptions};
