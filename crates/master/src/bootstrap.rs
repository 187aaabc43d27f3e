//! How a node with an empty data dir joins: never by initializing a cluster
//! that exists, never as a member that lost its data.
//!
//! A voter whose data dir was wiped has forgotten its vote: it could vote
//! twice in one term, and Raft's safety rests on that never happening. So a
//! node whose store is blank does not start Raft until the other masters of
//! `cluster.toml` have told it, over the peer port, what they hold:
//!
//! - if the newest membership any of them holds lists this node, the node
//!   refuses to start, and says how to replace it (remove, wipe, add);
//! - if that membership does not list it, it starts blank and waits to be
//!   added (`taskraft member add`); an older membership, as a removed node
//!   keeps it, does not count;
//! - if every initial member answers and none belongs to a cluster, this is
//!   a brand-new cluster: every node starts blank, and the lowest id of
//!   `initial_members` initializes it, but only once every other initial
//!   member runs Raft (so none of them can mistake the new cluster for one
//!   that lost its data);
//! - otherwise (an initial member does not answer yet) it waits.
//!
//! A node whose peer port refuses this node's id (a node added with
//! `--peer-addr`, which the others' config does not list) is taken to not
//! list it, like a blank node.
//!
//! A node whose data dir holds anything starts without asking: it restarts
//! as whatever it was.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use taskraft_proto::peer::PeerProbe;
use taskraft_proto::{ClusterConfig, NodeId};
use tracing::{info, warn};

use crate::network::{PeerNetwork, Unanswered};

/// What a blank node does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Start Raft and initialize a brand-new cluster with the initial members.
    Initialize,
    /// Start Raft blank; the leader will replicate to it once it is a member.
    Join,
    /// Refuse to start: node `listed_by` holds a membership that lists this node.
    Refuse { listed_by: NodeId },
    /// Ask again: these initial members have not answered (or not as needed).
    Wait { missing: Vec<NodeId> },
}

/// Decides for blank node `me`, given each other listed node's answer
/// (`None`: it did not answer).
pub fn decide(
    me: NodeId,
    initial: &BTreeSet<NodeId>,
    answers: &BTreeMap<NodeId, Option<PeerProbe>>,
) -> Decision {
    let newest = answers
        .values()
        .flatten()
        .filter(|p| p.initialized)
        .max_by_key(|p| (p.membership_index, p.leader == Some(p.id)));
    if let Some(p) = newest {
        return match p.lists(me) {
            true => Decision::Refuse { listed_by: p.id },
            false => Decision::Join,
        };
    }
    let first = initial.iter().next() == Some(&me);
    // The initializer waits until the others run Raft; the others only
    // need to know that nobody has initialized yet.
    let missing: Vec<NodeId> = initial
        .iter()
        .filter(|id| **id != me)
        .filter(|id| match answers.get(id).cloned().flatten() {
            None => true,
            Some(p) => first && !p.started,
        })
        .copied()
        .collect();
    match (missing.is_empty(), first) {
        (false, _) => Decision::Wait { missing },
        (true, true) => Decision::Initialize,
        (true, false) => Decision::Join,
    }
}

/// The answer a refused probe stands for: a node that does not list this
/// one (its config does not, nor its membership). For the initializer it
/// does not count as running Raft, so a cluster is never initialized with a
/// member whose peers refuse it.
fn not_listed(id: NodeId, cluster: &str) -> PeerProbe {
    PeerProbe::blank(id, cluster)
}

/// Why a blank node may not start.
#[derive(Debug, thiserror::Error)]
#[error(
    "the data dir {dir} is empty, but node {id} is still a member of cluster {cluster:?} (node {listed_by} says so). A member that lost its data must not rejoin as itself: it could vote twice in one term. Replace it: run `taskraft member remove {id}`, start this node again with its empty data dir, then run `taskraft member add {id}`"
)]
pub struct StillAMember {
    /// This node.
    pub id: NodeId,
    /// Its data dir.
    pub dir: String,
    /// The cluster's name.
    pub cluster: String,
    /// The node that lists it.
    pub listed_by: NodeId,
}

/// Asks the other listed nodes until [`decide`] settles; see the module comment.
pub async fn resolve(
    config: &ClusterConfig,
    me: NodeId,
    network: &PeerNetwork,
) -> Result<Decision, StillAMember> {
    let initial = config.initial_ids();
    let ttl = Duration::from_millis(config.cluster.election_timeout_ms[1].max(500));
    let mut last_note: Option<Instant> = None;
    loop {
        let mut answers = BTreeMap::new();
        for node in config.node.iter().filter(|n| n.id != me) {
            let answer = match network.probe(node.id, &node.info(), ttl).await {
                Ok(p) if p.cluster == config.cluster.name && p.id == node.id => Some(p),
                Ok(p) => {
                    warn!(node = node.id, answered = ?p, "a node of another cluster answers at this address; ignored");
                    None
                }
                // It does not list this node: as good as a blank node's answer.
                Err(Unanswered::NotListed) => Some(not_listed(node.id, &config.cluster.name)),
                Err(Unanswered::Silent) => None,
            };
            answers.insert(node.id, answer);
        }
        match decide(me, &initial, &answers) {
            Decision::Refuse { listed_by } => {
                let dir =
                    config.node(me).map(|n| n.data_dir.display().to_string()).unwrap_or_default();
                return Err(StillAMember {
                    id: me,
                    dir,
                    cluster: config.cluster.name.clone(),
                    listed_by,
                });
            }
            Decision::Wait { missing } => {
                if last_note.is_none_or(|at| at.elapsed() >= Duration::from_secs(5)) {
                    info!(?missing, "empty data dir: waiting for the other initial members to answer, to know whether the cluster exists");
                    last_note = Some(Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            decided => return Ok(decided),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(id: NodeId, started: bool, voters: &[NodeId]) -> Option<PeerProbe> {
        at(id, started, voters, 1)
    }

    fn at(id: NodeId, started: bool, voters: &[NodeId], index: u64) -> Option<PeerProbe> {
        Some(PeerProbe {
            id,
            cluster: "c".into(),
            started,
            initialized: !voters.is_empty(),
            membership_index: (!voters.is_empty()).then_some(index),
            voters: voters.to_vec(),
            learners: vec![],
            leader: None,
        })
    }

    fn answers(list: Vec<(NodeId, Option<PeerProbe>)>) -> BTreeMap<NodeId, Option<PeerProbe>> {
        list.into_iter().collect()
    }

    const INITIAL: [NodeId; 3] = [1, 2, 3];

    #[test]
    fn a_wiped_member_is_refused_whoever_it_is() {
        let initial = INITIAL.into();
        let a = answers(vec![(2, probe(2, true, &[1, 2, 3])), (3, None)]);
        assert_eq!(decide(1, &initial, &a), Decision::Refuse { listed_by: 2 });
        let a = answers(vec![(1, None), (3, probe(3, true, &[1, 2, 3]))]);
        assert_eq!(decide(2, &initial, &a), Decision::Refuse { listed_by: 3 });
    }

    #[test]
    fn a_removed_or_new_node_joins_a_cluster_that_does_not_list_it() {
        let initial = INITIAL.into();
        let a = answers(vec![(2, probe(2, true, &[2, 3])), (3, None)]);
        assert_eq!(decide(1, &initial, &a), Decision::Join);
        let a = answers(vec![(1, None), (2, probe(2, true, &[1, 2, 3])), (3, None)]);
        assert_eq!(decide(4, &initial, &a), Decision::Join);
    }

    #[test]
    fn the_newest_membership_decides_not_a_removed_nodes_old_one() {
        let initial = INITIAL.into();
        // Node 1 was removed (it keeps the membership of index 9); node 2
        // was removed later and wiped: the others' newer one does not list it.
        let a = answers(vec![(1, at(1, true, &[1, 2, 3], 9)), (3, at(3, true, &[3, 4, 5], 20))]);
        assert_eq!(decide(2, &initial, &a), Decision::Join);
        let a = answers(vec![(1, at(1, true, &[2, 3], 9)), (3, at(3, true, &[2, 3, 4], 20))]);
        assert_eq!(decide(2, &initial, &a), Decision::Refuse { listed_by: 3 });
    }

    #[test]
    fn the_lowest_initial_member_initializes_only_when_the_others_run_blank() {
        let initial = INITIAL.into();
        let deciding = answers(vec![(2, probe(2, false, &[])), (3, probe(3, true, &[]))]);
        assert_eq!(decide(1, &initial, &deciding), Decision::Wait { missing: vec![2] });
        let ready = answers(vec![(2, probe(2, true, &[])), (3, probe(3, true, &[]))]);
        assert_eq!(decide(1, &initial, &ready), Decision::Initialize);
    }

    #[test]
    fn the_other_initial_members_join_once_all_answer_blank() {
        let initial = INITIAL.into();
        let a = answers(vec![(1, probe(1, false, &[])), (3, probe(3, false, &[]))]);
        assert_eq!(decide(2, &initial, &a), Decision::Join);
        let a = answers(vec![(1, probe(1, false, &[])), (3, None)]);
        assert_eq!(decide(2, &initial, &a), Decision::Wait { missing: vec![3] });
    }

    #[test]
    fn nobody_decides_while_an_initial_member_is_silent() {
        let initial = INITIAL.into();
        let a = answers(vec![(2, None), (3, None)]);
        assert_eq!(decide(1, &initial, &a), Decision::Wait { missing: vec![2, 3] });
        let a = answers(vec![(1, None), (2, probe(2, true, &[])), (3, None)]);
        assert_eq!(decide(4, &initial, &a), Decision::Wait { missing: vec![1, 3] });
    }

    #[test]
    fn a_node_the_others_refuse_joins_but_is_never_taken_for_running() {
        let initial = INITIAL.into();
        let refused = |id| Some(not_listed(id, "c"));
        let a = answers(vec![(1, refused(1)), (2, refused(2)), (3, refused(3))]);
        assert_eq!(decide(6, &initial, &a), Decision::Join);
        let a = answers(vec![(2, refused(2)), (3, probe(3, true, &[]))]);
        assert_eq!(decide(1, &initial, &a), Decision::Wait { missing: vec![2] });
    }

    #[test]
    fn a_subset_of_initial_members_forms_the_cluster() {
        let initial = [2].into();
        let a = answers(vec![(1, None), (3, None)]);
        assert_eq!(decide(2, &initial, &a), Decision::Initialize);
        let a = answers(vec![(2, probe(2, false, &[])), (3, None)]);
        assert_eq!(decide(1, &initial, &a), Decision::Join);
    }
}
