//! [`Story`]: a cluster with keyed tasks queued and recording workers
//! draining them, so that a test can inject a fault in the middle and then
//! hold the final table against everything that was acknowledged and
//! answered ([`crate::check`]).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use taskraft_client::Client;
use taskraft_core::{NewTask, Status, Task, TaskId};
use taskraft_proto::NodeId;
use tokio::task::JoinHandle;

use crate::check::{check, work, Records};
use crate::{eventually, ProcCluster};

/// Tasks submitted (acknowledged) and the workers draining them.
pub struct Load {
    /// The client that submitted, and the default one of the workers.
    pub client: Arc<Client>,
    /// Every acknowledged task.
    pub acknowledged: BTreeSet<TaskId>,
    /// Every answered completion.
    pub records: Records,
    workers: Vec<JoinHandle<()>>,
}

impl Load {
    /// Submits `tasks` keyed tasks through `client`.
    pub async fn start(client: Arc<Client>, tasks: usize) -> Load {
        let new = (1..=tasks)
            .map(|i| NewTask {
                data: format!("task {i}").into_bytes(),
                key: Some(format!("k{i}")),
                priority: 0,
                max_attempts: 0,
                ..Default::default()
            })
            .collect();
        let acknowledged = client.submit(new).await.unwrap().into_iter().map(|s| s.id).collect();
        Load { client, acknowledged, records: Records::default(), workers: Vec::new() }
    }

    /// Starts one recording worker per name, each pausing `pause` per task,
    /// all calling through `client`.
    pub fn spawn_workers_on(&mut self, client: &Arc<Client>, names: &[&str], pause: Duration) {
        for name in names {
            let (client, records, name) = (client.clone(), self.records.clone(), name.to_string());
            self.workers
                .push(tokio::spawn(async move { work(client, &name, pause, records).await }));
        }
    }

    /// Waits until at least `n` tasks are completed.
    pub async fn completed_at_least(&self, n: u64) {
        let client = self.client.clone();
        eventually(Duration::from_secs(60), &format!("{n} completed"), || {
            let client = client.clone();
            async move { (client.status().await.ok()?.counts.completed >= n).then_some(()) }
        })
        .await;
    }

    /// Lets the workers drain, then checks the final table: nothing
    /// acknowledged lost, nothing accepted twice, every result its holder's,
    /// every task completed. Returns the table.
    pub async fn finish(self) -> Vec<Task> {
        for w in self.workers {
            tokio::time::timeout(Duration::from_secs(120), w)
                .await
                .expect("workers drained")
                .unwrap();
        }
        let tasks = self.client.all_tasks(None).await.unwrap();
        check(&tasks, &self.acknowledged, &self.records.lock());
        assert!(tasks.iter().all(|t| t.status == Status::Completed), "every task completed");
        tasks
    }
}

/// A [`Load`] on a [`ProcCluster`].
pub struct Story {
    /// The masters.
    pub cluster: ProcCluster,
    /// The tasks and workers.
    pub load: Load,
}

impl Story {
    /// Waits for a leader, then submits `tasks` keyed tasks.
    pub async fn start(cluster: ProcCluster, tasks: usize) -> Story {
        cluster.leader().await;
        let load = Load::start(cluster.client(), tasks).await;
        Story { cluster, load }
    }

    /// Starts recording workers seeded with every master, pausing 5 ms per task.
    pub fn spawn_workers(&mut self, names: &[&str]) {
        let client = self.load.client.clone();
        self.load.spawn_workers_on(&client, names, Duration::from_millis(5));
    }

    /// Waits until at least `n` tasks are completed.
    pub async fn completed_at_least(&self, n: u64) {
        self.load.completed_at_least(n).await
    }

    /// Waits for a leader other than `old`.
    pub async fn new_leader(&self, old: NodeId) -> NodeId {
        eventually(Duration::from_secs(30), "a new leader", || async {
            let leader = self.cluster.leader().await;
            (leader != old).then_some(leader)
        })
        .await
    }

    /// Lets the workers drain, checks everything, and waits until the
    /// running masters converge to one table.
    pub async fn finish(self) -> ProcCluster {
        self.load.finish().await;
        self.cluster.converged().await;
        self.cluster
    }
}
