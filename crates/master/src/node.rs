//! [`Node`]: one master, wired from its `cluster.toml` entry.
//!
//! Start-up order: open the store, create Raft, serve peers, serve clients,
//! initialize the cluster if this is the first start of its lowest-id node,
//! then start leader duties and the election watchdog. Shutdown runs in
//! reverse: stop accepting and cancel duties, stop Raft, drop the store.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{InitializeError, RaftError};
use openraft::{Config, SnapshotPolicy};
use rand::Rng;
use taskraft_proto::{ClusterConfig, NodeId};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::api::Api;
use crate::dispatch::{Dispatcher, PushBoard};
use crate::failover::LeaderWatch;
use crate::network::PeerNetwork;
use crate::peer::PeerServer;
use crate::store::{self, StateMachine};
use crate::{leader, server, Raft};

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The config does not describe this node, or its Raft settings are invalid.
    #[error("{0}")]
    Config(String),
    /// The data dir could not be used.
    #[error(transparent)]
    Store(#[from] store::OpenError),
    /// A port could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: String, source: std::io::Error },
    /// Raft failed to start or to initialize.
    #[error("raft: {0}")]
    Raft(String),
}

/// Local start-up options that are not part of the shared config.
#[derive(Debug, Clone, Default)]
pub struct NodeOptions {
    /// Dial these nodes at these addresses instead of their `peer_addr`.
    pub peer_routes: BTreeMap<NodeId, String>,
}

/// A running master node.
pub struct Node {
    /// This node's id.
    pub id: NodeId,
    /// The Raft handle (metrics, triggers, waits).
    pub raft: Raft,
    state_machine: StateMachine,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Node {
    /// Starts node `id` of `config`, listening on the addresses it lists.
    pub async fn start(
        config: &ClusterConfig,
        id: NodeId,
        options: NodeOptions,
    ) -> Result<Node, NodeError> {
        let me = config.node(id).map_err(|e| NodeError::Config(e.to_string()))?;
        let bind = |addr: &str| {
            let addr = addr.to_owned();
            async move {
                TcpListener::bind(&addr).await.map_err(|source| NodeError::Listen { addr, source })
            }
        };
        let peer = bind(&me.peer_addr).await?;
        let client = bind(&me.client_addr).await?;
        Node::start_on(config, id, peer, client, options).await
    }

    /// Starts node `id` of `config` on listeners already bound (tests bind port 0).
    pub async fn start_on(
        config: &ClusterConfig,
        id: NodeId,
        peer_listener: TcpListener,
        client_listener: TcpListener,
        options: NodeOptions,
    ) -> Result<Node, NodeError> {
        let me = config.node(id).map_err(|e| NodeError::Config(e.to_string()))?;
        let token = config.credentials(true).map_err(|e| NodeError::Config(e.to_string()))?;
        let (log, sm) = store::open(&me.data_dir, &config.cluster.name)?;
        let raft_config = Arc::new(raft_config(config, id)?);
        let slice = (raft_config.election_timeout_min, raft_config.election_timeout_max);
        let raft = Raft::new(
            id,
            raft_config,
            PeerNetwork::with_routes(id, options.peer_routes.clone(), token.clone()),
            log,
            sm.clone(),
        )
        .await
        .map_err(|e| NodeError::Raft(e.to_string()))?;
        let shutdown = CancellationToken::new();
        let board = PushBoard::default();
        let api = Api::new(
            raft.clone(),
            sm.applied(),
            sm.subscribe(),
            config.cluster.clone(),
            board.clone(),
            token.clone(),
            me.data_dir.clone(),
        );
        let watch = LeaderWatch::new(
            raft.clone(),
            id,
            options.peer_routes,
            token.clone(),
            slice,
            config.cluster.heartbeat_interval_ms,
        );
        let mut tasks = vec![
            server::serve_peers(
                peer_listener,
                PeerServer::new(raft.clone(), watch.clone()),
                token.clone(),
                config.node.iter().map(|n| n.id).collect(),
                watch,
                shutdown.clone(),
            ),
            server::serve_clients(client_listener, api, token.clone(), shutdown.clone()),
        ];
        maybe_initialize(&raft, config, id).await?;
        let dispatcher = Dispatcher {
            raft: raft.clone(),
            applied: sm.applied(),
            applied_index: sm.subscribe(),
            registry: sm.subscribe_registry(),
            settings: config.cluster.clone(),
            configured: config.push_worker.clone(),
            board,
            token,
        };
        tasks.push(leader::spawn(dispatcher, shutdown.clone()));
        tasks.push(spawn_election_watchdog(
            raft.clone(),
            config.cluster.election_timeout_ms[1],
            shutdown.clone(),
        ));
        info!(node = id, peer = %me.peer_addr, client = %me.client_addr, "master started");
        Ok(Node { id, raft, state_machine: sm, shutdown, tasks })
    }

    /// The applied state of this node (the table as this replica holds it).
    pub fn applied(&self) -> std::sync::Arc<std::sync::RwLock<store::Applied>> {
        self.state_machine.applied()
    }

    /// Stops the node: servers and duties first, then Raft, then the store.
    pub async fn shutdown(self) {
        info!(node = self.id, "shutting down: stopping servers and leader duties");
        self.shutdown.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
        info!(node = self.id, "shutting down: stopping raft");
        if let Err(e) = self.raft.shutdown().await {
            warn!(error = %e, "raft did not stop cleanly");
        }
        drop(self.state_machine);
        info!(node = self.id, "stopped");
    }
}

/// Log entries between two snapshots of the first node; each further node
/// (in id order) waits [`SNAPSHOT_STAGGER`] entries more.
const SNAPSHOT_EVERY: u64 = 5000;
const SNAPSHOT_STAGGER: u64 = 1000;

/// openraft's config from `cluster.toml`. Each node gets its own slice of the
/// election timeout range: openraft 0.9 draws a node's timeout once, and two
/// survivors with equal draws could split the vote forever.
fn raft_config(config: &ClusterConfig, id: NodeId) -> Result<Config, NodeError> {
    let c = &config.cluster;
    let [min, max] = c.election_timeout_ms;
    let mut ids: Vec<NodeId> = config.node.iter().map(|n| n.id).collect();
    ids.sort();
    let slot = ids.iter().position(|i| *i == id).unwrap_or(0) as u64;
    let width = (max - min) / ids.len() as u64;
    let (lo, hi) =
        if width >= 2 { (min + slot * width, min + (slot + 1) * width) } else { (min, max) };
    let raft = Config {
        cluster_name: c.name.clone(),
        heartbeat_interval: c.heartbeat_interval_ms,
        election_timeout_min: lo,
        election_timeout_max: hi,
        install_snapshot_timeout: 10_000,
        // Staggered per node, so that the nodes do not all encode and fsync
        // a snapshot of a large table at the same moment (CPU and disk are
        // shared on one host; heartbeats must keep flowing meanwhile).
        snapshot_policy: SnapshotPolicy::LogsSinceLast(SNAPSHOT_EVERY + slot * SNAPSHOT_STAGGER),
        max_in_snapshot_log_to_keep: 1000,
        ..Config::default()
    };
    raft.validate().map_err(|e| NodeError::Config(format!("raft settings: {e}")))
}

/// Initializes the cluster with every node of the config, once: only on the
/// lowest-id node and only when its store has never been initialized. A
/// restarted node never re-initializes; other nodes learn the membership
/// from the leader.
async fn maybe_initialize(
    raft: &Raft,
    config: &ClusterConfig,
    id: NodeId,
) -> Result<(), NodeError> {
    let first = config.node.iter().map(|n| n.id).min() == Some(id);
    let initialized = raft.is_initialized().await.map_err(|e| NodeError::Raft(e.to_string()))?;
    if !first || initialized {
        return Ok(());
    }
    match raft.initialize(config.members()).await {
        Ok(()) => {
            info!(node = id, "initialized a new cluster");
            Ok(())
        }
        Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
        Err(e) => Err(NodeError::Raft(e.to_string())),
    }
}

/// Calls an election when no leader has been seen for three election
/// timeouts, after a random pause: a second guard against split votes.
fn spawn_election_watchdog(
    raft: Raft,
    election_max_ms: u64,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let period = Duration::from_millis(election_max_ms);
        let mut leaderless = 0u32;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(period) => {}
            }
            let (leader, voter) = {
                let m = raft.metrics().borrow().clone();
                (m.current_leader, m.membership_config.membership().voter_ids().any(|v| v == m.id))
            };
            leaderless = if leader.is_none() && voter { leaderless + 1 } else { 0 };
            if leaderless >= 3 {
                let jitter = rand::thread_rng().gen_range(0..election_max_ms);
                tokio::time::sleep(Duration::from_millis(jitter)).await;
                if raft.metrics().borrow().current_leader.is_none() {
                    info!("no leader for a while; calling an election");
                    let _ = raft.trigger().elect().await;
                }
                leaderless = 0;
            }
        }
    })
}
