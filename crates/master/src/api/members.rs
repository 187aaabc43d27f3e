//! Membership changes, answered by the leader: add a learner, promote it to
//! voter, remove a member (the leader too). The rules each must pass live
//! in [`crate::membership`]; openraft carries the change out by joint
//! consensus. Every call is idempotent, so a client may retry it after an
//! unknown outcome or a leader change.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use openraft::error::{ClientWriteError, RaftError};
use openraft::ChangeMembers;

use super::*;
use crate::membership::{check_caught_up, check_quorum};
use crate::network::Unanswered;

/// openraft's metrics with taskraft's types.
type Metrics = openraft::RaftMetrics<NodeId, NodeInfo>;

impl Api {
    /// Whether node `id` answered this leader's replication lately (the
    /// leader itself always does).
    pub(super) fn is_up(&self, m: &Metrics, id: NodeId) -> bool {
        let window = Duration::from_millis(
            self.0.settings.election_timeout_ms[1] + 2 * self.0.settings.heartbeat_interval_ms,
        );
        id == m.id || self.0.network.liveness().answered_within(id, window)
    }

    /// The highest log index node `id` is known to hold: the leader's own
    /// applied index, a follower's or learner's matched index.
    pub(super) fn held_index(m: &Metrics, id: NodeId) -> Option<u64> {
        if id == m.id {
            return m.last_applied.map(|l| l.index);
        }
        m.replication.as_ref()?.get(&id).cloned().flatten().map(|l| l.index)
    }

    /// Entries the leader holds that node `id` is not known to hold.
    pub(super) fn lag_of(m: &Metrics, id: NodeId) -> Option<u64> {
        let last = m.last_log_index.unwrap_or(0);
        Self::held_index(m, id).map(|held| last.saturating_sub(held))
    }

    fn leader_metrics(&self) -> Result<Metrics, WireError> {
        let m = self.0.raft.metrics().borrow().clone();
        if m.state != ServerState::Leader {
            return Err(self.not_leader());
        }
        Ok(m)
    }

    pub(super) async fn add_learner_now(
        &self,
        id: NodeId,
        node: NodeInfo,
    ) -> Result<(), WireError> {
        if id == 0 {
            return Err(WireError::Invalid("node id 0 is reserved; use 1 or more".into()));
        }
        for (what, addr) in [("peer", &node.peer_addr), ("client", &node.client_addr)] {
            if addr.parse::<SocketAddr>().is_err() {
                return Err(WireError::Invalid(format!(
                    "the {what} address {addr:?} is not an IP:port address"
                )));
            }
        }
        let m = self.leader_metrics()?;
        let membership = m.membership_config.membership();
        if let Some(known) = membership.get_node(&id) {
            if *known != node {
                return Err(WireError::Invalid(format!(
                    "node {id} is already a member at {known}; remove it first to change its addresses"
                )));
            }
            if membership.voter_ids().any(|v| v == id) {
                return Ok(());
            }
        }
        if let Some((other, _)) = membership.nodes().find(|(other, n)| {
            **other != id && (n.peer_addr == node.peer_addr || n.client_addr == node.client_addr)
        }) {
            return Err(WireError::Invalid(format!(
                "node {other} already uses one of the addresses {node}"
            )));
        }
        self.check_started(id, &node).await?;
        let add = self.0.raft.add_learner(id, node.clone(), false);
        self.membership_write(add).await?;
        info!(node = id, %node, "added a learner; replicating the log to it");
        Ok(())
    }

    pub(super) async fn promote_now(&self, id: NodeId) -> Result<(), WireError> {
        let m = self.leader_metrics()?;
        let membership = m.membership_config.membership();
        let joint = membership.get_joint_config().len() > 1;
        // A voter of a joint configuration left by a leader that died
        // mid-change is not done: the change below finishes it.
        if membership.voter_ids().any(|v| v == id) && !joint {
            return Ok(());
        }
        if membership.get_node(&id).is_none() {
            return Err(WireError::NotFound(format!(
                "node {id} is not a learner of this cluster; add it first (taskraft member add {id})"
            )));
        }
        check_caught_up(id, self.is_up(&m, id), Self::lag_of(&m, id))
            .map_err(WireError::Invalid)?;
        let current = membership.get_joint_config().clone();
        let mut new = current.last().cloned().unwrap_or_default();
        new.insert(id);
        let up = self.up_nodes(&m);
        check_quorum(&current, &new, &up).map_err(WireError::Invalid)?;
        let change = self.0.raft.change_membership(ChangeMembers::AddVoterIds([id].into()), false);
        self.membership_write(change).await?;
        info!(node = id, voters = ?new, "promoted a learner to voter");
        Ok(())
    }

    pub(super) async fn remove_now(&self, id: NodeId) -> Result<(), WireError> {
        let m = self.leader_metrics()?;
        let membership = m.membership_config.membership();
        if membership.get_node(&id).is_none() {
            return Ok(());
        }
        if membership.voter_ids().any(|v| v == id) {
            let current = membership.get_joint_config().clone();
            let mut new = current.last().cloned().unwrap_or_default();
            new.remove(&id);
            check_quorum(&current, &new, &self.up_nodes(&m)).map_err(WireError::Invalid)?;
            let change =
                self.0.raft.change_membership(ChangeMembers::RemoveVoters([id].into()), false);
            self.membership_write(change).await?;
        } else {
            let change =
                self.0.raft.change_membership(ChangeMembers::RemoveNodes([id].into()), false);
            self.membership_write(change).await?;
        }
        info!(node = id, "removed from the cluster");
        if id == m.id {
            // openraft 0.9 has no leadership transfer: the leader steps down
            // once the membership without it is committed. Tell the
            // remaining voters, so they campaign now rather than after the
            // lease and an election timeout.
            let ttl = Duration::from_millis(self.0.settings.election_timeout_ms[0]);
            let notices = membership.voter_ids().filter(|v| *v != id).filter_map(|v| {
                let node = membership.get_node(&v)?;
                Some(self.0.network.announce_resignation(v, node, ttl))
            });
            futures::future::join_all(notices).await;
        }
        Ok(())
    }

    /// A node is added only once it runs Raft: a blank node that is still
    /// asking its peers whether the cluster lists it would otherwise see
    /// itself listed and refuse to start (see [`crate::bootstrap`]).
    async fn check_started(&self, id: NodeId, node: &NodeInfo) -> Result<(), WireError> {
        let ttl = Duration::from_millis(self.0.settings.election_timeout_ms[1].max(500));
        match self.0.network.probe(id, node, ttl).await {
            Ok(p) if p.id != id || p.cluster != self.0.settings.name => {
                Err(WireError::Invalid(format!(
                    "node {} of cluster {:?} answers at {}, not node {id} of {:?}",
                    p.id, p.cluster, node.peer_addr, self.0.settings.name
                )))
            }
            Ok(p) if p.started => Ok(()),
            // Unavailable: the client retries, so `member add` may be run
            // right after the node was started.
            Ok(_) => Err(WireError::Unavailable(format!("node {id} is still starting"))),
            Err(Unanswered::NotListed) => Err(WireError::Invalid(format!(
                "node {id} refuses this leader's id: list every master of the cluster in its cluster.toml"
            ))),
            Err(Unanswered::Silent) => Err(WireError::Unavailable(format!(
                "node {id} does not answer at {}; start it first (taskraft master --id {id})",
                node.peer_addr
            ))),
        }
    }

    /// The nodes that answer this leader now, itself included.
    fn up_nodes(&self, m: &Metrics) -> BTreeSet<NodeId> {
        let membership = m.membership_config.membership();
        membership.nodes().map(|(id, _)| *id).filter(|id| self.is_up(m, *id)).collect()
    }

    /// Waits for a membership write; maps its errors to what a caller can act on.
    async fn membership_write<T>(
        &self,
        write: impl std::future::Future<
            Output = Result<T, RaftError<NodeId, ClientWriteError<NodeId, NodeInfo>>>,
        >,
    ) -> Result<(), WireError> {
        match tokio::time::timeout(self.0.propose_timeout * 4, write).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e)))) => {
                Err(WireError::Unavailable(format!("{e}; try again")))
            }
            Ok(Err(e)) => Err(self.wire_error(e)),
            Err(_) => Err(WireError::Unavailable(
                "the membership change was not committed in time (no quorum?); see taskraft member list, and run the command again once the nodes answer".into(),
            )),
        }
    }
}
