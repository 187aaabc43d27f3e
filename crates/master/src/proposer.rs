//! Group commit: concurrent proposals share one Raft entry.
//!
//! Every client call that changes the table hands its command to the
//! [`Proposer`]. A single task takes the first waiting command plus every
//! other one already queued (up to [`MAX_BATCH`]) and proposes them as one
//! `Command::Batch` entry: one log append, one fsync per node, one apply,
//! for the whole group. One group is in Raft at a time; commands arriving
//! meanwhile form the next, larger group. Each caller gets its own
//! command's response.
//!
//! One group at a time: the leader's and the followers' fsyncs of a group
//! already overlap (`network::early`), and a group that waits for the one
//! before it holds more commands, so each costs fewer log entries, fsyncs
//! and messages. Against 4 groups in flight (which had won when the
//! followers' fsync came after the leader's), paired runs on 2026-12-01,
//! medians: W2 one per call +22 %, W1 C=64 +21 %, W2 16 per call +15 %
//! (docs/performance.md).
//!
//! The wait for callers ([`next_group_size`]). With one group at a time,
//! callers that call again as soon as they are answered (a worker's
//! complete-and-request loop, a closed-loop producer) split into two
//! cohorts: one in Raft while the other waits, each call waiting about two
//! commits. So after a group of several calls, the next one waits, up to
//! the cluster's `group_commit_wait_us`, until it holds as many calls as
//! were just answered, plus those already waiting: both cohorts then share
//! one entry and each call waits about one commit. The wait runs from the
//! moment the group was answered, so a call arriving later waits less, and
//! one arriving after the wait has passed does not wait at all. "Answered"
//! means sent, as nearly as the runtime lets us say so: the proposer
//! yields once after a group of several, so the callers' tasks it woke
//! usually write their answers before it takes its clock (64 callers on 64
//! connections take this node's thread ~0.3 ms to answer, which had eaten
//! the whole default wait). tokio does not promise that order; it was
//! measured on the master's runtime, and on a runtime with more threads it
//! only holds roughly, which costs at most part of one wait.

use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError, RaftError};
use taskraft_core::{Command, Response};
use taskraft_proto::{NodeId, NodeInfo};
use tokio::sync::{mpsc, oneshot};

use crate::metrics::{since, Metrics};
use crate::Raft;

/// Most commands in one entry.
pub const MAX_BATCH: usize = 512;

/// A proposal's result: the command's own response, or openraft's error.
pub type ProposeResult = Result<Response, RaftError<NodeId, ClientWriteError<NodeId, NodeInfo>>>;

type Pending = (Command, oneshot::Sender<ProposeResult>);

/// The queue in front of `raft.client_write`. Cheap to clone.
#[derive(Clone)]
pub struct Proposer {
    queue: mpsc::Sender<Pending>,
    metrics: Arc<Metrics>,
}

impl Proposer {
    /// Starts the batching task; it ends when every `Proposer` clone is
    /// dropped. A group of several calls makes the next one wait up to
    /// `wait` for the callers it answered (see this module). Group sizes
    /// and commit latencies are counted on `metrics`.
    pub fn spawn(raft: Raft, metrics: Arc<Metrics>, wait: Duration) -> Proposer {
        let sizes = metrics.clone();
        let (queue, mut rx) = mpsc::channel::<Pending>(8 * MAX_BATCH);
        tokio::spawn(async move {
            let mut answered = 0;
            let mut group: Vec<Pending> = Vec::new();
            loop {
                take_queued(&mut rx, &mut group);
                let size = next_group_size(group.len(), answered);
                let answered_at = Instant::now();
                if group.is_empty() {
                    let Some(first) = rx.recv().await else { break };
                    group.push(first);
                    take_queued(&mut rx, &mut group);
                }
                // The wait runs from the answers: a call that comes after a
                // quiet spell does not wait for callers who went away.
                let left = wait.saturating_sub(answered_at.elapsed());
                if group.len() < size && !left.is_zero() {
                    sizes.group_waits.inc();
                    if wait_for_more(&mut rx, &mut group, size, left).await == Waited::Expired {
                        sizes.group_waits_expired.inc();
                    }
                }
                let n = group.len();
                sizes.group_size.observe(n as f64);
                // Callers answered with an error (this node is not the
                // leader, or no longer) look for the leader elsewhere: the
                // next group does not wait for them.
                answered = if commit(&raft, std::mem::take(&mut group)).await { n } else { 0 };
                if answered > 1 {
                    // Give the callers' tasks, woken by their answers, the
                    // thread first, so the wait's clock usually starts once
                    // the answers are sent (an ordering tokio does not
                    // promise; see this module).
                    tokio::task::yield_now().await;
                }
            }
        });
        Proposer { queue, metrics }
    }

    /// Proposes `cmd`; resolves once it is applied on this node.
    pub async fn propose(&self, cmd: Command) -> ProposeResult {
        let started = Instant::now();
        let (tx, rx) = oneshot::channel();
        if self.queue.send((cmd, tx)).await.is_err() {
            return Err(RaftError::Fatal(openraft::error::Fatal::Stopped));
        }
        let answer = rx.await.unwrap_or(Err(RaftError::Fatal(openraft::error::Fatal::Stopped)));
        if answer.is_ok() {
            self.metrics.commit_latency.observe(since(started));
        }
        answer
    }
}

/// How many calls the next group waits for, `queued` waiting when the
/// previous group of `answered` calls was answered: every caller of a group
/// of several may call again at once. After a single call (or none) the
/// next group does not wait: a lone caller would only wait for itself.
pub fn next_group_size(queued: usize, answered: usize) -> usize {
    match answered {
        0 | 1 => 0,
        n => (queued + n).min(MAX_BATCH),
    }
}

/// Moves the commands already queued into `group`, up to [`MAX_BATCH`].
fn take_queued(rx: &mut mpsc::Receiver<Pending>, group: &mut Vec<Pending>) {
    while group.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(p) => group.push(p),
            Err(_) => break,
        }
    }
}

/// How a wait for more callers ended.
#[derive(Debug, PartialEq, Eq)]
enum Waited {
    /// The group holds as many calls as it waited for.
    Filled,
    /// The wait passed first.
    Expired,
    /// Every `Proposer` is gone.
    Closed,
}

/// Adds items to `group` as they arrive until it holds `size` or `wait`
/// has passed (or the queue is closed). tokio's timers tick in whole
/// milliseconds, so the wait sleeps on a blocking-pool thread, once per
/// group; a thread whose group filled first sleeps out its wait, so about
/// wait / commit time + 1 of them sleep at once.
async fn wait_for_more<T: Send>(
    rx: &mut mpsc::Receiver<T>,
    group: &mut Vec<T>,
    size: usize,
    wait: Duration,
) -> Waited {
    let timer = tokio::task::spawn_blocking(move || std::thread::sleep(wait));
    tokio::pin!(timer);
    while group.len() < size {
        tokio::select! {
            // A command that came in time joins even if the timer is due too.
            biased;
            p = rx.recv() => match p {
                Some(p) => group.push(p),
                None => return Waited::Closed,
            },
            _ = &mut timer => return Waited::Expired,
        }
    }
    Waited::Filled
}

/// Proposes `group` as one entry and answers its callers; whether it was
/// committed.
async fn commit(raft: &Raft, mut group: Vec<Pending>) -> bool {
    if group.len() == 1 {
        let (cmd, tx) = group.pop().expect("one pending command");
        let answer = raft.client_write(cmd).await.map(|r| r.data);
        let committed = answer.is_ok();
        let _ = tx.send(answer);
        return committed;
    }
    let (cmds, txs): (Vec<Command>, Vec<oneshot::Sender<ProposeResult>>) =
        group.into_iter().unzip();
    match raft.client_write(Command::Batch(cmds)).await {
        Ok(r) => match r.data {
            Response::Batch(responses) if responses.len() == txs.len() => {
                for (tx, response) in txs.into_iter().zip(responses) {
                    let _ = tx.send(Ok(response));
                }
                true
            }
            other => {
                // Cannot happen: Table::apply answers a Batch with a Batch of equal length.
                // The callers see the queue close and answer Unavailable.
                tracing::error!(?other, n = txs.len(), "a batch was answered with something else");
                false
            }
        },
        Err(e) => {
            for tx in txs {
                let _ = tx.send(Err(e.clone()));
            }
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use tokio::sync::mpsc;

    use super::{next_group_size, wait_for_more, Waited, MAX_BATCH};

    #[test]
    fn the_next_group_waits_for_the_callers_just_answered_and_those_waiting() {
        assert_eq!(next_group_size(0, 0), 0, "nothing answered yet");
        assert_eq!(next_group_size(3, 1), 0, "a lone caller does not wait for itself");
        assert_eq!(next_group_size(4, 4), 8, "two cohorts of 4 share the next entry");
        assert_eq!(next_group_size(0, 8), 8, "all 8 come back");
        assert_eq!(next_group_size(400, 300), MAX_BATCH, "never beyond a full entry");
    }

    #[tokio::test]
    async fn a_wait_ends_as_soon_as_the_callers_are_back() {
        let (tx, mut rx) = mpsc::channel(16);
        let mut group = vec![0];
        tokio::spawn(async move {
            for i in 1..4 {
                tokio::time::sleep(Duration::from_millis(5)).await;
                tx.send(i).await.unwrap();
            }
            // Held open: only the group's size can end the wait early.
            tokio::time::sleep(Duration::from_secs(30)).await;
        });
        // Filled, not Expired, says the callers ended the wait. The runtime's
        // drop waits for the timer's thread, so the test takes the whole
        // second; a shorter timer could expire first on a busy machine.
        let waited = wait_for_more(&mut rx, &mut group, 4, Duration::from_secs(1)).await;
        assert_eq!(waited, Waited::Filled);
        assert_eq!(group, [0, 1, 2, 3]);
    }

    #[tokio::test]
    async fn a_wait_ends_on_its_timer_with_the_callers_that_came() {
        let (tx, mut rx) = mpsc::channel(16);
        tx.send(1).await.unwrap();
        let mut group = vec![0];
        let started = Instant::now();
        let waited = wait_for_more(&mut rx, &mut group, 8, Duration::from_millis(20)).await;
        assert_eq!(waited, Waited::Expired);
        assert_eq!(group, [0, 1], "the caller already queued joined");
        assert!(started.elapsed() >= Duration::from_millis(20), "ended before its time");
        drop(tx);
    }

    #[tokio::test]
    async fn a_wait_ends_when_the_queue_closes() {
        let (tx, mut rx) = mpsc::channel(16);
        tx.send(1).await.unwrap();
        drop(tx);
        let mut group = vec![0];
        let waited = wait_for_more(&mut rx, &mut group, 8, Duration::from_millis(300)).await;
        assert_eq!((waited, group), (Waited::Closed, vec![0, 1]));
    }
}
