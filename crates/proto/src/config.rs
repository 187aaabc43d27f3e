//! `cluster.toml`: one file that every master and client can read.
//!
//! Loaded once at start-up by [`ClusterConfig::load`], which also validates
//! it; every error names the field and says what would fix it.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::auth::Credentials;
use crate::raft::NodeId;
use crate::tls::Tls;
use crate::transport::MAX_FRAME_BYTES;

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
    /// The node's sled directory; relative paths are relative to the working directory.
    pub data_dir: PathBuf,
}

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

    /// Checks every field; the first problem is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let c = &self.cluster;
        if c.name.trim().is_empty() {
            return Err(invalid("cluster.name", "must not be empty"));
        }
        for (field, value) in [
            ("cluster.lease_timeout_ms", c.lease_timeout_ms),
            ("cluster.scan_interval_ms", c.scan_interval_ms),
            ("cluster.heartbeat_interval_ms", c.heartbeat_interval_ms),
        ] {
            if value == 0 {
                return Err(invalid(field, "must be greater than 0"));
            }
        }
        let [min, max] = c.election_timeout_ms;
        if min >= max {
            return Err(invalid(
                "cluster.election_timeout_ms",
                format!("[{min}, {max}]: the first value must be below the second"),
            ));
        }
        if c.heartbeat_interval_ms >= min {
            return Err(invalid(
                "cluster.heartbeat_interval_ms",
                format!(
                    "{} must be below the election timeout's minimum {min}",
                    c.heartbeat_interval_ms
                ),
            ));
        }
        if c.token.is_some() && c.token_file.is_some() {
            return Err(invalid("cluster.token_file", "set token or token_file, not both"));
        }
        if c.token.as_ref().is_some_and(|t| t.is_empty() || t.len() > crate::auth::MAX_TOKEN_BYTES)
        {
            return Err(invalid("cluster.token", "must be 1 to 1024 bytes"));
        }
        if c.tls_cert.is_some() != c.tls_key.is_some() {
            return Err(invalid("cluster.tls_key", "set tls_cert and tls_key together"));
        }
        if c.tls_cert.is_some() && c.tls_ca.is_none() {
            return Err(invalid(
                "cluster.tls_ca",
                "TLS needs the CA that signed the nodes' certificates",
            ));
        }
        if c.retention_ms != 0 && c.retention_ms < MIN_RETENTION_MS {
            return Err(invalid(
                "cluster.retention_ms",
                format!(
                    "{} ms is too short for clients to read a result; use 0 (keep forever) or at least {MIN_RETENTION_MS}",
                    c.retention_ms
                ),
            ));
        }
        if c.max_attempts == 0 {
            return Err(invalid("cluster.max_attempts", "must be at least 1"));
        }
        let frame_budget = (MAX_FRAME_BYTES / 2) as u64;
        if c.max_payload_bytes == 0 || c.max_payload_bytes > frame_budget {
            return Err(invalid(
                "cluster.max_payload_bytes",
                format!("must be between 1 and {frame_budget}"),
            ));
        }
        self.validate_nodes()
    }

    fn validate_nodes(&self) -> Result<(), ConfigError> {
        let n = self.node.len();
        if n == 0 || n.is_multiple_of(2) {
            return Err(invalid("node", format!("{n} nodes listed; a cluster needs an odd number (1, 3 or 5) of [[node]] tables")));
        }
        let mut ids = BTreeSet::new();
        let mut addrs = BTreeSet::new();
        for (i, node) in self.node.iter().enumerate() {
            let at = format!("node[{i}]");
            if node.id == 0 {
                return Err(invalid(format!("{at}.id"), "must be greater than 0"));
            }
            if !ids.insert(node.id) {
                return Err(invalid(
                    format!("{at}.id"),
                    format!("id {} is used by two nodes", node.id),
                ));
            }
            for (field, addr) in
                [("peer_addr", &node.peer_addr), ("client_addr", &node.client_addr)]
            {
                if addr.parse::<SocketAddr>().is_err() {
                    return Err(invalid(
                        format!("{at}.{field}"),
                        format!("{addr:?} is not an IP:port address"),
                    ));
                }
                if !addrs.insert(addr.clone()) {
                    return Err(invalid(format!("{at}.{field}"), format!("{addr} is used twice")));
                }
            }
            if node.data_dir.as_os_str().is_empty() {
                return Err(invalid(format!("{at}.data_dir"), "must not be empty"));
            }
        }
        let mut push_ids = BTreeSet::new();
        for (i, w) in self.push_worker.iter().enumerate() {
            let at = format!("push_worker[{i}]");
            if w.id.trim().is_empty() || !push_ids.insert(w.id.clone()) {
                return Err(invalid(
                    format!("{at}.id"),
                    format!("{:?} is empty or used twice", w.id),
                ));
            }
            if w.addr.parse::<SocketAddr>().is_err() {
                return Err(invalid(
                    format!("{at}.addr"),
                    format!("{:?} is not an IP:port address", w.addr),
                ));
            }
            if w.capacity == 0 || w.capacity > 256 {
                return Err(invalid(format!("{at}.capacity"), "must be between 1 and 256"));
            }
        }
        Ok(())
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

    /// Every node as a Raft member: the voters of a brand-new cluster.
    pub fn members(&self) -> std::collections::BTreeMap<NodeId, crate::NodeInfo> {
        self.node
            .iter()
            .map(|n| {
                let info = crate::NodeInfo {
                    peer_addr: n.peer_addr.clone(),
                    client_addr: n.client_addr.clone(),
                };
                (n.id, info)
            })
            .collect()
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

#[cfg(test)]
mod tests;
