//! `cluster.toml`: one file that every master and client can read.
//!
//! Loaded once at start-up by [`ClusterConfig::load`], which also validates
//! it; every error names the field and says what would fix it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::auth::Credentials;
use crate::raft::NodeId;
use crate::tls::Tls;

/// The whole of `cluster.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Cluster-wide settings.
    pub cluster: ClusterSettings,
    /// The masters, one `[[node]]` table each.
    #[serde(default)]
    pub node: Vec<NodeConfig>,
    /// Push workers known without registration, one `[[push_worker]]` table each.
    #[serde(default)]
    pub push_worker: Vec<PushWorkerConfig>,
}

/// One `[[push_worker]]` table: a push worker the leader dispatches to
/// without it registering.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushWorkerConfig {
    /// The worker's id (as its `--id`).
    pub id: String,
    /// Where it serves `DoTask`.
    pub addr: String,
    /// Tasks it takes at once.
    #[serde(default = "defaults::push_capacity")]
    pub capacity: u32,
}

/// The `[cluster]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSettings {
    /// The cluster's name; a data dir written by another cluster is refused.
    pub name: String,
    /// How long a worker holds a task without completing or extending it.
    #[serde(default = "defaults::lease_timeout_ms")]
    pub lease_timeout_ms: u64,
    /// How often the leader looks for expired leases.
    #[serde(default = "defaults::scan_interval_ms")]
    pub scan_interval_ms: u64,
    /// Raft heartbeat from the leader.
    #[serde(default = "defaults::heartbeat_interval_ms")]
    pub heartbeat_interval_ms: u64,
    /// `[min, max]`: a follower that hears no leader for this long starts an election.
    #[serde(default = "defaults::election_timeout_ms")]
    pub election_timeout_ms: [u64; 2],
    /// Assignments a task gets before it is dead.
    #[serde(default = "defaults::max_attempts")]
    pub max_attempts: u32,
    /// Largest task payload or result accepted.
    #[serde(default = "defaults::max_payload_bytes")]
    pub max_payload_bytes: u64,
    /// A completed or dead task is removed this long after it finished; 0 keeps every task forever.
    #[serde(default = "defaults::retention_ms")]
    pub retention_ms: u64,
    /// After a failed attempt (or an expired lease) a task waits this long
    /// before it may run again, doubling with each attempt; 0: no wait.
    #[serde(default = "defaults::retry_base_ms")]
    pub retry_base_ms: u64,
    /// The longest such wait.
    #[serde(default = "defaults::retry_max_ms")]
    pub retry_max_ms: u64,
    /// A task idle this long is handed out before any task of higher
    /// priority (longest waiting first), so none starves; 0: never.
    #[serde(default = "defaults::aging_ms")]
    pub aging_ms: u64,
    /// After a group commit of several calls, the next group waits up to
    /// this long (microseconds) for as many calls as were just answered, so
    /// that callers who call again at once (workers, closed-loop
    /// producers) share one log entry instead of alternating between two;
    /// 0: the next group goes as soon as the previous one is committed.
    #[serde(default = "defaults::group_commit_wait_us")]
    pub group_commit_wait_us: u64,
    /// Log entries between two snapshots of the first node (in id order);
    /// each further node waits a fifth more, and a fifth stays in the log
    /// after a snapshot for followers a little behind.
    #[serde(default = "defaults::snapshot_every")]
    pub snapshot_every: u64,
    /// The `[[node]]` ids that form a brand-new cluster (default: every node).
    /// Nodes listed but not here start empty and wait to be added with
    /// `taskraft member add`. Read only on a cluster's very first start.
    #[serde(default)]
    pub initial_members: Option<Vec<NodeId>>,
    /// Shared secret every connection must prove (TASKRAFT_TOKEN overrides it).
    #[serde(default)]
    pub token: Option<String>,
    /// A file holding the shared secret (trailing whitespace ignored), instead of `token`.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// PEM file of the CA that signed the nodes' certificates: turns TLS on.
    #[serde(default)]
    pub tls_ca: Option<PathBuf>,
    /// PEM certificate a node (or push worker) serves with; needs `tls_key` and `tls_ca`.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
}

/// One `[[node]]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// The node's id: unique, not 0.
    pub id: NodeId,
    /// Where the node listens for Raft traffic.
    pub peer_addr: String,
    /// Where the node listens for workers and the CLI.
    pub client_addr: String,
    /// Where the node serves HTTP: metrics, health checks, the JSON API and
    /// the web console (optional; no HTTP listener without it).
    #[serde(default)]
    pub http_addr: Option<String>,
    /// The node's sled directory; relative paths are relative to the working directory.
    pub data_dir: PathBuf,
}

/// The fewest log entries between snapshots accepted.
pub const MIN_SNAPSHOT_EVERY: u64 = 100;
/// The most accepted.
pub const MAX_SNAPSHOT_EVERY: u64 = 1_000_000_000;

/// The longest `group_commit_wait_us` accepted (10 ms).
pub const MAX_GROUP_COMMIT_WAIT_US: u64 = 10_000;

/// The shortest non-zero `retention_ms` accepted.
pub const MIN_RETENTION_MS: u64 = 1000;

mod defaults {
    pub fn lease_timeout_ms() -> u64 {
        3000
    }
    pub fn scan_interval_ms() -> u64 {
        1000
    }
    pub fn heartbeat_interval_ms() -> u64 {
        100
    }
    pub fn election_timeout_ms() -> [u64; 2] {
        [300, 600]
    }
    pub fn max_attempts() -> u32 {
        5
    }
    pub fn max_payload_bytes() -> u64 {
        1024 * 1024
    }
    pub fn retention_ms() -> u64 {
        24 * 60 * 60 * 1000
    }
    pub fn retry_base_ms() -> u64 {
        1000
    }
    pub fn retry_max_ms() -> u64 {
        5 * 60 * 1000
    }
    pub fn aging_ms() -> u64 {
        60 * 1000
    }
    pub fn group_commit_wait_us() -> u64 {
        300
    }
    pub fn snapshot_every() -> u64 {
        5000
    }
    pub fn push_capacity() -> u32 {
        4
    }
}

/// Why a config was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    /// The file is not valid TOML or does not match the schema.
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    /// A field has a value that cannot work.
    #[error("cluster.toml: {field}: {message}")]
    Invalid { field: String, message: String },
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { field: field.into(), message: message.into() }
}

impl ClusterConfig {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<ClusterConfig, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        ClusterConfig::parse(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => {
                ConfigError::Parse { path: path.to_owned(), message }
            }
            other => other,
        })
    }

    /// Parses and validates config text.
    pub fn parse(text: &str) -> Result<ClusterConfig, ConfigError> {
        let config: ClusterConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::from("cluster.toml"),
            message: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// The node with this id, or an error that lists the ids there are.
    pub fn node(&self, id: NodeId) -> Result<&NodeConfig, ConfigError> {
        self.node.iter().find(|n| n.id == id).ok_or_else(|| {
            let ids: Vec<String> = self.node.iter().map(|n| n.id.to_string()).collect();
            invalid("--id", format!("no [[node]] has id {id}; the ids are {}", ids.join(", ")))
        })
    }

    /// What this process proves and checks on every connection: the token
    /// (`TASKRAFT_TOKEN` if set, else `token`, else the contents of
    /// `token_file`) and, when `tls_ca` is set, TLS. A server (`serve`: a
    /// node or a push worker) also presents `tls_cert`.
    pub fn credentials(&self, serve: bool) -> Result<Credentials, ConfigError> {
        let c = &self.cluster;
        let creds = token_from_env(c.token.as_deref(), c.token_file.as_deref())?;
        let tls = match (&c.tls_ca, &c.tls_cert, &c.tls_key) {
            (None, _, _) => return Ok(creds),
            (Some(ca), Some(cert), Some(key)) if serve => Tls::server(cert, key, ca),
            (Some(ca), _, _) => Tls::client(ca),
        };
        Ok(creds.with_tls(tls.map_err(|e| invalid("cluster.tls", e))?))
    }

    /// The client addresses of every node: a client's seed list.
    pub fn seeds(&self) -> Vec<String> {
        self.node.iter().map(|n| n.client_addr.clone()).collect()
    }

    /// The ids of `initial_members` (every node when it is not set).
    pub fn initial_ids(&self) -> BTreeSet<NodeId> {
        match &self.cluster.initial_members {
            Some(ids) => ids.iter().copied().collect(),
            None => self.node.iter().map(|n| n.id).collect(),
        }
    }

    /// The voters of a brand-new cluster: the `initial_members`, with their addresses.
    pub fn initial_membership(&self) -> std::collections::BTreeMap<NodeId, crate::NodeInfo> {
        let ids = self.initial_ids();
        self.node.iter().filter(|n| ids.contains(&n.id)).map(|n| (n.id, n.info())).collect()
    }
}

impl NodeConfig {
    /// The addresses this node is reached at, as Raft's membership stores them.
    pub fn info(&self) -> crate::NodeInfo {
        crate::NodeInfo { peer_addr: self.peer_addr.clone(), client_addr: self.client_addr.clone() }
    }
}

/// A client's credentials without a config file: `TASKRAFT_TOKEN`, and TLS
/// when `TASKRAFT_TLS_CA` names the CA's PEM file.
pub fn credentials_from_env() -> Result<Credentials, ConfigError> {
    let creds = token_from_env(None, None)?;
    match std::env::var_os("TASKRAFT_TLS_CA") {
        Some(ca) => {
            Ok(creds
                .with_tls(Tls::client(Path::new(&ca)).map_err(|e| invalid("TASKRAFT_TLS_CA", e))?))
        }
        None => Ok(creds),
    }
}

/// Resolves the token: `TASKRAFT_TOKEN`, else `token`, else `token_file`.
pub fn token_from_env(
    token: Option<&str>,
    token_file: Option<&Path>,
) -> Result<Credentials, ConfigError> {
    if let Ok(secret) = std::env::var("TASKRAFT_TOKEN") {
        return Ok(Credentials::new(secret.trim()));
    }
    if let Some(t) = token {
        return Ok(Credentials::new(t));
    }
    match token_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
            Ok(Credentials::new(text.trim()))
        }
        None => Ok(Credentials::default()),
    }
}

mod validate;

#[cfg(test)]
mod tests;
