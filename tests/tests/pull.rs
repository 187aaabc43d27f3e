//! The pull protocol against an in-process cluster on real sockets: the
//! origin's timeout scenario, redirects, lease extension, retries to dead,
//! and the fencing answers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use taskraft_client::{Client, ClientError, ClientOptions};
use taskraft_core::{Attempt, Lease, NewTask, Outcome, Status, TaskId, WorkerId};
use taskraft_proto::client::Assignment;
use taskraft_proto::WireError;
use taskraft_tests::{eventually, task, TestCluster};
use taskraft_worker::{handler, Handler, Summary, Worker, WorkerOptions};
use tokio_util::sync::CancellationToken;

fn options(extend: bool) -> WorkerOptions {
    WorkerOptions {
        concurrency: 1,
        extend,
        exit_when_done: true,
        poll_wait: Duration::from_millis(500),
        ..Default::default()
    }
}

fn spawn_worker(
    client: Arc<Client>,
    id: &str,
    opts: WorkerOptions,
    h: Handler,
) -> tokio::task::JoinHandle<Summary> {
    let worker = Worker::new(client, WorkerId(id.into()), opts);
    tokio::spawn(async move { worker.run(h, CancellationToken::new()).await.expect("worker") })
}

/// The origin's handler: 1 s per task, and w01 stalls on task 3 for lease + 2 s.
fn origin_handler(stall_on_3: Option<Duration>) -> Handler {
    Arc::new(move |id, _| {
        Box::pin(async move {
            let pause = match stall_on_3 {
                Some(stall) if id == TaskId(3) => stall,
                _ => Duration::from_secs(1),
            };
            tokio::time::sleep(pause).await;
            Ok(format!("processed task {id}").into_bytes())
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_scenario_late_result_after_expiry_is_stale_and_all_complete_once() {
    let lease = "lease_timeout_ms = 3000\nscan_interval_ms = 200\nheartbeat_interval_ms = 50\nelection_timeout_ms = [200, 500]";
    let cluster = TestCluster::start_with(3, lease).await;
    cluster.leader().await;
    let client = cluster.client();
    let data: Vec<NewTask> = (1..=5).map(|i| task(&format!("task data {i}"))).collect();
    client.submit(data).await.unwrap();

    // w01 alone first, so that it is the one holding task 3 when it stalls.
    let stall = Duration::from_millis(3000 + 2000);
    let w01 = spawn_worker(client.clone(), "w01", options(false), origin_handler(Some(stall)));
    eventually(Duration::from_secs(10), "w01 to hold task 3", || {
        let client = client.clone();
        async move {
            let t = client.task(TaskId(3)).await.ok()?;
            (t.status == Status::InProgress && t.worker == Some(WorkerId("w01".into())))
                .then_some(())
        }
    })
    .await;
    let w02 = spawn_worker(client.clone(), "w02", options(false), origin_handler(None));

    let (s01, s02) = (w01.await.unwrap(), w02.await.unwrap());
    assert_eq!(s01.fenced, 1, "w01's late result for task 3 must be answered Stale");
    assert_eq!(s01.completed + s02.completed, 5, "every task completed exactly once");

    let tasks = client.all_tasks(None).await.unwrap();
    assert!(tasks.iter().all(|t| t.status == Status::Completed));
    let t3 = &tasks[2];
    assert_eq!(t3.worker, Some(WorkerId("w02".into())));
    assert_eq!(t3.attempt, Attempt(2));
    assert_eq!(t3.result.as_deref(), Some(&b"processed task 3"[..]));
    cluster.converged().await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_seeded_only_with_a_follower_still_works() {
    let cluster = TestCluster::start(3).await;
    let leader = cluster.leader().await;
    let follower = cluster.running().into_iter().find(|id| *id != leader).unwrap();
    let client = cluster.client_of(follower);
    client.submit((0..10).map(|i| task(&format!("t{i}"))).collect()).await.unwrap();
    let summary =
        spawn_worker(client.clone(), "w01", options(true), handler::upper()).await.unwrap();
    assert_eq!(summary.completed, 10);
    let done = client.all_tasks(Some(Status::Completed)).await.unwrap();
    assert_eq!(done[0].result.as_deref(), Some(&b"T0"[..]));
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_lease_outlives_its_timeout_and_is_never_redelivered() {
    let cluster = TestCluster::start(3).await; // lease 1.5 s
    cluster.leader().await;
    let client = cluster.client();
    client.submit(vec![task("long")]).await.unwrap();
    let slow = handler::sleep(Duration::from_millis(4000)); // > 2.5 leases
    let w01 = spawn_worker(client.clone(), "w01", options(true), slow);
    eventually(Duration::from_secs(10), "w01 to hold the task", || {
        let client = client.clone();
        async move { (client.task(TaskId(1)).await.ok()?.status == Status::InProgress).then_some(()) }
    })
    .await;
    // A second, idle worker would receive the task if its lease expired.
    let w02 = spawn_worker(client.clone(), "w02", options(true), handler::echo());
    let (s01, s02) = (w01.await.unwrap(), w02.await.unwrap());
    assert_eq!((s01.completed, s01.fenced, s02.completed), (1, 0, 0));
    let t = client.task(TaskId(1)).await.unwrap();
    assert_eq!((t.status, t.attempt), (Status::Completed, Attempt(1)));
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_task_is_retried_until_max_attempts_then_dead_with_its_error() {
    let cluster = TestCluster::start(3).await; // max_attempts 3
    cluster.leader().await;
    let client = cluster.client();
    client.submit(vec![task("doomed")]).await.unwrap();
    let failing = handler::exec("echo disk full >&2; exit 1".into());
    let summary = spawn_worker(client.clone(), "w01", options(true), failing).await.unwrap();
    assert_eq!(summary.failed, 3);
    let t = client.task(TaskId(1)).await.unwrap();
    assert_eq!((t.status, t.attempt), (Status::Dead, Attempt(3)));
    assert!(t.error.as_deref().unwrap().contains("disk full"), "{:?}", t.error);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fencing_answers_change_nothing() {
    let cluster = TestCluster::start(3).await;
    let leader = cluster.leader().await;
    let client = cluster.client();
    client.submit(vec![task("a")]).await.unwrap();
    let w = WorkerId("w01".into());
    let Assignment::Leased { tasks, .. } = client.request(&w, 1, Duration::ZERO).await.unwrap()
    else {
        panic!("expected a lease")
    };
    let lease = tasks[0].lease;
    let before = cluster.digest(leader);
    let unknown = Lease { task: TaskId(99), attempt: Attempt(1) };
    let wrong_attempt = Lease { attempt: Attempt(2), ..lease };
    let other = WorkerId("w02".into());
    assert_eq!(client.complete(unknown, &w, b"x".to_vec()).await.unwrap(), Outcome::NotFound);
    assert_eq!(client.complete(wrong_attempt, &w, b"x".to_vec()).await.unwrap(), Outcome::Stale);
    assert_eq!(client.complete(lease, &other, b"x".to_vec()).await.unwrap(), Outcome::Stale);
    assert_eq!(client.extend(lease, &other).await.unwrap(), Outcome::Stale);
    assert_eq!(cluster.digest(leader), before, "refused lease calls changed the table");
    assert_eq!(client.complete(lease, &w, b"ok".to_vec()).await.unwrap(), Outcome::Accepted);
    let after = cluster.digest(leader);
    assert_eq!(client.complete(lease, &w, b"again".to_vec()).await.unwrap(), Outcome::Duplicate);
    assert_eq!(client.fail(lease, &w, "late".into()).await.unwrap(), Outcome::Duplicate);
    assert_eq!(cluster.digest(leader), after);
    assert_eq!(client.task(TaskId(1)).await.unwrap().result.as_deref(), Some(&b"ok"[..]));
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complete_and_request_records_then_leases_in_one_call_and_is_fenced_alike() {
    let cluster = TestCluster::start(3).await;
    let leader = cluster.leader().await;
    let client = cluster.client();
    client.submit(vec![task("a"), task("b"), task("c")]).await.unwrap();
    let (w, other) = (WorkerId("w01".into()), WorkerId("w02".into()));
    let Assignment::Leased { tasks, .. } = client.request(&w, 2, Duration::ZERO).await.unwrap()
    else {
        panic!("expected leases")
    };
    let (first, second) = (tasks[0].lease, tasks[1].lease);

    // Bad input is refused before anything is proposed.
    let before = cluster.digest(leader);
    let invalid = |r: Result<_, ClientError>| match r {
        Err(ClientError::Refused(WireError::Invalid(m))) => m,
        other => panic!("expected Invalid, got {other:?}"),
    };
    let m = invalid(client.complete_and_request(&w, vec![], 0).await);
    assert!(m.contains("no results"), "{m}");
    let m = invalid(client.complete_and_request(&w, vec![(first, b"x".to_vec())], 257).await);
    assert!(m.contains("asked for 257 tasks"), "{m}");
    let big = vec![(first, b"A".to_vec()), (second, vec![0; 5000])];
    let m = invalid(client.complete_and_request(&w, big, 1).await);
    assert!(m.contains("result #2") && m.contains("max_payload_bytes"), "{m}");
    let many = vec![(first, b"x".to_vec()); 257];
    let m = invalid(client.complete_and_request(&w, many, 1).await);
    assert!(m.contains("257 results"), "{m}");
    assert_eq!(cluster.digest(leader), before, "a refused call changed the table");

    // Both results are recorded and the last idle task leased, in one call;
    // a repeated result in the same call is answered Duplicate.
    let results = vec![(first, b"A".to_vec()), (second, b"B".to_vec()), (first, b"A2".to_vec())];
    let (outcomes, next) = client.complete_and_request(&w, results, 4).await.unwrap();
    assert_eq!(outcomes, [Outcome::Accepted, Outcome::Accepted, Outcome::Duplicate]);
    let Assignment::Leased { tasks, .. } = next else {
        panic!("expected the next lease: {next:?}")
    };
    assert_eq!(tasks.len(), 1, "only one task was idle");
    let third = tasks[0].lease;
    assert_eq!(third.task, TaskId(3));

    // Fenced as with `complete`; nothing is idle any more, so no lease.
    let (outcomes, next) =
        client.complete_and_request(&other, vec![(third, b"x".to_vec())], 1).await.unwrap();
    assert_eq!((outcomes, next), (vec![Outcome::Stale], Assignment::NoTask));
    let t1 = client.task(TaskId(1)).await.unwrap();
    assert_eq!((t1.status, t1.result.as_deref()), (Status::Completed, Some(&b"A"[..])));
    let t3 = client.task(TaskId(3)).await.unwrap();
    assert_eq!((t3.status, t3.worker.as_ref()), (Status::InProgress, Some(&w)));

    // With max 0 it only records.
    let (outcomes, next) =
        client.complete_and_request(&w, vec![(third, b"C".to_vec())], 0).await.unwrap();
    assert_eq!((outcomes, next), (vec![Outcome::Accepted], Assignment::NoTask));
    cluster.converged().await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_worker_input_gets_a_clear_error() {
    let cluster = TestCluster::start(3).await; // max_payload_bytes 4096
    cluster.leader().await;
    let client = cluster.client();
    client.submit(vec![task("a")]).await.unwrap();
    let invalid = |r: Result<_, ClientError>| match r {
        Err(ClientError::Refused(WireError::Invalid(m))) => m,
        other => panic!("expected Invalid, got {other:?}"),
    };
    let empty = WorkerId(" ".into());
    let m = invalid(client.request(&empty, 1, Duration::ZERO).await.map(|_| ()));
    assert!(m.contains("worker id is empty"), "{m}");
    let w = WorkerId("w01".into());
    let m = invalid(client.request(&w, 1, Duration::from_secs(3600)).await.map(|_| ()));
    assert!(m.contains("at most 60000 ms"), "{m}");
    let lease = Lease { task: TaskId(1), attempt: Attempt(1) };
    let m = invalid(client.complete(lease, &w, vec![0; 5000]).await.map(|_| ()));
    assert!(m.contains("max_payload_bytes is 4096"), "{m}");
    assert_eq!(client.task(TaskId(1)).await.unwrap().status, Status::Idle);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_returns_as_soon_as_a_task_is_submitted() {
    let cluster = TestCluster::start(3).await;
    cluster.leader().await;
    let client = cluster.client();
    let w = WorkerId("w01".into());
    let poll = {
        let client = client.clone();
        tokio::spawn(async move { client.request(&w, 1, Duration::from_secs(20)).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let submitted = Instant::now();
    client.submit(vec![task("wake up")]).await.unwrap();
    let answer = poll.await.unwrap().unwrap();
    assert!(matches!(answer, Assignment::Leased { ref tasks, .. } if tasks[0].data == b"wake up"));
    // Woken by the apply, not by the end of the 20 s poll.
    assert!(submitted.elapsed() < Duration::from_secs(10));
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_without_a_listening_seed_backs_off_and_gives_up_with_a_clear_error() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let options =
        ClientOptions { retry_for: Duration::from_millis(1500), ..ClientOptions::default() };
    let client = Client::with_options(vec![closed.to_string()], options);
    let started = Instant::now();
    let err = client.status().await.unwrap_err();
    assert!(started.elapsed() >= Duration::from_millis(1500));
    let text = err.to_string();
    assert!(text.contains("no leader answered") && text.contains(&closed.to_string()), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_limits_are_enforced_with_a_clear_error() {
    let cluster = TestCluster::start(3).await;
    cluster.leader().await;
    let client = cluster.client();
    let too_many: Vec<NewTask> = (0..10_001).map(|i| task(&i.to_string())).collect();
    match client.submit(too_many).await {
        Err(ClientError::Refused(WireError::Invalid(m))) => {
            assert!(m.contains("10001 tasks in one submit"), "{m}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    match client.request(&WorkerId("w01".into()), 257, Duration::ZERO).await {
        Err(ClientError::Refused(WireError::Invalid(m))) => {
            assert!(m.contains("ask for 1 to 256"), "{m}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    for limit in [0, 1001] {
        match client.tasks(None, None, limit).await {
            Err(ClientError::Refused(WireError::Invalid(m))) => {
                assert!(m.contains("ask for 1 to 1000 and follow next_after"), "{m}")
            }
            other => panic!("expected a refusal of a page of {limit}, got {other:?}"),
        }
    }
    assert_eq!(client.status().await.unwrap().counts.total(), 0, "nothing was written");
    cluster.shutdown().await;
}
