//! [`Worker`]: the pull loop.
//!
//! Each of `concurrency` slots loops: long-poll `request`, run the handler,
//! `complete` (or `fail`). A busy slot reports a result and leases its next
//! task in one call (`complete_and_request`, one commit); it long-polls only
//! when that found nothing idle. While the handler runs, a heartbeat extends the
//! lease every third of its timeout, so a long task keeps its lease.
//! When an extension is answered `Cancelled` (the task was cancelled), the
//! handler is dropped at once (an `--exec` command gets SIGTERM, then
//! SIGKILL after its grace period) and nothing is reported.
//!
//! Shutdown: when `stop` is cancelled (SIGINT/SIGTERM in the CLI), slots stop
//! requesting (an outstanding long poll is dropped; a task it might have
//! leased expires and is re-delivered), finish the task they hold, submit its
//! result, and return.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use taskraft_client::{Client, ClientError};
use taskraft_core::{Outcome, WorkerId};
use taskraft_proto::client::{Assignment, LeasedTask};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::handler::Handler;

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Tasks processed at once.
    pub concurrency: usize,
    /// Extend leases while a task runs (off reproduces the origin's timeout).
    pub extend: bool,
    /// Return once the cluster says there is nothing idle or in progress.
    pub exit_when_done: bool,
    /// How long one `request` waits for a task.
    pub poll_wait: Duration,
    /// Queues to take from, in order of preference (empty: any).
    pub queues: Vec<String>,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            concurrency: 1,
            extend: true,
            exit_when_done: false,
            poll_wait: Duration::from_secs(5),
            queues: Vec::new(),
        }
    }
}

/// What a worker did, counted by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Results recorded.
    pub completed: u64,
    /// Failures recorded.
    pub failed: u64,
    /// Submissions answered Stale or Duplicate (not recorded).
    pub fenced: u64,
    /// Tasks stopped because they were cancelled.
    pub cancelled: u64,
}

#[derive(Default)]
struct Counters {
    completed: AtomicU64,
    failed: AtomicU64,
    fenced: AtomicU64,
    cancelled: AtomicU64,
}

/// A pull worker.
pub struct Worker {
    client: Arc<Client>,
    id: WorkerId,
    options: WorkerOptions,
    counters: Arc<Counters>,
}

impl Worker {
    /// A worker named `id` that talks to the cluster through `client`.
    pub fn new(client: Arc<Client>, id: WorkerId, options: WorkerOptions) -> Worker {
        Worker { client, id, options, counters: Arc::default() }
    }

    /// Runs until `stop` is cancelled, or until the cluster is drained with
    /// `exit_when_done`. Returns an error only when the cluster cannot be
    /// reached within the client's retry budget.
    pub async fn run(
        &self,
        handler: Handler,
        stop: CancellationToken,
    ) -> Result<Summary, ClientError> {
        let done = stop.child_token();
        let mut slots = tokio::task::JoinSet::new();
        for _ in 0..self.options.concurrency.max(1) {
            let slot = Slot {
                client: self.client.clone(),
                id: self.id.clone(),
                options: self.options.clone(),
                counters: self.counters.clone(),
                handler: handler.clone(),
            };
            let done = done.clone();
            slots.spawn(async move { slot.run(done).await });
        }
        let mut result = Ok(());
        while let Some(joined) = slots.join_next().await {
            if let Ok(Err(e)) = joined {
                done.cancel();
                result = Err(e);
            }
        }
        result.map(|()| self.summary())
    }

    /// Counts so far.
    pub fn summary(&self) -> Summary {
        Summary {
            completed: self.counters.completed.load(Ordering::Relaxed),
            failed: self.counters.failed.load(Ordering::Relaxed),
            fenced: self.counters.fenced.load(Ordering::Relaxed),
            cancelled: self.counters.cancelled.load(Ordering::Relaxed),
        }
    }
}

struct Slot {
    client: Arc<Client>,
    id: WorkerId,
    options: WorkerOptions,
    counters: Arc<Counters>,
    handler: Handler,
}

impl Slot {
    async fn run(self, done: CancellationToken) -> Result<(), ClientError> {
        // A lease handed over with the previous result (complete_and_request).
        let mut next: Option<Assignment> = None;
        loop {
            let answer = match next.take() {
                Some(answer) => answer,
                None => {
                    let request = self.client.request_from(
                        &self.id,
                        1,
                        self.options.poll_wait,
                        &self.options.queues,
                    );
                    tokio::select! {
                        _ = done.cancelled() => return Ok(()),
                        answer = request => answer?,
                    }
                }
            };
            match answer {
                Assignment::Leased { tasks, lease_timeout_ms } => {
                    let count = tasks.len();
                    for (i, task) in tasks.into_iter().enumerate() {
                        let timeout = Duration::from_millis(lease_timeout_ms);
                        next = self.process(task, timeout, i + 1 == count, &done).await?;
                    }
                }
                Assignment::NoTask => {}
                Assignment::Drained if self.options.exit_when_done => {
                    info!(worker = %self.id, "no task idle or in progress; exiting");
                    done.cancel();
                    return Ok(());
                }
                Assignment::Drained => {}
            }
        }
    }

    /// Runs one task and reports its result. A success of the `last` task
    /// in hand also leases the next task in the same call, unless the worker
    /// is draining, and returns that assignment.
    async fn process(
        &self,
        task: LeasedTask,
        lease_timeout: Duration,
        last: bool,
        done: &CancellationToken,
    ) -> Result<Option<Assignment>, ClientError> {
        let lease = task.lease;
        info!(worker = %self.id, %lease, "processing");
        let heartbeat = CancellationToken::new();
        let cancelled = CancellationToken::new();
        if self.options.extend {
            tokio::spawn(extend_lease(
                self.client.clone(),
                self.id.clone(),
                task.lease,
                lease_timeout / 3,
                heartbeat.clone(),
                cancelled.clone(),
            ));
        }
        let result = tokio::select! {
            r = (self.handler)(lease.task, task.data) => r,
            _ = cancelled.cancelled() => {
                // Dropping the handler stops it; the task already ended cancelled.
                heartbeat.cancel();
                self.counters.cancelled.fetch_add(1, Ordering::Relaxed);
                info!(worker = %self.id, %lease, "task cancelled; handler stopped");
                return Ok(None);
            }
        };
        heartbeat.cancel();
        let (outcome, next) = match result {
            Ok(data) if last && !done.is_cancelled() => {
                let (outcomes, next) = self
                    .client
                    .complete_and_request_from(
                        &self.id,
                        vec![(lease, data)],
                        1,
                        &self.options.queues,
                    )
                    .await?;
                let outcome = outcomes.first().copied().unwrap_or(Outcome::NotFound);
                (outcome, Some(next))
            }
            Ok(data) => (self.client.complete(lease, &self.id, data).await?, None),
            Err(message) => {
                warn!(worker = %self.id, %lease, error = %message, "task failed");
                let o = self.client.fail(lease, &self.id, message).await?;
                if o == Outcome::Accepted {
                    self.counters.failed.fetch_add(1, Ordering::Relaxed);
                }
                self.count_fenced(o, lease);
                return Ok(None);
            }
        };
        if outcome == Outcome::Accepted {
            self.counters.completed.fetch_add(1, Ordering::Relaxed);
            info!(worker = %self.id, %lease, "completed");
        }
        self.count_fenced(outcome, lease);
        Ok(next)
    }

    fn count_fenced(&self, outcome: Outcome, lease: taskraft_core::Lease) {
        if matches!(
            outcome,
            Outcome::Stale | Outcome::Duplicate | Outcome::NotFound | Outcome::Cancelled
        ) {
            self.counters.fenced.fetch_add(1, Ordering::Relaxed);
            warn!(worker = %self.id, %lease, ?outcome, "result not used: the lease was no longer ours");
        }
    }
}

/// Extends `lease` every `every` until `stop` fires or the lease is lost;
/// fires `cancelled` when the answer says the task was cancelled.
async fn extend_lease(
    client: Arc<Client>,
    worker: WorkerId,
    lease: taskraft_core::Lease,
    every: Duration,
    stop: CancellationToken,
    cancelled: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        match client.extend(lease, &worker).await {
            Ok(Outcome::Accepted) => {}
            Ok(Outcome::Cancelled) => {
                cancelled.cancel();
                return;
            }
            Ok(outcome) => {
                warn!(%worker, %lease, ?outcome, "lease lost; the result will not be used");
                return;
            }
            Err(e) => warn!(%worker, %lease, error = %e, "could not extend the lease"),
        }
    }
}
