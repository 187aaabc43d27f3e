//! Appends the leader sends to its followers before its own fsync
//! (`network::early`): answered early, held by every follower, and safe
//! when the leader dies between sending them and writing them itself.
//! In-process nodes on real sockets and real data dirs.

use std::time::Duration;

use taskraft_core::NewTask;
use taskraft_master::store::failpoint;
use taskraft_tests::http::{get, sample};
use taskraft_tests::TestCluster;

fn keyed_tasks(prefix: &str, n: usize) -> Vec<NewTask> {
    (1..=n).map(|i| keyed(&format!("{prefix} {i}"))).collect()
}

/// Stops every node, `leader` last, starts them again, `leader` first, and
/// expects the next leader to lead a newer term than `leader` did. (A
/// follower that saw its leader's port close would campaign at once, see
/// `failover`, and an old leader restarted into that newer term could not
/// lead its old one again anyway: stopped last, it finds every node still in
/// its term when it restarts.)
async fn restart_all_leader_last(cluster: &mut TestCluster, leader: u64) {
    let term = cluster.node(leader).raft.metrics().borrow().current_term;
    for id in cluster.running().into_iter().filter(|id| *id != leader) {
        cluster.stop(id).await;
    }
    cluster.stop(leader).await;
    cluster.restart(leader).await;
    for id in (1..=3).filter(|id| *id != leader) {
        cluster.restart(id).await;
    }
    let next = cluster.leader().await;
    let now = cluster.node(next).raft.metrics().borrow().current_term;
    assert!(now > term, "node {next} leads term {now}, node {leader} led {term}");
}

/// A task whose payload is also its idempotency key.
fn keyed(key: &str) -> NewTask {
    NewTask { data: key.as_bytes().to_vec(), key: Some(key.to_owned()), ..Default::default() }
}

/// The leader sends each append to the followers before its own fsync, and
/// openraft's replication then reuses their answers: most appends are
/// answered that way, every write is acknowledged, and every follower holds
/// and applies every entry, through a follower's restart in the middle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_hold_every_entry_the_leader_sent_before_its_own_fsync() {
    let mut cluster = TestCluster::start(3).await;
    let leader = cluster.leader().await;
    let client = cluster.client_of(leader);
    for i in 0..100 {
        client.submit(keyed_tasks(&format!("write {i}"), 1)).await.unwrap();
    }
    let text = get(&cluster.http(leader), "/metrics", None).await.text();
    let early = sample(&text, "taskraft_raft_appends_answered_early_total").unwrap();
    // One append per write to each of two followers: most are answered early.
    assert!(early >= 100.0, "{early} of 200 answered early");

    // A follower restarted in between: the chain of early appends to it
    // breaks, openraft catches it up, and early appends resume.
    let follower = cluster.running().into_iter().find(|id| *id != leader).unwrap();
    cluster.stop(follower).await;
    for i in 100..150 {
        client.submit(keyed_tasks(&format!("write {i}"), 1)).await.unwrap();
    }
    cluster.restart(follower).await;
    cluster.converged().await;
    for i in 150..250 {
        client.submit(keyed_tasks(&format!("write {i}"), 1)).await.unwrap();
    }
    let text = get(&cluster.http(leader), "/metrics", None).await.text();
    let after = sample(&text, "taskraft_raft_appends_answered_early_total").unwrap();
    assert!(after >= early + 100.0, "{after} answered early after the restart, {early} before");
    cluster.converged().await;
    for id in cluster.running() {
        assert_eq!(cluster.node(id).applied().read().table.counts().idle, 250, "node {id}");
    }
    cluster.shutdown().await;
}

/// A leader may have sent entries before its own fsync (network::early), so
/// after a restart it must not lead its old term again with a log that may
/// lack them: the whole cluster restarted, the next leader is of a new term.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_leader_does_not_lead_its_old_term_again() {
    let mut cluster = TestCluster::start(3).await;
    for round in 0..3 {
        let leader = cluster.leader().await;
        cluster.client().submit(keyed_tasks(&format!("round {round}"), 1)).await.unwrap();
        restart_all_leader_last(&mut cluster, leader).await;
    }
    cluster.converged().await;
    cluster.shutdown().await;
}

/// A leader whose own write of an append fails after it sent that append
/// early, as if it died in between, restarts without the entry that its
/// followers hold. Restarted with them, it must not lead its old term
/// again: its next entry would take that entry's log id with other
/// contents, and the followers would keep theirs. Every node must end with
/// the same table, holding every submit once (they are keyed and retried).
/// Three rounds, a new leader each time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_lost_between_its_early_append_and_its_own_write_leaves_no_divergence() {
    let mut cluster = TestCluster::start(3).await;
    let client = cluster.client();
    let mut submits = Vec::new();
    for round in 0..3 {
        let leader = cluster.leader().await;
        // Acknowledged first: the followers' log ends are known, so the
        // next appends go early.
        client.submit(vec![keyed(&format!("round {round} steady"))]).await.unwrap();
        failpoint::fail_next_early_sent_append(cluster.dir.path());
        let stopped = || cluster.node(leader).raft.metrics().borrow().running_state.is_err();
        let mut i = 0;
        while !stopped() {
            assert!(i < 50, "round {round}: the leader's write never failed");
            let key = format!("round {round} write {i}");
            let submit = tokio::spawn({
                let client = client.clone();
                async move { client.submit(vec![keyed(&key)]).await.map(|_| key) }
            });
            for _ in 0..100 {
                if submit.is_finished() || stopped() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            submits.push(submit);
            i += 1;
        }
        restart_all_leader_last(&mut cluster, leader).await;
        cluster.converged().await;
    }
    let mut keys = Vec::new();
    for submit in submits {
        let submitted = tokio::time::timeout(Duration::from_secs(30), submit).await;
        keys.push(submitted.expect("in time").expect("the submit task").expect("retried"));
    }
    cluster.converged().await;
    let mut held: Vec<String> = client
        .all_tasks(None)
        .await
        .unwrap()
        .into_iter()
        .map(|t| String::from_utf8(t.data).unwrap())
        .filter(|d| !d.ends_with("steady"))
        .collect();
    held.sort();
    keys.sort();
    assert_eq!(held, keys, "every submit, once");
    cluster.shutdown().await;
}
