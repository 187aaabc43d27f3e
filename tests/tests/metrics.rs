//! Metrics and health checks on the HTTP port: the counters and gauges
//! follow the table and Raft on every master, including the fencing,
//! expiry and snapshot figures; every metric is documented and the
//! dashboard uses only real ones; /readyz follows leadership.

use std::time::Duration;

use serde_json::{json, Value};
use taskraft_tests::cluster::FAST;
use taskraft_tests::http::{get, lease, long_leases, outcome, post, sample, submit};
use taskraft_tests::{eventually, TestCluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_health_follow_the_table_and_raft() {
    let mut cluster = TestCluster::start_with(3, &long_leases()).await;
    let id = cluster.leader().await;
    let leader = cluster.http(id);
    submit(&leader, None, json!([{ "data": "a" }, { "data": "b" }, { "data": "c" }])).await;
    let leased = lease(&leader, "m", 2).await;
    let t = &leased["tasks"][0];
    let done = json!({"worker": "m", "task": t["task"], "attempt": t["attempt"], "result": "A"});
    assert_eq!(outcome(&leader, "/v1/complete", done.clone()).await, "accepted");
    assert_eq!(outcome(&leader, "/v1/complete", done).await, "duplicate");
    cluster.converged().await;
    for node in cluster.running() {
        let text = get(&cluster.http(node), "/metrics", None).await.text();
        // Every master applies the same log, so every master counts the same events.
        assert_eq!(
            sample(&text, "taskraft_tasks_submitted_total"),
            Some(3.0),
            "node {node}:\n{text}"
        );
        assert_eq!(sample(&text, "taskraft_tasks_leased_total"), Some(2.0), "node {node}");
        assert_eq!(sample(&text, "taskraft_tasks_completed_total"), Some(1.0), "node {node}");
        assert_eq!(
            sample(&text, r#"taskraft_fenced_total{kind="duplicate"}"#),
            Some(1.0),
            "node {node}"
        );
        assert_eq!(sample(&text, r#"taskraft_tasks{status="idle"}"#), Some(1.0), "node {node}");
        assert_eq!(
            sample(&text, r#"taskraft_tasks{status="in_progress"}"#),
            Some(1.0),
            "node {node}"
        );
        assert_eq!(
            sample(&text, r#"taskraft_tasks{status="completed"}"#),
            Some(1.0),
            "node {node}"
        );
        assert_eq!(sample(&text, "taskraft_queue_wait_seconds_count"), Some(2.0), "node {node}");
        assert_eq!(sample(&text, "taskraft_run_time_seconds_count"), Some(1.0), "node {node}");
        assert!(sample(&text, "taskraft_log_fsync_seconds_count").unwrap() > 0.0);
        assert_eq!(sample(&text, "taskraft_raft_is_leader"), Some(f64::from(node == id)));
        assert!(sample(&text, "taskraft_raft_term").unwrap() >= 1.0);
        assert!(sample(&text, "taskraft_raft_applied_index").unwrap() >= 4.0);
        assert!(sample(&text, "taskraft_raft_leader_changes_total").unwrap() >= 1.0);
        assert!(text.ends_with("# EOF\n"), "OpenMetrics text ends with # EOF");
        let ready = get(&cluster.http(node), "/readyz", None).await;
        assert_eq!(ready.status, 200, "{}", ready.text());
    }
    let text = get(&leader, "/metrics", None).await.text();
    assert!(sample(&text, "taskraft_commit_latency_seconds_count").unwrap() >= 3.0, "{text}");
    assert!(sample(&text, "taskraft_group_commit_size_count").unwrap() >= 3.0);
    for follower in cluster.running().into_iter().filter(|n| *n != id) {
        let lag = format!("taskraft_raft_replication_lag{{follower=\"{follower}\"}}");
        assert!(sample(&text, &lag).is_some(), "{lag} in\n{text}");
    }

    // With the leader and one follower gone, the last node knows no leader: not ready.
    let last = cluster.running().into_iter().find(|n| *n != id).unwrap();
    let other = cluster.running().into_iter().find(|n| *n != id && *n != last).unwrap();
    cluster.stop(id).await;
    cluster.stop(other).await;
    let addr = cluster.http(last);
    let body = eventually(Duration::from_secs(10), "readyz 503", || {
        let addr = addr.clone();
        async move {
            let r = get(&addr, "/readyz", None).await;
            (r.status == 503).then(|| r.json())
        }
    })
    .await;
    assert_eq!(body["ready"], false);
    assert_eq!(body["reason"], "no leader is known");
    assert_eq!(get(&addr, "/healthz", None).await.status, 200, "alive all the same");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_is_documented_and_the_dashboard_uses_only_real_ones() {
    // Three nodes: the leader exports the per-follower lag too.
    let cluster = TestCluster::start_with(3, &long_leases()).await;
    let leader = cluster.http(cluster.leader().await);
    // One task, so that the per-queue gauges have something to show.
    submit(&leader, None, json!([{ "data": "x", "queue": "mail" }])).await;
    let text = eventually(Duration::from_secs(10), "follower lag exported", || {
        let leader = leader.clone();
        async move {
            let text = get(&leader, "/metrics", None).await.text();
            text.contains("taskraft_raft_replication_lag{").then_some(text)
        }
    })
    .await;
    let families: Vec<(&str, &str)> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .collect();
    assert!(families.len() >= 20, "{families:?}");
    // prometheus-client (0.24) ends each help text with a full stop of its
    // own, so the texts in metrics/ must not.
    for help in text.lines().filter(|l| l.starts_with("# HELP ")) {
        assert!(help.ends_with('.') && !help.ends_with(".."), "one full stop: {help}");
    }
    let samples: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let docs = std::fs::read_to_string(format!("{root}/docs/operations.md")).unwrap();
    for (family, kind) in &families {
        let name = if *kind == "counter" { format!("{family}_total") } else { family.to_string() };
        let listed =
            docs.contains(&format!("| `{name}`")) || docs.contains(&format!("| `{name}{{"));
        assert!(listed, "{name} is not in docs/operations.md, \"Metrics\"");
    }
    let dashboard =
        std::fs::read_to_string(format!("{root}/deploy/grafana/taskraft.json")).unwrap();
    serde_json::from_str::<Value>(&dashboard).expect("the dashboard is JSON");
    let mut used = 0;
    for (i, _) in dashboard.match_indices("taskraft_") {
        let name: String =
            dashboard[i..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        assert!(
            samples.contains(&name.as_str()),
            "the dashboard uses {name}, which is not exported"
        );
        used += 1;
    }
    assert!(used >= 15, "the dashboard queries {used} metrics");
    cluster.shutdown().await;
}

/// Concurrent calls share log entries (group commit), and a group after a
/// shared one waits for its callers: the leader's counters show both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_share_entries_and_their_waits_are_counted() {
    let cluster = TestCluster::start_with(3, &long_leases()).await;
    let leader = cluster.http(cluster.leader().await);
    let before = get(&leader, "/metrics", None).await.text();
    let figure = |text: &str, name: &str| sample(text, name).unwrap_or(0.0);
    let statuses = write_together(&leader, 16, 20).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let text = get(&leader, "/metrics", None).await.text();
    let delta = |name: &str| figure(&text, name) - figure(&before, name);
    let (groups, calls) =
        (delta("taskraft_group_commit_size_count"), delta("taskraft_group_commit_size_sum"));
    assert!(calls >= 320.0, "{calls} calls counted for 320 submits:\n{text}");
    assert!(groups < calls, "{groups} groups for {calls} calls: none shared an entry");
    let waits = delta("taskraft_group_commit_waits_total");
    assert!(waits >= 1.0, "no group waited for its callers:\n{text}");
    assert!(delta("taskraft_group_commit_waits_expired_total") <= waits);
    cluster.shutdown().await;
}

/// A follower answers writes with "not the leader", and those callers go
/// to the leader: its proposer does not wait for them to come back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_does_not_wait_for_the_callers_it_turned_away() {
    let cluster = TestCluster::start_with(3, &long_leases()).await;
    let id = cluster.leader().await;
    let follower = cluster.http(cluster.running().into_iter().find(|n| *n != id).unwrap());
    // Rounds of 16 concurrent writes until some were turned away together,
    // in one group of several (the case that used to start a wait).
    let text = eventually(Duration::from_secs(20), "a group of several turned away", || {
        let follower = follower.clone();
        async move {
            let statuses = write_together(&follower, 16, 1).await;
            assert!(statuses.iter().all(|s| *s == 307), "a follower redirects: {statuses:?}");
            let text = get(&follower, "/metrics", None).await.text();
            let groups = sample(&text, "taskraft_group_commit_size_count")?;
            (sample(&text, "taskraft_group_commit_size_sum")? > groups).then_some(text)
        }
    })
    .await;
    assert_eq!(sample(&text, "taskraft_group_commit_waits_total"), Some(0.0), "{text}");
    cluster.shutdown().await;
}

/// `callers` concurrent loops each POST `each` one-task submits to `addr`,
/// one after the other; the HTTP statuses of them all.
async fn write_together(addr: &str, callers: usize, each: usize) -> Vec<u16> {
    let loops: Vec<_> = (0..callers)
        .map(|c| {
            let addr = addr.to_owned();
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                for i in 0..each {
                    let body = json!({ "tasks": [{ "data": format!("{c}-{i}") }] });
                    statuses.push(post(&addr, "/v1/tasks", None, &body).await.status);
                }
                statuses
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for l in loops {
        statuses.extend(l.await.unwrap());
    }
    statuses
}

/// The rarer events are counted too: a stale report (`fenced{kind="stale"}`),
/// a lease the scanner takes back (`leases_expired`), and a snapshot
/// (`snapshot_build_seconds`, `snapshot_size_bytes`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_reports_expired_leases_and_snapshots_are_counted() {
    let cluster = TestCluster::start_with(3, FAST).await;
    let id = cluster.leader().await;
    let leader = cluster.http(id);
    submit(&leader, None, json!([{ "data": "a" }])).await;
    let t = lease(&leader, "m", 1).await["tasks"][0].clone();
    let late = json!({"worker": "m", "task": t["task"], "attempt": 9, "result": "x"});
    assert_eq!(outcome(&leader, "/v1/complete", late).await, "stale");
    // Never extended: the 1.5 s lease runs out and the scanner takes it back.
    let text = eventually(Duration::from_secs(15), "the lease expired", || {
        let leader = leader.clone();
        async move {
            let text = get(&leader, "/metrics", None).await.text();
            (sample(&text, "taskraft_leases_expired_total")? >= 1.0).then_some(text)
        }
    })
    .await;
    assert_eq!(sample(&text, r#"taskraft_fenced_total{kind="stale"}"#), Some(1.0), "{text}");
    assert_eq!(sample(&text, "taskraft_snapshot_build_seconds_count"), Some(0.0), "{text}");
    let raft = &cluster.node(id).raft;
    raft.trigger().snapshot().await.unwrap();
    let text = eventually(Duration::from_secs(10), "the snapshot counted", || {
        let leader = leader.clone();
        async move {
            let text = get(&leader, "/metrics", None).await.text();
            (sample(&text, "taskraft_snapshot_build_seconds_count")? >= 1.0).then_some(text)
        }
    })
    .await;
    assert!(sample(&text, "taskraft_snapshot_size_bytes").unwrap() > 0.0, "{text}");
    cluster.shutdown().await;
}
