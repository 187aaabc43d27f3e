//! [`PeerServer`]: answers the peer service by handing each message to Raft.
//!
//! The peer port opens before Raft starts: a node with an empty data dir
//! first asks the other masters whether a cluster exists (see
//! [`crate::bootstrap`]), and they ask it the same. Until [`PeerServer::open`]
//! hands it Raft, the server refuses Raft traffic as stopped (senders retry,
//! as for a node that is down). Its `probe` answer never claims more than
//! it knows: a blank node says it is blank; a node with data says it holds a
//! cluster but has not loaded its membership yet (`started: false`) until
//! Raft has read its store, and the asker waits.

use std::sync::{Arc, OnceLock};

use openraft::error::{Fatal, InstallSnapshotError, RaftError as OpenraftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use tarpc::context::Context;
use taskraft_proto::peer::{PeerProbe, PeerService};
use taskraft_proto::raft::RaftError;
use taskraft_proto::{NodeId, TypeConfig};

use crate::failover::LeaderWatch;
use crate::Raft;

/// The peer service of one node. Cheap to clone.
#[derive(Clone)]
pub struct PeerServer {
    id: NodeId,
    cluster: Arc<str>,
    /// Whether the store was blank at start.
    blank: bool,
    started: Arc<OnceLock<(Raft, LeaderWatch)>>,
}

impl PeerServer {
    /// The peer service of node `id` of cluster `cluster`, before Raft
    /// starts; `blank` says whether its store holds nothing.
    pub fn new(id: NodeId, cluster: &str, blank: bool) -> PeerServer {
        PeerServer { id, cluster: cluster.into(), blank, started: Arc::default() }
    }

    /// Raft's metrics once they reflect the store: at once for a blank
    /// node, and for a node with data once Raft has read its log or
    /// membership (right after `Raft::new` they are still empty).
    fn loaded(&self) -> Option<openraft::RaftMetrics<NodeId, taskraft_proto::NodeInfo>> {
        let (raft, _) = self.started.get()?;
        let m = raft.metrics().borrow().clone();
        let read = m.last_log_index.is_some() || m.membership_config.log_id().is_some();
        (self.blank || read).then_some(m)
    }

    /// Hands Raft to the server: from now on it serves Raft traffic and
    /// tells `watch` of votes refused for a shorter log.
    pub fn open(&self, raft: Raft, watch: LeaderWatch) {
        let _ = self.started.set((raft, watch));
    }

    /// Raft, or the error a node answers before its Raft started.
    fn raft<E>(&self) -> Result<&(Raft, LeaderWatch), OpenraftError<NodeId, E>>
    where
        E: std::error::Error,
    {
        self.started.get().ok_or(OpenraftError::Fatal(Fatal::Stopped))
    }

    /// An inbound peer connection closed: the leader watch checks whether
    /// the leader is gone.
    pub fn connection_closed(&self) {
        if let Some((_, watch)) = self.started.get() {
            watch.connection_closed();
        }
    }

    /// Whether the peer port accepts master `id` besides the nodes of the
    /// config: a member of the live membership, or anyone while that
    /// membership is not known yet (only `probe` is answered then, and it
    /// tells nothing it does not know; refusing would read as "not listed").
    pub fn accepts(&self, id: NodeId) -> bool {
        match self.loaded() {
            Some(m) => m.membership_config.membership().get_node(&id).is_some(),
            None => true,
        }
    }
}

impl PeerService for PeerServer {
    async fn append_entries(
        self,
        _: Context,
        req: AppendEntriesRequest<TypeConfig>,
    ) -> Result<AppendEntriesResponse<NodeId>, RaftError> {
        self.raft()?.0.append_entries(req).await
    }

    async fn vote(
        self,
        _: Context,
        req: VoteRequest<NodeId>,
    ) -> Result<VoteResponse<NodeId>, RaftError> {
        let (raft, watch) = self.raft()?;
        let candidate = (req.vote.leader_id().term, req.last_log_id);
        let resp = raft.vote(req).await?;
        if !resp.vote_granted && resp.last_log_id > candidate.1 {
            watch.refused_shorter_log(candidate.0);
        }
        Ok(resp)
    }

    async fn install_snapshot(
        self,
        _: Context,
        req: InstallSnapshotRequest<TypeConfig>,
    ) -> Result<InstallSnapshotResponse<NodeId>, RaftError<InstallSnapshotError>> {
        self.raft()?.0.install_snapshot(req).await
    }

    async fn probe(self, _: Context) -> PeerProbe {
        let mut probe = PeerProbe::blank(self.id, &self.cluster);
        let Some(m) = self.loaded() else {
            // A node with data whose Raft has not read it yet: it belongs to
            // a cluster, but cannot say which members it has.
            probe.initialized = !self.blank;
            return probe;
        };
        let membership = m.membership_config.membership();
        probe.started = true;
        probe.membership_index = m.membership_config.log_id().map(|l| l.index);
        probe.voters = membership.voter_ids().collect();
        probe.learners = membership.learner_ids().collect();
        probe.initialized = !probe.voters.is_empty() || m.last_log_index.is_some();
        probe.leader = m.current_leader;
        probe
    }

    async fn resigned(self, _: Context, leader: NodeId) {
        if let Some((_, watch)) = self.started.get() {
            watch.leader_resigned(leader);
        }
    }
}
