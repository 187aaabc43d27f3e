//! Group commit: concurrent proposals share one Raft entry.
//!
//! Every client call that changes the table hands its command to the
//! [`Proposer`]. A single task takes the first waiting command plus every
//! other one already queued (up to [`MAX_BATCH`]) and proposes them as one
//! `Command::Batch` entry: one log append, one fsync per node, one apply,
//! for the whole group. Up to [`MAX_IN_FLIGHT`] groups are in Raft at once
//! (one: see there); commands arriving while the group is in flight form
//! the next, larger group. Each caller gets its own command's response.
//!
//! Were more groups in flight together, they would hold calls that
//! overlapped in time, so the order in which they commit is free: a caller
//! that needs one write before another waits for the first one's answer.

use std::sync::Arc;
use std::time::Instant;

use openraft::error::{ClientWriteError, RaftError};
use taskraft_core::{Command, Response};
use taskraft_proto::{NodeId, NodeInfo};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::metrics::{since, Metrics};
use crate::Raft;

/// Most commands in one entry.
pub const MAX_BATCH: usize = 512;

/// Most groups in Raft at once. One: the leader's and the followers'
/// fsyncs of a group already overlap (`network::early`), and a group that
/// waits for the one before it holds more commands, so each costs fewer
/// log entries, fsyncs and messages. Against 4 in flight (which had won
/// when the followers' fsync came after the leader's), paired runs on
/// 2026-12-01, medians: W2 one per call +22 %, W1 C=64 +21 %, W2 16 per
/// call +15 % (docs/performance.md).
pub const MAX_IN_FLIGHT: usize = 1;

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
    /// Starts the batching task; it ends when every `Proposer` clone is dropped.
    /// Group sizes and commit latencies are counted on `metrics`.
    pub fn spawn(raft: Raft, metrics: Arc<Metrics>) -> Proposer {
        let sizes = metrics.clone();
        let (queue, mut rx) = mpsc::channel::<Pending>(8 * MAX_BATCH);
        let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                // A free slot first: commands that arrive meanwhile join this group.
                let Ok(permit) = slots.clone().acquire_owned().await else { break };
                let mut group = vec![first];
                while group.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(p) => group.push(p),
                        Err(_) => break,
                    }
                }
                sizes.group_size.observe(group.len() as f64);
                let raft = raft.clone();
                tokio::spawn(async move {
                    commit(&raft, group).await;
                    drop(permit);
                });
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

async fn commit(raft: &Raft, mut group: Vec<Pending>) {
    if group.len() == 1 {
        let (cmd, tx) = group.pop().expect("one pending command");
        let _ = tx.send(raft.client_write(cmd).await.map(|r| r.data));
        return;
    }
    let (cmds, txs): (Vec<Command>, Vec<oneshot::Sender<ProposeResult>>) =
        group.into_iter().unzip();
    match raft.client_write(Command::Batch(cmds)).await {
        Ok(r) => match r.data {
            Response::Batch(responses) if responses.len() == txs.len() => {
                for (tx, response) in txs.into_iter().zip(responses) {
                    let _ = tx.send(Ok(response));
                }
            }
            other => {
                // Cannot happen: Table::apply answers a Batch with a Batch of equal length.
                // The callers see the queue close and answer Unavailable.
                tracing::error!(?other, n = txs.len(), "a batch was answered with something else");
            }
        },
        Err(e) => {
            for tx in txs {
                let _ = tx.send(Err(e.clone()));
            }
        }
    }
}
