//! Membership changes: the leader's three calls, and [`Client::add_member`],
//! which chains them the way an operator would: add as a learner, watch it
//! catch up, promote it.

use std::time::{Duration, Instant};

use taskraft_proto::client::{MemberStatus, MAX_PROMOTE_LAG};
use taskraft_proto::{NodeId, NodeInfo, WireError};

use crate::{Client, ClientError, Result};

/// How often [`Client::add_member`] looks at the learner's progress.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// Where a node being added stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// A learner receiving the log: `matched` of the leader's `last` entries
    /// (`None` while nothing arrived yet, e.g. during a snapshot).
    CatchingUp { matched: Option<u64>, last: u64 },
    /// Caught up; being promoted to voter.
    Promoting,
}

impl Client {
    /// Adds node `id` (at `node`) as a learner. Idempotent.
    pub async fn add_learner(&self, id: NodeId, node: NodeInfo) -> Result<()> {
        self.call(Duration::ZERO, true, |c, ctx| {
            let node = node.clone();
            async move { c.add_learner(ctx, id, node).await }
        })
        .await
    }

    /// Promotes learner `id` to voter. Idempotent.
    pub async fn promote(&self, id: NodeId) -> Result<()> {
        self.call(Duration::ZERO, true, |c, ctx| async move { c.promote(ctx, id).await }).await
    }

    /// Removes node `id` from the membership. Idempotent.
    pub async fn remove_member(&self, id: NodeId) -> Result<()> {
        self.call(Duration::ZERO, true, |c, ctx| async move { c.remove_member(ctx, id).await })
            .await
    }

    /// Adds node `id` as a voter: as a learner first, then, once it has
    /// caught up (within [`MAX_PROMOTE_LAG`] entries), promoted. `progress`
    /// hears each step. Gives up after `timeout`, leaving a learner.
    pub async fn add_member(
        &self,
        id: NodeId,
        node: NodeInfo,
        timeout: Duration,
        mut progress: impl FnMut(&Progress),
    ) -> Result<()> {
        let started = Instant::now();
        self.add_learner(id, node).await?;
        loop {
            let status = self.status().await?;
            let Some(member) = status.members.iter().find(|m| m.id == id) else {
                return Err(ClientError::Refused(WireError::NotFound(format!(
                    "node {id} left the membership while it was being added (removed by someone else?)"
                ))));
            };
            if member.voter && !status.changing {
                return Ok(());
            }
            progress(&Progress::CatchingUp {
                matched: member.last_applied,
                last: status.last_log_index.unwrap_or(0),
            });
            if caught_up(member) {
                progress(&Progress::Promoting);
                match self.promote(id).await {
                    Ok(()) => return Ok(()),
                    // It fell behind again, or did not answer for a moment: keep watching.
                    Err(ClientError::Refused(WireError::Invalid(_))) => {}
                    Err(e) => return Err(e),
                }
            }
            if started.elapsed() >= timeout {
                return Err(ClientError::Refused(WireError::Unavailable(format!(
                    "node {id} did not catch up within {timeout:?}; it stays a learner. Check that it runs and reaches the leader's peer port, then run the command again"
                ))));
            }
            tokio::time::sleep(PROGRESS_EVERY).await;
        }
    }
}

fn caught_up(member: &MemberStatus) -> bool {
    member.role != "unreachable" && member.lag.is_some_and(|lag| lag <= MAX_PROMOTE_LAG)
}
