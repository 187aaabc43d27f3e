//! [`Api`]: the client service, answered by the leader.
//!
//! Writes go through `raft.client_write` and are answered after they are
//! committed and applied; reads first confirm leadership with a quorum
//! (`ensure_linearizable`). A node that is not the leader answers
//! `NotLeader` with the leader's client address when it knows one.
//!
//! Input is checked here, before anything is proposed: an oversized payload,
//! an empty worker id or an absurd wait is refused and nothing is written.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use openraft::error::{ForwardToLeader, RaftError};
use openraft::{ServerState, TryAsRef};
use tarpc::context::Context;
use taskraft_core::{
    Command, Lease, NewTask, Outcome, PageLimits, Response, Status, Submitted, Task, TaskId,
    WorkerId,
};
use taskraft_proto::auth::Credentials;
use taskraft_proto::client::{
    Assignment, ClientService, ClusterStatus, LeasedTask, MemberStatus, NodeReport, TaskPage,
    MAX_PAGE_BYTES, MAX_PAGE_SCAN, MAX_PAGE_TASKS, MAX_TASKS_PER_REQUEST, MAX_TASKS_PER_SUBMIT,
    MAX_WAIT_MS, MAX_WORKER_ID_BYTES,
};
use taskraft_proto::config::ClusterSettings;
use taskraft_proto::{LeaderHint, NodeId, NodeInfo, WireError};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::dispatch::{self, PushBoard, REGISTRATION_TTL_MS, RENEW_INTERVAL_MS};
use crate::proposer::Proposer;
use crate::store::Applied;
use crate::{now_ms, Raft};

/// Longest idempotency key accepted.
const MAX_KEY_BYTES: usize = 1024;

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
}

impl Api {
    /// The API of a node whose Raft is `raft` and whose table is `applied`.
    pub fn new(
        raft: Raft,
        applied: Arc<RwLock<Applied>>,
        applied_index: watch::Receiver<u64>,
        settings: ClusterSettings,
        board: PushBoard,
        token: Credentials,
    ) -> Api {
        let propose_timeout =
            Duration::from_millis(settings.election_timeout_ms[1] * 4).max(Duration::from_secs(2));
        let proposer = Proposer::spawn(raft.clone());
        Api(Arc::new(Inner {
            raft,
            applied,
            applied_index,
            settings,
            propose_timeout,
            board,
            proposer,
            token,
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

    /// Confirms leadership with a quorum and waits until the table is current.
    async fn linearizable(&self) -> Result<(), WireError> {
        let check = self.0.raft.ensure_linearizable();
        match tokio::time::timeout(self.0.propose_timeout, check).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(self.wire_error(e)),
            Err(_) => {
                Err(WireError::Unavailable("leadership could not be confirmed in time".into()))
            }
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

    fn is_leader(&self) -> bool {
        self.0.raft.metrics().borrow().state == ServerState::Leader
    }

    fn check_worker(worker: &WorkerId) -> Result<(), WireError> {
        if worker.0.trim().is_empty() {
            return Err(WireError::Invalid("the worker id is empty".into()));
        }
        if worker.0.len() > MAX_WORKER_ID_BYTES {
            return Err(WireError::Invalid(format!(
                "the worker id is {} bytes; at most {MAX_WORKER_ID_BYTES} are allowed",
                worker.0.len()
            )));
        }
        Ok(())
    }

    fn check_size(&self, what: &str, len: usize) -> Result<(), WireError> {
        let limit = self.0.settings.max_payload_bytes;
        if len as u64 > limit {
            return Err(WireError::Invalid(format!(
                "{what} is {len} bytes; the cluster's max_payload_bytes is {limit}"
            )));
        }
        Ok(())
    }

    fn check_submit(&self, tasks: &[NewTask]) -> Result<(), WireError> {
        if tasks.is_empty() {
            return Err(WireError::Invalid("no tasks to submit".into()));
        }
        if tasks.len() > MAX_TASKS_PER_SUBMIT {
            return Err(WireError::Invalid(format!(
                "{} tasks in one submit; at most {MAX_TASKS_PER_SUBMIT} are allowed",
                tasks.len()
            )));
        }
        for (i, t) in tasks.iter().enumerate() {
            self.check_size(&format!("the payload of task #{}", i + 1), t.data.len())?;
            if t.key.as_ref().is_some_and(|k| k.len() > MAX_KEY_BYTES) {
                return Err(WireError::Invalid(format!(
                    "the key of task #{} is longer than {MAX_KEY_BYTES} bytes",
                    i + 1
                )));
            }
        }
        Ok(())
    }

    /// Proposes a lease command and logs a fenced submission.
    async fn lease_command(
        &self,
        what: &str,
        lease: Lease,
        worker: &WorkerId,
        cmd: Command,
    ) -> Result<Outcome, WireError> {
        match self.propose(cmd).await? {
            Response::Outcome(o) => {
                self.log_fenced(what, lease, worker, o);
                Ok(o)
            }
            other => Err(unexpected(other)),
        }
    }

    fn log_fenced(&self, what: &str, lease: Lease, worker: &WorkerId, outcome: Outcome) {
        if matches!(outcome, Outcome::Stale | Outcome::Duplicate) {
            info!(%lease, %worker, ?outcome, "fenced {what}: not recorded");
        }
    }

    fn check_request(max: u32, wait_ms: u64) -> Result<(), WireError> {
        if max == 0 || max > MAX_TASKS_PER_REQUEST {
            return Err(WireError::Invalid(format!(
                "asked for {max} tasks; ask for 1 to {MAX_TASKS_PER_REQUEST}"
            )));
        }
        if wait_ms > MAX_WAIT_MS {
            return Err(WireError::Invalid(format!(
                "a wait of {wait_ms} ms; at most {MAX_WAIT_MS} ms is allowed"
            )));
        }
        Ok(())
    }

    /// Idle tasks in the applied table.
    fn idle(&self) -> u64 {
        self.0.applied.read().expect("applied lock").table.counts().idle
    }

    /// The long poll: leases up to `max` tasks as soon as one is idle, or
    /// answers `NoTask` / `Drained` after `wait_ms`.
    async fn poll(
        &self,
        worker: &WorkerId,
        max: u32,
        wait_ms: u64,
    ) -> Result<Assignment, WireError> {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(wait_ms);
        let mut applied = self.0.applied_index.clone();
        let mut metrics = self.0.raft.metrics();
        loop {
            // A deposed leader answers its waiters at once.
            if !self.is_leader() {
                return Err(self.not_leader());
            }
            applied.borrow_and_update();
            if let Some(answer) = self.try_assign(worker, max).await? {
                return Ok(answer);
            }
            // Wait for an apply (a submit, a fail, an expiry may make a task
            // idle), a leadership change, or the end of the poll.
            tokio::select! {
                _ = applied.changed() => {}
                _ = metrics.changed() => {}
                _ = tokio::time::sleep_until(deadline) => return self.empty_handed().await,
            }
        }
    }

    /// Leases up to `max` idle tasks, or `None` when nothing was idle.
    async fn try_assign(
        &self,
        worker: &WorkerId,
        max: u32,
    ) -> Result<Option<Assignment>, WireError> {
        if self.idle() == 0 {
            return Ok(None);
        }
        let cmd = Command::Assign { worker: worker.clone(), max, now_ms: now_ms() };
        match self.propose(cmd).await? {
            Response::Assigned(tasks) if tasks.is_empty() => Ok(None),
            Response::Assigned(tasks) => Ok(Some(self.leased(tasks))),
            other => Err(unexpected(other)),
        }
    }

    /// The answer when a long poll ends empty-handed: `Drained` if nothing is
    /// idle or in progress (confirmed with a quorum), else `NoTask`.
    async fn empty_handed(&self) -> Result<Assignment, WireError> {
        self.linearizable().await?;
        let counts = self.0.applied.read().expect("applied lock").table.counts();
        Ok(if counts.idle == 0 && counts.in_progress == 0 {
            Assignment::Drained
        } else {
            Assignment::NoTask
        })
    }

    fn leased(&self, tasks: Vec<Task>) -> Assignment {
        let tasks = tasks
            .into_iter()
            .filter_map(|t| Some(LeasedTask { lease: t.lease()?, data: t.data }))
            .collect();
        Assignment::Leased { tasks, lease_timeout_ms: self.0.settings.lease_timeout_ms }
    }
}

fn unexpected(r: Response) -> WireError {
    warn!(?r, "a command was answered with a response of another command");
    WireError::Unavailable(format!("unexpected response {r:?}"))
}

impl ClientService for Api {
    async fn submit(
        self,
        _: Context,
        mut tasks: Vec<NewTask>,
    ) -> Result<Vec<Submitted>, WireError> {
        self.check_submit(&tasks)?;
        for t in &mut tasks {
            if t.max_attempts == 0 {
                t.max_attempts = self.0.settings.max_attempts;
            }
        }
        match self.propose(Command::Submit { tasks, now_ms: now_ms() }).await? {
            Response::Submitted(s) => Ok(s),
            other => Err(unexpected(other)),
        }
    }

    async fn request(
        self,
        _: Context,
        worker: WorkerId,
        max: u32,
        wait_ms: u64,
    ) -> Result<Assignment, WireError> {
        Self::check_worker(&worker)?;
        Self::check_request(max, wait_ms)?;
        self.poll(&worker, max, wait_ms).await
    }

    async fn complete(
        self,
        _: Context,
        lease: Lease,
        worker: WorkerId,
        result: Vec<u8>,
    ) -> Result<Outcome, WireError> {
        Self::check_worker(&worker)?;
        self.check_size("the result", result.len())?;
        let cmd = Command::Complete { lease, worker: worker.clone(), result, now_ms: now_ms() };
        self.lease_command("completion", lease, &worker, cmd).await
    }

    async fn complete_and_request(
        self,
        _: Context,
        worker: WorkerId,
        results: Vec<(Lease, Vec<u8>)>,
        max: u32,
    ) -> Result<(Vec<Outcome>, Assignment), WireError> {
        Self::check_worker(&worker)?;
        if results.len() > MAX_TASKS_PER_REQUEST as usize {
            return Err(WireError::Invalid(format!(
                "{} results in one call; at most {MAX_TASKS_PER_REQUEST} are allowed",
                results.len()
            )));
        }
        if results.is_empty() && max == 0 {
            return Err(WireError::Invalid("no results to record and no tasks asked for".into()));
        }
        if max > 0 {
            Self::check_request(max, 0)?;
        }
        for (i, (_, result)) in results.iter().enumerate() {
            self.check_size(&format!("result #{}", i + 1), result.len())?;
        }
        let now = now_ms();
        let leases: Vec<Lease> = results.iter().map(|(lease, _)| *lease).collect();
        let mut cmds: Vec<Command> = results
            .into_iter()
            .map(|(lease, result)| Command::Complete {
                lease,
                worker: worker.clone(),
                result,
                now_ms: now,
            })
            .collect();
        // One entry: the results are recorded and the next tasks leased in
        // the same commit, in this order.
        let ask = max > 0 && self.idle() > 0;
        if ask {
            cmds.push(Command::Assign { worker: worker.clone(), max, now_ms: now });
        }
        let response = self.propose(Command::Batch(cmds)).await?;
        let Response::Batch(mut responses) = response else { return Err(unexpected(response)) };
        let next = match (ask, responses.pop()) {
            (true, Some(Response::Assigned(tasks))) if !tasks.is_empty() => self.leased(tasks),
            (true, Some(Response::Assigned(_))) => Assignment::NoTask,
            (false, last) => {
                responses.extend(last);
                Assignment::NoTask
            }
            (true, other) => return Err(unexpected(other.unwrap_or(Response::Empty))),
        };
        if responses.len() != leases.len() {
            return Err(unexpected(Response::Batch(responses)));
        }
        let mut outcomes = Vec::with_capacity(leases.len());
        for (lease, response) in leases.into_iter().zip(responses) {
            let Response::Outcome(outcome) = response else { return Err(unexpected(response)) };
            self.log_fenced("completion", lease, &worker, outcome);
            outcomes.push(outcome);
        }
        Ok((outcomes, next))
    }

    async fn fail(
        self,
        _: Context,
        lease: Lease,
        worker: WorkerId,
        error: String,
    ) -> Result<Outcome, WireError> {
        Self::check_worker(&worker)?;
        self.check_size("the error message", error.len())?;
        let cmd = Command::Fail { lease, worker: worker.clone(), error, now_ms: now_ms() };
        self.lease_command("failure report", lease, &worker, cmd).await
    }

    async fn extend(
        self,
        _: Context,
        lease: Lease,
        worker: WorkerId,
    ) -> Result<Outcome, WireError> {
        Self::check_worker(&worker)?;
        let cmd = Command::Extend { lease, worker: worker.clone(), now_ms: now_ms() };
        self.lease_command("extension", lease, &worker, cmd).await
    }

    async fn status(self, _: Context) -> Result<ClusterStatus, WireError> {
        self.linearizable().await?;
        let m = self.0.raft.metrics().borrow().clone();
        let counts = self.0.applied.read().expect("applied lock").table.counts();
        let membership = m.membership_config.membership();
        let voters: Vec<NodeId> = membership.voter_ids().collect();
        let replication = m.replication.clone().unwrap_or_default();
        let members = membership
            .nodes()
            .map(|(id, node)| {
                let matched = replication.get(id).cloned().flatten().map(|l| l.index);
                let role = if *id == m.id {
                    "leader"
                } else if matched.is_none() {
                    "unreachable"
                } else if voters.contains(id) {
                    "follower"
                } else {
                    "learner"
                };
                let last_applied =
                    if *id == m.id { m.last_applied.map(|l| l.index) } else { matched };
                MemberStatus {
                    id: *id,
                    client_addr: node.client_addr.clone(),
                    peer_addr: node.peer_addr.clone(),
                    role: role.into(),
                    last_applied,
                }
            })
            .collect();
        Ok(ClusterStatus {
            cluster: self.0.settings.name.clone(),
            term: m.current_term,
            leader: Some(m.id),
            members,
            counts,
            last_log_index: m.last_log_index,
            last_applied: m.last_applied.map(|l| l.index),
            workers: self.0.board.status(),
        })
    }

    async fn tasks(
        self,
        _: Context,
        status: Option<Status>,
        after: Option<TaskId>,
        limit: u32,
    ) -> Result<TaskPage, WireError> {
        if limit == 0 || limit > MAX_PAGE_TASKS {
            return Err(WireError::Invalid(format!(
                "a page of {limit} tasks; ask for 1 to {MAX_PAGE_TASKS} and follow next_after"
            )));
        }
        self.linearizable().await?;
        let a = self.0.applied.read().expect("applied lock");
        let limits =
            PageLimits { rows: limit as usize, bytes: MAX_PAGE_BYTES, scan: MAX_PAGE_SCAN };
        let page = a.table.page(status, after.unwrap_or(TaskId(0)), limits);
        Ok(TaskPage {
            tasks: page.tasks.into_iter().cloned().collect(),
            next_after: page.next_after,
        })
    }

    async fn register(
        self,
        _: Context,
        worker: WorkerId,
        addr: String,
        capacity: u32,
    ) -> Result<u64, WireError> {
        Self::check_worker(&worker)?;
        if !self.is_leader() {
            return Err(self.not_leader());
        }
        if addr.parse::<std::net::SocketAddr>().is_err() {
            return Err(WireError::Invalid(format!("{addr:?} is not an IP:port address")));
        }
        if capacity == 0 || capacity > MAX_TASKS_PER_REQUEST {
            return Err(WireError::Invalid(format!(
                "capacity {capacity}; use 1 to {MAX_TASKS_PER_REQUEST}"
            )));
        }
        match dispatch::ping(&addr, &self.0.token).await {
            Ok((who, _)) if who == worker => {}
            Ok((who, _)) => {
                return Err(WireError::Invalid(format!(
                    "{addr} answers as worker {who}, not {worker}"
                )))
            }
            Err(e) => {
                return Err(WireError::Invalid(format!(
                    "cannot reach push worker {worker} at {addr}: {e}"
                )))
            }
        }
        let cmd = Command::Register {
            worker: worker.clone(),
            addr,
            capacity,
            ttl_ms: REGISTRATION_TTL_MS,
            now_ms: now_ms(),
        };
        match self.propose(cmd).await? {
            Response::Outcome(Outcome::Accepted) => Ok(RENEW_INTERVAL_MS),
            Response::Outcome(_) => Err(WireError::Invalid(format!(
                "worker id {worker} is registered from another address that is still live; give this worker another --id"
            ))),
            other => Err(unexpected(other)),
        }
    }

    async fn deregister(self, _: Context, worker: WorkerId) -> Result<(), WireError> {
        match self.propose(Command::Deregister { worker, now_ms: now_ms() }).await? {
            Response::Outcome(_) => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    async fn node_report(self, _: Context) -> NodeReport {
        let m = self.0.raft.metrics().borrow().clone();
        let a = self.0.applied.read().expect("applied lock");
        let role = match m.state {
            ServerState::Leader => "leader",
            ServerState::Follower => "follower",
            ServerState::Candidate => "candidate",
            ServerState::Learner => "learner",
            ServerState::Shutdown => "shutdown",
        };
        NodeReport {
            id: m.id,
            role: role.into(),
            term: m.current_term,
            leader: m.current_leader,
            last_applied: a.last_applied.map(|l| l.index),
            digest: a.table.digest(),
            counts: a.table.counts(),
        }
    }

    async fn task(self, _: Context, id: TaskId) -> Result<Task, WireError> {
        self.linearizable().await?;
        let a = self.0.applied.read().expect("applied lock");
        a.table
            .get(id)
            .cloned()
            .ok_or_else(|| WireError::NotFound(format!("there is no task {id}")))
    }
}
