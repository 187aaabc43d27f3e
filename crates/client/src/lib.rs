//! The taskraft client library: from a seed list to the leader, and the one
//! retry policy every caller uses.
//!
//! [`Client`] keeps one multiplexed connection per master it has talked to.
//! A call goes to the last known leader (or the next seed), follows
//! `NotLeader { leader }` redirects at once, and otherwise retries with
//! jittered exponential backoff until the client's overall deadline. Every
//! single attempt has its own deadline, so a paused or partitioned master
//! costs at most that long.
//!
//! The client keeps its list of masters current: whenever it finds a new
//! leader (and at least every [`MEMBERS_REFRESH`]), it reads the live
//! membership from `status` and tries those addresses first, then its
//! seeds. So a worker seeded with nodes 1 to 3 keeps working after node 1
//! was replaced by node 4, and after nodes 2 and 3 go too.
//!
//! A call whose outcome is unknown (a timeout, a broken connection, an
//! `Unavailable` answer) is retried only when retrying is safe: lease calls
//! are fenced by the lease, `request` at worst leases a task that then
//! expires, and reads change nothing. A submit is retried after an unknown
//! outcome only when every task carries an idempotency key.

#![warn(clippy::all)]

mod backup;
mod members;
mod routing;

pub use members::Progress;
use routing::State;
pub use routing::MEMBERS_REFRESH;

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rand::Rng;
use tarpc::client::RpcError;
use tarpc::context;
use taskraft_core::{Lease, NewTask, Outcome, Status, Submitted, Task, TaskId, WorkerId};
use taskraft_proto::auth::Credentials;
use taskraft_proto::client::{
    Assignment, ClientServiceClient, ClusterStatus, NodeReport, TaskPage, MAX_PAGE_TASKS,
};
use taskraft_proto::WireError;
use tracing::{debug, warn};

/// How a client times and retries its calls.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Deadline of one attempt (a long poll adds its wait to this).
    pub call_timeout: Duration,
    /// How long one call keeps retrying before it gives up.
    pub retry_for: Duration,
    /// First pause between attempts; doubles up to `max_backoff`, with jitter.
    pub min_backoff: Duration,
    /// Longest pause between attempts.
    pub max_backoff: Duration,
    /// The cluster token every connection proves.
    pub token: Credentials,
    /// Dial the second address instead of the first (a proxy in between,
    /// as fault tests put one); addresses not listed are dialled as they are.
    pub routes: std::collections::BTreeMap<String, String>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            call_timeout: Duration::from_millis(1500),
            retry_for: Duration::from_secs(30),
            min_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(100),
            token: Credentials::default(),
            routes: Default::default(),
        }
    }
}

/// Why a call failed for good.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The cluster refused the request; retrying it unchanged will not help.
    #[error("{0}")]
    Refused(WireError),
    /// No leader answered within the retry budget.
    #[error("no leader answered within {waited:?} (seeds {seeds}); last error: {last}")]
    Unavailable { waited: Duration, seeds: String, last: String },
    /// The outcome is unknown and the call is not safe to retry.
    #[error("the outcome is unknown ({0}); submit with keys to make retries safe")]
    Unknown(String),
    /// The client was built without seeds.
    #[error(
        "no seed addresses: pass --seeds, set TASKRAFT_SEEDS, or point --config at cluster.toml"
    )]
    NoSeeds,
}

/// The result of a client call.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// A call that keeps retrying says so at most this often.
const WARN_EVERY: Duration = Duration::from_secs(5);

/// What one attempt told us to do next.
enum Next {
    Redirect(String),
    Backoff(String),
}

/// A connection to a taskraft cluster through its seed list.
pub struct Client {
    seeds: Vec<String>,
    options: ClientOptions,
    state: Mutex<State>,
}

impl Client {
    /// A client of the cluster whose client addresses include `seeds`.
    pub fn new(seeds: Vec<String>) -> Client {
        Client::with_options(seeds, ClientOptions::default())
    }

    /// A client with its own timing.
    pub fn with_options(seeds: Vec<String>, options: ClientOptions) -> Client {
        let state = State {
            leader: None,
            next_seed: 0,
            conns: HashMap::new(),
            members: Vec::new(),
            refreshed: None,
        };
        Client { seeds, options, state: Mutex::new(state) }
    }

    /// The seed list.
    pub fn seeds(&self) -> &[String] {
        &self.seeds
    }

    /// The address that answered last as the leader, if any.
    pub fn leader(&self) -> Option<String> {
        self.state.lock().leader.clone()
    }

    /// Runs `f` against the leader with redirects and retries.
    /// `extra` lengthens each attempt's deadline (a long poll's wait);
    /// `idempotent` says whether an unknown outcome may be retried.
    async fn call<T, F, Fut>(&self, extra: Duration, idempotent: bool, f: F) -> Result<T>
    where
        F: Fn(ClientServiceClient, context::Context) -> Fut,
        Fut: Future<Output = std::result::Result<std::result::Result<T, WireError>, RpcError>>,
    {
        if self.seeds.is_empty() {
            return Err(ClientError::NoSeeds);
        }
        let started = Instant::now();
        let mut backoff = self.options.min_backoff;
        let mut attempts = 0u32;
        let mut last_warning = Instant::now();
        loop {
            let addr = self.target().expect("seeds are not empty");
            let next = match self.connection(&addr).await {
                Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                    return Err(ClientError::Refused(WireError::Unauthorized(format!(
                        "{addr}: {e}"
                    ))));
                }
                Err(e) => {
                    self.forget(&addr, true);
                    Next::Backoff(format!("cannot connect to {addr}: {e}"))
                }
                Ok(conn) => {
                    let mut ctx = context::current();
                    ctx.deadline = Instant::now() + self.options.call_timeout + extra;
                    match f(conn.clone(), ctx).await {
                        Ok(Ok(v)) => {
                            if self.answered(addr) {
                                self.refresh_members(&conn).await;
                            }
                            return Ok(v);
                        }
                        Ok(Err(WireError::NotLeader { leader: Some(hint) }))
                            if hint.client_addr != addr =>
                        {
                            Next::Redirect(hint.client_addr)
                        }
                        Ok(Err(e @ WireError::NotLeader { .. })) => {
                            self.forget(&addr, false);
                            Next::Backoff(format!("{addr}: {e}"))
                        }
                        Ok(Err(e @ WireError::Unavailable(_))) => {
                            self.forget(&addr, false);
                            if !idempotent {
                                return Err(ClientError::Unknown(e.to_string()));
                            }
                            Next::Backoff(format!("{addr}: {e}"))
                        }
                        Ok(Err(e)) => return Err(ClientError::Refused(e)),
                        Err(e) => {
                            let broken = !matches!(e, RpcError::DeadlineExceeded);
                            self.forget(&addr, broken);
                            if !idempotent {
                                return Err(ClientError::Unknown(format!("{addr}: {e}")));
                            }
                            Next::Backoff(format!("{addr}: {e}"))
                        }
                    }
                }
            };
            attempts += 1;
            match next {
                Next::Redirect(to) if attempts < 16 => {
                    debug!(to = %to, "redirected to the leader");
                    self.state.lock().leader = Some(to);
                }
                Next::Redirect(to) | Next::Backoff(to) => {
                    if started.elapsed() >= self.options.retry_for {
                        return Err(ClientError::Unavailable {
                            waited: started.elapsed(),
                            seeds: self.seeds.join(","),
                            last: to,
                        });
                    }
                    if last_warning.elapsed() >= WARN_EVERY {
                        warn!(attempts, last = %to, "still looking for the leader; retrying with backoff");
                        last_warning = Instant::now();
                    } else {
                        debug!(last = %to, "retrying");
                    }
                    let jitter = rand::thread_rng().gen_range(0.5..1.0);
                    tokio::time::sleep(backoff.mul_f64(jitter)).await;
                    backoff = (backoff * 2).min(self.options.max_backoff);
                }
            }
        }
    }

    /// Adds tasks; ids come back in order.
    pub async fn submit(&self, tasks: Vec<NewTask>) -> Result<Vec<Submitted>> {
        let keyed = tasks.iter().all(|t| t.key.is_some());
        self.call(Duration::ZERO, keyed, |c, ctx| {
            let tasks = tasks.clone();
            async move { c.submit(ctx, tasks).await }
        })
        .await
    }

    /// Leases up to `max` tasks from any queue, waiting up to `wait` for one.
    pub async fn request(&self, worker: &WorkerId, max: u32, wait: Duration) -> Result<Assignment> {
        self.request_from(worker, max, wait, &[]).await
    }

    /// Leases up to `max` tasks from `queues` (in that order of preference;
    /// empty or `*`: any), waiting up to `wait` for one.
    pub async fn request_from(
        &self,
        worker: &WorkerId,
        max: u32,
        wait: Duration,
        queues: &[String],
    ) -> Result<Assignment> {
        let wait_ms = wait.as_millis() as u64;
        self.call(wait, true, |c, ctx| {
            let (worker, queues) = (worker.clone(), queues.to_vec());
            async move { c.request(ctx, worker, max, wait_ms, queues).await }
        })
        .await
    }

    /// Records a lease's result.
    pub async fn complete(
        &self,
        lease: Lease,
        worker: &WorkerId,
        result: Vec<u8>,
    ) -> Result<Outcome> {
        self.call(Duration::ZERO, true, |c, ctx| {
            let (worker, result) = (worker.clone(), result.clone());
            async move { c.complete(ctx, lease, worker, result).await }
        })
        .await
    }

    /// Records the results of several leases and leases up to `max` idle
    /// tasks, all in one commit; `NoTask` when nothing was idle (it does not wait).
    pub async fn complete_and_request(
        &self,
        worker: &WorkerId,
        results: Vec<(Lease, Vec<u8>)>,
        max: u32,
    ) -> Result<(Vec<Outcome>, Assignment)> {
        self.complete_and_request_from(worker, results, max, &[]).await
    }

    /// [`Client::complete_and_request`], leasing only from `queues`.
    pub async fn complete_and_request_from(
        &self,
        worker: &WorkerId,
        results: Vec<(Lease, Vec<u8>)>,
        max: u32,
        queues: &[String],
    ) -> Result<(Vec<Outcome>, Assignment)> {
        self.call(Duration::ZERO, true, |c, ctx| {
            let (worker, results, queues) = (worker.clone(), results.clone(), queues.to_vec());
            async move { c.complete_and_request(ctx, worker, results, max, queues).await }
        })
        .await
    }

    /// Reports a lease's failure.
    pub async fn fail(&self, lease: Lease, worker: &WorkerId, error: String) -> Result<Outcome> {
        self.call(Duration::ZERO, true, |c, ctx| {
            let (worker, error) = (worker.clone(), error.clone());
            async move { c.fail(ctx, lease, worker, error).await }
        })
        .await
    }

    /// Restarts a lease's clock.
    pub async fn extend(&self, lease: Lease, worker: &WorkerId) -> Result<Outcome> {
        self.call(Duration::ZERO, true, |c, ctx| {
            let worker = worker.clone();
            async move { c.extend(ctx, lease, worker).await }
        })
        .await
    }

    /// Members, leader, term and counts.
    pub async fn status(&self) -> Result<ClusterStatus> {
        let status =
            self.call(Duration::ZERO, true, |c, ctx| async move { c.status(ctx).await }).await?;
        self.learn(&status);
        Ok(status)
    }

    /// A page of tasks in id order after `after`; follow `next_after` for the next.
    pub async fn tasks(
        &self,
        status: Option<Status>,
        after: Option<TaskId>,
        limit: u32,
    ) -> Result<TaskPage> {
        self.call(
            Duration::ZERO,
            true,
            |c, ctx| async move { c.tasks(ctx, status, after, limit).await },
        )
        .await
    }

    /// Every task (optionally of one status), fetched page by page.
    pub async fn all_tasks(&self, status: Option<Status>) -> Result<Vec<Task>> {
        let (mut all, mut after) = (Vec::new(), None);
        loop {
            let page = self.tasks(status, after, MAX_PAGE_TASKS).await?;
            all.extend(page.tasks);
            match page.next_after {
                Some(next) => after = Some(next),
                None => return Ok(all),
            }
        }
    }

    /// Registers (or renews) a push worker; returns how often to renew (ms).
    /// A registration is idempotent, so an unknown outcome is retried.
    pub async fn register(&self, worker: &WorkerId, addr: &str, capacity: u32) -> Result<u64> {
        self.call(Duration::ZERO, true, |c, ctx| {
            let (worker, addr) = (worker.clone(), addr.to_string());
            async move { c.register(ctx, worker, addr, capacity).await }
        })
        .await
    }

    /// Removes a push worker's registration.
    pub async fn deregister(&self, worker: &WorkerId) -> Result<()> {
        self.call(Duration::ZERO, true, |c, ctx| {
            let worker = worker.clone();
            async move { c.deregister(ctx, worker).await }
        })
        .await
    }

    /// One node's own view, asked of that node only (one attempt, no redirects).
    pub async fn node_report_at(&self, addr: &str) -> Result<NodeReport> {
        let unavailable = |last: String| ClientError::Unavailable {
            waited: self.options.call_timeout,
            seeds: addr.to_string(),
            last,
        };
        let conn = self.connection(addr).await.map_err(|e| unavailable(e.to_string()))?;
        let mut ctx = context::current();
        ctx.deadline = Instant::now() + self.options.call_timeout;
        conn.node_report(ctx).await.map_err(|e| {
            self.forget(addr, true);
            unavailable(e.to_string())
        })
    }

    /// Cancels the task with idempotency `key`, or up to 10,000 unfinished
    /// tasks of `queue` (call again while it returns that many).
    pub async fn cancel_where(
        &self,
        key: Option<String>,
        queue: Option<String>,
    ) -> Result<Vec<(TaskId, Outcome)>> {
        self.call(Duration::ZERO, true, |c, ctx| {
            let (key, queue) = (key.clone(), queue.clone());
            async move { c.cancel_where(ctx, key, queue).await }
        })
        .await
    }

    /// Changes a queue's limits (online; replicated). Retrying is safe.
    pub async fn set_queue(&self, queue: &str, change: taskraft_core::QueueChange) -> Result<()> {
        self.call(Duration::ZERO, true, |c, ctx| {
            let (queue, change) = (queue.to_string(), change.clone());
            async move { c.set_queue(ctx, queue, change).await }
        })
        .await
    }

    /// Cancels unfinished tasks; one outcome per id. Retrying is safe: a
    /// second cancel of the same task answers `Stale` or `Duplicate`.
    pub async fn cancel(&self, ids: Vec<TaskId>) -> Result<Vec<Outcome>> {
        self.call(Duration::ZERO, true, |c, ctx| {
            let ids = ids.clone();
            async move { c.cancel(ctx, ids).await }
        })
        .await
    }

    /// Re-queues dead or cancelled tasks with a fresh attempt budget
    /// (`max_attempts`, 0: the cluster's); one outcome per id. Retrying the
    /// call is safe: a task already re-queued answers `Stale`.
    pub async fn retry(&self, ids: Vec<TaskId>, max_attempts: u32) -> Result<Vec<Outcome>> {
        self.call(Duration::ZERO, true, |c, ctx| {
            let ids = ids.clone();
            async move { c.retry(ctx, ids, max_attempts).await }
        })
        .await
    }

    /// One task.
    pub async fn task(&self, id: TaskId) -> Result<Task> {
        self.call(Duration::ZERO, true, |c, ctx| async move { c.task(ctx, id).await }).await
    }
}
