//! [`PeerServer`]: answers the peer service by handing each message to Raft.
//!
//! The peer port opens before Raft starts: a node with an empty data dir
//! first asks the other masters whether a cluster exists (see
//! [`crate::bootstrap`]), and they ask it the same. Until [`PeerServer::open`]
//! hands it Raft, the server answers `probe` as a blank node and refuses
//! Raft traffic as stopped (senders retry, as for a node that is down).

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
    started: Arc<OnceLock<(Raft, LeaderWatch)>>,
}

impl PeerServer {
    /// The peer service of node `id` of cluster `cluster`, before Raft starts.
    pub fn new(id: NodeId, cluster: &str) -> PeerServer {
        PeerServer { id, cluster: cluster.into(), started: Arc::default() }
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

    /// The ids of the live membership, once Raft runs.
    pub fn member_ids(&self) -> Vec<NodeId> {
        match self.started.get() {
            Some((raft, _)) => raft
                .metrics()
                .borrow()
                .membership_config
                .membership()
                .nodes()
                .map(|(id, _)| *id)
                .collect(),
            None => Vec::new(),
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
        if let Some((raft, _)) = self.started.get() {
            let m = raft.metrics().borrow().clone();
            let membership = m.membership_config.membership();
            probe.started = true;
            probe.membership_index = m.membership_config.log_id().map(|l| l.index);
            probe.voters = membership.voter_ids().collect();
            probe.learners = membership.learner_ids().collect();
            probe.initialized = !probe.voters.is_empty() || m.last_log_index.is_some();
            probe.leader = m.current_leader;
        }
        probe
    }

    async fn resigned(self, _: Context, leader: NodeId) {
        if let Some((_, watch)) = self.started.get() {
            watch.leader_resigned(leader);
        }
    }
}
