//! Fault injection against three master processes of the real binary:
//! SIGKILL, SIGSTOP/SIGCONT, a partitioned (minority) leader behind TCP
//! proxies, the whole cluster killed at once, and a worker killed while
//! holding leases. After each story the checker holds the final table
//! against what was acknowledged and answered, and the replicas must
//! converge to the same table.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use taskraft_client::{Client, ClientOptions};
use taskraft_core::{NewTask, Status, TaskId, WorkerId};
use taskraft_proto::NodeId;
use taskraft_tests::check::{check, work, Records};
use taskraft_tests::{cluster::FAST, eventually, Mode, ProcCluster};
use tokio::task::JoinHandle;

const BIN: &str = env!("CARGO_BIN_EXE_taskraft-under-test");

/// A cluster with tasks queued and three recording workers draining them.
struct Story {
    cluster: ProcCluster,
    client: Arc<Client>,
    acknowledged: BTreeSet<TaskId>,
    records: Records,
    workers: Vec<JoinHandle<()>>,
}

impl Story {
    async fn start(cluster: ProcCluster, tasks: usize) -> Story {
        cluster.leader().await;
        let client = cluster.client();
        let new = (1..=tasks)
            .map(|i| NewTask {
                data: format!("task {i}").into_bytes(),
                key: Some(format!("k{i}")),
                priority: 0,
                max_attempts: 0,
            })
            .collect();
        let acknowledged = client.submit(new).await.unwrap().into_iter().map(|s| s.id).collect();
        Story { cluster, client, acknowledged, records: Records::default(), workers: Vec::new() }
    }

    fn spawn_workers(&mut self, names: &[&str]) {
        for name in names {
            let (client, records, name) =
                (self.client.clone(), self.records.clone(), name.to_string());
            self.workers.push(tokio::spawn(async move {
                work(client, &name, Duration::from_millis(5), records).await
            }));
        }
    }

    async fn completed_at_least(&self, n: u64) {
        let client = self.client.clone();
        eventually(Duration::from_secs(60), &format!("{n} completed"), || {
            let client = client.clone();
            async move { (client.status().await.ok()?.counts.completed >= n).then_some(()) }
        })
        .await;
    }

    /// Waits for a leader other than `old`.
    async fn new_leader(&self, old: NodeId) -> NodeId {
        eventually(Duration::from_secs(30), "a new leader", || async {
            let leader = self.cluster.leader().await;
            (leader != old).then_some(leader)
        })
        .await
    }

    /// Lets the workers drain, then checks everything.
    async fn finish(self) -> ProcCluster {
        for w in self.workers {
            tokio::time::timeout(Duration::from_secs(120), w)
                .await
                .expect("workers drained")
                .unwrap();
        }
        let tasks = self.client.all_tasks(None).await.unwrap();
        check(&tasks, &self.acknowledged, &self.records.lock().unwrap());
        assert!(tasks.iter().all(|t| t.status == Status::Completed), "every task completed");
        self.cluster.converged().await;
        self.cluster
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_leader_sigkill_during_a_drain_loses_nothing() {
    let mut story = Story::start(ProcCluster::start(BIN, 3, FAST), 400).await;
    story.spawn_workers(&["w01", "w02", "w03"]);
    for round in 1..=3 {
        story.completed_at_least(round * 80).await;
        let leader = story.cluster.leader().await;
        let campaigns = fast_campaigns(&story.cluster);
        story.cluster.kill(leader);
        story.new_leader(leader).await;
        // The survivors saw the dead leader's port refuse connections and
        // campaigned without waiting out its lease.
        assert!(fast_campaigns(&story.cluster) > campaigns, "no survivor campaigned at once");
        story.cluster.start_node(leader);
    }
    story.finish().await;
}

/// How often any node logged that it campaigned because the leader's port refused connections.
fn fast_campaigns(cluster: &ProcCluster) -> usize {
    (1..=3).map(|id| cluster.log(&format!("node{id}")).matches(FAST_CAMPAIGN).count()).sum()
}

const FAST_CAMPAIGN: &str = "the leader's peer port refuses connections";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigstopped_leader_is_replaced_and_its_stale_view_changes_nothing() {
    let mut story = Story::start(ProcCluster::start(BIN, 3, FAST), 300).await;
    story.spawn_workers(&["w01", "w02", "w03"]);
    story.completed_at_least(50).await;
    let old = story.cluster.leader().await;
    story.cluster.node(old).signal("STOP");
    story.new_leader(old).await;
    story.completed_at_least(150).await;
    story.cluster.node(old).signal("CONT");
    eventually(Duration::from_secs(20), "the old leader to step down", || async {
        let r = story.cluster.report(old).await?;
        (r.role == "follower").then_some(())
    })
    .await;
    // A paused leader's port still accepts: only the ordinary timeouts replaced it.
    assert_eq!(fast_campaigns(&story.cluster), 0, "a paused leader was taken for dead");
    story.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_minority_leader_hands_out_and_records_nothing() {
    let mut story = Story::start(ProcCluster::start_proxied(BIN, 3, FAST).await, 300).await;
    story.spawn_workers(&["w01", "w02", "w03"]);
    story.completed_at_least(50).await;
    let old = story.cluster.leader().await;
    story.cluster.isolate(old, Mode::Cut);
    story.new_leader(old).await;
    // Whatever was committed before the cut has been applied by now.
    let frozen = story.cluster.report(old).await.unwrap();
    story.completed_at_least(150).await;

    // Workers can still reach the old leader, which still believes it leads:
    // it must neither lease a task nor apply anything without a quorum.
    let addr = story.cluster.config.node(old).unwrap().client_addr.clone();
    let options =
        ClientOptions { retry_for: Duration::from_millis(500), ..ClientOptions::default() };
    let direct = Client::with_options(vec![addr], options);
    let answer = direct.request(&WorkerId("intruder".into()), 1, Duration::ZERO).await;
    assert!(answer.is_err(), "a minority leader answered {answer:?}");
    let now = story.cluster.report(old).await.unwrap();
    assert_eq!(
        (now.last_applied, now.counts),
        (frozen.last_applied, frozen.counts),
        "the minority applied something"
    );

    story.cluster.heal();
    story.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_cluster_killed_at_once_and_restarted_loses_nothing() {
    let mut story = Story::start(ProcCluster::start(BIN, 3, FAST), 300).await;
    story.spawn_workers(&["w01", "w02", "w03"]);
    story.completed_at_least(80).await;
    for id in 1..=3 {
        story.cluster.kill(id);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for id in 1..=3 {
        story.cluster.start_node(id);
    }
    story.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_killed_while_holding_leases_has_its_tasks_redelivered() {
    let mut story = Story::start(ProcCluster::start(BIN, 3, FAST), 100).await;
    let mut doomed = story
        .cluster
        .worker("doomed", &["--id", "doomed", "--handler", "sleep:60000", "--concurrency", "4"]);
    let client = story.client.clone();
    let held = eventually(Duration::from_secs(20), "the doomed worker to hold 4 leases", || {
        let client = client.clone();
        async move {
            let held = client.all_tasks(Some(Status::InProgress)).await.ok()?;
            (held.len() == 4).then(|| held.into_iter().map(|t| t.id).collect::<Vec<_>>())
        }
    })
    .await;
    doomed.signal("KILL");
    doomed.wait(Duration::from_secs(5)).await;
    story.spawn_workers(&["w01", "w02"]);
    let cluster = story.finish().await;
    let client = cluster.client();
    for id in held {
        let t = client.task(id).await.unwrap();
        assert_eq!(t.attempt.0, 2, "task {id} was re-delivered once after its lease expired");
        assert_ne!(t.worker, Some(WorkerId("doomed".into())));
    }
}
