//! Fault injection against three master processes of the real binary:
//! SIGKILL, SIGSTOP/SIGCONT, a partitioned (minority) leader behind TCP
//! proxies, the whole cluster killed at once, a worker killed while
//! holding leases, and the leader killed during a membership change. After each story the checker holds the final table
//! against what was acknowledged and answered, and the replicas must
//! converge to the same table.

use std::time::Duration;

use taskraft_client::{Client, ClientOptions};
use taskraft_core::{Status, WorkerId};
use taskraft_tests::story::Story;
use taskraft_tests::{cluster::FAST, eventually, Mode, ProcCluster};

const BIN: &str = env!("CARGO_BIN_EXE_taskraft-under-test");

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
    let client = story.load.client.clone();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_killed_during_a_membership_change_loses_nothing_and_the_change_completes() {
    // Nodes 4, 5 and 6 are spares: one promotion per try.
    let cluster = ProcCluster::start_proxied_with_spares(BIN, 6, 3, FAST).await;
    let mut story = Story::start(cluster, 400).await;
    story.spawn_workers(&["w01", "w02", "w03"]);
    story.completed_at_least(60).await;
    let client = story.load.client.clone();
    let mut interrupted = false;
    for spare in 4..=6 {
        let node = story.cluster.config.node(spare).unwrap().info();
        client.add_learner(spare, node).await.unwrap();
        eventually(Duration::from_secs(30), "the learner to catch up", || async {
            let s = client.status().await.ok()?;
            let m = s.members.into_iter().find(|m| m.id == spare)?;
            (m.role == "learner" && m.lag? <= 100).then_some(())
        })
        .await;

        // Slow the leader's links so that the change's two commits (the
        // joint configuration, then the new one) take a few round trips,
        // start the promotion on the leader alone, and kill the leader.
        let old = story.cluster.leader().await;
        for to in (1..=6).filter(|to| *to != old) {
            story.cluster.link(old, to, Mode::Delay(Duration::from_millis(60)));
        }
        let addr = story.cluster.config.node(old).unwrap().client_addr.clone();
        let token = story.cluster.config.credentials(false).unwrap();
        let options =
            ClientOptions { retry_for: Duration::ZERO, token, ..ClientOptions::default() };
        let direct = Client::with_options(vec![addr], options);
        let promote = tokio::spawn(async move { direct.promote(spare).await });
        tokio::time::sleep(Duration::from_millis(90)).await;
        story.cluster.kill(old);
        let answer = promote.await.unwrap();
        story.new_leader(old).await;
        let s = client.status().await.unwrap();
        println!("promote of {spare} answered {answer:?}; after the kill: changing {}", s.changing);
        interrupted |= s.changing;

        // Whatever state the kill left (old, joint or new membership),
        // running the operator's command again finishes the change.
        story.cluster.heal();
        story.cluster.cli_ok(&["member", "add", &spare.to_string()]).await;
        let s = client.status().await.unwrap();
        assert!(!s.changing, "the change is finished");
        assert!(story.cluster.voters().await.contains(&spare));
        story.cluster.start_node(old);
        if interrupted {
            break;
        }
    }
    assert!(interrupted, "no kill landed in the middle of a change in three tries");
    // Spares never added hold nothing: they are not replicas to compare.
    let voters = story.cluster.voters().await;
    for id in (4..=6).filter(|id| !voters.contains(id)) {
        story.cluster.kill(id);
    }
    story.finish().await;
}
