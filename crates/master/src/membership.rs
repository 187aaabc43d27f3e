//! The rules a membership change must pass before the leader starts it.
//!
//! openraft changes membership by joint consensus: from the voters `C`
//! through the joint `C + N` to the new voters `N`. Every step commits
//! only with a majority of each configuration in force, so a change started
//! while a majority of `C` or of `N` is down cannot finish, and it leaves
//! the cluster stuck in the joint configuration until those nodes return.
//! The leader therefore refuses such a change up front and says which
//! nodes are missing. A learner is promoted only once it holds nearly the
//! whole log, so that the new configuration does not wait on it.
//!
//! Pure functions of the membership and of which nodes answer, tested below.

use std::collections::BTreeSet;

pub use taskraft_proto::client::MAX_PROMOTE_LAG;
use taskraft_proto::NodeId;

/// Refuses a change from the voters `current` (each configuration in force:
/// two of them during a change) to `new`, when `up` (the nodes that answer
/// the leader now, the leader included) do not hold a majority of each.
pub fn check_quorum(
    current: &[BTreeSet<NodeId>],
    new: &BTreeSet<NodeId>,
    up: &BTreeSet<NodeId>,
) -> Result<(), String> {
    if new.is_empty() {
        return Err("the change would leave the cluster without a voter".into());
    }
    for config in current.iter().chain(std::iter::once(new)) {
        let answering: BTreeSet<NodeId> = config.intersection(up).copied().collect();
        let needed = config.len() / 2 + 1;
        if answering.len() < needed {
            let down: Vec<NodeId> = config.difference(up).copied().collect();
            return Err(format!(
                "the change needs {needed} of the voters {:?} to answer, and only {:?} do; bring back {:?} first (a change without a quorum would leave the cluster stuck half-way)",
                config.iter().collect::<Vec<_>>(),
                answering.iter().collect::<Vec<_>>(),
                down
            ));
        }
    }
    Ok(())
}

/// Refuses to promote a learner that is down or still catching up.
pub fn check_caught_up(id: NodeId, up: bool, lag: Option<u64>) -> Result<(), String> {
    if !up {
        return Err(format!("node {id} does not answer the leader; start it first"));
    }
    match lag {
        Some(lag) if lag <= MAX_PROMOTE_LAG => Ok(()),
        Some(lag) => Err(format!(
            "node {id} is still catching up ({lag} entries behind; at most {MAX_PROMOTE_LAG} to be promoted); try again when it has caught up"
        )),
        None => Err(format!("node {id} has not received the log yet (a snapshot may be on its way)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[NodeId]) -> BTreeSet<NodeId> {
        ids.iter().copied().collect()
    }

    #[test]
    fn removing_a_voter_of_two_while_the_other_is_down_is_refused() {
        let e = check_quorum(&[set(&[1, 2])], &set(&[1]), &set(&[1])).unwrap_err();
        assert!(e.contains("needs 2 of the voters [1, 2]") && e.contains("bring back [2]"), "{e}");
    }

    #[test]
    fn replacing_a_dead_voter_of_three_passes() {
        assert_eq!(check_quorum(&[set(&[1, 2, 3])], &set(&[1, 2]), &set(&[1, 2])), Ok(()));
        assert_eq!(check_quorum(&[set(&[1, 2])], &set(&[1, 2, 4]), &set(&[1, 2, 4])), Ok(()));
    }

    #[test]
    fn a_new_configuration_without_a_live_majority_is_refused() {
        // 3 -> 5 voters with both new nodes down: 3 of 5 answer... only 3.
        assert_eq!(
            check_quorum(&[set(&[1, 2, 3])], &set(&[1, 2, 3, 4, 5]), &set(&[1, 2, 3])),
            Ok(())
        );
        // With one old voter down too, the new five have only 2 answering.
        let e =
            check_quorum(&[set(&[1, 2, 3])], &set(&[1, 2, 3, 4, 5]), &set(&[1, 2])).unwrap_err();
        assert!(e.contains("needs 3 of the voters [1, 2, 3, 4, 5]"), "{e}");
    }

    #[test]
    fn both_halves_of_a_joint_configuration_must_answer() {
        let joint = [set(&[1, 2, 3]), set(&[3, 4, 5])];
        assert!(check_quorum(&joint, &set(&[3, 4, 5]), &set(&[1, 2, 3, 4])).is_ok());
        assert!(check_quorum(&joint, &set(&[3, 4, 5]), &set(&[1, 4, 5])).is_err());
    }

    #[test]
    fn no_change_may_leave_zero_voters() {
        assert!(check_quorum(&[set(&[1])], &set(&[]), &set(&[1])).is_err());
    }

    #[test]
    fn a_learner_is_promoted_only_when_up_and_caught_up() {
        assert!(check_caught_up(4, true, Some(0)).is_ok());
        assert!(check_caught_up(4, true, Some(MAX_PROMOTE_LAG)).is_ok());
        assert!(check_caught_up(4, true, Some(MAX_PROMOTE_LAG + 1))
            .unwrap_err()
            .contains("catching up"));
        assert!(check_caught_up(4, true, None).unwrap_err().contains("not received"));
        assert!(check_caught_up(4, false, Some(0)).unwrap_err().contains("does not answer"));
    }
}
