//! The examples in other languages, run against real master processes.

use std::process::Stdio;
use std::time::Duration;

use taskraft_core::{NewTask, Status, TaskId};
use taskraft_tests::cluster::FAST;
use taskraft_tests::{eventually, ProcCluster};

const BIN: &str = env!("CARGO_BIN_EXE_taskraft-under-test");
const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/python-worker.py");
const TLS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/tls");

/// Python workers (standard library only) drain a TLS cluster with a token
/// over the HTTP API while the leader is SIGKILLed: every task ends
/// completed once, with the upper-cased payload as its result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_workers_drain_an_https_cluster_across_a_leader_kill() {
    let extra = format!(
        "{FAST}\ntoken = \"py-t0ken\"\ntls_ca = \"{TLS}/ca.pem\"\ntls_cert = \"{TLS}/node.pem\"\ntls_key = \"{TLS}/node.key\""
    );
    let mut cluster = ProcCluster::start(BIN, 3, &extra);
    let leader = cluster.leader().await;
    let client = cluster.client();
    let n: u64 = 400;
    let tasks: Vec<NewTask> = (0..n)
        .map(|i| NewTask {
            data: format!("task-{i}").into_bytes(),
            key: None,
            priority: 0,
            max_attempts: 0,
            ..Default::default()
        })
        .collect();
    client.submit(tasks).await.expect("submit");

    let seeds: Vec<String> = cluster.running().iter().map(|id| cluster.http_url(*id)).collect();
    let mut workers = Vec::new();
    for name in ["py-1", "py-2"] {
        let log = std::fs::File::create(cluster.log_path(name)).expect("log");
        let child = tokio::process::Command::new("python3")
            .arg(EXAMPLE)
            .args(["--seeds", &seeds.join(","), "--worker", name, "--ca"])
            .arg(format!("{TLS}/ca.pem"))
            .args(["--max", "2", "--exit-when-drained"])
            .env("TASKRAFT_TOKEN", "py-t0ken")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("python3 runs (.ci/run installs it when missing)");
        workers.push((name, child));
    }
    let before = eventually(Duration::from_secs(60), "a fifth of the tasks completed", || {
        let client = client.clone();
        async move {
            let done = client.status().await.ok()?.counts.completed;
            (done >= n / 5).then_some(done)
        }
    })
    .await;
    cluster.kill(leader);
    assert!(before < n, "the leader died mid-run ({before} of {n} done), not after it");

    let mut accepted = 0;
    for (name, mut child) in workers {
        let status = tokio::time::timeout(Duration::from_secs(120), child.wait())
            .await
            .unwrap_or_else(|_| panic!("{name} did not finish: {}", cluster.log(name)))
            .expect("wait");
        let log = cluster.log(name);
        assert!(status.success(), "{name} failed: {log}");
        accepted += log.lines().filter(|l| l.ends_with(": accepted")).count();
    }
    let status = client.status().await.expect("status");
    assert_eq!(status.counts.completed, n, "{status:?}");
    for id in 1..=n {
        let task = client.task(TaskId(id)).await.expect("task");
        assert_eq!(task.status, Status::Completed);
        let want = String::from_utf8(task.data.clone()).unwrap().to_uppercase();
        assert_eq!(task.result.as_deref(), Some(want.as_bytes()), "task {id}");
    }
    assert!(accepted as u64 <= n, "{accepted} accepted completions for {n} tasks");
}
