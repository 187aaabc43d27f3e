//! [`WireError`]: what can go wrong with a client call, as the caller sees it.
//!
//! Outcomes such as `Stale` or `Duplicate` are not errors: they are applied
//! answers (`taskraft_core::Outcome`). A `WireError` means the call did not
//! take effect, or, for `Unavailable`, that its outcome is unknown.

use serde::{Deserialize, Serialize};

use crate::raft::NodeId;

/// Where the leader is, as far as the answering node knows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderHint {
    /// The leader's node id.
    pub id: NodeId,
    /// The leader's client address: where to send the call instead.
    pub client_addr: String,
}

/// An error answered on the client port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum WireError {
    /// This node is not the leader; retry at `leader` (None: no leader known yet).
    #[error("this node is not the leader{}", leader_text(.leader))]
    NotLeader { leader: Option<LeaderHint> },
    /// The cluster could not decide in time (no quorum, shutting down, storage
    /// failure). The call may or may not have taken effect; retrying is safe.
    #[error("cluster unavailable: {0}")]
    Unavailable(String),
    /// The request is malformed or over a limit. Nothing changed; do not retry as is.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The task does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The connection was refused: wrong or missing cluster token.
    #[error("unauthorized: {0}; set the cluster's token (TASKRAFT_TOKEN, or token/token_file in cluster.toml)")]
    Unauthorized(String),
}

fn leader_text(leader: &Option<LeaderHint>) -> String {
    match leader {
        Some(l) => format!("; the leader is node {} at {}", l.id, l.client_addr),
        None => "; no leader is known yet".to_string(),
    }
}
