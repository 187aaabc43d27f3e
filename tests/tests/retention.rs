//! Retention and paged listing on real master processes: finished tasks
//! leave every replica once they are older than `retention_ms`, also when
//! the leader dies in between; unfinished tasks stay; ids are never reused;
//! a listing walks the table in bounded pages.

use std::time::Duration;

use serde_json::Value;
use taskraft_tests::{cluster::FAST, eventually, ProcCluster};

const BIN: &str = env!("CARGO_BIN_EXE_taskraft-under-test");

fn json(out: &std::process::Output) -> Value {
    assert!(out.status.success(), "command failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("json output")
}

/// Submits `n` tasks through the CLI's `--stdin`.
fn submit(cluster: &ProcCluster, n: usize) {
    let mut child = std::process::Command::new(&cluster.bin)
        .args(["submit", "--stdin", "--config"])
        .arg(&cluster.config_path)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let lines: String = (1..=n).map(|i| format!("task data {i}\n")).collect();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), lines.as_bytes()).unwrap();
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
}

/// Walks `tasks --json` page by page; returns the ids seen and the page count.
fn walk(cluster: &ProcCluster, args: &[&str]) -> (Vec<u64>, usize) {
    let (mut ids, mut pages, mut after) = (Vec::new(), 0, "0".to_string());
    loop {
        let mut full = vec!["tasks", "--json", "--after", after.as_str()];
        full.extend_from_slice(args);
        let page = json(&cluster.cli(&full));
        pages += 1;
        ids.extend(page["tasks"].as_array().unwrap().iter().map(|t| t["id"].as_u64().unwrap()));
        match page["next_after"].as_u64() {
            Some(next) => after = next.to_string(),
            None => return (ids, pages),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_tasks_leave_every_replica_after_the_retention_across_a_leader_kill() {
    let mut cluster = ProcCluster::start(BIN, 3, &format!("{FAST}\nretention_ms = 2000"));
    cluster.leader().await;
    submit(&cluster, 1000);

    let (ids, pages) = walk(&cluster, &["--limit", "300"]);
    assert_eq!(ids, (1..=1000).collect::<Vec<_>>(), "every task once, in id order");
    assert_eq!(pages, 4);
    let refused = cluster.cli(&["tasks", "--limit", "5000"]);
    assert_eq!(refused.status.code(), Some(2), "a page over 1000 is bad usage");

    let mut worker = cluster.worker(
        "w1",
        &["--id", "w1", "--concurrency", "8", "--exit-when-done", "--poll-wait", "500ms"],
    );
    assert_eq!(worker.wait(Duration::from_secs(60)).await, Some(0), "{}", cluster.log("w1"));
    // Killed before the 2 s retention ran out: the next leader must purge.
    let leader = cluster.leader().await;
    cluster.kill(leader);
    submit(&cluster, 1);

    let client = cluster.client();
    eventually(Duration::from_secs(30), "finished tasks purged on the survivors", || async {
        let mut finished = 0;
        for id in cluster.running() {
            let c = cluster.report(id).await?.counts;
            finished += c.completed + c.dead;
        }
        (finished == 0).then_some(())
    })
    .await;
    cluster.start_node(leader);
    cluster.converged().await;
    for id in cluster.running() {
        let c = cluster.report(id).await.unwrap().counts;
        assert_eq!((c.completed, c.dead, c.idle), (0, 0, 1), "node {id}");
    }
    let completed = json(&cluster.cli(&["tasks", "--status", "completed", "--json"]));
    assert_eq!(completed["tasks"], Value::Array(vec![]));
    let status = json(&cluster.cli(&["status", "--json"]));
    assert_eq!(status["counts"]["completed"], 0);
    // The idle task survives every purge, and its id was never used before.
    let (ids, _) = walk(&cluster, &[]);
    assert_eq!(ids, vec![1001]);
    submit(&cluster, 1);
    let next = client.all_tasks(None).await.unwrap();
    assert_eq!(next.iter().map(|t| t.id.0).collect::<Vec<_>>(), vec![1001, 1002]);
}
