//! Leader duties: work that only the leader may do, with a lifetime tied to
//! its leadership.
//!
//! [`spawn`] watches `raft.metrics()`. On gaining leadership (or a new term)
//! it starts the lease scanner under a fresh child `CancellationToken`; on
//! losing it, or on shutdown, it cancels that token. What happens to leases
//! on each transition:
//! - gaining leadership: every in-progress lease is counted from no earlier
//!   than this moment (`since_ms`), so a worker that could not extend while
//!   there was no leader keeps its task;
//! - losing leadership: the scanner stops. An `Expire` it proposed but that
//!   did not commit is dropped with the old term's log; one that commits is
//!   harmless on a lease that has since been extended or completed, because
//!   `apply` checks the lease, not the proposer.
//!
//! The waker ([`crate::waker`]: scheduled tasks become idle when due), the
//! purger (retention) and the push dispatcher ([`crate::dispatch`]) run
//! under the same token. A purge proposed by a deposed leader is harmless
//! for the same reason as an expiry: `apply` removes only tasks that are
//! finished and past the cutoff carried in the command, so the new leader
//! simply carries on where the old one stopped.
//!
//! Long-poll waiters are not owned here: each `request` checks leadership
//! itself and answers `NotLeader` as soon as the metrics change.

use std::sync::Arc;
use std::time::Duration;

use openraft::ServerState;
use parking_lot::RwLock;
use taskraft_core::{lease, retention, Command, Response};
use taskraft_proto::config::ClusterSettings;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::dispatch::Dispatcher;
use crate::store::Applied;
use crate::{now_ms, waker, Raft};

/// Most leases expired by one proposal.
const MAX_EXPIRE_BATCH: usize = 1000;
/// Most finished tasks removed by one proposal: bounds the work of one
/// apply (and so the pause it adds to heartbeats) on every replica.
const MAX_PURGE_BATCH: u32 = 2000;

/// Starts the watcher that runs leader duties while this node leads.
pub fn spawn(dispatcher: Dispatcher, shutdown: CancellationToken) -> JoinHandle<()> {
    let (raft, applied, settings) =
        (dispatcher.raft.clone(), dispatcher.applied.clone(), dispatcher.settings.clone());
    tokio::spawn(async move {
        let mut metrics = raft.metrics();
        let mut running: Option<(u64, CancellationToken)> = None;
        let mut seen_leader = None;
        loop {
            let (is_leader, term, leader) = {
                let m = metrics.borrow_and_update();
                (m.state == ServerState::Leader, m.current_term, m.current_leader)
            };
            if seen_leader != Some((leader, term)) {
                match leader {
                    Some(id) => info!(leader = id, term, "leader elected"),
                    None => info!(term, "no leader"),
                }
                seen_leader = Some((leader, term));
            }
            if running.as_ref().is_some_and(|(t, _)| !is_leader || *t != term) {
                let (t, token) = running.take().expect("checked above");
                token.cancel();
                info!(term = t, "leader duties stopped");
            }
            if is_leader && running.is_none() {
                let token = shutdown.child_token();
                info!(term, "leader duties started");
                let scanner =
                    scan_leases(raft.clone(), applied.clone(), settings.clone(), token.clone());
                tokio::spawn(scanner);
                tokio::spawn(purge_finished(
                    raft.clone(),
                    applied.clone(),
                    settings.clone(),
                    token.clone(),
                ));
                tokio::spawn(waker::wake_due(
                    raft.clone(),
                    applied.clone(),
                    dispatcher.applied_index.clone(),
                    token.clone(),
                ));
                tokio::spawn(dispatcher.clone().run(token.clone()));
                running = Some((term, token));
            }
            tokio::select! {
                changed = metrics.changed() => if changed.is_err() { break },
                _ = shutdown.cancelled() => break,
            }
        }
        if let Some((_, token)) = running {
            token.cancel();
        }
    })
}

/// Every `scan_interval_ms`, proposes `Expire` for leases past their deadline.
async fn scan_leases(
    raft: Raft,
    applied: Arc<RwLock<Applied>>,
    settings: ClusterSettings,
    token: CancellationToken,
) {
    let since_ms = now_ms();
    let mut ticker = Ticker::new(settings.scan_interval_ms, token.clone());
    while ticker.tick().await {
        let expired = {
            let a = applied.read();
            let found = lease::expired(
                &a.table,
                now_ms(),
                since_ms,
                settings.lease_timeout_ms,
                MAX_EXPIRE_BATCH,
            );
            found
                .into_iter()
                .map(|l| (l, a.table.get(l.task).and_then(|t| t.worker.clone())))
                .collect::<Vec<_>>()
        };
        if expired.is_empty() {
            continue;
        }
        let leases = expired.iter().map(|(l, _)| *l).collect();
        let write = raft.client_write(Command::Expire { leases, now_ms: now_ms() });
        let result = tokio::select! {
            _ = token.cancelled() => return,
            r = write => r,
        };
        match result {
            Ok(r) => {
                let Response::Expired(taken) = r.data else { continue };
                for (lease, worker) in expired.iter().filter(|(l, _)| taken.contains(l)) {
                    let worker = worker.as_ref().map_or("-", |w| w.0.as_str());
                    info!(%lease, worker, "lease expired; task taken back");
                }
            }
            Err(e) if e.forward_to_leader::<taskraft_proto::NodeInfo>().is_some() => return,
            Err(e) => warn!(error = %e, "could not propose lease expiry"),
        }
    }
}

/// Every `scan_interval_ms`, proposes `Purge` while finished tasks are older
/// than `retention_ms`, one bounded batch per entry, back to back until none
/// is due (other writes interleave between the entries).
async fn purge_finished(
    raft: Raft,
    applied: Arc<RwLock<Applied>>,
    settings: ClusterSettings,
    token: CancellationToken,
) {
    if settings.retention_ms == 0 {
        return;
    }
    let mut ticker = Ticker::new(settings.scan_interval_ms, token.clone());
    while ticker.tick().await {
        loop {
            let now = now_ms();
            let due = {
                let a = applied.read();
                retention::due(&a.table, now, settings.retention_ms)
            };
            let Some(cutoff) = due else { break };
            let cmd =
                Command::Purge { finished_before_ms: cutoff, max: MAX_PURGE_BATCH, now_ms: now };
            let result = tokio::select! {
                _ = token.cancelled() => return,
                r = raft.client_write(cmd) => r,
            };
            match result {
                Ok(r) => {
                    let Response::Purged(ids) = r.data else { break };
                    debug!(purged = ids.len(), cutoff, "finished tasks past the retention removed");
                    if ids.len() < MAX_PURGE_BATCH as usize {
                        break;
                    }
                }
                Err(e) if e.forward_to_leader::<taskraft_proto::NodeInfo>().is_some() => return,
                Err(e) => {
                    warn!(error = %e, "could not propose a purge");
                    break;
                }
            }
        }
    }
}

/// A duty's clock: ticks every `period_ms` (a late tick delays the next
/// rather than bunching up) until the duty's token is cancelled.
struct Ticker {
    interval: tokio::time::Interval,
    token: CancellationToken,
}

impl Ticker {
    fn new(period_ms: u64, token: CancellationToken) -> Ticker {
        let mut interval = tokio::time::interval(Duration::from_millis(period_ms));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Ticker { interval, token }
    }

    /// Waits for the next tick; false once the duty must stop.
    async fn tick(&mut self) -> bool {
        tokio::select! {
            _ = self.token.cancelled() => false,
            _ = self.interval.tick() => true,
        }
    }
}
