//! [`ClusterConfig::validate`]: every refusal names its field and the fix.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use super::{
    invalid, ClusterConfig, ConfigError, MAX_GROUP_COMMIT_WAIT_US, MAX_SNAPSHOT_EVERY,
    MIN_RETENTION_MS, MIN_SNAPSHOT_EVERY,
};
use crate::client::MAX_DELAY_MS;
use crate::transport::MAX_FRAME_BYTES;

impl ClusterConfig {
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
        if c.retry_max_ms > MAX_DELAY_MS || c.retry_base_ms > c.retry_max_ms {
            return Err(invalid(
                "cluster.retry_max_ms",
                format!(
                    "must be at least retry_base_ms ({}) and at most {MAX_DELAY_MS} ms",
                    c.retry_base_ms
                ),
            ));
        }
        if c.group_commit_wait_us > MAX_GROUP_COMMIT_WAIT_US {
            return Err(invalid(
                "cluster.group_commit_wait_us",
                format!(
                    "{} µs would let a group commit wait that long for callers; at most {MAX_GROUP_COMMIT_WAIT_US} (0: no wait)",
                    c.group_commit_wait_us
                ),
            ));
        }
        if c.snapshot_every < MIN_SNAPSHOT_EVERY {
            return Err(invalid(
                "cluster.snapshot_every",
                format!(
                    "{} entries: snapshots that often would rewrite the whole table all the time; use at least {MIN_SNAPSHOT_EVERY}",
                    c.snapshot_every
                ),
            ));
        }
        if c.snapshot_every > MAX_SNAPSHOT_EVERY {
            return Err(invalid(
                "cluster.snapshot_every",
                format!("must be at most {MAX_SNAPSHOT_EVERY} entries"),
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
        if self.node.is_empty() {
            return Err(invalid("node", "no [[node]] tables; list every master of the cluster"));
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
            let http = node.http_addr.iter().map(|a| ("http_addr", a));
            for (field, addr) in
                [("peer_addr", &node.peer_addr), ("client_addr", &node.client_addr)]
                    .into_iter()
                    .chain(http)
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
        self.validate_initial_members(&ids)?;
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

    /// A brand-new cluster starts with an odd number of voters, each of them a listed node.
    fn validate_initial_members(&self, listed: &BTreeSet<u64>) -> Result<(), ConfigError> {
        let field = "cluster.initial_members";
        let (initial, named) = match &self.cluster.initial_members {
            Some(ids) => (ids.clone(), field),
            None => (listed.iter().copied().collect::<Vec<_>>(), "node"),
        };
        let mut seen = BTreeSet::new();
        for id in &initial {
            if !listed.contains(id) {
                return Err(invalid(field, format!("{id} is not the id of a [[node]]")));
            }
            if !seen.insert(*id) {
                return Err(invalid(field, format!("{id} is listed twice")));
            }
        }
        let n = initial.len();
        if n == 0 || n.is_multiple_of(2) {
            let what = if named == "node" { "nodes listed" } else { "initial members" };
            return Err(invalid(
                named,
                format!(
                    "{n} {what}; a new cluster needs an odd number (1, 3 or 5) of voters: list an odd number of [[node]] tables, or set cluster.initial_members"
                ),
            ));
        }
        Ok(())
    }
}
