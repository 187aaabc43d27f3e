//! [`PeerServer`]: answers the peer service by handing each message to Raft.

use openraft::error::InstallSnapshotError;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use tarpc::context::Context;
use taskraft_proto::peer::PeerService;
use taskraft_proto::raft::RaftError;
use taskraft_proto::{NodeId, TypeConfig};

use crate::failover::LeaderWatch;
use crate::Raft;

/// The peer service of one node.
#[derive(Clone)]
pub struct PeerServer {
    raft: Raft,
    watch: LeaderWatch,
}

impl PeerServer {
    /// Serves peers with `raft`; tells `watch` of votes refused for a shorter log.
    pub fn new(raft: Raft, watch: LeaderWatch) -> PeerServer {
        PeerServer { raft, watch }
    }
}

impl PeerService for PeerServer {
    async fn append_entries(
        self,
        _: Context,
        req: AppendEntriesRequest<TypeConfig>,
    ) -> Result<AppendEntriesResponse<NodeId>, RaftError> {
        self.raft.append_entries(req).await
    }

    async fn vote(
        self,
        _: Context,
        req: VoteRequest<NodeId>,
    ) -> Result<VoteResponse<NodeId>, RaftError> {
        let candidate = (req.vote.leader_id().term, req.last_log_id);
        let resp = self.raft.vote(req).await?;
        if !resp.vote_granted && resp.last_log_id > candidate.1 {
            self.watch.refused_shorter_log(candidate.0);
        }
        Ok(resp)
    }

    async fn install_snapshot(
        self,
        _: Context,
        req: InstallSnapshotRequest<TypeConfig>,
    ) -> Result<InstallSnapshotResponse<NodeId>, RaftError<InstallSnapshotError>> {
        self.raft.install_snapshot(req).await
    }
}
