//! Delayed tasks and retry backoff on real master processes: a delayed task
//! is never leased before it is due and is leased soon after, also when the
//! leader that scheduled it is SIGKILLed meanwhile; a failing handler's
//! attempts are spaced by the backoff.

use std::time::Duration;

use taskraft_core::{NewTask, Status, TaskId, WorkerId};
use taskraft_proto::client::Assignment;
use taskraft_tests::cluster::FAST;
use taskraft_tests::{eventually, ProcCluster};

const BIN: &str = env!("CARGO_BIN_EXE_taskraft-under-test");

/// How late after its due time a task may be leased: the waker sleeps
/// until the due time and proposes at once.
const PROMPT_MS: u64 = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_task_is_leased_when_due_not_before_across_a_leader_kill() {
    let mut cluster = ProcCluster::start(BIN, 3, FAST);
    let leader = cluster.leader().await;
    let client = cluster.client();
    let delayed = |data: &str, delay_ms| NewTask {
        data: data.as_bytes().to_vec(),
        delay_ms,
        ..Default::default()
    };
    let ids = client
        .submit(vec![delayed("soon", 2500), delayed("later", 4500), delayed("now", 0)])
        .await
        .expect("submit");
    let status = client.status().await.expect("status");
    assert_eq!((status.counts.scheduled, status.counts.idle), (2, 1), "{:?}", status.counts);

    // A worker asks for everything: only the task without a delay comes.
    let worker = WorkerId("w".into());
    let first = client.request(&worker, 10, Duration::from_millis(10)).await.expect("request");
    let Assignment::Leased { tasks, .. } = first else { panic!("{first:?}") };
    assert_eq!(tasks.iter().map(|t| t.lease.task).collect::<Vec<_>>(), vec![ids[2].id]);
    client.complete(tasks[0].lease, &worker, b"done".to_vec()).await.expect("complete");

    // The leader that scheduled them dies before either is due.
    cluster.kill(leader);
    for want in [ids[0].id, ids[1].id] {
        let got = loop {
            match client.request(&worker, 1, Duration::from_secs(10)).await.expect("request") {
                Assignment::Leased { tasks, .. } => break tasks[0].lease,
                _ => continue,
            }
        };
        let task = client.task(got.task).await.expect("task");
        client.complete(got, &worker, b"done".to_vec()).await.expect("complete");
        let got = got.task;
        assert_eq!(got, want, "due order");
        let start = task.lease_start_ms.expect("leased");
        let due = task.submitted_ms + if got == ids[0].id { 2500 } else { 4500 };
        assert!(start >= due, "task {got} leased {} ms before it was due", due - start);
        assert!(start <= due + PROMPT_MS, "task {got} leased {} ms after it was due", start - due);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_handler_is_retried_after_a_growing_backoff_across_a_leader_kill() {
    let mut cluster = ProcCluster::start(BIN, 3, FAST);
    let leader = cluster.leader().await;
    let starts = cluster.log_path("starts");
    let out = cluster
        .cli_ok(&[
            "submit",
            "--max-attempts",
            "4",
            "--retry-base",
            "300ms",
            "--retry-max",
            "900ms",
            "flaky",
        ])
        .await;
    let id: u64 = out.trim().parse().expect("an id");
    // Each attempt notes when it started, then fails.
    let exec = format!("date +%s%3N >> {}; exit 3", starts.display());
    let _worker = cluster.worker("w1", &["--id", "w1", "--exec", &exec, "--poll-wait", "5s"]);
    let client = cluster.client();
    // The leader that scheduled the second attempt dies while it backs off.
    eventually(Duration::from_secs(20), "the first attempt", || {
        let starts = starts.clone();
        async move { std::fs::read_to_string(&starts).ok().filter(|s| s.lines().count() == 1) }
    })
    .await;
    cluster.kill(leader);
    let task = eventually(Duration::from_secs(30), "the task dead after 4 attempts", || {
        let client = client.clone();
        async move { client.task(TaskId(id)).await.ok().filter(|t| t.status == Status::Dead) }
    })
    .await;
    assert_eq!(task.attempt.0, 4);
    let times: Vec<u64> = std::fs::read_to_string(&starts)
        .unwrap()
        .lines()
        .map(|l| l.trim().parse().expect("a time in ms"))
        .collect();
    assert_eq!(times.len(), 4, "{times:?}");
    // Nominal waits after attempts 1, 2, 3: 300, 600, then 900 (the cap).
    for (gap, nominal) in times.windows(2).map(|w| w[1] - w[0]).zip([300u64, 600, 900]) {
        assert!(gap >= nominal, "attempts {gap} ms apart; the backoff is {nominal} ms: {times:?}");
        // The jitter adds up to a quarter; the rest is the handler, the lease
        // round trips and, once, the election.
        assert!(gap <= nominal + nominal / 4 + 1500, "attempts {gap} ms apart: {times:?}");
    }
}

/// Whether process `pid` still exists.
fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

/// Whether any process of group `pgid` is still running (zombies, which
/// an init that does not reap may keep around, do not count).
fn group_alive(pgid: i32) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else { return true };
    dir.flatten().any(|e| {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else { return false };
        // After the command name in parentheses: state, ppid, pgrp, ...
        let Some((_, rest)) = stat.rsplit_once(')') else { return false };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        fields.len() > 2 && fields[0] != "Z" && fields[2] == pgid.to_string()
    })
}

/// Cancelling a running `--exec` task stops its command (SIGTERM, then
/// SIGKILL after the grace period for one that ignores SIGTERM), also when
/// the leader that took the cancel is SIGKILLed right after; the task ends
/// cancelled, and the worker goes on with the next task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_running_exec_task_stops_its_command_across_a_leader_kill() {
    let mut cluster = ProcCluster::start(BIN, 3, FAST);
    let leader = cluster.leader().await;
    let client = cluster.client();
    let pid_file = cluster.log_path("pid");
    // The first task ignores SIGTERM; the second one is ordinary.
    let exec = format!(
        "if [ \"$(cat)\" = stubborn ]; then echo $$ > {}; trap '' TERM; while true; do sleep 0.05; done; else echo ok; fi",
        pid_file.display()
    );
    client
        .submit(vec![
            NewTask { data: b"stubborn".to_vec(), ..Default::default() },
            NewTask { data: b"next".to_vec(), ..Default::default() },
        ])
        .await
        .expect("submit");
    let _worker = cluster.worker("w1", &["--id", "w1", "--exec", &exec, "--kill-grace", "1s"]);
    let pid: i32 = eventually(Duration::from_secs(20), "the command started", || {
        let pid_file = pid_file.clone();
        async move { std::fs::read_to_string(&pid_file).ok()?.trim().parse().ok() }
    })
    .await;
    assert!(alive(pid));

    let outcomes = client.cancel(vec![TaskId(1)]).await.expect("cancel");
    assert_eq!(outcomes, vec![taskraft_core::Outcome::Accepted]);
    cluster.kill(leader);
    let started = std::time::Instant::now();
    eventually(Duration::from_secs(15), "the command killed", || async move {
        (!group_alive(pid)).then_some(())
    })
    .await;
    // SIGTERM was ignored: it took the grace period (1 s) to end it, and
    // no more than the next extension, the failover and the grace.
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(900), "{took:?}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    let task = client.task(TaskId(1)).await.expect("task");
    assert_eq!((task.status, task.result), (Status::Cancelled, None));
    let next = eventually(Duration::from_secs(20), "the next task completed", || {
        let client = client.clone();
        async move { client.task(TaskId(2)).await.ok().filter(|t| t.status == Status::Completed) }
    })
    .await;
    assert_eq!(next.result.as_deref(), Some(&b"ok\n"[..]));
    assert!(cluster.log("w1").contains("task cancelled; handler stopped"), "{}", cluster.log("w1"));
}

/// `--exec 'sleep 60'` cancelled while the leader is SIGKILLed: its process
/// group ends by SIGTERM, long before the (30 s) grace period would force
/// it, and the task is `cancelled` with no result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_running_sleep_60_ends_it_by_sigterm_within_the_grace_period() {
    let mut cluster = ProcCluster::start(BIN, 3, FAST);
    let leader = cluster.leader().await;
    let client = cluster.client();
    let pid_file = cluster.log_path("pid");
    let exec = format!("echo $$ > {}; sleep 60", pid_file.display());
    client.submit(vec![NewTask { data: b"x".to_vec(), ..Default::default() }]).await.unwrap();
    let _worker = cluster.worker("w1", &["--id", "w1", "--exec", &exec, "--kill-grace", "30s"]);
    let pid: i32 = eventually(Duration::from_secs(20), "the command started", || {
        let pid_file = pid_file.clone();
        async move { std::fs::read_to_string(&pid_file).ok()?.trim().parse().ok() }
    })
    .await;
    assert!(group_alive(pid));
    let started = std::time::Instant::now();
    assert_eq!(
        client.cancel(vec![TaskId(1)]).await.unwrap(),
        vec![taskraft_core::Outcome::Accepted]
    );
    cluster.kill(leader);
    eventually(Duration::from_secs(25), "the command stopped", || async move {
        (!group_alive(pid)).then_some(())
    })
    .await;
    // The next extension (every 500 ms) after the failover learns it; the
    // 30 s grace was not needed.
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    let task = eventually(Duration::from_secs(20), "the task cancelled", || {
        let client = client.clone();
        async move { client.task(TaskId(1)).await.ok().filter(|t| t.status == Status::Cancelled) }
    })
    .await;
    assert_eq!(task.result, None);
}

/// `submit --delay` and `--at` from the command line: the tasks are
/// `scheduled` in `status --json` and carry their due time; a bad time is
/// bad usage and submits nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_delay_and_at_schedule_tasks_from_the_command_line() {
    let cluster = ProcCluster::start(BIN, 3, FAST);
    cluster.leader().await;
    let now_ms = || {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()
            as u64
    };
    let before = now_ms();
    cluster.cli_ok(&["submit", "--delay", "30s", "delayed"]).await;
    // Two days ahead, to the second, written by date(1) as RFC 3339.
    let at_s = before / 1000 + 2 * 86_400;
    let at = std::process::Command::new("date")
        .args(["-u", "-d", &format!("@{at_s}"), "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .expect("date");
    let at = String::from_utf8(at.stdout).unwrap();
    cluster.cli_ok(&["submit", "--at", at.trim(), "at"]).await;
    let bad = cluster.cli(&["submit", "--at", "tomorrow", "never"]);
    assert_eq!(bad.status.code(), Some(2), "{}", String::from_utf8_lossy(&bad.stderr));
    let status: serde_json::Value =
        serde_json::from_str(&cluster.cli_ok(&["status", "--json"]).await).unwrap();
    assert_eq!(status["counts"]["scheduled"], 2, "{status}");
    assert_eq!(status["counts"]["idle"], 0, "{status}");
    let page: serde_json::Value =
        serde_json::from_str(&cluster.cli_ok(&["tasks", "--status", "scheduled", "--json"]).await)
            .unwrap();
    let tasks = page["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 2, "{page}");
    let due = tasks[0]["due_ms"].as_u64().unwrap();
    assert!(due >= before + 30_000 && due <= now_ms() + 30_000, "{page}");
    assert_eq!(tasks[1]["due_ms"], at_s * 1000, "{page}");
    assert_eq!(tasks[1]["queue"], "default", "{page}");
}
