//! Appends sent to the followers before the leader's own fsync.
//!
//! openraft 0.9 replicates an entry only after the leader's log append is
//! flushed (its RaftCore awaits the flush before it runs `Replicate`), so a
//! commit waits for two fsyncs in a row: the leader's, then the
//! followers'. Here the leader's log store hands each append, before
//! writing it, to [`super::PeerNetwork::send_early`], which sends it to
//! every follower at once as an AppendEntries of the leader's own vote; the
//! followers fsync while the leader does. When openraft's replication
//! stream later sends entries that such an append covered, the stream
//! waits for that append's answer instead of sending them again.
//!
//! Why this is safe:
//! - An early append is a message the leader may send at any time: its
//!   vote, its entries, the entry before them, and a commit index the log
//!   store was told. A follower handles it as any other AppendEntries;
//!   entries it already holds are kept (openraft truncates only where a log
//!   id differs, at an entry or at `prev_log_id`, and the ids a leader gives
//!   in its term are its own; see the restart point below). One that
//!   arrives out of order is refused, and only costs the message.
//! - The leader still counts itself toward a quorum only once its own
//!   fsync is done: openraft's flush callback is untouched.
//! - A `Success` from the follower says that its log, durable, matched the
//!   leader's up to the early append's last entry. Reused as the answer to
//!   a later request of the same vote that ends at or before that entry, it
//!   is that same answer arriving later, which Raft tolerates from any
//!   network: the leader's entries in its term never change.
//! - Within one run of the process, that is. A leader killed after an
//!   early append and before its fsync restarts without those entries, and
//!   openraft 0.9 would make it leader of the same term at once (its vote
//!   is committed): its next entry would reuse a log id a follower holds
//!   with other contents, and the follower would keep the old one. So the
//!   log store reads its vote back as not committed (`LogStore::read_vote`)
//!   and a restarted node campaigns in a new term.
//!
//! When it is used:
//! - A refusal sends openraft's request as usual; no answer within the
//!   request's deadline fails the request, as its own timeout would (so a
//!   stream never waits for two deadlines in a row). Either stops early
//!   appends to that follower until a real answer says again where its log
//!   ends.
//! - At most one early append per follower is unanswered at a time: under
//!   load the leader already appends the next group while the followers
//!   fsync the one before, and more early appends only cost CPU
//!   (measured: W1 C=64 ~15 % slower without this limit).
//! - Long appends (see `store::log::is_long`) are not sent early: they
//!   keep openraft's byte budget per stream and are written off the
//!   runtime's thread anyway.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::Infallible;
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse};
use openraft::{Entry, LogId, RaftMetrics, ServerState, Vote};
use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use taskraft_proto::{NodeId, NodeInfo, TypeConfig};
use tokio::sync::watch;

use super::{context_with, PeerConn, PeerNetwork};

/// Early appends kept per follower, awaiting the request they answer.
const MAX_PENDING: usize = 32;

/// The early appends of every follower; clones share them.
#[derive(Clone, Default)]
pub(super) struct Early(Arc<Mutex<HashMap<NodeId, Stream>>>);

/// One follower's early appends, for one vote.
#[derive(Default)]
struct Stream {
    vote: Option<Vote<NodeId>>,
    /// Where the follower's log ends once the early appends in flight land;
    /// `None` when unknown. An early append goes only right after it.
    tail: Option<LogId<NodeId>>,
    pending: VecDeque<Sent>,
    /// The outcome of the last early append sent, until it is known.
    last_sent: Option<watch::Receiver<Option<Outcome>>>,
}

/// How an early append ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    /// The follower's log matches up to the append's last entry.
    Success,
    /// The follower answered otherwise (a gap, another vote).
    Refused,
    /// No answer in time, or no connection.
    Unanswered,
}

/// An early append: the last entry it carried, when it was sent, and its
/// outcome once known.
struct Sent {
    last: LogId<NodeId>,
    sent: Instant,
    outcome: watch::Receiver<Option<Outcome>>,
}

/// What answers a request: when the early append was sent, and its outcome.
pub(super) struct Covering {
    pub sent: Instant,
    outcome: watch::Receiver<Option<Outcome>>,
}

impl Covering {
    /// Waits up to `ttl` for the early append's outcome.
    pub async fn outcome(mut self, ttl: Duration) -> Outcome {
        let answered = tokio::time::timeout(ttl, self.outcome.wait_for(Option::is_some)).await;
        match answered {
            Ok(Ok(outcome)) => outcome.unwrap_or(Outcome::Unanswered),
            _ => Outcome::Unanswered,
        }
    }
}

impl Early {
    /// Runs `f` on `target`'s stream for `vote`, which a new vote starts
    /// afresh; a call for an older vote than the stream's does nothing.
    fn with<T>(
        &self,
        target: NodeId,
        vote: Vote<NodeId>,
        f: impl FnOnce(&mut Stream) -> Option<T>,
    ) -> Option<T> {
        let mut streams = self.0.lock();
        let stream = streams.entry(target).or_default();
        if stream.vote.is_some_and(|v| v > vote) {
            return None;
        }
        if stream.vote != Some(vote) {
            *stream = Stream { vote: Some(vote), ..Stream::default() };
        }
        f(stream)
    }

    /// Registers an early append to `target` of the entries after `prev` up
    /// to `last`, if the follower's log ends at `prev` as far as this
    /// stream knows; returns where to report its outcome.
    pub fn start(
        &self,
        target: NodeId,
        vote: Vote<NodeId>,
        prev: Option<LogId<NodeId>>,
        last: LogId<NodeId>,
        now: Instant,
    ) -> Option<watch::Sender<Option<Outcome>>> {
        self.with(target, vote, |s| {
            let unanswered = s.last_sent.as_ref().is_some_and(|o| o.borrow().is_none());
            if prev.is_none() || s.tail != prev || unanswered {
                return None;
            }
            let (tx, outcome) = watch::channel(None);
            s.last_sent = Some(outcome.clone());
            s.pending.push_back(Sent { last, sent: now, outcome });
            if s.pending.len() > MAX_PENDING {
                s.pending.pop_front();
            }
            s.tail = Some(last);
            Some(tx)
        })
    }

    /// An early append to `target` failed: its log's end is unknown again,
    /// and the appends in flight after it are not waited for.
    pub fn failed(&self, target: NodeId, vote: Vote<NodeId>) {
        self.with(target, vote, |s| {
            s.tail = None;
            s.pending.clear();
            Some(())
        });
    }

    /// A real append to `target` was answered with the follower's log
    /// matching the leader's up to `matching`.
    pub fn confirmed(&self, target: NodeId, vote: Vote<NodeId>, matching: Option<LogId<NodeId>>) {
        self.with(target, vote, |s| {
            if s.tail.is_none() || s.tail < matching {
                s.tail = matching;
            }
            Some(())
        });
    }

    /// The early append whose answer answers a request of `vote` whose
    /// entries end at `end`: the first one in flight or answered that
    /// carried `end` or later. Appends that end before `end` are dropped:
    /// openraft's stream has moved past them.
    pub fn covering(
        &self,
        target: NodeId,
        vote: Vote<NodeId>,
        end: LogId<NodeId>,
    ) -> Option<Covering> {
        self.with(target, vote, |s| {
            while s.pending.front().is_some_and(|p| p.last.index < end.index) {
                s.pending.pop_front();
            }
            let first = s.pending.front()?;
            let covering = Covering { sent: first.sent, outcome: first.outcome.clone() };
            if first.last.index == end.index {
                s.pending.pop_front();
            }
            Some(covering)
        })
    }
}

impl PeerNetwork {
    /// Sends the leader's new entries to the followers before its own
    /// fsync (see this module), each with deadline `ttl`, counting in
    /// `answered` the requests of openraft's streams they answered.
    pub fn replicating_early(mut self, ttl: Duration, answered: Counter) -> PeerNetwork {
        self.early_on = Some((ttl, answered));
        self
    }

    /// Sends the append of `entries` after `prev`, which this node's log is
    /// about to write, to every other member right away if this node leads
    /// the term of `entries` (see this module). `committed` is the commit
    /// index the log store was told. Whether anything was sent.
    pub fn send_early(
        &self,
        raft: &RaftMetrics<NodeId, NodeInfo>,
        prev: Option<LogId<NodeId>>,
        entries: &[Arc<Entry<TypeConfig>>],
        committed: Option<LogId<NodeId>>,
    ) -> bool {
        let (Some((ttl, _)), Some(first), Some(last)) =
            (&self.early_on, entries.first(), entries.last())
        else {
            return false;
        };
        let leader = first.log_id.leader_id;
        let vote = Vote::new_committed(leader.term, self.me);
        if raft.state != ServerState::Leader || leader.node_id != self.me || raft.vote != vote {
            return false;
        }
        let now = Instant::now();
        let mut sent = false;
        for (&target, node) in raft.membership_config.nodes().filter(|(id, _)| **id != self.me) {
            let Some(outcome) = self.early.start(target, vote, prev, last.log_id, now) else {
                continue;
            };
            let req = AppendEntriesRequest {
                vote,
                prev_log_id: prev,
                leader_commit: committed,
                entries: entries.iter().map(|e| Entry::clone(e)).collect(),
            };
            tokio::spawn(self.conn(target, node).send_early(req, outcome, *ttl));
            sent = true;
        }
        sent
    }
}

impl PeerConn {
    /// Sends an early append (see this module) and reports whether the
    /// follower answered `Success`.
    async fn send_early(
        self,
        req: AppendEntriesRequest<TypeConfig>,
        outcome: tokio::sync::watch::Sender<Option<Outcome>>,
        ttl: Duration,
    ) {
        let vote = req.vote;
        let result = match self.client(ttl).await {
            Ok(c) => Some(c.append_entries(context_with(ttl), req).await),
            Err(_) => None,
        };
        let ended = match result {
            Some(Ok(Ok(AppendEntriesResponse::Success))) => Outcome::Success,
            Some(Ok(_)) => Outcome::Refused,
            Some(Err(e)) => {
                self.transport_error::<Infallible>(e);
                Outcome::Unanswered
            }
            None => Outcome::Unanswered,
        };
        if ended != Outcome::Unanswered {
            self.liveness.answered(self.target);
        }
        if ended != Outcome::Success {
            self.early.failed(self.target, vote);
        }
        outcome.send_replace(Some(ended));
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use openraft::{CommittedLeaderId, LogId, Vote};

    use super::{Early, Outcome};

    fn id(index: u64) -> LogId<u64> {
        LogId::new(CommittedLeaderId::new(2, 1), index)
    }

    const VOTE: Vote<u64> =
        Vote { leader_id: openraft::LeaderId { term: 2, node_id: 1 }, committed: true };

    #[tokio::test]
    async fn early_appends_chain_from_a_confirmed_end_and_answer_the_requests_they_cover() {
        let early = Early::default();
        let now = Instant::now();
        assert!(early.start(2, VOTE, Some(id(4)), id(6), now).is_none(), "the end is unknown");
        early.confirmed(2, VOTE, Some(id(4)));
        let first = early.start(2, VOTE, Some(id(4)), id(6), now).expect("right after the end");
        assert!(early.start(2, VOTE, Some(id(6)), id(8), now).is_none(), "one unanswered at most");

        // A request ending at 5 waits for the append that carried 5 and 6.
        let pending = early.covering(2, VOTE, id(5)).expect("covered");
        first.send_replace(Some(Outcome::Success));
        assert_eq!(pending.outcome(Duration::from_secs(1)).await, Outcome::Success);
        assert!(early.start(2, VOTE, Some(id(5)), id(8), now).is_none(), "not after the tail");
        let second = early.start(2, VOTE, Some(id(6)), id(8), now).expect("chained");
        // Ending at 6 it is the same append; then the next one.
        let same = early.covering(2, VOTE, id(6)).expect("covered");
        assert_eq!(same.outcome(Duration::ZERO).await, Outcome::Success);
        let refused = early.covering(2, VOTE, id(8)).expect("covered");
        // What the sending task does on a refusal.
        early.failed(2, VOTE);
        second.send_replace(Some(Outcome::Refused));
        assert_eq!(refused.outcome(Duration::from_secs(1)).await, Outcome::Refused);
        assert!(early.covering(2, VOTE, id(8)).is_none(), "used up");
        let third = early.start(2, VOTE, Some(id(8)), id(9), now);
        assert!(third.is_none(), "a refusal stops the chain");
        early.confirmed(2, VOTE, Some(id(8)));
        let _third = early.start(2, VOTE, Some(id(8)), id(9), now).expect("confirmed again");
        let past = early.covering(2, VOTE, id(10));
        assert!(past.is_none(), "nothing carried entry 10, and a request past it drops it");
        assert!(early.covering(2, VOTE, id(9)).is_none(), "dropped");
    }

    #[tokio::test]
    async fn an_unanswered_append_times_out_and_a_failure_or_new_vote_stops_the_chain() {
        let early = Early::default();
        let now = Instant::now();
        early.confirmed(2, VOTE, Some(id(4)));
        let silent = early.start(2, VOTE, Some(id(4)), id(5), now).expect("starts");
        let waiting = early.covering(2, VOTE, id(5)).expect("covered");
        let late = waiting.outcome(Duration::from_millis(20)).await;
        assert_eq!(late, Outcome::Unanswered, "no answer in time");

        early.failed(2, VOTE);
        early.confirmed(2, VOTE, Some(id(5)));
        assert!(early.start(2, VOTE, Some(id(5)), id(6), now).is_none(), "one still unanswered");
        // What its sending task does at its deadline.
        early.failed(2, VOTE);
        silent.send_replace(Some(Outcome::Unanswered));
        assert!(early.covering(2, VOTE, id(5)).is_none(), "a failure drops what is in flight");
        assert!(early.start(2, VOTE, Some(id(5)), id(6), now).is_none(), "the end is unknown");
        early.confirmed(2, VOTE, Some(id(5)));
        let sixth = early.start(2, VOTE, Some(id(5)), id(6), now).expect("confirmed again");
        sixth.send_replace(Some(Outcome::Success));
        // A real answer behind the early appends leaves the tail ahead.
        early.confirmed(2, VOTE, Some(id(5)));
        assert!(early.start(2, VOTE, Some(id(6)), id(7), now).is_some());

        let next = Vote::new_committed(3, 1);
        assert!(early.covering(2, next, id(7)).is_none(), "another vote starts afresh");
        assert!(early.start(2, next, Some(id(7)), id(8), now).is_none());
        early.confirmed(2, next, Some(id(7)));
        early.failed(2, VOTE);
        assert!(early.start(2, next, Some(id(7)), id(8), now).is_some(), "the old vote is ignored");
        assert!(early.start(3, VOTE, Some(id(7)), id(8), now).is_none(), "another follower");
    }
}
