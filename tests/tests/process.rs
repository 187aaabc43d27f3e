//! Process-level tests: the real `taskraft` binary, the cluster scripts,
//! signals, and the CLI's exit statuses.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use taskraft_core::{Status, TaskId};
use taskraft_proto::auth::Credentials;
use taskraft_tests::process::Proc;
use taskraft_tests::{cluster::FAST, eventually, ProcCluster};

const BIN: &str = env!("CARGO_BIN_EXE_taskraft-under-test");

fn json(out: &std::process::Output) -> Value {
    assert!(out.status.success(), "command failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("json output")
}

fn alive(pid: &str) -> bool {
    Command::new("kill")
        .args(["-0", pid])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn start_and_stop_scripts_manage_exactly_their_masters() {
    let dir = tempfile::tempdir().unwrap();
    let free = || taskraft_tests::process::free_addr();
    let mut text = format!("[cluster]\nname = \"scripted\"\n{FAST}\n");
    for id in 1..=3 {
        text += &format!("[[node]]\nid = {id}\npeer_addr = \"{}\"\nclient_addr = \"{}\"\ndata_dir = \"data/node{id}\"\n", free(), free());
    }
    let config = dir.path().join("cluster.toml");
    std::fs::write(&config, text).unwrap();
    let run = dir.path().join("run");
    let scripts = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts");
    let script = |name: &str| {
        Command::new(format!("{scripts}/{name}"))
            .arg(&config)
            .env("TASKRAFT_BIN", BIN)
            .env("TASKRAFT_RUN", &run)
            .output()
            .unwrap()
    };
    let started = script("start-cluster.sh");
    assert!(started.status.success(), "{}", String::from_utf8_lossy(&started.stderr));
    assert!(String::from_utf8_lossy(&started.stdout).contains("leader node"));
    let pids: Vec<String> = (1..=3)
        .map(|id| {
            std::fs::read_to_string(run.join(format!("pids/node{id}.pid")))
                .unwrap()
                .trim()
                .to_string()
        })
        .collect();
    let status = json(
        &Command::new(BIN).args(["status", "--json", "--config"]).arg(&config).output().unwrap(),
    );
    let members = status["members"].as_array().unwrap();
    assert_eq!(members.len(), 3);
    assert_eq!(members.iter().filter(|m| m["role"] == "leader").count(), 1);
    assert_eq!(
        status["leader"]["id"],
        members.iter().find(|m| m["role"] == "leader").unwrap()["id"]
    );
    assert!(run.join("data/node1").is_dir(), "data_dir is relative to the run folder");

    let stopped = script("stop-cluster.sh");
    assert!(stopped.status.success());
    for pid in &pids {
        assert!(!alive(pid), "pid {pid} survived stop-cluster.sh");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_the_held_task_and_exits_zero() {
    let cluster = ProcCluster::start(BIN, 3, FAST);
    cluster.leader().await;
    let client = cluster.client();
    json(&cluster.cli(&["submit", "--json", "slow one", "never started"]));
    let mut worker = cluster.worker("w01", &["--id", "w01", "--handler", "sleep:2000"]);
    eventually(Duration::from_secs(10), "w01 to hold task 1", || {
        let client = client.clone();
        async move { (client.task(TaskId(1)).await.ok()?.status == Status::InProgress).then_some(()) }
    })
    .await;
    worker.signal("TERM");
    assert_eq!(worker.wait(Duration::from_secs(15)).await, Some(0), "{}", cluster.log("w01"));
    let t1 = client.task(TaskId(1)).await.unwrap();
    assert_eq!(
        (t1.status, t1.attempt.0),
        (Status::Completed, 1),
        "the held task is finished and submitted"
    );
    let t2 = client.task(TaskId(2)).await.unwrap();
    assert_eq!(t2.status, Status::Idle, "no new task is taken after SIGTERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_handler_records_stdout_and_reports_failures_with_stderr() {
    let cluster = ProcCluster::start(BIN, 3, FAST);
    cluster.leader().await;
    json(&cluster.cli(&["submit", "--json", "hello", "bad input"]));
    let script = "read x; case \"$x\" in bad*) echo broken: $x >&2; exit 3;; *) printf %s \"$x\" | tr a-z A-Z;; esac";
    let mut worker = cluster.worker(
        "w01",
        &["--id", "w01", "--exec", script, "--exit-when-done", "--poll-wait", "500ms"],
    );
    assert_eq!(worker.wait(Duration::from_secs(30)).await, Some(0), "{}", cluster.log("w01"));
    let ok = json(&cluster.cli(&["result", "1", "--json"]));
    assert_eq!((ok["status"].as_str(), ok["result"].as_str()), (Some("completed"), Some("HELLO")));
    let bad = json(&cluster.cli(&["result", "2", "--json"]));
    assert_eq!(bad["status"], "dead");
    assert_eq!(bad["attempt"], 3);
    assert!(bad["error"].as_str().unwrap().contains("broken: bad input"), "{bad}");
}

#[test]
fn bad_config_and_usage_exit_2_with_the_field_named() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cluster.toml");
    let node = |id: u32, port: u32| {
        format!("[[node]]\nid = {id}\npeer_addr = \"127.0.0.1:{port}\"\nclient_addr = \"127.0.0.1:{}\"\ndata_dir = \"d{port}\"\n", port + 1)
    };
    std::fs::write(
        &config,
        format!("[cluster]\nname = \"x\"\n{}{}{}", node(1, 9001), node(1, 9003), node(3, 9005)),
    )
    .unwrap();
    let out =
        Command::new(BIN).args(["master", "--id", "1", "--config"]).arg(&config).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("node[1].id: id 1 is used by two nodes"));

    std::fs::write(
        &config,
        format!("[cluster]\nname = \"x\"\n{}{}{}", node(1, 9001), node(2, 9003), node(3, 9005)),
    )
    .unwrap();
    let out =
        Command::new(BIN).args(["master", "--id", "9", "--config"]).arg(&config).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no [[node]] has id 9"));

    // A thread count that is not a number is refused, from the flag or the
    // environment, before anything starts. (With id 9, a master that got
    // past it would exit 2 too, but naming the id, not --threads.)
    for (flag, env) in [(Some("many"), None), (None, Some("-1"))] {
        let mut cmd = Command::new(BIN);
        cmd.args(["master", "--id", "9", "--config"]).arg(&config);
        if let Some(n) = flag {
            cmd.args(["--threads", n]);
        }
        if let Some(n) = env {
            cmd.env("TASKRAFT_MASTER_THREADS", n);
        }
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{flag:?} {env:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("--threads"), "{flag:?} {env:?}");
    }

    let missing = dir.path().join("absent.toml");
    let out = Command::new(BIN)
        .args(["status", "--config"])
        .arg(&missing)
        .env_remove("TASKRAFT_SEEDS")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no seeds"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_sigkill_mid_run_loses_nothing_and_the_node_rejoins() {
    let mut cluster = ProcCluster::start(BIN, 3, FAST);
    cluster.leader().await;
    let client = cluster.client();
    let lines: Vec<String> = (1..=300).map(|i| format!("task {i}")).collect();
    let file = cluster.dir.path().join("tasks.txt");
    std::fs::write(&file, lines.join("\n")).unwrap();
    let submitted = json(&cluster.cli(&["submit", "--json", "--file", file.to_str().unwrap()]));
    assert_eq!(submitted["ids"].as_array().unwrap().len(), 300);
    let workers: Vec<Proc> = (1..=3)
        .map(|i| {
            let id = format!("w0{i}");
            cluster.worker(
                &id,
                &[
                    "--id",
                    &id,
                    "--handler",
                    "sleep:10",
                    "--concurrency",
                    "2",
                    "--exit-when-done",
                    "--poll-wait",
                    "500ms",
                ],
            )
        })
        .collect();
    eventually(Duration::from_secs(30), "progress before the kill", || {
        let client = client.clone();
        async move { (client.status().await.ok()?.counts.completed >= 50).then_some(()) }
    })
    .await;
    let leader = cluster.leader().await;
    cluster.kill(leader);

    for (i, mut w) in workers.into_iter().enumerate() {
        let name = format!("w0{}", i + 1);
        assert_eq!(w.wait(Duration::from_secs(60)).await, Some(0), "{}", cluster.log(&name));
    }
    let page = json(&cluster.cli(&["tasks", "--json", "--limit", "1000"]));
    assert_eq!(page["next_after"], Value::Null, "one page holds them all");
    let tasks = page["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 300, "no task lost");
    assert!(tasks.iter().all(|t| t["status"] == "completed"), "every task completed");
    for t in tasks {
        let id = t["id"].as_u64().unwrap();
        assert_eq!(t["result"].as_str(), Some(format!("processed task {id}").as_str()));
    }

    cluster.start_node(leader);
    eventually(Duration::from_secs(30), "the killed node to catch up", || {
        let client = client.clone();
        async move {
            let s = client.status().await.ok()?;
            let applied: Vec<Option<u64>> = s.members.iter().map(|m| m.last_applied).collect();
            (s.members.iter().all(|m| m.role != "unreachable")
                && applied.windows(2).all(|w| w[0] == w[1]))
            .then_some(())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_worker_processes_serve_the_origin_tasks_across_a_leader_kill() {
    let mut cluster = ProcCluster::start(BIN, 3, FAST);
    cluster.leader().await;
    let client = cluster.client();
    let free = || taskraft_tests::process::free_addr();
    let upper = "sleep 0.05; tr a-z A-Z";
    let _workers: Vec<Proc> = ["w1", "w2"]
        .iter()
        .map(|id| {
            cluster.worker(
                id,
                &["--push", "--listen", &free(), "--id", id, "--exec", upper, "--concurrency", "2"],
            )
        })
        .collect();
    eventually(Duration::from_secs(20), "two healthy push workers", || {
        let client = client.clone();
        async move {
            (client.status().await.ok()?.workers.iter().filter(|w| w.healthy).count() == 2)
                .then_some(())
        }
    })
    .await;
    let origin = [
        "hello world",
        "go rpc is simple",
        "learn by example",
        "concurrency is fun",
        "master worker pattern",
    ];
    json(&cluster.cli(&[&["submit", "--json"][..], &origin[..]].concat()));
    let more: Vec<String> = (1..=60).map(|i| format!("more task {i}")).collect();
    let more_refs: Vec<&str> = more.iter().map(String::as_str).collect();
    json(&cluster.cli(&[&["submit", "--json"][..], &more_refs[..]].concat()));
    eventually(Duration::from_secs(30), "progress", || {
        let client = client.clone();
        async move { (client.status().await.ok()?.counts.completed >= 10).then_some(()) }
    })
    .await;
    let leader = cluster.leader().await;
    cluster.kill(leader);
    let tasks = eventually(Duration::from_secs(60), "all 65 completed", || {
        let client = client.clone();
        async move {
            let t = client.all_tasks(None).await.ok()?;
            (t.len() == 65 && t.iter().all(|t| t.status == Status::Completed)).then_some(t)
        }
    })
    .await;
    for t in &tasks {
        assert_eq!(t.result.as_deref(), Some(&t.data.to_ascii_uppercase()[..]), "task {}", t.id);
    }
    let status = json(&cluster.cli(&["status", "--json"]));
    assert_eq!(status["workers"].as_array().unwrap().len(), 2, "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_or_missing_token_is_refused_and_changes_nothing() {
    let cluster = ProcCluster::start(BIN, 3, &format!("{FAST}\ntoken = \"s3cret\""));
    let leader = cluster.leader().await; // the harness client reads the token from the config
    let seeds = cluster.config.seeds().join(",");
    for token in [None, Some("wrong")] {
        let mut cmd = Command::new(BIN);
        cmd.args(["submit", "x", "--seeds", &seeds]).env_remove("TASKRAFT_TOKEN");
        if let Some(t) = token {
            cmd.env("TASKRAFT_TOKEN", t);
        }
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(1), "token {token:?} must be refused");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("wrong or missing cluster token"), "{stderr}");
    }
    // A peer without the token is refused on the Raft port too.
    let peer = &cluster.config.node(leader).unwrap().peer_addr;
    let mut raw = tokio::net::TcpStream::connect(peer).await.unwrap();
    let err =
        taskraft_proto::auth::offer(&mut raw, &Credentials::new("guess"), 1).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied);
    // With the token but a node id that is not a member: refused too.
    let mut raw = tokio::net::TcpStream::connect(peer).await.unwrap();
    let err =
        taskraft_proto::auth::offer(&mut raw, &Credentials::new("s3cret"), 99).await.unwrap_err();
    assert!(err.to_string().contains("node 99 is not a member"), "{err}");

    let status = json(&cluster.cli(&["status", "--json"]));
    assert_eq!(status["counts"]["idle"], 0, "a refused submit changed the table");
    let with_token = Command::new(BIN)
        .args(["submit", "y", "--seeds", &seeds])
        .env("TASKRAFT_TOKEN", "s3cret")
        .output()
        .unwrap();
    assert!(with_token.status.success(), "{}", String::from_utf8_lossy(&with_token.stderr));
    let log = cluster.log(&format!("node{leader}"));
    assert!(
        log.contains("connection refused") && log.contains("wrong or missing cluster token"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_cluster_serves_clients_with_the_ca_and_refuses_others() {
    let tls = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/tls");
    let extra = format!(
        "{FAST}\ntoken = \"t0ken\"\ntls_ca = \"{tls}/ca.pem\"\ntls_cert = \"{tls}/node.pem\"\ntls_key = \"{tls}/node.key\""
    );
    let cluster = ProcCluster::start(BIN, 3, &extra);
    cluster.leader().await; // over TLS, with the config's CA and token
    json(&cluster.cli(&["submit", "--json", "over tls"]));
    let mut worker = cluster.worker(
        "w01",
        &["--id", "w01", "--handler", "upper", "--exit-when-done", "--poll-wait", "500ms"],
    );
    assert_eq!(worker.wait(Duration::from_secs(30)).await, Some(0), "{}", cluster.log("w01"));
    assert_eq!(json(&cluster.cli(&["result", "1", "--json"]))["result"], "OVER TLS");

    let seeds = cluster.config.seeds().join(",");
    let other_ca = format!("{tls}/other-ca.pem");
    let untrusted = Command::new(BIN)
        .args(["status", "--seeds", &seeds, "--retry-for", "2s"])
        .env("TASKRAFT_TOKEN", "t0ken")
        .env("TASKRAFT_TLS_CA", &other_ca)
        .output()
        .unwrap();
    assert_eq!(untrusted.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&untrusted.stderr).contains("tls with"),
        "{}",
        String::from_utf8_lossy(&untrusted.stderr)
    );
    let plaintext = Command::new(BIN)
        .args(["status", "--seeds", &seeds, "--retry-for", "2s"])
        .env("TASKRAFT_TOKEN", "t0ken")
        .env_remove("TASKRAFT_TLS_CA")
        .output()
        .unwrap();
    assert_eq!(plaintext.status.code(), Some(1), "a plaintext client must not be served");
    let log = cluster.log(&format!("node{}", cluster.leader().await));
    assert!(log.contains("connection refused") && log.contains("tls"), "{log}");
}
