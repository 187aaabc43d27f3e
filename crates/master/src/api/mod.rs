//! [`Api`]: the client service, answered by the leader.
//!
//! Writes go through `raft.client_write` and are answered after they are
//! committed and applied; reads first confirm leadership with a quorum
//! (openraft's `get_read_log_id`) and wait until the table holds every entry of
//! the leader's log (see `linearizable`). A node that is not the leader answers
//! `NotLeader` with the leader's client address when it knows one.
//!
//! Input is checked before anything is proposed ([`checks`]): an oversized
//! payload, an empty worker id or an absurd wait is refused and nothing is
//! written.
//!
//! The service's trait impl below only delegates, one line a call, to
//! - [`work`]: submit and the worker protocol (request, complete, fail, extend);
//! - [`read`]: status, tasks, task, node_report;
//! - [`push`]: push worker registration;
//! - [`backup`]: consistent images of the table, streamed in chunks;
//! - [`members`]: membership changes (add a learner, promote, remove);
//! - [`manage`]: cancel and retry.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ForwardToLeader, RaftError};
use openraft::{ServerState, TryAsRef};
use parking_lot::RwLock;
use tarpc::context::Context;
use taskraft_core::{
    Command, Lease, NewTask, Outcome, PageLimits, Response, Status, Submitted, Task, TaskId,
    WorkerId,
};
use taskraft_proto::auth::Credentials;
use taskraft_proto::client::{
    Assignment, BackupInfo, ClientService, ClusterStatus, LeasedTask, MemberStatus, NodeReport,
    TaskPage, MAX_PAGE_BYTES, MAX_PAGE_SCAN, MAX_PAGE_TASKS, MAX_TASKS_PER_REQUEST,
    MAX_TASKS_PER_SUBMIT, MAX_WAIT_MS, MAX_WORKER_ID_BYTES,
};
use taskraft_proto::config::ClusterSettings;
use taskraft_proto::{LeaderHint, NodeId, NodeInfo, WireError};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::dispatch::{self, PushBoard, REGISTRATION_TTL_MS, RENEW_INTERVAL_MS};
use crate::metrics::Metrics;
use crate::network::PeerNetwork;
use crate::proposer::Proposer;
use crate::store::{Applied, LogStore, StateMachine};
use crate::{now_ms, Raft};

/// Longest idempotency key accepted.
const MAX_KEY_BYTES: usize = 1024;

/// What a node hands its API besides Raft and the table.
pub struct Wiring {
    /// The `[cluster]` settings.
    pub settings: ClusterSettings,
    /// Push workers as the dispatcher sees them.
    pub board: PushBoard,
    /// The cluster token, proved to push workers at registration.
    pub token: Credentials,
    /// This node's data dir.
    pub data_dir: PathBuf,
    /// The peer network.
    pub network: PeerNetwork,
    /// This node's metrics (commit latency, group sizes).
    pub metrics: Arc<Metrics>,
    /// This node's Raft log, for the read index.
    pub log: LogStore,
}

/// One worker's leases, as the console shows them.
#[derive(Debug, Clone)]
pub struct Holder {
    /// The worker.
    pub worker: WorkerId,
    /// Leases it holds.
    pub holding: u64,
    /// Start of its oldest lease (ms).
    pub oldest_lease_ms: u64,
    /// Its oldest few tasks.
    pub tasks: Vec<u64>,
}

impl Holder {
    /// Tasks listed per worker.
    pub const SHOWN: usize = 5;
}

/// The client service of one node. Cheap to clone.
#[derive(Clone)]
pub struct Api(Arc<Inner>);

struct Inner {
    raft: Raft,
    applied: Arc<RwLock<Applied>>,
    applied_index: watch::Receiver<u64>,
    settings: ClusterSettings,
    /// How long a proposal may wait for commit before the answer is "unknown".
    propose_timeout: Duration,
    /// Push workers as the dispatcher sees them.
    board: PushBoard,
    /// Group commit in front of Raft.
    proposer: Proposer,
    /// The cluster token, proved to push workers at registration.
    token: Credentials,
    /// This node's data dir (its size is reported; backups are staged there).
    data_dir: PathBuf,
    /// Backups being read from this node.
    backups: backup::Backups,
    /// The peer network: which peers answer, and the resignation notice.
    network: PeerNetwork,
    /// The Raft log: its last entry is the read index.
    log: LogStore,
}

mod backup;
mod checks;
mod manage;
mod members;
mod push;
mod read;
mod work;

impl Api {
    /// The API of a node whose Raft is `raft` and whose table `sm` holds.
    pub fn new(raft: Raft, sm: &StateMachine, wiring: Wiring) -> Api {
        let Wiring { settings, board, token, data_dir, network, metrics, log } = wiring;
        let propose_timeout =
            Duration::from_millis(settings.election_timeout_ms[1] * 4).max(Duration::from_secs(2));
        let wait = Duration::from_micros(settings.group_commit_wait_us);
        let proposer = Proposer::spawn(raft.clone(), metrics, wait);
        Api(Arc::new(Inner {
            raft,
            applied: sm.applied(),
            applied_index: sm.subscribe(),
            settings,
            propose_timeout,
            board,
            proposer,
            token,
            data_dir,
            backups: backup::Backups::default(),
            network,
            log,
        }))
    }

    /// Proposes `cmd` and waits until it is applied here.
    async fn propose(&self, cmd: Command) -> Result<Response, WireError> {
        let write = self.0.proposer.propose(cmd);
        match tokio::time::timeout(self.0.propose_timeout, write).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(self.wire_error(e)),
            Err(_) => Err(WireError::Unavailable(
                "the write was not committed in time (no quorum?); its outcome is unknown".into(),
            )),
        }
    }

    /// Confirms leadership with a quorum and waits until the table holds
    /// every entry of this leader's log.
    ///
    /// openraft 0.9 reads at the larger of its commit index and the first
    /// entry of the leader's term. A leader restarted within its term
    /// resumes leading at once, with the commit index it last wrote down
    /// (which rides with the next log write, so it can be older than what
    /// it acknowledged) and a first entry committed long ago: a read there
    /// missed the last acknowledged writes until they were committed anew.
    /// Every entry in a leader's log commits while it leads, and its log
    /// holds every acknowledged write, so its last entry is a read index
    /// that misses none. A read waits at most for the writes in flight.
    async fn linearizable(&self) -> Result<(), WireError> {
        let check = async {
            // Confirms leadership and gives openraft's own read index; one
            // wait serves both (`ensure_linearizable` would wait twice).
            let (read, _) = self.0.raft.get_read_log_id().await.map_err(|e| self.wire_error(e))?;
            let last = self.0.log.last_index().max(read.map_or(0, |l| l.index));
            let mut applied = self.0.applied_index.clone();
            applied
                .wait_for(|index| *index >= last)
                .await
                .map(drop)
                .map_err(|_| WireError::Unavailable("this node is stopping".into()))
        };
        match tokio::time::timeout(self.0.propose_timeout, check).await {
            Ok(answer) => answer,
            Err(_) => Err(WireError::Unavailable(
                "leadership could not be confirmed, or the table did not catch up, in time".into(),
            )),
        }
    }

    /// The one mapping from openraft's errors to wire errors.
    fn wire_error<E>(&self, e: RaftError<NodeId, E>) -> WireError
    where
        E: TryAsRef<ForwardToLeader<NodeId, NodeInfo>> + std::error::Error,
    {
        match e.forward_to_leader::<NodeInfo>() {
            Some(_) => self.not_leader(),
            None => WireError::Unavailable(e.to_string()),
        }
    }

    /// `NotLeader` with the leader's client address, if this node knows it.
    fn not_leader(&self) -> WireError {
        let m = self.0.raft.metrics().borrow().clone();
        let leader = m.current_leader.filter(|id| *id != m.id).and_then(|id| {
            let node = m.membership_config.membership().get_node(&id)?;
            Some(LeaderHint { id, client_addr: node.client_addr.clone() })
        });
        WireError::NotLeader { leader }
    }

    /// The Raft handle.
    pub(crate) fn raft(&self) -> &Raft {
        &self.0.raft
    }

    /// The token (and TLS) this node's ports check.
    pub(crate) fn credentials(&self) -> Credentials {
        self.0.token.clone()
    }

    /// Tasks by status, in all and per queue, in this node's table (not linearizable).
    pub(crate) fn local_counts(&self) -> (taskraft_core::Counts, Vec<taskraft_core::QueueStatus>) {
        let a = self.0.applied.read();
        (a.table.counts(), a.table.queues())
    }

    /// Who holds leases in this node's table, busiest first.
    pub(crate) fn holders(&self) -> Vec<Holder> {
        let a = self.0.applied.read();
        let mut by_worker: std::collections::BTreeMap<&WorkerId, Holder> = Default::default();
        // Oldest lease first, so each worker's first tasks are its oldest.
        for (start, lease) in a.table.leases_by_start() {
            let Some(worker) = a.table.get(lease.task).and_then(|t| t.worker.as_ref()) else {
                continue;
            };
            let h = by_worker.entry(worker).or_insert_with(|| Holder {
                worker: worker.clone(),
                holding: 0,
                oldest_lease_ms: start,
                tasks: Vec::new(),
            });
            h.holding += 1;
            if h.tasks.len() < Holder::SHOWN {
                h.tasks.push(lease.task.0);
            }
        }
        let mut out: Vec<Holder> = by_worker.into_values().collect();
        out.sort_by(|a, b| b.holding.cmp(&a.holding).then_with(|| a.worker.cmp(&b.worker)));
        out
    }

    fn is_leader(&self) -> bool {
        self.0.raft.metrics().borrow().state == ServerState::Leader
    }
}

fn unexpected(r: Response) -> WireError {
    warn!(?r, "a command was answered with a response of another command");
    WireError::Unavailable(format!("unexpected response {r:?}"))
}

/// Every request's future is as large as the largest of these methods,
/// and tarpc and tokio move it a few times per call. The calls whose own
/// futures are large (membership changes ~5 KB; long polls, reads and
/// registration ~2 KB; measured in a release build) are boxed, so that
/// the hot ones (submit, complete, complete_and_request, ~1 KB) do not
/// carry their size: with the membership calls unboxed, a request's future
/// was ~6 KB and moving it was 5 % of a leader's CPU under W1 C=64.
impl ClientService for Api {
    async fn submit(self, _: Context, tasks: Vec<NewTask>) -> Result<Vec<Submitted>, WireError> {
        self.submit_tasks(tasks).await
    }

    async fn request(
        self,
        _: Context,
        worker: WorkerId,
        max: u32,
        wait_ms: u64,
        queues: Vec<String>,
    ) -> Result<Assignment, WireError> {
        Box::pin(self.request_tasks(worker, max, wait_ms, queues)).await
    }

    async fn complete(
        self,
        _: Context,
        lease: Lease,
        worker: WorkerId,
        result: Vec<u8>,
    ) -> Result<Outcome, WireError> {
        self.complete_one(lease, worker, result).await
    }

    async fn complete_and_request(
        self,
        _: Context,
        worker: WorkerId,
        results: Vec<(Lease, Vec<u8>)>,
        max: u32,
        queues: Vec<String>,
    ) -> Result<(Vec<Outcome>, Assignment), WireError> {
        self.complete_and_request_tasks(worker, results, max, queues).await
    }

    async fn set_queue(
        self,
        _: Context,
        queue: String,
        change: taskraft_core::QueueChange,
    ) -> Result<(), WireError> {
        Box::pin(self.set_queue_now(queue, change)).await
    }

    async fn fail(
        self,
        _: Context,
        lease: Lease,
        worker: WorkerId,
        error: String,
    ) -> Result<Outcome, WireError> {
        self.fail_one(lease, worker, error).await
    }

    async fn extend(
        self,
        _: Context,
        lease: Lease,
        worker: WorkerId,
    ) -> Result<Outcome, WireError> {
        self.extend_one(lease, worker).await
    }

    async fn status(self, _: Context) -> Result<ClusterStatus, WireError> {
        Box::pin(self.cluster_status()).await
    }

    async fn tasks(
        self,
        _: Context,
        status: Option<Status>,
        after: Option<TaskId>,
        limit: u32,
    ) -> Result<TaskPage, WireError> {
        Box::pin(self.task_page(status, after, limit)).await
    }

    async fn register(
        self,
        _: Context,
        worker: WorkerId,
        addr: String,
        capacity: u32,
    ) -> Result<u64, WireError> {
        Box::pin(self.register_push(worker, addr, capacity)).await
    }

    async fn deregister(self, _: Context, worker: WorkerId) -> Result<(), WireError> {
        self.deregister_push(worker).await
    }

    async fn node_report(self, _: Context) -> NodeReport {
        self.report().await
    }

    async fn task(self, _: Context, id: TaskId) -> Result<Task, WireError> {
        Box::pin(self.one_task(id)).await
    }

    async fn cancel(self, _: Context, ids: Vec<TaskId>) -> Result<Vec<Outcome>, WireError> {
        self.cancel_tasks(ids).await
    }

    async fn cancel_where(
        self,
        _: Context,
        key: Option<String>,
        queue: Option<String>,
    ) -> Result<Vec<(TaskId, Outcome)>, WireError> {
        Box::pin(self.cancel_where_now(key, queue)).await
    }

    async fn retry(
        self,
        _: Context,
        ids: Vec<TaskId>,
        max_attempts: u32,
    ) -> Result<Vec<Outcome>, WireError> {
        self.retry_tasks(ids, max_attempts).await
    }

    async fn backup_open(self, _: Context) -> Result<BackupInfo, WireError> {
        Box::pin(self.backup_open_now()).await
    }

    async fn backup_read(
        self,
        _: Context,
        id: u64,
        offset: u64,
        len: u32,
    ) -> Result<Vec<u8>, WireError> {
        self.backup_read_now(id, offset, len).await
    }

    async fn add_learner(self, _: Context, id: NodeId, node: NodeInfo) -> Result<(), WireError> {
        Box::pin(self.add_learner_now(id, node)).await
    }

    async fn promote(self, _: Context, id: NodeId) -> Result<(), WireError> {
        Box::pin(self.promote_now(id)).await
    }

    async fn remove_member(self, _: Context, id: NodeId) -> Result<(), WireError> {
        Box::pin(self.remove_now(id)).await
    }
}
