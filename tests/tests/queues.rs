//! Named queues on real master processes: a capped queue never has more
//! tasks in progress than its cap, with many workers and across a leader
//! SIGKILL; a paused queue gives nothing until resumed; workers take only
//! from their queues.

use std::time::{Duration, Instant};

use taskraft_core::{NewTask, QueueStatus};
use taskraft_tests::cluster::FAST;
use taskraft_tests::ProcCluster;

const BIN: &str = env!("CARGO_BIN_EXE_taskraft-under-test");

fn queue<'a>(queues: &'a [QueueStatus], name: &str) -> Option<&'a QueueStatus> {
    queues.iter().find(|q| q.name == name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capped_queue_never_exceeds_its_cap_with_eight_workers_across_a_leader_kill() {
    let mut cluster = ProcCluster::start(BIN, 3, FAST);
    let leader = cluster.leader().await;
    let client = cluster.client();
    cluster.cli_ok(&["queue", "set", "api", "--max-in-flight", "2"]).await;
    cluster.cli_ok(&["queue", "pause", "paused"]).await;
    let n = 24u64;
    let task = |q: &str, i: u64| NewTask {
        data: format!("{q}-{i}").into_bytes(),
        queue: Some(q.into()),
        ..Default::default()
    };
    let mut tasks: Vec<NewTask> = (0..n).map(|i| task("api", i)).collect();
    tasks.extend((0..3).map(|i| task("paused", i)));
    tasks.extend((0..3).map(|i| task("elsewhere", i)));
    client.submit(tasks).await.expect("submit");
    // Eight workers on the capped queue (and the paused one). Each command
    // logs when it starts and ends, so overlaps are counted exactly, not
    // only sampled through status.
    let runs = cluster.log_path("runs");
    let exec = format!(
        "echo \"+ $(date +%s%N)\" >> {0}; sleep 0.15; echo \"- $(date +%s%N)\" >> {0}; cat",
        runs.display()
    );
    let _workers: Vec<_> = (1..=8)
        .map(|i| {
            let id = format!("w{i}");
            cluster.worker(&id, &["--id", &id, "--queues", "api,paused", "--exec", &exec])
        })
        .collect();

    let started = Instant::now();
    let (mut peak, mut killed) = (0, false);
    loop {
        assert!(started.elapsed() < Duration::from_secs(90), "the api queue did not drain");
        let Ok(status) = client.status().await else { continue };
        let api = queue(&status.queues, "api").expect("the api queue").clone();
        peak = peak.max(api.counts.in_progress);
        assert!(api.counts.in_progress <= 2, "{api:?}");
        if !killed && api.counts.completed >= n / 3 {
            cluster.kill(leader);
            killed = true;
        }
        if api.counts.completed == n {
            // The paused queue gave nothing; no worker takes from "elsewhere".
            let paused = queue(&status.queues, "paused").unwrap();
            assert_eq!((paused.counts.idle, paused.settings.paused), (3, true), "{paused:?}");
            assert_eq!(queue(&status.queues, "elsewhere").unwrap().counts.idle, 3);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(killed);
    assert_eq!(peak, 2, "the cap was reached");
    let log = std::fs::read_to_string(&runs).expect("the commands' log");
    assert!(log.lines().count() >= 2 * n as usize, "every run logged: {log}");
    let running = most_at_once(&log);
    assert!(running <= 2, "{running} commands ran at once");
    // Resumed, the paused queue drains too.
    cluster.cli_ok(&["queue", "resume", "paused"]).await;
    taskraft_tests::eventually(Duration::from_secs(30), "the paused queue drained", || {
        let client = client.clone();
        async move {
            let s = client.status().await.ok()?;
            (queue(&s.queues, "paused")?.counts.completed == 3).then_some(())
        }
    })
    .await;
    let listed = cluster.cli_ok(&["queue", "list"]).await;
    assert!(listed.contains("queue api") && listed.contains("(cap 2)"), "{listed}");
    let json: serde_json::Value =
        serde_json::from_str(&cluster.cli_ok(&["status", "--json"]).await).expect("status json");
    let api = json["queues"].as_array().unwrap().iter().find(|q| q["name"] == "api").cloned();
    assert_eq!(
        api.as_ref().map(|q| &q["counts"]["completed"]),
        Some(&serde_json::json!(n)),
        "{json}"
    );
}

/// The most `+ T` / `- T` intervals of a log that overlap at any time.
fn most_at_once(log: &str) -> i64 {
    let mut events: Vec<(u128, i64)> = log
        .lines()
        .filter_map(|l| {
            let (sign, t) = l.split_once(' ')?;
            Some((t.parse().ok()?, if sign == "+" { 1 } else { -1 }))
        })
        .collect();
    // Ends before starts at the same instant.
    events.sort();
    let (mut now, mut most) = (0, 0);
    for (_, d) in events {
        now += d;
        most = most.max(now);
    }
    most
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_by_key_or_by_queue() {
    let cluster = ProcCluster::start(BIN, 3, FAST);
    cluster.leader().await;
    cluster.cli_ok(&["submit", "--queue", "mail", "m1", "m2", "m3"]).await;
    cluster.cli_ok(&["submit", "--key", "report-7", "the report"]).await;
    cluster.cli_ok(&["submit", "--queue", "video", "v1"]).await;
    let out = cluster.cli_ok(&["cancel", "--queue", "mail", "--json"]).await;
    let v: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(v["cancelled"], serde_json::json!([1, 2, 3]), "{out}");
    let out = cluster.cli_ok(&["cancel", "--key", "report-7"]).await;
    assert!(out.contains("4 cancelled"), "{out}");
    let missing = cluster.cli(&["cancel", "--key", "nope"]);
    assert_eq!(missing.status.code(), Some(1));
    let status = cluster.client().status().await.unwrap();
    assert_eq!(queue(&status.queues, "mail").unwrap().counts.cancelled, 3);
    assert_eq!(queue(&status.queues, "video").unwrap().counts.idle, 1, "other queues untouched");
    assert_eq!(status.counts.cancelled, 4);
}
