//! The contract between taskraft processes.
//!
//! - [`config`]: `cluster.toml`, typed and validated once at start-up;
//! - [`raft`]: the openraft type configuration shared by every master;
//! - [`peer`]: the tarpc service masters use to replicate (AppendEntries, Vote, InstallSnapshot);
//! - [`client`]: the tarpc service workers and the CLI use, answered by the leader;
//! - [`error`]: [`WireError`], the one error type that crosses the client port;
//! - [`transport`]: the one place that builds tarpc transports (codec, frame limit).

#![warn(clippy::all)]

pub mod auth;
pub mod client;
pub mod config;
pub mod error;
pub mod json;
pub mod peer;
pub mod push;
pub mod raft;
pub mod tls;
pub mod transport;

pub use config::{ClusterConfig, ConfigError, NodeConfig};
pub use error::{LeaderHint, WireError};
pub use raft::{NodeId, NodeInfo, TypeConfig};
