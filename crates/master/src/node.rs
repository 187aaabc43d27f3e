//! [`Node`]: one master, wired from its `cluster.toml` entry.
//!
//! Start-up order: open the store, serve peers, and, when the store is
//! blank, ask the other masters whether this node may start (see
//! [`crate::bootstrap`]); then create Raft, serve clients, initialize the
//! cluster when this is its very first start, and start leader duties and
//! the election watchdog. Shutdown runs in reverse: stop accepting and
//! cancel duties, stop Raft, drop the store.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{InitializeError, RaftError};
use openraft::{Config, SnapshotPolicy};
use rand::Rng;
use taskraft_proto::auth::PeerFilter;
use taskraft_proto::{ClusterConfig, NodeId};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::api::{Api, Wiring};
use crate::bootstrap::{self, Decision};
use crate::dispatch::{Dispatcher, PushBoard};
use crate::failover::LeaderWatch;
use crate::http::{self, Http};
use crate::metrics::{sampler, Metrics};
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
    /// The data dir is blank but the cluster still counts this node as a member.
    #[error(transparent)]
    StillAMember(#[from] bootstrap::StillAMember),
}

/// Local start-up options that are not part of the shared config.
#[derive(Debug, Clone, Default)]
pub struct NodeOptions {
    /// Dial these nodes at these addresses instead of their `peer_addr`.
    pub peer_routes: BTreeMap<NodeId, String>,
}

/// The ports a node serves, bound before it starts.
pub struct Listeners {
    /// Raft traffic.
    pub peer: TcpListener,
    /// Workers and the CLI.
    pub client: TcpListener,
    /// Metrics, health, the JSON API and the console (optional).
    pub http: Option<TcpListener>,
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
        let http = match &me.http_addr {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        Node::start_on(config, id, Listeners { peer, client, http }, options).await
    }

    /// Starts node `id` of `config` on listeners already bound (tests bind port 0).
    pub async fn start_on(
        config: &ClusterConfig,
        id: NodeId,
        listeners: Listeners,
        options: NodeOptions,
    ) -> Result<Node, NodeError> {
        let Listeners { peer: peer_listener, client: client_listener, http: http_listener } =
            listeners;
        let me = config.node(id).map_err(|e| NodeError::Config(e.to_string()))?;
        let token = config.credentials(true).map_err(|e| NodeError::Config(e.to_string()))?;
        let metrics = Arc::new(Metrics::new(id));
        let (log, sm) = store::open(&me.data_dir, &config.cluster.name, metrics.clone())?;
        let blank = log.is_blank();
        let raft_config = Arc::new(raft_config(config, id)?);
        let slice = (raft_config.election_timeout_min, raft_config.election_timeout_max);
        let notice_window = crate::network::notices::window(
            Duration::from_millis(config.cluster.heartbeat_interval_ms),
            Duration::from_millis(config.cluster.election_timeout_ms[0]),
        );
        let network = PeerNetwork::with_routes(id, options.peer_routes.clone(), token.clone())
            .skipping_notices(notice_window, metrics.commit_notices_skipped.clone())
            .replicating_early(
                Duration::from_millis(config.cluster.heartbeat_interval_ms),
                metrics.appends_answered_early.clone(),
            );
        let shutdown = CancellationToken::new();
        let peers = PeerServer::new(id, &config.cluster.name, blank);
        let mut tasks = vec![server::serve_peers(
            peer_listener,
            peers.clone(),
            token.clone(),
            peer_filter(config, &peers),
            shutdown.clone(),
        )];
        // Any early return from here on stops what was started.
        let stop_on_error = shutdown.clone().drop_guard();
        let decision = match blank {
            true => Some(bootstrap::resolve(config, id, &network).await?),
            false => None,
        };
        let log_handle = log.clone();
        let raft = Raft::new(id, raft_config, network.clone(), log, sm.clone())
            .await
            .map_err(|e| NodeError::Raft(e.to_string()))?;
        let (early, raft_metrics) = (network.clone(), raft.metrics());
        log_handle.on_append(Box::new(move |prev, entries, committed| {
            early.send_early(&raft_metrics.borrow(), prev, entries, committed)
        }));
        let board = PushBoard::default();
        let wiring = Wiring {
            settings: config.cluster.clone(),
            board: board.clone(),
            token: token.clone(),
            data_dir: me.data_dir.clone(),
            network,
            metrics: metrics.clone(),
            log: log_handle,
        };
        let api = Api::new(raft.clone(), &sm, wiring);
        let watch = LeaderWatch::new(
            raft.clone(),
            id,
            options.peer_routes,
            token.clone(),
            slice,
            config.cluster.heartbeat_interval_ms,
        );
        peers.open(raft.clone(), watch);
        if let Some(listener) = http_listener {
            let http = Http::new(config, id, api.clone(), metrics.clone());
            tasks.push(http::serve(listener, http, shutdown.clone()));
        }
        tasks.push(server::serve_clients(client_listener, api, token.clone(), shutdown.clone()));
        tasks.push(sampler::spawn(raft.clone(), metrics, shutdown.clone()));
        match decision {
            Some(Decision::Initialize) => initialize(&raft, config, id).await?,
            Some(_) => info!(node = id, "empty data dir and no cluster lists this node: waiting to be added (taskraft member add {id})"),
            None => {}
        }
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
        info!(node = id, peer = %me.peer_addr, client = %me.client_addr, http = me.http_addr.as_deref().unwrap_or("-"), "master started");
        stop_on_error.disarm();
        Ok(Node { id, raft, state_machine: sm, shutdown, tasks })
    }

    /// The applied state of this node (the table as this replica holds it).
    pub fn applied(&self) -> Arc<parking_lot::RwLock<store::Applied>> {
        self.state_machine.applied()
    }

    /// Resolves when Raft has stopped by itself on a fatal error (a log or
    /// table write that failed, a panic inside it), with the error. Such a
    /// node must not go on serving: the caller stops the process.
    pub async fn fatal(&self) -> String {
        let mut metrics = self.raft.metrics();
        loop {
            if let Err(fatal) = &metrics.borrow().running_state {
                return fatal.to_string();
            }
            if metrics.changed().await.is_err() {
                return "raft stopped".to_owned();
            }
        }
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
        // The last handle waits for its table writer to finish its queue:
        // not on the runtime's thread.
        let _ = tokio::task::spawn_blocking(move || drop(self.state_machine)).await;
        info!(node = self.id, "stopped");
    }
}

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
        // Staggered per node (a fifth of `snapshot_every` more for each),
        // so that the nodes do not all encode and fsync a snapshot of a
        // large table at the same moment (CPU and disk are shared on one
        // host; heartbeats must keep flowing meanwhile).
        snapshot_policy: SnapshotPolicy::LogsSinceLast(
            c.snapshot_every + slot * (c.snapshot_every / 5),
        ),
        max_in_snapshot_log_to_keep: c.snapshot_every / 5,
        ..Config::default()
    };
    raft.validate().map_err(|e| NodeError::Config(format!("raft settings: {e}")))
}

/// Initializes a brand-new cluster with its initial members (see [`bootstrap`]).
async fn initialize(raft: &Raft, config: &ClusterConfig, id: NodeId) -> Result<(), NodeError> {
    let members = config.initial_membership();
    match raft.initialize(members.clone()).await {
        Ok(()) => {
            info!(node = id, members = ?members.keys().collect::<Vec<_>>(), "initialized a new cluster");
            Ok(())
        }
        Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
        Err(e) => Err(NodeError::Raft(e.to_string())),
    }
}

/// Which node ids the peer port accepts: the nodes of this node's config,
/// and the members of the live membership (added with other addresses).
fn peer_filter(config: &ClusterConfig, peers: &PeerServer) -> PeerFilter {
    let listed: BTreeSet<NodeId> = config.node.iter().map(|n| n.id).collect();
    let peers = peers.clone();
    Arc::new(move |id| listed.contains(&id) || peers.accepts(id))
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
