//! The Raft network: openraft's `RaftNetworkFactory` over the tarpc peer service.
//!
//! One multiplexed tarpc client per peer address lives in a pool shared by
//! every replication stream and election round; `new_client` never connects
//! (openraft calls it on every election). A client is dialled lazily and
//! evicted when its connection breaks, so the next call re-dials.
//!
//! The network also remembers when each peer last answered an
//! AppendEntries (a heartbeat at least): the leader's view of which members
//! are up, which membership changes check before they start.
//!
//! Every call's deadline (and the connect timeout) is openraft's own
//! `RPCOption::hard_ttl()`: a transport that waits longer than openraft does
//! would stall elections.
//!
//! Three changes to what openraft asks for, each in its own module: appends
//! are cut to a byte budget per replication stream ([`budget`]), an append
//! that only carries a new commit index is answered without a message right
//! after the follower confirmed the same log ([`notices`]), and the leader's
//! new entries go to the followers before its own fsync ([`early`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{
    Infallible, InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use tarpc::client::RpcError;
use tarpc::context;
use taskraft_proto::auth::Credentials;
use taskraft_proto::peer::{PeerProbe, PeerServiceClient};
use taskraft_proto::{transport, NodeId, NodeInfo, TypeConfig};

use budget::Budget;
use early::{Early, Outcome};
use notices::Notices;

mod budget;
mod early;
pub mod notices;

type Pool = Arc<Mutex<HashMap<String, PeerServiceClient>>>;
/// Per-node dial addresses that take precedence over the membership's.
pub type Routes = Arc<BTreeMap<NodeId, String>>;
type RpcResult<T, E = openraft::error::Infallible> =
    Result<T, RPCError<NodeId, NodeInfo, RaftError<NodeId, E>>>;

/// When each peer last answered an AppendEntries of this node.
#[derive(Clone, Default)]
pub struct Liveness(Arc<Mutex<HashMap<NodeId, Instant>>>);

impl Liveness {
    fn answered(&self, id: NodeId) {
        self.0.lock().insert(id, Instant::now());
    }

    /// Whether `id` answered this node within `window`.
    pub fn answered_within(&self, id: NodeId, window: Duration) -> bool {
        self.0.lock().get(&id).is_some_and(|at| at.elapsed() <= window)
    }
}

/// Why a probe got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unanswered {
    /// No connection, or no reply in time.
    Silent,
    /// The peer refused this node's id: neither its config nor its
    /// membership lists this node.
    NotListed,
}

/// Creates connections to peers; clones share the pool.
#[derive(Clone, Default)]
pub struct PeerNetwork {
    me: NodeId,
    pool: Pool,
    routes: Routes,
    token: Credentials,
    liveness: Liveness,
    /// How long a confirmed append stands in for commit notices; zero
    /// sends every one.
    notice_window: Duration,
    notices_skipped: Counter,
    early: Early,
    /// Set when new entries are sent before the leader's fsync: each early
    /// append's deadline, and the count of requests they answered.
    early_on: Option<(Duration, Counter)>,
}

impl PeerNetwork {
    /// A network that dials the nodes in `routes` at the given addresses
    /// instead of their `peer_addr` (a proxy, a NAT, a fault-injecting test).
    /// Every connection proves `token`.
    pub fn with_routes(
        me: NodeId,
        routes: BTreeMap<NodeId, String>,
        token: Credentials,
    ) -> PeerNetwork {
        PeerNetwork {
            me,
            pool: Pool::default(),
            routes: Arc::new(routes),
            token,
            liveness: Liveness::default(),
            notice_window: Duration::ZERO,
            notices_skipped: Counter::default(),
            early: Early::default(),
            early_on: None,
        }
    }

    /// Answers appends that carry only a commit index without sending them
    /// within `window` after the follower confirmed the same log (see
    /// [`notices`]), counting each in `skipped`.
    pub fn skipping_notices(mut self, window: Duration, skipped: Counter) -> PeerNetwork {
        self.notice_window = window;
        self.notices_skipped = skipped;
        self
    }

    /// When each peer last answered this node's replication.
    pub fn liveness(&self) -> Liveness {
        self.liveness.clone()
    }

    fn conn(&self, target: NodeId, node: &NodeInfo) -> PeerConn {
        let addr = self.routes.get(&target).unwrap_or(&node.peer_addr).clone();
        PeerConn {
            me: self.me,
            target,
            addr,
            pool: self.pool.clone(),
            token: self.token.clone(),
            liveness: self.liveness.clone(),
            budget: Budget::default(),
            notices: Notices::default(),
            notice_window: self.notice_window,
            notices_skipped: self.notices_skipped.clone(),
            early: self.early.clone(),
            early_answered: self.early_on.as_ref().map(|(_, c)| c.clone()),
        }
    }

    /// Asks node `target` who it is and what membership it holds.
    pub async fn probe(
        &self,
        target: NodeId,
        node: &NodeInfo,
        ttl: Duration,
    ) -> Result<PeerProbe, Unanswered> {
        let conn = self.conn(target, node);
        let client = conn.client(ttl).await.map_err(|e| {
            // The peer port accepts the ids of its config and of its live
            // membership; a refusal says that `target` lists neither.
            match e.to_string().contains("is not a member") {
                true => Unanswered::NotListed,
                false => Unanswered::Silent,
            }
        })?;
        client
            .probe(context_with(ttl))
            .await
            .map_err(|e| conn.transport_error::<Infallible>(e))
            .map_err(|_| Unanswered::Silent)
    }

    /// Tells node `target` that this node, the leader, removed itself and
    /// stepped down, so that it campaigns at once. Best effort.
    pub async fn announce_resignation(&self, target: NodeId, node: &NodeInfo, ttl: Duration) {
        let conn = self.conn(target, node);
        if let Ok(client) = conn.client(ttl).await {
            if let Err(e) = client.resigned(context_with(ttl), self.me).await {
                conn.transport_error::<Infallible>(e);
            }
        }
    }
}

/// The connection to one peer, as openraft sees it.
pub struct PeerConn {
    me: NodeId,
    target: NodeId,
    addr: String,
    pool: Pool,
    token: Credentials,
    liveness: Liveness,
    /// The byte budget of this replication stream's appends.
    budget: Budget,
    /// What the follower last confirmed, for skipping commit notices.
    notices: Notices,
    notice_window: Duration,
    notices_skipped: Counter,
    early: Early,
    /// Set when early appends are sent: the requests they answered.
    early_answered: Option<Counter>,
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerConn;

    async fn new_client(&mut self, target: NodeId, node: &NodeInfo) -> PeerConn {
        self.conn(target, node)
    }
}

fn context_with(ttl: Duration) -> context::Context {
    let mut ctx = context::current();
    ctx.deadline = Instant::now() + ttl;
    ctx
}

impl PeerConn {
    async fn client(&self, ttl: Duration) -> Result<PeerServiceClient, Unreachable> {
        if let Some(c) = self.pool.lock().get(&self.addr) {
            return Ok(c.clone());
        }
        let t = transport::connect_as(&self.addr, ttl, &self.token, self.me)
            .await
            .map_err(|e| Unreachable::new(&e))?;
        let c = PeerServiceClient::new(tarpc::client::Config::default(), t).spawn();
        self.pool.lock().insert(self.addr.clone(), c.clone());
        Ok(c)
    }

    /// Maps a transport failure: a broken connection is `Unreachable` (openraft
    /// backs off) and evicts the client; a timeout is a `NetworkError`.
    fn transport_error<E: std::error::Error>(&self, e: RpcError) -> RPCError<NodeId, NodeInfo, E> {
        match e {
            RpcError::Shutdown | RpcError::Send(_) | RpcError::Channel(_) => {
                self.pool.lock().remove(&self.addr);
                RPCError::Unreachable(Unreachable::new(&e))
            }
            RpcError::DeadlineExceeded | RpcError::Server(_) => {
                RPCError::Network(NetworkError::new(&e))
            }
        }
    }

    fn answer<T, E: std::error::Error>(
        &self,
        result: Result<Result<T, RaftError<NodeId, E>>, RpcError>,
    ) -> RpcResult<T, E> {
        match result {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(remote)) => Err(RPCError::RemoteError(RemoteError::new(self.target, remote))),
            Err(e) => Err(self.transport_error(e)),
        }
    }
}

impl RaftNetwork<TypeConfig> for PeerConn {
    async fn append_entries(
        &mut self,
        mut req: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        let sent = Instant::now();
        if self.notices.may_skip(&req, self.notice_window, sent) {
            self.notices_skipped.inc();
            return Ok(AppendEntriesResponse::Success);
        }
        let ttl = option.hard_ttl();
        let vote = req.vote;
        let last = req.entries.last().map(|e| e.log_id);
        let end = last.or(req.prev_log_id);
        if let (Some(answered), Some(last)) = (&self.early_answered, last) {
            if let Some(early) = self.early.covering(self.target, vote, last) {
                let early_sent = early.sent;
                match early.outcome(ttl).await {
                    Outcome::Success => {
                        answered.inc();
                        self.notices.answered(vote, Some(end), early_sent);
                        return Ok(AppendEntriesResponse::Success);
                    }
                    Outcome::Refused => {}
                    Outcome::Unanswered => {
                        // This request's deadline passed with it: it failed.
                        self.early.failed(self.target, vote);
                        self.notices.answered(vote, None, early_sent);
                        let timeout = std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "no answer to the append sent before the leader's fsync",
                        );
                        return Err(RPCError::Network(NetworkError::new(&timeout)));
                    }
                }
            }
        }
        let c = self.client(ttl).await.map_err(RPCError::Unreachable)?;
        let cut = self.budget.cut(&mut req.entries);
        let result = c.append_entries(context_with(ttl), req).await;
        self.budget.ended(match &result {
            Err(RpcError::DeadlineExceeded) => Some(false),
            Ok(Ok(AppendEntriesResponse::Success | AppendEntriesResponse::PartialSuccess(_))) => {
                Some(true)
            }
            _ => None,
        });
        let answer = self.answer(result);
        if answer.is_ok() {
            self.liveness.answered(self.target);
        }
        let answer = match (answer, cut) {
            (Ok(AppendEntriesResponse::Success), Some(last)) => {
                Ok(AppendEntriesResponse::PartialSuccess(Some(last)))
            }
            (answer, _) => answer,
        };
        let matching = match &answer {
            Ok(AppendEntriesResponse::Success) => Some(end),
            Ok(AppendEntriesResponse::PartialSuccess(m)) => Some(*m),
            _ => None,
        };
        self.notices.answered(vote, matching, sent);
        if let (Some(_), Some(matching)) = (&self.early_answered, matching) {
            self.early.confirmed(self.target, vote, matching);
        }
        answer
    }

    async fn install_snapshot(
        &mut self,
        req: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        let ttl = option.hard_ttl();
        let c = self.client(ttl).await.map_err(RPCError::Unreachable)?;
        self.answer(c.install_snapshot(context_with(ttl), req).await)
    }

    async fn vote(
        &mut self,
        req: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>> {
        let ttl = option.hard_ttl();
        let c = self.client(ttl).await.map_err(RPCError::Unreachable)?;
        self.answer(c.vote(context_with(ttl), req).await)
    }

    fn backoff(&self) -> openraft::network::Backoff {
        // openraft waits this long after `Unreachable` before retrying the peer;
        // short, so a restarted peer is back in the cluster quickly.
        openraft::network::Backoff::new(std::iter::repeat(Duration::from_millis(100)))
    }
}
