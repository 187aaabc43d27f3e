//! The replicated master cluster: election, replication, redirects,
//! restarts and snapshot catch-up, with in-process nodes on real sockets
//! and real sled dirs.

use std::time::Duration;

use taskraft_client::ClientError;
use taskraft_core::{NewTask, Status, TaskId};
use taskraft_master::{Node, NodeError, NodeOptions};
use taskraft_proto::WireError;
use taskraft_tests::cluster::FAST;
use taskraft_tests::http::{get, sample};
use taskraft_tests::{eventually, tasks, TestCluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_elect_one_leader_and_replicate_a_submit_to_all() {
    let cluster = TestCluster::start(3).await;
    let leader = cluster.leader().await;
    let ids = cluster.client_of(leader).submit(tasks("task data", 3)).await.unwrap();
    assert_eq!(ids.iter().map(|s| s.id.0).collect::<Vec<_>>(), vec![1, 2, 3]);
    let digest = cluster.converged().await;
    for id in cluster.running() {
        let applied = cluster.node(id).applied();
        let a = applied.read();
        assert_eq!(a.table.counts().idle, 3, "node {id}");
        assert_eq!(a.table.get(TaskId(2)).unwrap().data, b"task data 2");
        assert_eq!(a.table.digest(), digest);
    }
    cluster.shutdown().await;
}

/// One write at a time: the leader answers most commit notices itself (the
/// follower had just confirmed the same log), yet every follower applies
/// every entry, the last one too, with no write after it; and no one
/// campaigns for lack of messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_apply_every_entry_though_the_leader_skips_commit_notices() {
    // A window of 50 ms (a quarter heartbeat), which a follower's fsync and
    // answer fit in even on a loaded test machine; an election timeout long
    // enough that such a machine does not campaign, while a leader that
    // stopped talking would still be found out.
    let timing = FAST
        .replace("heartbeat_interval_ms = 50", "heartbeat_interval_ms = 200")
        .replace("election_timeout_ms = [200, 500]", "election_timeout_ms = [1000, 2000]");
    assert!(timing.contains("= 200\n") && timing.contains("[1000, 2000]"), "{timing}");
    let cluster = TestCluster::start_with(3, &timing).await;
    let leader = cluster.leader().await;
    let term = |id| cluster.node(id).raft.metrics().borrow().current_term;
    let before = term(leader);
    let client = cluster.client_of(leader);
    for i in 0..200 {
        client.submit(tasks(&format!("write {i}"), 1)).await.unwrap();
    }
    let text = get(&cluster.http(leader), "/metrics", None).await.text();
    let skipped = sample(&text, "taskraft_raft_commit_notices_skipped_total").unwrap();
    // Two notices per write (one per follower): most are skipped.
    assert!(skipped >= 50.0, "{skipped} skipped of 400");
    cluster.converged().await;
    for id in cluster.running() {
        assert_eq!(cluster.node(id).applied().read().table.counts().idle, 200, "node {id}");
        assert_eq!(term(id), before, "node {id} saw another term");
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_answers_not_leader_with_the_leaders_address() {
    let cluster = TestCluster::start(3).await;
    let leader = cluster.leader().await;
    let follower = cluster.running().into_iter().find(|id| *id != leader).unwrap();
    // A raw call to the follower, without the client library's redirects.
    let addr = &cluster.config.node(follower).unwrap().client_addr;
    let transport =
        taskraft_proto::transport::connect(addr, Duration::from_secs(2), &Default::default())
            .await
            .unwrap();
    let raw =
        taskraft_proto::client::ClientServiceClient::new(Default::default(), transport).spawn();
    let err = raw.submit(tarpc_context(), tasks("x", 1)).await.unwrap().unwrap_err();
    let expected_addr = cluster.config.node(leader).unwrap().client_addr.clone();
    match err {
        WireError::NotLeader { leader: Some(hint) } => {
            assert_eq!((hint.id, hint.client_addr), (leader, expected_addr));
        }
        other => panic!("expected NotLeader with a hint, got {other:?}"),
    }
    // The client library seeded with only that follower follows the redirect.
    let ids = cluster.client_of(follower).submit(tasks("y", 1)).await.unwrap();
    assert_eq!(ids.len(), 1);
    cluster.shutdown().await;
}

fn tarpc_context() -> tarpc::context::Context {
    tarpc::context::current()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_restart_keeps_every_acknowledged_submission() {
    let mut cluster = TestCluster::start(3).await;
    cluster.leader().await;
    let client = cluster.client();
    for round in 0..5 {
        client.submit(tasks(&format!("round {round}"), 20)).await.unwrap();
    }
    // Acknowledged just before the stop: must survive it.
    let last = client.submit(tasks("last", 1)).await.unwrap()[0].id;
    for id in cluster.running() {
        cluster.stop(id).await;
    }
    for id in 1..=3 {
        cluster.restart(id).await;
    }
    cluster.leader().await;
    let client = cluster.client();
    let all = client.all_tasks(None).await.unwrap();
    assert_eq!(all.len(), 101);
    assert_eq!(client.task(last).await.unwrap().data, b"last 1");
    cluster.converged().await;
    cluster.shutdown().await;
}

/// After a restart a node knows only the commit index it last wrote down,
/// which can be older than what it acknowledged (the index is written with
/// the next log write); openraft 0.9 also let a leader lead its term again
/// at once with it. A read must still see every acknowledged write: here a
/// reader asks from before the restart, so its first answer comes the
/// moment a leader serves; four times over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_right_after_a_full_restart_see_the_last_acknowledged_write() {
    let mut cluster = TestCluster::start(3).await;
    for round in 0..4 {
        cluster.leader().await;
        let last = cluster.client().submit(tasks(&format!("round {round}"), 1)).await.unwrap();
        let last = last[0].id;
        for id in cluster.running() {
            cluster.stop(id).await;
        }
        // Asks until a node answers: the task, or that there is none.
        let reader = cluster.client();
        let read = tokio::spawn(async move {
            loop {
                match reader.task(last).await {
                    Err(ClientError::Refused(e)) => return Err(e),
                    Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                    Ok(task) => return Ok(task),
                }
            }
        });
        for id in 1..=3 {
            cluster.restart(id).await;
        }
        let answer = tokio::time::timeout(Duration::from_secs(60), read).await;
        let answer = answer.expect("an answer in time").expect("the reader");
        assert!(answer.is_ok(), "round {round}: acknowledged task {last:?}: {answer:?}");
    }
    cluster.converged().await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaced_node_catches_up_from_a_snapshot_after_log_purge() {
    let mut cluster = TestCluster::start(3).await;
    let leader = cluster.leader().await;
    let client = cluster.client();
    for round in 0..10 {
        client.submit(tasks(&format!("batch {round}"), 50)).await.unwrap();
    }
    // Wipe a follower that is not the initializing node.
    let victim = cluster.running().into_iter().rev().find(|id| *id != leader).unwrap();
    cluster.stop(victim).await;
    for round in 10..20 {
        client.submit(tasks(&format!("batch {round}"), 50)).await.unwrap();
    }
    // Snapshot and purge the log on the survivors so only a snapshot can catch the victim up.
    for id in cluster.running() {
        let raft = &cluster.node(id).raft;
        raft.trigger().snapshot().await.unwrap();
        let index = cluster.applied_index(id);
        eventually(Duration::from_secs(10), "snapshot built", || async {
            let m = raft.metrics().borrow().clone();
            m.snapshot.is_some_and(|s| s.index >= index).then_some(())
        })
        .await;
        raft.trigger().purge_log(index).await.unwrap();
        eventually(Duration::from_secs(10), "log purged", || async {
            raft.metrics().borrow().purged.is_some_and(|p| p.index >= index).then_some(())
        })
        .await;
    }
    // The victim's disk is lost: replace it as the runbook says (remove,
    // start blank, add). A blank member restarted as itself is refused.
    std::fs::remove_dir_all(taskraft_tests::process::data_dir(cluster.dir.path(), victim)).unwrap();
    // (Its ports are released asynchronously after the stop: retry a bind failure.)
    let config = cluster.config.clone();
    eventually(Duration::from_secs(10), "the wiped member to be refused", || {
        let config = config.clone();
        async move {
            match Node::start(&config, victim, NodeOptions::default()).await {
                Err(NodeError::StillAMember(_)) => Some(()),
                Err(NodeError::Listen { .. }) => None,
                Err(e) => panic!("a wiped member failed otherwise: {e}"),
                Ok(_) => panic!("a wiped member started"),
            }
        }
    })
    .await;
    client.remove_member(victim).await.unwrap();
    cluster.restart(victim).await;
    let node = cluster.config.node(victim).unwrap().info();
    client.add_member(victim, node, Duration::from_secs(30), |_| {}).await.unwrap();
    let digest = cluster.converged().await;
    assert_eq!(cluster.digest(victim), digest);
    let applied = cluster.node(victim).applied();
    assert_eq!(applied.read().table.counts().idle, 1000);
    let snapshot = cluster.node(victim).raft.metrics().borrow().snapshot;
    assert!(snapshot.is_some(), "the victim must have installed a snapshot");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_payload_is_refused_and_nothing_is_written() {
    let cluster = TestCluster::start(3).await;
    cluster.leader().await;
    let client = cluster.client();
    let big = NewTask {
        data: vec![b'x'; 5000],
        key: None,
        priority: 0,
        max_attempts: 0,
        ..Default::default()
    };
    let small = tasks("ok", 1).remove(0);
    match client.submit(vec![small, big]).await {
        Err(ClientError::Refused(WireError::Invalid(m))) => {
            assert!(m.contains("5000 bytes") && m.contains("max_payload_bytes is 4096"), "{m}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(client.all_tasks(None).await.unwrap().is_empty());
    assert_eq!(client.all_tasks(Some(Status::Idle)).await.unwrap().len(), 0);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_changes_that_could_not_finish_are_refused_and_change_nothing() {
    let mut cluster = TestCluster::start(3).await;
    let leader = cluster.leader().await;
    let client = cluster.client();
    let followers: Vec<_> = cluster.running().into_iter().filter(|id| *id != leader).collect();
    let (down, other) = (followers[0], followers[1]);
    cluster.stop(down).await;
    // Wait until the leader no longer counts the stopped node as up.
    eventually(Duration::from_secs(10), "the stopped node to be unreachable", || async {
        let s = client.status().await.ok()?;
        s.members.iter().any(|m| m.id == down && m.role == "unreachable").then_some(())
    })
    .await;

    // Removing the other follower would leave {leader, down}: only one of two answers.
    let refused = client.remove_member(other).await.unwrap_err();
    let text = refused.to_string();
    assert!(
        matches!(refused, ClientError::Refused(WireError::Invalid(_)))
            && text.contains("bring back"),
        "{text}"
    );
    // Promoting a node that is not a learner, and adding one at a bad address.
    let e = client.promote(9).await.unwrap_err();
    assert!(matches!(e, ClientError::Refused(WireError::NotFound(_))), "{e}");
    let bad = taskraft_proto::NodeInfo { peer_addr: "nowhere".into(), client_addr: "x:1".into() };
    let e = client.add_learner(9, bad).await.unwrap_err();
    assert!(matches!(e, ClientError::Refused(WireError::Invalid(_))), "{e}");

    let s = client.status().await.unwrap();
    let voters: Vec<_> = s.members.iter().filter(|m| m.voter).map(|m| m.id).collect();
    assert_eq!(voters, vec![1, 2, 3], "nothing changed");
    assert!(!s.changing);
    cluster.shutdown().await;
}
