//! The peer service: Raft traffic between masters on `peer_addr`.
//!
//! The messages and errors are openraft's own, kept typed across the wire so
//! that the sender can react to them (e.g. restart a snapshot on mismatch).

use openraft::error::InstallSnapshotError;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};

use serde::{Deserialize, Serialize};

use crate::raft::{NodeId, RaftError, TypeConfig};

/// What a node says of itself to another master, so that a node with an
/// empty data dir can tell a brand-new cluster from one that exists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerProbe {
    /// The answering node.
    pub id: NodeId,
    /// Its `cluster.name`.
    pub cluster: String,
    /// Whether its Raft runs. A node with an empty data dir starts Raft only
    /// once it knows that no cluster lists it (see `taskraft_master::bootstrap`).
    pub started: bool,
    /// Whether it belongs to a cluster (it holds a membership or a log).
    pub initialized: bool,
    /// The log index of the membership it holds: of two answers, the higher
    /// one is the newer membership (a removed node keeps an old one).
    pub membership_index: Option<u64>,
    /// The voters of the membership it holds (both halves of a joint one).
    pub voters: Vec<NodeId>,
    /// The learners of that membership.
    pub learners: Vec<NodeId>,
    /// The leader it follows, if any.
    pub leader: Option<NodeId>,
}

impl PeerProbe {
    /// The answer of node `id` of `cluster` before its Raft started.
    pub fn blank(id: NodeId, cluster: &str) -> PeerProbe {
        PeerProbe {
            id,
            cluster: cluster.to_string(),
            started: false,
            initialized: false,
            membership_index: None,
            voters: Vec::new(),
            learners: Vec::new(),
            leader: None,
        }
    }

    /// Whether the answering node counts `id` as a voter or learner.
    pub fn lists(&self, id: NodeId) -> bool {
        self.voters.contains(&id) || self.learners.contains(&id)
    }
}

/// Raft RPCs between masters.
#[tarpc::service]
pub trait PeerService {
    /// Replicate entries, or heartbeat when empty.
    async fn append_entries(
        req: AppendEntriesRequest<TypeConfig>,
    ) -> Result<AppendEntriesResponse<NodeId>, RaftError>;
    /// Ask for a vote.
    async fn vote(req: VoteRequest<NodeId>) -> Result<VoteResponse<NodeId>, RaftError>;
    /// One chunk of a snapshot.
    async fn install_snapshot(
        req: InstallSnapshotRequest<TypeConfig>,
    ) -> Result<InstallSnapshotResponse<NodeId>, RaftError<InstallSnapshotError>>;
    /// Who the answering node is and which cluster it belongs to. Answered
    /// even before its Raft has started.
    async fn probe() -> PeerProbe;
    /// The leader `leader` has just removed itself from the membership and
    /// stepped down: the receiving voter calls an election at once instead
    /// of waiting out the leader's lease and its own timeout.
    async fn resigned(leader: NodeId);
}
