//! One taskraft master node: openraft on sled, the peer and client RPC
//! servers, and the duties only the leader performs.
//!
//! - [`store`]: the Raft log and the task table on sled;
//! - [`network`]: openraft's network over the tarpc peer service;
//! - [`peer`] and [`api`]: the two services a node answers;
//! - [`leader`]: the lease scanner, run only while this node leads;
//! - [`failover`]: a follower campaigns at once when the leader's process is gone;
//! - [`bootstrap`]: a node with an empty data dir never initializes a
//!   cluster that exists, nor rejoins one as a member that lost its data;
//! - [`membership`]: the rules a membership change passes before it starts;
//! - [`metrics`]: what `/metrics` exports, recorded where it happens;
//! - [`http`]: metrics, health checks, the JSON API and the web console;
//! - [`node`]: wires it all together, and shuts it down in reverse order.

#![warn(clippy::all)]
// openraft's StorageError and RPCError are large, and its traits prescribe them.
#![allow(clippy::result_large_err)]

pub mod api;
pub mod bootstrap;
pub mod dispatch;
pub mod failover;
pub mod http;
pub mod leader;
pub mod membership;
pub mod metrics;
pub mod network;
pub mod node;
pub mod peer;
pub mod proposer;
pub mod resources;
pub mod server;
pub mod store;
pub mod waker;

pub use node::{Listeners, Node, NodeError, NodeOptions};

/// openraft's handle with taskraft's types.
pub type Raft = openraft::Raft<taskraft_proto::TypeConfig>;

/// The leader's wall clock in ms since the Unix epoch: the only way time
/// enters the table, as a field of a proposed command.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
