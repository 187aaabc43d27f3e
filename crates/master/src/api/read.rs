//! Reads: `status`, `tasks`, `task` (linearizable, from the leader) and
//! `node_report` (any node, its own view).

use super::*;
use crate::{resources, store};

impl Api {
    pub(crate) async fn cluster_status(&self) -> Result<ClusterStatus, WireError> {
        self.linearizable().await?;
        let m = self.0.raft.metrics().borrow().clone();
        let (counts, queues) = {
            let a = self.0.applied.read();
            (a.table.counts(), a.table.queues())
        };
        let membership = m.membership_config.membership();
        let voters: Vec<NodeId> = membership.voter_ids().collect();
        let members = membership
            .nodes()
            .map(|(id, node)| {
                let lag = Self::lag_of(&m, *id);
                let voter = voters.contains(id);
                let role = if *id == m.id {
                    "leader"
                } else if !self.is_up(&m, *id) {
                    "unreachable"
                } else if voter {
                    "follower"
                } else {
                    "learner"
                };
                let last_applied = Self::held_index(&m, *id);
                MemberStatus {
                    id: *id,
                    client_addr: node.client_addr.clone(),
                    peer_addr: node.peer_addr.clone(),
                    role: role.into(),
                    voter,
                    last_applied,
                    lag,
                }
            })
            .collect();
        Ok(ClusterStatus {
            cluster: self.0.settings.name.clone(),
            term: m.current_term,
            leader: Some(m.id),
            members,
            changing: membership.get_joint_config().len() > 1,
            counts,
            last_log_index: m.last_log_index,
            last_applied: m.last_applied.map(|l| l.index),
            workers: self.0.board.status(),
            queues,
        })
    }

    pub(crate) async fn task_page(
        &self,
        status: Option<Status>,
        after: Option<TaskId>,
        limit: u32,
    ) -> Result<TaskPage, WireError> {
        if limit == 0 || limit > MAX_PAGE_TASKS {
            return Err(WireError::Invalid(format!(
                "a page of {limit} tasks; ask for 1 to {MAX_PAGE_TASKS} and follow next_after"
            )));
        }
        self.linearizable().await?;
        let a = self.0.applied.read();
        let limits =
            PageLimits { rows: limit as usize, bytes: MAX_PAGE_BYTES, scan: MAX_PAGE_SCAN };
        let page = a.table.page(status, after.unwrap_or(TaskId(0)), limits);
        Ok(TaskPage {
            tasks: page.tasks.into_iter().cloned().collect(),
            next_after: page.next_after,
        })
    }

    pub(crate) async fn report(&self) -> NodeReport {
        let m = self.0.raft.metrics().borrow().clone();
        // The digest reads every task and the sizes walk the data dir: a
        // blocking thread does both (the console asks every second).
        let (applied, dir) = (self.0.applied.clone(), self.0.data_dir.clone());
        let local = tokio::task::spawn_blocking(move || {
            let a = applied.read();
            let table = (a.last_applied.map(|l| l.index), a.table.digest(), a.table.counts());
            drop(a);
            let sizes = (
                resources::dir_bytes(&dir),
                resources::file_bytes(&dir.join(store::SNAPSHOT_FILE)),
            );
            (table, sizes)
        })
        .await;
        let ((last_applied, digest, counts), (data_dir_bytes, snapshot_bytes)) =
            local.expect("a node report does not panic");
        let role = match m.state {
            ServerState::Leader => "leader",
            ServerState::Follower => "follower",
            ServerState::Candidate => "candidate",
            ServerState::Learner => "learner",
            ServerState::Shutdown => "shutdown",
        };
        NodeReport {
            id: m.id,
            role: role.into(),
            term: m.current_term,
            leader: m.current_leader,
            last_applied,
            digest,
            counts,
            rss_bytes: resources::rss_bytes(),
            data_dir_bytes,
            snapshot_bytes,
        }
    }

    pub(crate) async fn one_task(&self, id: TaskId) -> Result<Task, WireError> {
        self.linearizable().await?;
        let a = self.0.applied.read();
        a.table
            .get(id)
            .cloned()
            .ok_or_else(|| WireError::NotFound(format!("there is no task {id}")))
    }
}
