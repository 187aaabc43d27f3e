//! The peer service: Raft traffic between masters on `peer_addr`.
//!
//! The messages and errors are openraft's own, kept typed across the wire so
//! that the sender can react to them (e.g. restart a snapshot on mismatch).

use openraft::error::InstallSnapshotError;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};

use crate::raft::{NodeId, RaftError, TypeConfig};

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
}
