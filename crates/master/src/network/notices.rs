//! Commit notices a follower does not need yet.
//!
//! After every commit openraft 0.9 sends each follower an AppendEntries
//! with no entries that carries only the new commit index
//! (`Replicate::Committed`), and waits for its answer before the stream's
//! next append. At one write at a time that is a third round trip per
//! commit: four of the leader's ten messages, two of each follower's four,
//! and the next write's append queued behind it.
//!
//! A follower needs the commit index only to apply (its reads and
//! snapshots; a leader it may become commits its log anew first), and
//! every append carries the latest one. So an append with no entries is
//! answered here, without a message, when the follower answered this
//! stream's last sent append in full, at exactly the entries this one
//! claims it has (`prev_log_id`), for the same vote, and that append was
//! sent within a short window ([`window`]: a quarter of a heartbeat
//! interval, less when the election timeout is close to the heartbeat).
//! The follower learns the commit index from the next append or the next
//! heartbeat; when the cluster goes idle, about 1.5 heartbeat intervals
//! and the window later at most.
//!
//! Why this is safe:
//! - The answer is one the follower gave: it holds the log up to
//!   `prev_log_id` (its log is durable before it answers), and the
//!   append changes nothing on its side but the commit index, which only
//!   ever rises and which the next append carries.
//! - The follower keeps hearing from its leader: an append is skipped
//!   only within the window after one that was sent, so skips never
//!   chain, and the heartbeat after a skipped one is sent. openraft ticks
//!   every 1.5 heartbeat intervals, so the longest silence grows from 1.5
//!   intervals to 1.5 intervals and the window; a follower campaigns only
//!   after its leader lease (the election timeout's maximum) and an
//!   election timeout more.
//! - What else reads these answers is openraft's leader clock, which in
//!   0.9 feeds only its metrics, and this network's [`super::Liveness`],
//!   which counts only answers received. Linearizable reads ask a quorum
//!   through streams of their own (`new_client`), which have sent nothing
//!   yet and so send for real.

use std::time::{Duration, Instant};

use openraft::raft::AppendEntriesRequest;
use openraft::{LogId, Vote};
use taskraft_proto::{NodeId, TypeConfig};

/// How long after an append was sent its answer stands in for the next
/// append with no entries: a quarter of the heartbeat interval, and at most
/// half the gap between the heartbeat and the least election timeout.
pub fn window(heartbeat: Duration, election_min: Duration) -> Duration {
    (heartbeat / 4).min(election_min.saturating_sub(heartbeat) / 2)
}

/// What the follower of one replication stream last confirmed.
#[derive(Default)]
pub(super) struct Notices {
    confirmed: Option<Confirmed>,
}

struct Confirmed {
    vote: Vote<NodeId>,
    /// The follower's log holds the leader's up to here.
    matching: Option<LogId<NodeId>>,
    /// When the append it answered was sent.
    sent: Instant,
}

impl Notices {
    /// Whether `req` may be answered `Success` without sending it: it has
    /// no entries and the follower confirmed, for the same vote, exactly
    /// its `prev_log_id` in an append sent within `window` of `now`.
    pub(super) fn may_skip(
        &self,
        req: &AppendEntriesRequest<TypeConfig>,
        window: Duration,
        now: Instant,
    ) -> bool {
        req.entries.is_empty()
            && self.confirmed.as_ref().is_some_and(|c| {
                c.vote == req.vote
                    && c.matching == req.prev_log_id
                    && now.saturating_duration_since(c.sent) < window
            })
    }

    /// An append sent at `sent` was answered: with the follower's log
    /// matching up to `matching` for `vote`, or (`None`) otherwise, which
    /// forgets what was confirmed.
    pub(super) fn answered(
        &mut self,
        vote: Vote<NodeId>,
        matching: Option<Option<LogId<NodeId>>>,
        sent: Instant,
    ) {
        self.confirmed = matching.map(|matching| Confirmed { vote, matching, sent });
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use openraft::raft::AppendEntriesRequest;
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, Vote};
    use taskraft_proto::TypeConfig;

    use super::{window, Notices};

    const WINDOW: Duration = Duration::from_millis(10);

    fn id(index: u64) -> Option<LogId<u64>> {
        Some(LogId::new(CommittedLeaderId::new(2, 1), index))
    }

    fn append(vote: Vote<u64>, prev: u64, entries: u64) -> AppendEntriesRequest<TypeConfig> {
        let entries = (prev + 1..=prev + entries)
            .map(|i| Entry { log_id: id(i).unwrap(), payload: EntryPayload::Blank })
            .collect();
        AppendEntriesRequest { vote, prev_log_id: id(prev), leader_commit: id(prev), entries }
    }

    #[test]
    fn a_commit_notice_is_skipped_only_right_after_a_confirmed_append_at_its_prev_log_id() {
        let vote = Vote::new_committed(2, 1);
        let t0 = Instant::now();
        let mut notices = Notices::default();
        assert!(!notices.may_skip(&append(vote, 5, 0), WINDOW, t0), "nothing confirmed yet");

        notices.answered(vote, Some(id(5)), t0);
        let soon = t0 + Duration::from_millis(2);
        assert!(notices.may_skip(&append(vote, 5, 0), WINDOW, soon));
        assert!(!notices.may_skip(&append(vote, 5, 1), WINDOW, soon), "entries always go");
        assert!(!notices.may_skip(&append(vote, 4, 0), WINDOW, soon), "another prev_log_id");
        assert!(!notices.may_skip(&append(vote, 6, 0), WINDOW, soon), "not confirmed yet");
        let later_vote = Vote::new_committed(3, 2);
        assert!(!notices.may_skip(&append(later_vote, 5, 0), WINDOW, soon), "another vote");
        let late = t0 + WINDOW;
        assert!(!notices.may_skip(&append(vote, 5, 0), WINDOW, late), "the window passed");

        notices.answered(vote, None, soon);
        assert!(!notices.may_skip(&append(vote, 5, 0), WINDOW, soon), "a failure forgets");
    }

    #[test]
    fn the_window_is_a_quarter_heartbeat_and_stays_clear_of_the_election_timeout() {
        let ms = Duration::from_millis;
        assert_eq!(window(ms(50), ms(150)), ms(12) + Duration::from_micros(500));
        assert_eq!(window(ms(100), ms(300)), ms(25));
        assert_eq!(window(ms(100), ms(120)), ms(10), "half the gap to the election timeout");
        assert_eq!(window(ms(100), ms(100)), Duration::ZERO, "no gap, nothing skipped");
    }
}
