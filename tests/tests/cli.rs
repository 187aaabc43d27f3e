//! The CLI as a new user meets it: credentials from the config whatever
//! supplies the seeds, a `status` that diagnoses a dead cluster at once,
//! quiet retries, and `cancel`.

use std::process::Command;
use std::time::{Duration, Instant};

use taskraft_tests::{cluster::FAST, config_text, Ports, ProcCluster};

const BIN: &str = env!("CARGO_BIN_EXE_taskraft-under-test");

fn text(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configs_token_applies_when_seeds_come_from_elsewhere() {
    let cluster = ProcCluster::start(BIN, 3, &format!("{FAST}\ntoken = \"s3cret\""));
    cluster.leader().await;
    let seeds = cluster.config.seeds().join(",");
    // --seeds and --config: the token comes from the config.
    let out = cluster.cli(&["status", "--seeds", &seeds]);
    assert!(out.status.success(), "{}", text(&out));
    // TASKRAFT_SEEDS and --config, likewise.
    let out = Command::new(BIN)
        .args(["status", "--config"])
        .arg(&cluster.config_path)
        .env("TASKRAFT_SEEDS", &seeds)
        .env_remove("TASKRAFT_TOKEN")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    // Seeds without any config (none in this directory) and no token: refused.
    let out = Command::new(BIN)
        .args(["status", "--seeds", &seeds, "--retry-for", "1s"])
        .env_remove("TASKRAFT_TOKEN")
        .env_remove("TASKRAFT_CONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
}

#[test]
fn status_of_a_cluster_that_is_down_answers_at_once_node_by_node() {
    let dir = tempfile::tempdir().unwrap();
    let addrs: Vec<Ports> = (0..3).map(|_| Ports::free()).collect();
    let config = dir.path().join("cluster.toml");
    std::fs::write(&config, config_text("down", dir.path(), &addrs, FAST)).unwrap();
    let started = Instant::now();
    let out = Command::new(BIN).arg("status").arg("--config").arg(&config).output().unwrap();
    // Far below the 30 s a call retries for: the answer does not wait for a leader.
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.matches("refused").count(), 3, "{stdout}");
    for Ports { client, .. } in &addrs {
        assert!(stdout.contains(client.as_str()), "{stdout}");
    }
    let out =
        Command::new(BIN).args(["status", "--json", "--config"]).arg(&config).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["leader"].is_null() && v["nodes"].as_array().unwrap().len() == 3, "{v}");

    // A command that retries warns at most every few seconds, and never with --quiet.
    let run = |quiet: bool| {
        let mut cmd = Command::new(BIN);
        cmd.args(["tasks", "--retry-for", "6s", "--config"]).arg(&config).env_remove("RUST_LOG");
        if quiet {
            cmd.arg("--quiet");
        }
        String::from_utf8_lossy(&cmd.output().unwrap().stderr).matches("WARN").count()
    };
    let warnings = run(false);
    assert!((1..=2).contains(&warnings), "{warnings} warnings in 6 s");
    assert_eq!(run(true), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_ends_unfinished_tasks_and_names_the_missing_ones() {
    let cluster = ProcCluster::start(BIN, 3, FAST);
    cluster.leader().await;
    assert!(cluster.cli(&["submit", "a", "b"]).status.success());
    let out = cluster.cli(&["cancel", "1", "99"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let printed = text(&out);
    assert!(printed.contains("1 cancelled") && printed.contains("99 not found"), "{printed}");
    let task = cluster.client().task(taskraft_core::TaskId(1)).await.unwrap();
    assert_eq!(task.status, taskraft_core::Status::Cancelled);
    assert_eq!(task.error.as_deref(), Some("cancelled"));
    // Again: already finished, left as it is; task 2 untouched.
    let out = cluster.cli(&["cancel", "1", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["already_finished"], serde_json::json!([1]), "{v}");
    let task = cluster.client().task(taskraft_core::TaskId(2)).await.unwrap();
    assert_eq!(task.status, taskraft_core::Status::Idle);
    // Retry brings the cancelled task back; an idle one is left as it is.
    let out = cluster.cli(&["retry", "1", "2", "--max-attempts", "2"]);
    let printed = text(&out);
    assert!(printed.contains("1 queued again") && printed.contains("2 neither"), "{printed}");
    let task = cluster.client().task(taskraft_core::TaskId(1)).await.unwrap();
    assert_eq!((task.status, task.max_attempts), (taskraft_core::Status::Idle, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_prints_plain_progress_lines_off_a_terminal_and_logs_can_be_json() {
    let cluster = ProcCluster::start(BIN, 3, FAST);
    cluster.leader().await;
    assert!(cluster.cli(&["submit", "a", "b", "c"]).status.success());
    let mut worker = cluster.worker(
        "w01",
        &["--id", "w01", "--handler", "sleep:300", "--exit-when-done", "--log-format", "json"],
    );
    let out = cluster.cli(&["wait", "--timeout", "60s"]);
    assert!(out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(lines.len() >= 2, "one line per change: {stderr}");
    assert!(lines.last().unwrap().starts_with("3/3 done (3 completed"), "{stderr}");
    assert!(!stderr.contains('\r'), "no terminal control off a terminal: {stderr:?}");
    worker.wait(Duration::from_secs(20)).await;
    // On a terminal (script(1) gives it one): a progress bar, redrawn in place.
    assert!(cluster.cli(&["submit", "d", "e"]).status.success());
    let _w2 = cluster.worker("w02", &["--id", "w02", "--handler", "sleep:300", "--exit-when-done"]);
    let wait = format!("{BIN} wait --timeout 60s --config {}", cluster.config_path.display());
    let out = Command::new("script").args(["-qec", &wait, "/dev/null"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let tty = String::from_utf8_lossy(&out.stdout);
    // (A pty turns every newline into \r\n: the escape codes tell the bar.)
    assert!(tty.contains("5/5 done") && tty.contains('\u{1b}'), "{tty:?}");
    assert!(!tty.contains("done ("), "no plain lines on a terminal: {tty:?}");
    // Every line the worker logged is one JSON object.
    let log = cluster.log("w01");
    assert!(!log.is_empty());
    for line in log.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v["level"].is_string() && v["fields"].is_object(), "{line}");
    }
}

/// Masters that accept but do not answer (SIGSTOPped) are named `timeout`,
/// a dead one `refused`; `status` still answers within one call timeout
/// (1.5 s to connect, 1.5 s to answer) and exits 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_names_stopped_masters_timeout_and_answers_within_seconds() {
    let mut cluster = ProcCluster::start(BIN, 3, FAST);
    cluster.leader().await;
    cluster.kill(3);
    cluster.node(1).signal("STOP");
    cluster.node(2).signal("STOP");
    let started = Instant::now();
    let out = cluster.cli(&["status"]);
    let took = started.elapsed();
    cluster.node(1).signal("CONT");
    cluster.node(2).signal("CONT");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(took < Duration::from_secs(6), "took {took:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.matches("timeout").count(), 2, "{stdout}");
    assert_eq!(stdout.matches("refused").count(), 1, "{stdout}");
}

/// `--log-format json` on a master: every line it logs is one JSON object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_logs_json_lines_with_log_format_json() {
    let mut cluster = ProcCluster::start(BIN, 3, FAST);
    cluster.leader().await;
    cluster.kill(3);
    std::fs::remove_file(cluster.log_path("node3")).unwrap();
    cluster.start_node_with(3, &[], &["--log-format", "json"]);
    cluster.converged().await;
    let log = cluster.log("node3");
    assert!(log.lines().count() >= 2, "{log}");
    for line in log.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v["level"].is_string() && v["fields"].is_object(), "{line}");
    }
}
