//! The push service: what a push worker serves, and the leader calls.
//!
//! The origin's first example: the master calls `DoTask` on its workers
//! concurrently. In taskraft the leader is that master, and every task it
//! dispatches is assigned through Raft first, under a lease.

use taskraft_core::{Lease, WorkerId};

/// Served by `taskraft worker --push`.
#[tarpc::service]
pub trait WorkerService {
    /// Processes one task: its result, or the handler's error message.
    async fn do_task(lease: Lease, data: Vec<u8>) -> Result<Vec<u8>, String>;
    /// Says who serves here, for registration checks and health probes.
    async fn ping() -> WorkerId;
    /// The task of `lease` was cancelled: stop its handler. Best effort,
    /// and only for that exact lease. True if it was running here.
    async fn cancel(lease: Lease) -> bool;
}
