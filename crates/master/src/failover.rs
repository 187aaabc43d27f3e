//! Fast failover: campaign at once when the leader's process is gone.
//!
//! Plain Raft notices a dead leader only by silence: a follower waits out
//! its leader lease and then its election timeout. But a leader killed on a
//! live host says goodbye: the kernel closes its sockets, so its followers
//! see the replication connections end, and its peer port then refuses new
//! connections. [`LeaderWatch`] acts on exactly that evidence.
//!
//! When an inbound peer connection of a follower closes, the watch dials the
//! current leader's peer port. Only a refused connection counts as death: a
//! leader that is slow, paused (SIGSTOP) or cut off by the network still
//! accepts or times out, and is left to the ordinary timeouts, so a busy
//! leader is never deposed by this path.
//!
//! On death, the follower calls an election at once, and one more after a
//! quarter of its own election slice. The first round gives up the dead
//! leader's lease: a voter refuses every candidate while that lease runs,
//! and the survivors both campaigning is what ends it on both. The second
//! round wins when this node's log is as long as the other survivor's.
//! Nodes have disjoint slices, so the survivors' second rounds do not
//! collide. After that, openraft's own timers take over (they also cover a
//! survivor whose log was shorter, helped by the other survivor: when it
//! refuses its vote to a candidate whose log is shorter than its own, it
//! campaigns at once above that candidate's term, see
//! [`LeaderWatch::refused_shorter_log`]). A follower stops as soon as a leader is
//! known, or as soon as it has voted for another candidate in a newer term,
//! so that it never disrupts the election it just helped to win.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::ServerState;
use parking_lot::Mutex;
use rand::Rng;
use taskraft_proto::auth::Credentials;
use taskraft_proto::peer::{PeerServiceRequest, PeerServiceResponse};
use taskraft_proto::{transport, NodeId};
use tracing::info;

use crate::Raft;

/// Elections one detected death triggers from this node: one to give up the
/// dead leader's lease, one more to win. Then openraft's own timers take
/// over; more rounds here would make two survivors leapfrog each other's
/// terms when the faster one has the shorter log (it can never win).
const MAX_ROUNDS: u32 = 2;
/// Probes of the leader's port after a connection from it closed.
const PROBES: u32 = 4;
/// The pause between two probes.
const PROBE_PAUSE: Duration = Duration::from_millis(5);
/// How long after detecting the leader's death this node outbids a
/// candidate with a shorter log (and ignores further evidence of that death).
const OUTBID_WINDOW: Duration = Duration::from_secs(2);
/// Most elections one outbid triggers.
const MAX_OUTBID: u64 = 4;

/// Watches for the leader's death on behalf of one follower. Cheap to clone.
#[derive(Clone)]
pub struct LeaderWatch(Arc<Inner>);

struct Inner {
    raft: Raft,
    id: NodeId,
    routes: BTreeMap<NodeId, String>,
    token: Credentials,
    /// The pause between rounds is drawn from this range (ms).
    pause_ms: (u64, u64),
    /// How long the probe of the leader's port may take.
    probe_timeout: Duration,
    /// The leader whose death this node detected, and when.
    detected: Mutex<Option<(NodeId, Instant)>>,
}

impl LeaderWatch {
    /// A watch for node `id`, whose election slice is `[lo, hi]` ms and
    /// whose peers are dialled as `routes` says (else at their `peer_addr`).
    pub fn new(
        raft: Raft,
        id: NodeId,
        routes: BTreeMap<NodeId, String>,
        token: Credentials,
        election_slice: (u64, u64),
        heartbeat_ms: u64,
    ) -> LeaderWatch {
        let (lo, hi) = election_slice;
        LeaderWatch(Arc::new(Inner {
            raft,
            id,
            routes,
            token,
            pause_ms: ((lo / 4).max(1), (hi / 4).max(2)),
            probe_timeout: Duration::from_millis(heartbeat_ms.max(20)),
            detected: Mutex::new(None),
        }))
    }

    /// An inbound peer connection closed: check on the leader in the background.
    pub fn connection_closed(&self) {
        let watch = self.clone();
        tokio::spawn(async move { watch.check().await });
    }

    async fn check(self) {
        let me = &self.0;
        let m = me.raft.metrics().borrow().clone();
        if m.state != ServerState::Follower {
            return;
        }
        let Some(leader) = m.current_leader.filter(|l| *l != me.id) else { return };
        let Some(node) = m.membership_config.membership().get_node(&leader) else { return };
        let addr = me.routes.get(&leader).unwrap_or(&node.peer_addr).clone();
        if !self.refuses(&addr).await {
            return;
        }
        {
            // Several connections from the dead leader may close at once:
            // one of their checks acts.
            let mut detected = me.detected.lock();
            if detected.is_some_and(|(l, at)| l == leader && at.elapsed() < OUTBID_WINDOW) {
                return;
            }
            *detected = Some((leader, Instant::now()));
        }
        info!(leader, %addr, "the leader's peer port refuses connections; calling an election now");
        self.campaign(leader, m.vote.leader_id().term).await;
    }

    /// The leader removed itself from the membership and stepped down (it
    /// said so over the peer port): campaign as if it had died.
    pub fn leader_resigned(&self, leader: NodeId) {
        let watch = self.clone();
        tokio::spawn(async move {
            let me = &watch.0;
            let m = me.raft.metrics().borrow().clone();
            let voter = m.membership_config.membership().voter_ids().any(|v| v == me.id);
            if m.state != ServerState::Follower || m.current_leader != Some(leader) || !voter {
                return;
            }
            *me.detected.lock() = Some((leader, Instant::now()));
            info!(leader, "the leader removed itself from the cluster; calling an election now");
            watch.campaign(leader, m.vote.leader_id().term).await;
        });
    }

    /// Up to [`MAX_ROUNDS`] elections after `leader` (of `dead_term`) is gone,
    /// stopping as soon as another leader is known or this node voted for
    /// another candidate.
    async fn campaign(&self, leader: NodeId, dead_term: u64) {
        let me = &self.0;
        for _ in 0..MAX_ROUNDS {
            let m = me.raft.metrics().borrow().clone();
            let vote = m.vote.leader_id();
            let voted_for_another = vote.term > dead_term && vote.node_id != me.id;
            let new_leader = m.current_leader.is_some_and(|l| l != leader);
            if m.state == ServerState::Leader || new_leader || voted_for_another {
                return;
            }
            let _ = me.raft.trigger().elect().await;
            let pause = rand::thread_rng().gen_range(me.pause_ms.0..=me.pause_ms.1);
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
    }

    /// This node refused its vote to a candidate of `candidate_term`
    /// because the candidate's log is shorter. Such a candidate can never
    /// win, and while it keeps the highest term it also blocks this node,
    /// which could. So if this node saw the leader die moments ago, it
    /// campaigns at once, as many times as it takes to get above that term.
    pub fn refused_shorter_log(&self, candidate_term: u64) {
        let detected = *self.0.detected.lock();
        let Some((dead, at)) = detected else { return };
        if at.elapsed() > OUTBID_WINDOW {
            return;
        }
        let watch = self.clone();
        tokio::spawn(async move { watch.outbid(candidate_term, dead).await });
    }

    async fn outbid(self, candidate_term: u64, dead: NodeId) {
        let me = &self.0;
        let m = me.raft.metrics().borrow().clone();
        let term = m.vote.leader_id().term;
        if m.state == ServerState::Leader
            || m.current_leader.is_some_and(|l| l != dead)
            || term > candidate_term
        {
            return;
        }
        info!(
            candidate_term,
            "a candidate with a shorter log asked for my vote; campaigning above its term"
        );
        for _ in 0..(candidate_term - term + 1).min(MAX_OUTBID) {
            let _ = me.raft.trigger().elect().await;
        }
    }

    /// Whether `addr` refuses connections outright. A completed handshake,
    /// a timeout or any other failure is not taken as death. A dying
    /// process's listening socket may outlive its connections by a moment
    /// (the kernel completes TCP handshakes on it without the process), so
    /// an accepted probe is repeated a few times before it counts as life.
    async fn refuses(&self, addr: &str) -> bool {
        let me = &self.0;
        for _ in 0..PROBES {
            let probe = transport::connect_as::<
                tarpc::Response<PeerServiceResponse>,
                tarpc::ClientMessage<PeerServiceRequest>,
            >(addr, me.probe_timeout, &me.token, me.id);
            match probe.await {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return true,
                // A reset: the listening socket closed with our connection
                // in its queue. The next probe tells.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
                Err(_) => return false,
                Ok(_) => {}
            }
            tokio::time::sleep(PROBE_PAUSE).await;
        }
        false
    }
}
