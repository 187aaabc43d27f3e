//! The openraft type configuration: what a log entry carries, how nodes are addressed.

use std::fmt;
use std::io::Cursor;

use serde::{Deserialize, Serialize};
use taskraft_core::{Command, Response};

/// A master's id, as in `cluster.toml`.
pub type NodeId = u64;

/// The addresses of one master, stored in the Raft membership so that every
/// node (and every redirect) knows where the others listen.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Raft traffic between masters.
    pub peer_addr: String,
    /// Workers and the CLI.
    pub client_addr: String,
}

impl fmt::Display for NodeInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "peer {} client {}", self.peer_addr, self.client_addr)
    }
}

openraft::declare_raft_types!(
    /// taskraft's Raft types: entries carry table commands, applying one yields a table response.
    pub TypeConfig:
        D = Command,
        R = Response,
        NodeId = NodeId,
        Node = NodeInfo,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
        Responder = openraft::impls::OneshotResponder<TypeConfig>,
);

/// openraft's error of a Raft API call, with our node types.
pub type RaftError<E = openraft::error::Infallible> = openraft::error::RaftError<NodeId, E>;
