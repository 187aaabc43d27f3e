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
//! openraft gives an AppendEntries one heartbeat interval and fills it with
//! up to 300 entries, whatever their size: a follower far behind on large
//! entries (submits of a thousand tasks) got appends it could not store in
//! time, again and again, and never caught up. An append is cut to a byte
//! budget here and reported as the partial success openraft's API provides
//! for this; the rest goes in the next one. The budget of each replication
//! stream starts at [`MAX_APPEND_BYTES`], halves after an append that did
//! not finish in time (down to [`MIN_APPEND_BYTES`]) and doubles after one
//! that did.

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
use tarpc::client::RpcError;
use tarpc::context;
use taskraft_proto::auth::Credentials;
use taskraft_proto::peer::{PeerProbe, PeerServiceClient};
use taskraft_proto::{transport, NodeId, NodeInfo, TypeConfig};

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
        }
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

/// The most encoded entry bytes one AppendEntries carries; a single entry
/// goes whole, however large. In the 1,000,000-task load (entries of
/// ~100 KB), 256 KiB left masters at 1.35-1.41 GB RSS where 1 MiB gave
/// 1.4-2.1 GB, with fewer timed-out appends (docs/performance.md).
pub const MAX_APPEND_BYTES: u64 = 256 << 10;

/// The least a replication stream's budget shrinks to.
pub const MIN_APPEND_BYTES: u64 = 32 << 10;

/// A replication stream's append budget: [`MAX_APPEND_BYTES`] to start
/// with, halved after an append that did not finish in time, doubled after
/// one that did.
struct Budget {
    bytes: u64,
    /// An append is under way: still set at the next one when openraft gave
    /// up on the last (it drops the call at its timeout).
    sending: bool,
}

impl Default for Budget {
    fn default() -> Self {
        Budget { bytes: MAX_APPEND_BYTES, sending: false }
    }
}

impl Budget {
    /// Cuts `entries` to the budget before they are sent (see [`cut_to_budget`]).
    fn cut(
        &mut self,
        entries: &mut Vec<openraft::Entry<TypeConfig>>,
    ) -> Option<openraft::LogId<NodeId>> {
        if std::mem::take(&mut self.sending) {
            self.shrink();
        }
        self.sending = !entries.is_empty();
        cut_to_budget(entries, self.bytes)
    }

    /// The append ended: answered in time (`Some(true)`), out of time
    /// (`Some(false)`) or otherwise (`None`).
    fn ended(&mut self, in_time: Option<bool>) {
        if std::mem::take(&mut self.sending) {
            match in_time {
                Some(true) => self.bytes = (self.bytes * 2).min(MAX_APPEND_BYTES),
                Some(false) => self.shrink(),
                None => {}
            }
        }
    }

    fn shrink(&mut self) {
        self.bytes = (self.bytes / 2).max(MIN_APPEND_BYTES);
    }
}

/// Cuts `entries` after the last one that keeps them within `budget`
/// encoded bytes (at least one stays); returns the id of the last one kept
/// when it cut anything.
pub fn cut_to_budget(
    entries: &mut Vec<openraft::Entry<TypeConfig>>,
    budget: u64,
) -> Option<openraft::LogId<NodeId>> {
    if entries.len() < 2 {
        return None;
    }
    let mut bytes = 0u64;
    for (i, entry) in entries.iter().enumerate() {
        bytes = bytes.saturating_add(bincode::serialized_size(entry).unwrap_or(u64::MAX));
        if bytes > budget && i > 0 {
            entries.truncate(i);
            return Some(entries[i - 1].log_id);
        }
    }
    None
}

impl RaftNetwork<TypeConfig> for PeerConn {
    async fn append_entries(
        &mut self,
        mut req: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        let ttl = option.hard_ttl();
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
        match (answer, cut) {
            (Ok(AppendEntriesResponse::Success), Some(last)) => {
                Ok(AppendEntriesResponse::PartialSuccess(Some(last)))
            }
            (answer, _) => answer,
        }
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

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};
    use taskraft_core::{Command, NewTask};
    use taskraft_proto::TypeConfig;

    use super::{cut_to_budget, Budget, MAX_APPEND_BYTES, MIN_APPEND_BYTES};

    fn entries(sizes: &[usize]) -> Vec<Entry<TypeConfig>> {
        let entry = |(i, bytes): (usize, &usize)| {
            let task = NewTask { data: vec![7; *bytes], ..NewTask::default() };
            Entry {
                log_id: LogId::new(CommittedLeaderId::new(1, 1), i as u64 + 1),
                payload: EntryPayload::Normal(Command::Submit { tasks: vec![task], now_ms: 1 }),
            }
        };
        sizes.iter().enumerate().map(entry).collect()
    }

    #[test]
    fn an_append_is_cut_to_its_byte_budget_keeping_at_least_one_entry() {
        let mut small = entries(&[100; 10]);
        assert_eq!(cut_to_budget(&mut small, 10_000), None, "within the budget");
        assert_eq!(small.len(), 10);

        let mut large = entries(&[3000; 10]);
        let last = cut_to_budget(&mut large, 10_000).expect("cut");
        assert_eq!(large.len(), 3, "three of ~3 KB fit in 10 KB, four do not");
        assert_eq!(last.index, 3);

        let mut huge = entries(&[50_000, 10, 10]);
        assert_eq!(cut_to_budget(&mut huge, 10_000).map(|l| l.index), Some(1));
        assert_eq!(huge.len(), 1, "one entry goes whole, however large");

        let mut one = entries(&[50_000]);
        assert_eq!(cut_to_budget(&mut one, 10_000), None);
        assert!(cut_to_budget(&mut Vec::new(), 10).is_none());
    }

    #[test]
    fn a_budget_halves_after_an_append_out_of_time_and_doubles_after_one_in_time() {
        let mut budget = Budget::default();
        budget.cut(&mut entries(&[10]));
        budget.ended(Some(false));
        assert_eq!(budget.bytes, MAX_APPEND_BYTES / 2);
        // An append openraft gave up on (the call dropped, never ended).
        budget.cut(&mut entries(&[10]));
        budget.cut(&mut entries(&[10]));
        assert_eq!(budget.bytes, MAX_APPEND_BYTES / 4);
        budget.ended(Some(true));
        assert_eq!(budget.bytes, MAX_APPEND_BYTES / 2);
        budget.cut(&mut Vec::new());
        budget.ended(Some(false));
        assert_eq!(budget.bytes, MAX_APPEND_BYTES / 2, "a heartbeat changes nothing");
        for _ in 0..10 {
            budget.cut(&mut entries(&[10]));
            budget.ended(Some(false));
        }
        assert_eq!(budget.bytes, MIN_APPEND_BYTES);
        for _ in 0..10 {
            budget.cut(&mut entries(&[10]));
            budget.ended(Some(true));
        }
        assert_eq!(budget.bytes, MAX_APPEND_BYTES);
    }
}
