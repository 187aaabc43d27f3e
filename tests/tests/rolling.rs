//! `scripts/rolling-restart.sh` on a cluster started by
//! `scripts/start-cluster.sh`, under a drain: the scripts an operator runs,
//! with the checker holding the final table against what was acknowledged
//! and answered. The longest window without an acknowledged write is
//! printed (a figure, not an assertion).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use taskraft_client::{Client, ClientOptions};
use taskraft_core::NewTask;
use taskraft_proto::ClusterConfig;
use taskraft_tests::story::Load;
use taskraft_tests::{cluster::FAST, config_text, eventually, output_ok, Ports};

const BIN: &str = env!("CARGO_BIN_EXE_taskraft-under-test");

/// A cluster run by the scripts; stopped with `scripts/stop-cluster.sh` on drop.
struct Scripted {
    run: PathBuf,
    config: PathBuf,
}

fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts")
}

impl Scripted {
    async fn script(&self, name: &str) -> String {
        let mut cmd = tokio::process::Command::new("bash");
        cmd.arg(scripts().join(name))
            .arg(&self.config)
            .env("TASKRAFT_BIN", BIN)
            .env("TASKRAFT_RUN", &self.run);
        output_ok(&mut cmd, name).await
    }
}

impl Drop for Scripted {
    fn drop(&mut self) {
        let _ = std::process::Command::new("bash")
            .arg(scripts().join("stop-cluster.sh"))
            .env("TASKRAFT_RUN", &self.run)
            .output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_under_a_drain_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let addrs: Vec<Ports> = (0..3).map(|_| Ports::free()).collect();
    let config_path = dir.path().join("cluster.toml");
    std::fs::write(&config_path, config_text("rolling", dir.path(), &addrs, FAST)).unwrap();
    let cluster = Scripted { run: dir.path().join("run"), config: config_path.clone() };
    cluster.script("start-cluster.sh").await;

    let config = ClusterConfig::load(&config_path).unwrap();
    let options = ClientOptions { retry_for: Duration::from_secs(20), ..ClientOptions::default() };
    let client = Arc::new(Client::with_options(config.seeds(), options));
    let mut load = Load::start(client.clone(), 4000).await;
    load.spawn_workers_on(&client, &["w01", "w02", "w03"], Duration::from_millis(10));
    load.completed_at_least(100).await;

    // A keyed submit every 10 ms; the longest time between two acknowledgements.
    let stop = Arc::new(AtomicBool::new(false));
    let prober = tokio::spawn({
        let (client, stop) = (client.clone(), stop.clone());
        async move {
            let (mut last, mut longest, mut i) = (Instant::now(), Duration::ZERO, 0u64);
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let task = NewTask {
                    data: b"probe".to_vec(),
                    key: Some(format!("probe-{i}")),
                    priority: 0,
                    max_attempts: 0,
                    ..Default::default()
                };
                if client.submit(vec![task]).await.is_ok() {
                    longest = longest.max(last.elapsed());
                    last = Instant::now();
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            longest
        }
    });

    let out = cluster.script("rolling-restart.sh").await;
    assert_eq!(out.matches("restarting node").count(), 3, "{out}");
    stop.store(true, Ordering::Relaxed);
    let longest = prober.await.unwrap();
    println!(
        "rolling restart of 3 masters: longest window without an acknowledged write {longest:?}"
    );

    // Probes submitted after the workers drained are picked up by one more worker.
    load.spawn_workers_on(&client, &["w04"], Duration::ZERO);
    load.finish().await;
    eventually(Duration::from_secs(30), "replicas to converge", || async {
        let mut reports = Vec::new();
        for seed in config.seeds() {
            reports.push(client.node_report_at(&seed).await.ok()?);
        }
        let same = reports
            .windows(2)
            .all(|w| w[0].digest == w[1].digest && w[0].last_applied == w[1].last_applied);
        same.then_some(())
    })
    .await;
}
