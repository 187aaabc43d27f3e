//! Push dispatch: the leader calls `DoTask` on push workers.
//!
//! A leader duty (see [`crate::leader`]): while this node leads, every healthy
//! push worker (registered through Raft, or listed in `cluster.toml`) gets up
//! to `capacity` tasks in flight. Each task is assigned through Raft first,
//! with the same lease and fencing as pull mode; the call's deadline is the
//! lease timeout; the answer is recorded with `Complete` (or `Fail`).
//!
//! A worker whose call fails or times out is marked unhealthy, its task is
//! failed back to the queue, and it is probed with exponential backoff
//! before it gets work again.
//!
//! On loss of leadership the dispatcher's token is cancelled: calls in flight
//! are dropped, their leases expire on the new leader and the tasks are
//! dispatched again. A result that arrives late is fenced like any other.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use tarpc::context;
use taskraft_core::{Command, Lease, Outcome, Response, WorkerId};
use taskraft_proto::auth::Credentials;
use taskraft_proto::client::PushWorkerStatus;
use taskraft_proto::config::{ClusterSettings, PushWorkerConfig};
use taskraft_proto::push::WorkerServiceClient;
use taskraft_proto::transport;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::store::Applied;
use crate::{now_ms, Raft};

/// How often a push worker renews its registration.
pub const RENEW_INTERVAL_MS: u64 = 2000;
/// A registration lapses after this long without renewal.
pub const REGISTRATION_TTL_MS: u64 = 3 * RENEW_INTERVAL_MS;
/// Deadline of a connection attempt or a ping.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest pause between two probes of an unhealthy worker.
const MAX_PROBE_BACKOFF: Duration = Duration::from_secs(10);

/// Connects to a push worker and asks who it is.
pub async fn ping(
    addr: &str,
    token: &Credentials,
) -> Result<(WorkerId, WorkerServiceClient), String> {
    let t = transport::connect(addr, PROBE_TIMEOUT, token).await.map_err(|e| e.to_string())?;
    let client = WorkerServiceClient::new(tarpc::client::Config::default(), t).spawn();
    let mut ctx = context::current();
    ctx.deadline = Instant::now() + PROBE_TIMEOUT;
    let id = client.ping(ctx).await.map_err(|e| e.to_string())?;
    Ok((id, client))
}

/// One push worker as the dispatcher tracks it.
struct Slot {
    addr: String,
    capacity: u32,
    healthy: bool,
    probing: bool,
    in_flight: u32,
    completed: u64,
    probe_at: Instant,
    backoff: Duration,
    client: Option<WorkerServiceClient>,
}

/// The leader's view of its push workers; shared with the API for `status`.
#[derive(Clone, Default)]
pub struct PushBoard(Arc<Mutex<BTreeMap<WorkerId, Slot>>>);

impl PushBoard {
    /// Whether no push worker is known.
    fn is_empty(&self) -> bool {
        self.0.lock().is_empty()
    }

    /// Every known push worker, for `status`.
    pub fn status(&self) -> Vec<PushWorkerStatus> {
        let board = self.0.lock();
        board
            .iter()
            .map(|(id, s)| PushWorkerStatus {
                id: id.clone(),
                addr: s.addr.clone(),
                healthy: s.healthy,
                in_flight: s.in_flight,
                completed: s.completed,
                capacity: s.capacity,
            })
            .collect()
    }

    /// Adds workers that appeared, drops those that left (keeping the
    /// counters of those that stay).
    fn sync(&self, wanted: BTreeMap<WorkerId, (String, u32)>) {
        let mut board = self.0.lock();
        board.retain(|id, s| wanted.get(id).is_some_and(|(addr, _)| *addr == s.addr));
        for (id, (addr, capacity)) in wanted {
            let slot = board.entry(id).or_insert_with(|| Slot {
                addr,
                capacity,
                healthy: false,
                probing: false,
                in_flight: 0,
                completed: 0,
                probe_at: Instant::now(),
                backoff: Duration::from_millis(250),
                client: None,
            });
            slot.capacity = capacity;
        }
    }

    /// Healthy workers with free capacity, and how much; reserves it.
    fn reserve_free(&self) -> Vec<(WorkerId, WorkerServiceClient, u32)> {
        let mut board = self.0.lock();
        board
            .iter_mut()
            .filter(|(_, s)| s.healthy && s.in_flight < s.capacity && s.client.is_some())
            .map(|(id, s)| {
                let free = s.capacity - s.in_flight;
                s.in_flight = s.capacity;
                (id.clone(), s.client.clone().expect("filtered"), free)
            })
            .collect()
    }

    /// Unhealthy workers due for a probe; marks them as being probed.
    fn due_probes(&self) -> Vec<(WorkerId, String)> {
        let mut board = self.0.lock();
        let now = Instant::now();
        board
            .iter_mut()
            .filter(|(_, s)| !s.healthy && !s.probing && s.probe_at <= now)
            .map(|(id, s)| {
                s.probing = true;
                (id.clone(), s.addr.clone())
            })
            .collect()
    }

    fn with(&self, id: &WorkerId, f: impl FnOnce(&mut Slot)) {
        if let Some(s) = self.0.lock().get_mut(id) {
            f(s);
        }
    }

    fn mark_unhealthy(&self, id: &WorkerId, why: &str) {
        self.with(id, |s| {
            if s.healthy {
                warn!(worker = %id, addr = %s.addr, error = why, "push worker unhealthy; probing with backoff");
            }
            s.healthy = false;
            s.client = None;
            s.probe_at = Instant::now() + s.backoff;
            s.backoff = (s.backoff * 2).min(MAX_PROBE_BACKOFF);
        });
    }
}

/// What the dispatcher needs; cloned into every call it makes.
#[derive(Clone)]
pub struct Dispatcher {
    /// This node's Raft.
    pub raft: Raft,
    /// The applied table.
    pub applied: Arc<RwLock<Applied>>,
    /// Wakes the dispatcher after every apply (while it has workers).
    pub applied_index: watch::Receiver<u64>,
    /// Wakes the dispatcher when the registry changed (while it has none).
    pub registry: watch::Receiver<u64>,
    /// Lease timeout and payload limit.
    pub settings: ClusterSettings,
    /// Workers listed in `cluster.toml`.
    pub configured: Vec<PushWorkerConfig>,
    /// The shared view for `status`.
    pub board: PushBoard,
    /// The cluster token, proved to push workers too.
    pub token: Credentials,
}

impl Dispatcher {
    /// Runs until `token` is cancelled (leadership lost or shutdown).
    pub async fn run(mut self, token: CancellationToken) {
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<()>();
        loop {
            self.board.sync(self.wanted());
            for (id, addr) in self.board.due_probes() {
                tokio::spawn(self.clone().probe(id, addr, done_tx.clone()));
            }
            self.dispatch(&token, &done_tx).await;
            // Without push workers there is nothing to dispatch on an apply:
            // only a registration can change that, so wait for one instead
            // of waking on every write.
            let idle = self.board.is_empty();
            tokio::select! {
                _ = token.cancelled() => break,
                _ = self.applied_index.changed(), if !idle => {}
                _ = self.registry.changed(), if idle => {}
                _ = done_rx.recv() => {}
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
        }
        self.board.sync(BTreeMap::new());
    }

    /// Live registrations plus configured workers.
    fn wanted(&self) -> BTreeMap<WorkerId, (String, u32)> {
        let now = now_ms();
        let a = self.applied.read();
        let mut wanted: BTreeMap<WorkerId, (String, u32)> = a
            .table
            .push_workers()
            .filter(|w| w.live(now))
            .map(|w| (w.id.clone(), (w.addr.clone(), w.capacity)))
            .collect();
        for w in &self.configured {
            wanted.entry(WorkerId(w.id.clone())).or_insert((w.addr.clone(), w.capacity));
        }
        wanted
    }

    async fn dispatch(&self, token: &CancellationToken, done: &mpsc::UnboundedSender<()>) {
        for (id, client, free) in self.board.reserve_free() {
            // Idle tasks only in a paused or capped queue are not leasable:
            // an `Assign` for them would write an empty entry, whose apply
            // would wake this loop to write another.
            let leasable =
                self.applied.read().table.leasable(&[], now_ms(), self.settings.aging_ms);
            let tasks = if !leasable {
                Vec::new()
            } else {
                let cmd = Command::Assign {
                    worker: id.clone(),
                    max: free,
                    now_ms: now_ms(),
                    aging_ms: self.settings.aging_ms,
                    queues: Vec::new(),
                };
                match self.raft.client_write(cmd).await {
                    Ok(r) => match r.data {
                        Response::Assigned(tasks) => tasks,
                        _ => Vec::new(),
                    },
                    Err(e) => {
                        warn!(error = %e, "push dispatch could not assign");
                        Vec::new()
                    }
                }
            };
            let unused = free - tasks.len() as u32;
            self.board.with(&id, |s| s.in_flight -= unused);
            for task in tasks {
                let Some(lease) = task.lease() else { continue };
                let call =
                    self.clone().call(id.clone(), client.clone(), lease, task.data, done.clone());
                let token = token.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        _ = token.cancelled() => {}
                        _ = call => {}
                    }
                });
            }
        }
    }

    /// Calls `DoTask` and records the answer through Raft.
    async fn call(
        self,
        id: WorkerId,
        client: WorkerServiceClient,
        lease: Lease,
        data: Vec<u8>,
        done: mpsc::UnboundedSender<()>,
    ) {
        let mut ctx = context::current();
        ctx.deadline = Instant::now() + Duration::from_millis(self.settings.lease_timeout_ms);
        let limit = self.settings.max_payload_bytes;
        let answer = tokio::select! {
            a = client.do_task(ctx, lease, data) => a,
            () = self.cancelled(lease) => {
                // Tell the worker, best effort; the Fail below is answered
                // Cancelled and ends the task cancelled either way.
                let mut ctx = context::current();
                ctx.deadline = Instant::now() + PROBE_TIMEOUT;
                let stopped = client.cancel(ctx, lease).await.unwrap_or(false);
                info!(%lease, worker = %id, stopped, "push task cancelled; worker told");
                Ok(Err("cancelled".to_string()))
            }
        };
        let cmd = match answer {
            Ok(Ok(result)) if result.len() as u64 <= limit => {
                Command::Complete { lease, worker: id.clone(), result, now_ms: now_ms() }
            }
            Ok(Ok(result)) => {
                let error = format!(
                    "result is {} bytes; the cluster's max_payload_bytes is {limit}",
                    result.len()
                );
                Command::Fail { lease, worker: id.clone(), error, now_ms: now_ms() }
            }
            Ok(Err(error)) => Command::Fail { lease, worker: id.clone(), error, now_ms: now_ms() },
            Err(e) => {
                let error = format!("push worker {id} did not answer: {e}");
                self.board.mark_unhealthy(&id, &error);
                Command::Fail { lease, worker: id.clone(), error, now_ms: now_ms() }
            }
        };
        let completing = matches!(cmd, Command::Complete { .. });
        let outcome = match self.raft.client_write(cmd).await {
            Ok(r) => match r.data {
                Response::Outcome(o) => Some(o),
                _ => None,
            },
            Err(_) => None, // no longer leader: the lease expires on the new one
        };
        if completing && outcome == Some(Outcome::Accepted) {
            self.board.with(&id, |s| s.completed += 1);
        } else if matches!(outcome, Some(Outcome::Stale | Outcome::Duplicate)) {
            info!(%lease, worker = %id, ?outcome, "fenced push result: not recorded");
        }
        self.board.with(&id, |s| s.in_flight = s.in_flight.saturating_sub(1));
        let _ = done.send(());
    }

    /// Resolves once the task of `lease` is being cancelled (never, if it is not).
    async fn cancelled(&self, lease: Lease) {
        let mut applied = self.applied_index.clone();
        loop {
            let cancelling = {
                let a = self.applied.read();
                a.table.get(lease.task).is_some_and(|t| t.cancelling && t.lease() == Some(lease))
            };
            if cancelling {
                return;
            }
            if applied.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Checks an unhealthy worker; healthy again when it answers with its id.
    async fn probe(self, id: WorkerId, addr: String, done: mpsc::UnboundedSender<()>) {
        let answer = ping(&addr, &self.token).await;
        match answer {
            Ok((who, client)) if who == id => {
                info!(worker = %id, %addr, "push worker healthy");
                self.board.with(&id, |s| {
                    s.healthy = true;
                    s.probing = false;
                    s.client = Some(client);
                    s.backoff = Duration::from_millis(250);
                });
            }
            other => {
                let why = match other {
                    Ok((who, _)) => format!("{addr} answers as worker {who}"),
                    Err(e) => e,
                };
                self.board.mark_unhealthy(&id, &why);
                self.board.with(&id, |s| s.probing = false);
            }
        }
        let _ = done.send(());
    }
}
