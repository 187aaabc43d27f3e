//! Backup and restore with the real binary: a backup of a running cluster,
//! restored into the wiped data dirs, gives back the same table; a restore
//! over an existing cluster or from a damaged file is refused and writes
//! nothing.

use std::time::Duration;

use serde_json::Value;
use taskraft_tests::process::data_dir;
use taskraft_tests::{cluster::FAST, eventually, ProcCluster};

const BIN: &str = env!("CARGO_BIN_EXE_taskraft-under-test");

fn json(out: &std::process::Output) -> Value {
    assert!(out.status.success(), "command failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("json output")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_backup_gives_back_the_same_table() {
    let mut cluster = ProcCluster::start(BIN, 3, FAST);
    cluster.leader().await;
    let data: Vec<String> = (1..=300).map(|i| format!("task data {i}")).collect();
    let mut args: Vec<&str> = vec!["submit", "--key", "k"];
    args.extend(data.iter().map(String::as_str));
    json(&cluster.cli(&[args.as_slice(), &["--json"]].concat()));
    let mut worker =
        cluster.worker("w1", &["--id", "w1", "--concurrency", "4", "--exit-when-done"]);
    assert_eq!(worker.wait(Duration::from_secs(60)).await, Some(0), "{}", cluster.log("w1"));
    json(&cluster.cli(&["submit", "still idle 1", "still idle 2", "--json"]));
    let digest = cluster.converged().await;
    let before = json(&cluster.cli(&["status", "--json"]))["counts"].clone();
    assert_eq!(before["completed"], 300);

    let file = cluster.dir.path().join("table.backup");
    let info = json(&cluster.cli(&["backup", file.to_str().unwrap(), "--json"]));
    assert_eq!(info["digest"], digest);
    assert_eq!(info["counts"], before);

    for id in cluster.running() {
        cluster.kill(id);
    }
    // Restoring over the cluster's own data dirs is refused, and changes nothing.
    let refused = cluster.cli(&["restore", file.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr)
        .contains("is not empty: restore seeds only a new cluster"));

    for id in 1..=3 {
        std::fs::remove_dir_all(data_dir(cluster.dir.path(), id)).unwrap();
    }
    // A damaged backup is refused before anything is written.
    let mut damaged = std::fs::read(&file).unwrap();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0xff;
    let bad = cluster.dir.path().join("damaged.backup");
    std::fs::write(&bad, damaged).unwrap();
    let refused = cluster.cli(&["restore", bad.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("checksum does not match"));
    assert!(!data_dir(cluster.dir.path(), 1).exists(), "nothing written");

    let restored = json(&cluster.cli(&["restore", file.to_str().unwrap(), "--json"]));
    assert_eq!(restored["digest"], digest);
    for id in 1..=3 {
        cluster.start_node(id);
    }
    cluster.leader().await;
    assert_eq!(cluster.converged().await, digest, "every replica holds the backed-up table");
    assert_eq!(json(&cluster.cli(&["status", "--json"]))["counts"], before);
    // The restored cluster works: keys are remembered, new ids follow the old ones.
    let again = json(&cluster.cli(&["submit", "task data 1", "--key", "k-1", "--json"]));
    assert_eq!(again["ids"], serde_json::json!([1]));
    let fresh = json(&cluster.cli(&["submit", "after the restore", "--json"]));
    assert_eq!(fresh["ids"], serde_json::json!([303]));
    let mut worker = cluster.worker("w2", &["--id", "w2", "--exit-when-done"]);
    assert_eq!(worker.wait(Duration::from_secs(60)).await, Some(0), "{}", cluster.log("w2"));
    eventually(Duration::from_secs(10), "all completed", || async {
        let c = cluster.client().status().await.ok()?.counts;
        (c.completed == 303).then_some(())
    })
    .await;
}
