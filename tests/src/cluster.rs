//! [`TestCluster`]: three (or more) master nodes in this process.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use openraft::ServerState;
use taskraft_client::{Client, ClientOptions};
use taskraft_master::{Listeners, Node, NodeOptions};
use taskraft_proto::{ClusterConfig, NodeId};
use tempfile::TempDir;
use tokio::net::TcpListener;

use crate::{config_text, eventually, Ports};

/// Test timing: short leases and elections so stories run in seconds.
pub const FAST: &str = "lease_timeout_ms = 1500\nretry_base_ms = 0\nscan_interval_ms = 100\nheartbeat_interval_ms = 50\nelection_timeout_ms = [200, 500]\nmax_attempts = 3\nmax_payload_bytes = 4096";

/// Masters running in this process on real ports and real sled dirs.
pub struct TestCluster {
    /// The config every node was started with.
    pub config: ClusterConfig,
    /// Holds the data dirs; removed on drop.
    pub dir: TempDir,
    nodes: BTreeMap<NodeId, Node>,
}

impl TestCluster {
    /// Starts `n` nodes with the [`FAST`] timing.
    pub async fn start(n: usize) -> TestCluster {
        TestCluster::start_with(n, FAST).await
    }

    /// Starts `n` nodes with `extra` lines in the `[cluster]` table.
    pub async fn start_with(n: usize, extra: &str) -> TestCluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut listeners = Vec::new();
        let mut addrs = Vec::new();
        for _ in 0..n {
            let bind = || TcpListener::bind("127.0.0.1:0");
            let (peer, client, http) = (bind().await, bind().await, bind().await);
            let (peer, client, http) =
                (peer.expect("bind"), client.expect("bind"), http.expect("bind"));
            let addr = |l: &TcpListener| l.local_addr().expect("addr").to_string();
            addrs.push(Ports { peer: addr(&peer), client: addr(&client), http: addr(&http) });
            listeners.push(Listeners { peer, client, http: Some(http) });
        }
        let config =
            ClusterConfig::parse(&config_text("test", dir.path(), &addrs, extra)).expect("config");
        // All at once: a blank node waits for the others to answer before
        // its Raft starts (see taskraft_master::bootstrap).
        let mut starting = tokio::task::JoinSet::new();
        for (i, listeners) in listeners.into_iter().enumerate() {
            let (id, config) = (i as NodeId + 1, config.clone());
            starting.spawn(async move {
                let node = Node::start_on(&config, id, listeners, NodeOptions::default()).await;
                (id, node.expect("start node"))
            });
        }
        let mut nodes = BTreeMap::new();
        while let Some(started) = starting.join_next().await {
            let (id, node) = started.expect("start task");
            nodes.insert(id, node);
        }
        TestCluster { config, dir, nodes }
    }

    /// The node with this id (panics if stopped).
    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[&id]
    }

    /// Ids of the running nodes.
    pub fn running(&self) -> Vec<NodeId> {
        self.nodes.keys().copied().collect()
    }

    /// Waits until exactly one running node is leader and every running node
    /// agrees on it; returns its id.
    pub async fn leader(&self) -> NodeId {
        eventually(Duration::from_secs(15), "one agreed leader", || async {
            let metrics: Vec<_> =
                self.nodes.values().map(|n| n.raft.metrics().borrow().clone()).collect();
            let leaders: Vec<_> =
                metrics.iter().filter(|m| m.state == ServerState::Leader).map(|m| m.id).collect();
            let [leader] = leaders[..] else { return None };
            metrics.iter().all(|m| m.current_leader == Some(leader)).then_some(leader)
        })
        .await
    }

    /// A client seeded with every node's client address.
    pub fn client(&self) -> Arc<Client> {
        Arc::new(Client::with_options(self.config.seeds(), quick()))
    }

    /// A node's HTTP address (host:port).
    pub fn http(&self, id: NodeId) -> String {
        self.config.node(id).expect("node").http_addr.clone().expect("http_addr")
    }

    /// A client seeded with one node's client address only.
    pub fn client_of(&self, id: NodeId) -> Arc<Client> {
        let addr = self.config.node(id).expect("node").client_addr.clone();
        Arc::new(Client::with_options(vec![addr], quick()))
    }

    /// Stops a node (its ports close; its sled dir stays).
    pub async fn stop(&mut self, id: NodeId) {
        if let Some(node) = self.nodes.remove(&id) {
            node.shutdown().await;
        }
    }

    /// Starts a stopped node again on its ports and sled dir.
    pub async fn restart(&mut self, id: NodeId) {
        // The ports and the sled lock are released asynchronously: retry briefly.
        let config = self.config.clone();
        let node = eventually(Duration::from_secs(10), "node restart", || {
            let config = config.clone();
            async move { Node::start(&config, id, NodeOptions::default()).await.ok() }
        })
        .await;
        self.nodes.insert(id, node);
    }

    /// The digest of a node's applied table.
    pub fn digest(&self, id: NodeId) -> u64 {
        self.nodes[&id].applied().read().table.digest()
    }

    /// The last applied index of a node.
    pub fn applied_index(&self, id: NodeId) -> u64 {
        self.nodes[&id].raft.metrics().borrow().last_applied.map_or(0, |l| l.index)
    }

    /// Waits until every running node has applied the leader's last log entry
    /// and holds the same table.
    pub async fn converged(&self) -> u64 {
        eventually(Duration::from_secs(15), "replicas to converge", || async {
            let ids = self.running();
            let last = ids
                .iter()
                .map(|id| self.node(*id).raft.metrics().borrow().last_log_index.unwrap_or(0))
                .max()?;
            let applied_all = ids.iter().all(|id| self.applied_index(*id) >= last);
            let digests: Vec<u64> = ids.iter().map(|id| self.digest(*id)).collect();
            (applied_all && digests.windows(2).all(|w| w[0] == w[1])).then(|| digests[0])
        })
        .await
    }

    /// Stops every node.
    pub async fn shutdown(mut self) {
        for id in self.running() {
            self.stop(id).await;
        }
    }
}

fn quick() -> ClientOptions {
    ClientOptions { retry_for: Duration::from_secs(20), ..ClientOptions::default() }
}
