//! How a node with an empty data dir joins: never by initializing a cluster
//! that exists, never as a member that lost its data.
//!
//! A voter whose data dir was wiped has forgotten its vote: it could vote
//! twice in one term, and Raft's safety rests on that never happening. So a
//! node whose store is blank does not start Raft until the other masters of
//! `cluster.toml` have told it, over the peer port, what they hold:
//!
//! - a node with data that has not loaded it yet cannot tell: wait;
//! - if the newest membership any of them holds lists this node, the node
//!   refuses to start, and says how to replace it (remove, wipe, add);
//! - if it does not, and a majority of its voters answer without listing
//!   this node, it starts blank and waits to be added (`taskraft member
//!   add`); an older membership, as a removed node keeps it, does not count;
//! - if every listed node answers and none belongs to a cluster, this is
//!   a brand-new cluster: every node starts blank, and the lowest id of
//!   `initial_members` initializes it, but only once every other initial
//!   member runs Raft (so none of them can mistake the new cluster for one
//!   that lost its data);
//! - otherwise (a node that could tell does not answer yet) it waits.
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

/// Decides for blank node `me` of the `listed` nodes, given each other
/// listed node's answer (`None`: it did not answer).
pub fn decide(
    me: NodeId,
    listed: &BTreeSet<NodeId>,
    initial: &BTreeSet<NodeId>,
    answers: &BTreeMap<NodeId, Option<PeerProbe>>,
) -> Decision {
    let answer = |id: &NodeId| answers.get(id).cloned().flatten();
    let probes: Vec<&PeerProbe> = answers.values().flatten().collect();
    // A node with data whose Raft has not read it yet cannot say whom it lists.
    let loading: Vec<NodeId> =
        probes.iter().filter(|p| p.initialized && !p.started).map(|p| p.id).collect();
    if !loading.is_empty() {
        return Decision::Wait { missing: loading };
    }
    let newest = probes
        .iter()
        .filter(|p| p.initialized)
        .max_by_key(|p| (p.membership_index, p.leader == Some(p.id)));
    if let Some(newest) = newest {
        if newest.lists(me) {
            return Decision::Refuse { listed_by: newest.id };
        }
        // Join only when a majority of that membership's voters answer and
        // none lists this node: a removed node's old membership, or a
        // minority that missed this node's addition, is not enough.
        let agreeing = newest
            .voters
            .iter()
            .filter(|v| answer(v).is_some_and(|p| p.initialized && !p.lists(me)))
            .count();
        if agreeing > newest.voters.len() / 2 {
            return Decision::Join;
        }
        let missing = newest.voters.iter().filter(|v| answer(v).is_none()).copied().collect();
        return Decision::Wait { missing };
    }
    // Nobody answers with a cluster: that means something only once every
    // listed node has answered.
    let silent: Vec<NodeId> =
        listed.iter().filter(|id| **id != me && answer(id).is_none()).copied().collect();
    if !silent.is_empty() {
        return Decision::Wait { missing: silent };
    }
    if initial.iter().next() != Some(&me) {
        return Decision::Join;
    }
    // The initializer also waits until the other initial members run Raft,
    // so that none of them can mistake the new cluster for one it lost.
    let not_running: Vec<NodeId> = initial
        .iter()
        .filter(|id| **id != me && !answer(id).is_some_and(|p| p.started))
        .copied()
        .collect();
    match not_running.is_empty() {
        true => Decision::Initialize,
        false => Decision::Wait { missing: not_running },
    }
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
    let listed: BTreeSet<NodeId> = config.node.iter().map(|n| n.id).collect();
    let ttl = Duration::from_millis(config.cluster.election_timeout_ms[1].max(500));
    let mut last_note: Option<Instant> = None;
    loop {
        // All at once: a silent node costs one timeout per round, not one each.
        let probes = config.node.iter().filter(|n| n.id != me).map(|node| async move {
            let answer = match network.probe(node.id, &node.info(), ttl).await {
                Ok(p) if p.cluster == config.cluster.name && p.id == node.id => Some(p),
                Ok(p) => {
                    warn!(node = node.id, answered = ?p, "a node of another cluster answers at this address; ignored");
                    None
                }
                // It does not list this node: as good as a blank node's
                // answer (never as one that runs Raft, for the initializer).
                Err(Unanswered::NotListed) => Some(PeerProbe::blank(node.id, &config.cluster.name)),
                Err(Unanswered::Silent) => None,
            };
            (node.id, answer)
        });
        let answers: BTreeMap<NodeId, Option<PeerProbe>> =
            futures::future::join_all(probes).await.into_iter().collect();
        match decide(me, &listed, &initial, &answers) {
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
                    info!(?missing, "empty data dir: waiting for these masters to answer, to know whether a cluster lists this node");
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

    /// A node with data whose Raft has not read it yet.
    fn loading(id: NodeId) -> Option<PeerProbe> {
        Some(PeerProbe { initialized: true, ..PeerProbe::blank(id, "c") })
    }

    fn answers(list: Vec<(NodeId, Option<PeerProbe>)>) -> BTreeMap<NodeId, Option<PeerProbe>> {
        list.into_iter().collect()
    }

    fn decide3(me: NodeId, a: &BTreeMap<NodeId, Option<PeerProbe>>) -> Decision {
        decide(me, &[1, 2, 3].into(), &[1, 2, 3].into(), a)
    }

    #[test]
    fn a_wiped_member_is_refused_whoever_it_is() {
        let a = answers(vec![(2, probe(2, true, &[1, 2, 3])), (3, None)]);
        assert_eq!(decide3(1, &a), Decision::Refuse { listed_by: 2 });
        let a = answers(vec![(1, None), (3, probe(3, true, &[1, 2, 3]))]);
        assert_eq!(decide3(2, &a), Decision::Refuse { listed_by: 3 });
    }

    #[test]
    fn a_node_with_data_that_is_still_loading_makes_the_asker_wait() {
        // Restarting all three at once with node 3 wiped: 1 and 2 have data
        // but have not read it yet. Node 3 must not take them for blank.
        let a = answers(vec![(1, loading(1)), (2, probe(2, true, &[1, 2, 3]))]);
        assert_eq!(decide3(3, &a), Decision::Wait { missing: vec![1] });
        let a = answers(vec![(1, loading(1)), (2, loading(2))]);
        assert_eq!(decide3(3, &a), Decision::Wait { missing: vec![1, 2] });
    }

    #[test]
    fn a_removed_or_new_node_joins_when_a_majority_of_voters_do_not_list_it() {
        let a = answers(vec![(2, probe(2, true, &[2, 3, 4])), (3, probe(3, true, &[2, 3, 4]))]);
        assert_eq!(decide3(1, &a), Decision::Join);
        let listed = [1, 2, 3, 4].into();
        let a = answers(vec![
            (1, probe(1, true, &[1, 2, 3])),
            (2, probe(2, true, &[1, 2, 3])),
            (3, None),
        ]);
        assert_eq!(decide(4, &listed, &[1, 2, 3].into(), &a), Decision::Join);
    }

    #[test]
    fn one_voter_alone_is_not_enough_to_join() {
        let a = answers(vec![(2, probe(2, true, &[2, 3, 4])), (3, None)]);
        assert_eq!(decide3(1, &a), Decision::Wait { missing: vec![3, 4] });
    }

    #[test]
    fn the_newest_membership_decides_not_a_removed_nodes_old_one() {
        // Node 1 was removed (it keeps the membership of index 9); node 2
        // was removed later and wiped: the others' newer one does not list it.
        let listed = [1, 2, 3, 4, 5].into();
        let a = answers(vec![
            (1, at(1, true, &[1, 2, 3], 9)),
            (3, at(3, true, &[3, 4, 5], 20)),
            (4, at(4, true, &[3, 4, 5], 20)),
            (5, None),
        ]);
        assert_eq!(decide(2, &listed, &[1, 2, 3].into(), &a), Decision::Join);
        let a = answers(vec![(1, at(1, true, &[2, 3], 9)), (3, at(3, true, &[2, 3, 4], 20))]);
        assert_eq!(decide(2, &listed, &[1, 2, 3].into(), &a), Decision::Refuse { listed_by: 3 });
        // The removed node's old view alone, while the current voters are silent: wait.
        let a = answers(vec![(1, at(1, true, &[2, 3, 4], 9)), (2, None), (3, None), (4, None)]);
        assert_eq!(
            decide(5, &listed, &[1, 2, 3].into(), &a),
            Decision::Wait { missing: vec![2, 3, 4] }
        );
    }

    #[test]
    fn the_lowest_initial_member_initializes_only_when_the_others_run_blank() {
        let deciding = answers(vec![(2, probe(2, false, &[])), (3, probe(3, true, &[]))]);
        assert_eq!(decide3(1, &deciding), Decision::Wait { missing: vec![2] });
        let ready = answers(vec![(2, probe(2, true, &[])), (3, probe(3, true, &[]))]);
        assert_eq!(decide3(1, &ready), Decision::Initialize);
    }

    #[test]
    fn nobody_initializes_while_any_listed_node_is_silent() {
        // Initial members 1-3 replaced by 4-6 long ago, 4-6 down: the blank
        // initial members must not form a second cluster.
        let listed = [1, 2, 3, 4, 5, 6].into();
        let mut a = answers(vec![(2, probe(2, true, &[])), (3, probe(3, true, &[]))]);
        a.extend([(4, None), (5, None), (6, None)]);
        assert_eq!(
            decide(1, &listed, &[1, 2, 3].into(), &a),
            Decision::Wait { missing: vec![4, 5, 6] }
        );
    }

    #[test]
    fn the_other_initial_members_join_once_all_answer_blank() {
        let a = answers(vec![(1, probe(1, false, &[])), (3, probe(3, false, &[]))]);
        assert_eq!(decide3(2, &a), Decision::Join);
        let a = answers(vec![(1, probe(1, false, &[])), (3, None)]);
        assert_eq!(decide3(2, &a), Decision::Wait { missing: vec![3] });
    }

    #[test]
    fn a_node_the_others_refuse_joins_but_is_never_taken_for_running() {
        let refused = |id| Some(PeerProbe::blank(id, "c"));
        let listed = [1, 2, 3, 6].into();
        let a = answers(vec![(1, refused(1)), (2, refused(2)), (3, refused(3))]);
        assert_eq!(decide(6, &listed, &[1, 2, 3].into(), &a), Decision::Join);
        let a = answers(vec![(2, refused(2)), (3, probe(3, true, &[]))]);
        assert_eq!(decide3(1, &a), Decision::Wait { missing: vec![2] });
    }

    #[test]
    fn a_subset_of_initial_members_forms_the_cluster() {
        let initial = [2].into();
        let a = answers(vec![(1, probe(1, false, &[])), (3, probe(3, false, &[]))]);
        assert_eq!(decide(2, &[1, 2, 3].into(), &initial, &a), Decision::Initialize);
        let a = answers(vec![(2, probe(2, false, &[])), (3, probe(3, true, &[]))]);
        assert_eq!(decide(1, &[1, 2, 3].into(), &initial, &a), Decision::Join);
    }
}
