//! The leader's waker: makes scheduled tasks idle as soon as they are due.
//!
//! Time enters the table only inside commands, so a delayed task (or one
//! backing off after a failed attempt) cannot become idle by itself. While
//! this node leads, the waker sleeps until the earliest due time in the
//! table and then proposes `Wake { now_ms }`; applying it wakes long-polling
//! workers and the push dispatcher like any other write. (`Assign` also
//! wakes what is due at its own time, but workers and the dispatcher
//! propose one only when an idle task is leasable, so it is the waker that
//! makes a due task leasable.)

use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use taskraft_core::Command;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::store::Applied;
use crate::{now_ms, Raft};

/// The waker looks at the table at least this often, even with nothing due.
const MAX_SLEEP: Duration = Duration::from_secs(1);
/// After a failed proposal, wait this long before the next.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// Runs until `token` is cancelled (leadership lost, or shutdown).
pub async fn wake_due(
    raft: Raft,
    applied: Arc<RwLock<Applied>>,
    mut applied_index: watch::Receiver<u64>,
    token: CancellationToken,
) {
    loop {
        let next = applied.read().table.next_due_ms();
        let now = now_ms();
        match next {
            Some(due) if due <= now => {
                let result = tokio::select! {
                    _ = token.cancelled() => return,
                    r = raft.client_write(Command::Wake { now_ms: now }) => r,
                };
                match result {
                    Ok(_) => continue,
                    Err(e) if e.forward_to_leader::<taskraft_proto::NodeInfo>().is_some() => return,
                    Err(e) => {
                        warn!(error = %e, "could not propose waking due tasks");
                        tokio::time::sleep(RETRY_PAUSE).await;
                    }
                }
            }
            _ => {
                // Until the earliest due time, or until the table changes
                // (a new delayed task may be due sooner).
                let sleep = next.map_or(MAX_SLEEP, |due| Duration::from_millis(due - now));
                tokio::select! {
                    _ = token.cancelled() => return,
                    _ = tokio::time::sleep(sleep.min(MAX_SLEEP)) => {}
                    changed = applied_index.changed() => if changed.is_err() { return },
                }
            }
        }
    }
}
