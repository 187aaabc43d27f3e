//! Push mode: the leader dispatches tasks to `DoTask` servers, with leases,
//! fencing and health checks, across worker deaths and leader changes.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use taskraft_client::{Client, ClientError};
use taskraft_core::{NewTask, Status, WorkerId};
use taskraft_proto::WireError;
use taskraft_tests::{cluster::FAST, eventually, TestCluster};
use taskraft_worker::{handler, push, Handler};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const ORIGIN: [&str; 5] = [
    "hello world",
    "go rpc is simple",
    "learn by example",
    "concurrency is fun",
    "master worker pattern",
];

/// A push worker served in this process; `kill` drops it without deregistering.
struct PushWorker {
    stop: CancellationToken,
    task: JoinHandle<Result<(), ClientError>>,
}

impl PushWorker {
    async fn start(client: Arc<Client>, id: &str, capacity: u32, h: Handler) -> PushWorker {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let stop = CancellationToken::new();
        let (a, s, id) = (addr, stop.clone(), WorkerId(id.into()));
        let task = tokio::spawn(async move {
            push::serve(listener, identity(id, a, capacity), h, client, s).await
        });
        PushWorker { stop, task }
    }

    /// Like SIGKILL: the port closes, no deregistration.
    fn kill(self) {
        self.task.abort();
        self.stop.cancel();
    }
}

fn identity(id: WorkerId, advertise: String, capacity: u32) -> push::PushIdentity {
    push::PushIdentity { id, advertise, capacity, token: Default::default() }
}

/// `upper`, after a pause, so that several tasks are in flight at once.
fn slow_upper(pause: Duration) -> Handler {
    Arc::new(move |_, data: Vec<u8>| {
        Box::pin(async move {
            tokio::time::sleep(pause).await;
            Ok(data.to_ascii_uppercase())
        })
    })
}

async fn submit(client: &Client, data: &[String]) {
    let tasks = data
        .iter()
        .map(|d| NewTask {
            data: d.clone().into_bytes(),
            key: None,
            priority: 0,
            max_attempts: 0,
            ..Default::default()
        })
        .collect();
    client.submit(tasks).await.unwrap();
}

async fn registered(cluster: &TestCluster, n: usize) {
    let client = cluster.client();
    eventually(Duration::from_secs(15), "push workers registered and healthy", || {
        let client = client.clone();
        async move {
            let s = client.status().await.ok()?;
            (s.workers.iter().filter(|w| w.healthy).count() >= n).then_some(())
        }
    })
    .await;
}

async fn all_done(client: &Client, n: usize) -> Vec<taskraft_core::Task> {
    eventually(Duration::from_secs(60), "every task completed", || async {
        let tasks = client.all_tasks(None).await.ok()?;
        (tasks.len() == n && tasks.iter().all(|t| t.status == Status::Completed)).then_some(tasks)
    })
    .await
}

/// Every result is its task's data upper-cased.
fn assert_upper(tasks: &[taskraft_core::Task]) {
    for t in tasks {
        assert_eq!(t.result.as_deref(), Some(&t.data.to_ascii_uppercase()[..]), "task {}", t.id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_push_scenario_every_result_upper_cased_once_across_both_workers() {
    let cluster = TestCluster::start(3).await;
    cluster.leader().await;
    let client = cluster.client();
    let _w1 =
        PushWorker::start(client.clone(), "w1", 1, slow_upper(Duration::from_millis(200))).await;
    let _w2 =
        PushWorker::start(client.clone(), "w2", 1, slow_upper(Duration::from_millis(200))).await;
    registered(&cluster, 2).await;
    submit(&client, &ORIGIN.map(String::from)).await;
    let tasks = all_done(&client, 5).await;
    assert_upper(&tasks);
    assert!(
        tasks.iter().all(|t| t.attempt.0 == 1),
        "each task recorded once, on its first attempt"
    );
    let workers: BTreeSet<_> = tasks.iter().filter_map(|t| t.worker.clone()).collect();
    assert_eq!(workers.len(), 2, "spread over both workers: {workers:?}");
    let status = client.status().await.unwrap();
    assert_eq!(status.workers.iter().map(|w| w.completed).sum::<u64>(), 5);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_push_worker_is_marked_unhealthy_and_its_tasks_go_elsewhere() {
    let cluster = TestCluster::start(3).await;
    cluster.leader().await;
    let client = cluster.client();
    let w1 =
        PushWorker::start(client.clone(), "w1", 2, slow_upper(Duration::from_millis(300))).await;
    let _w2 =
        PushWorker::start(client.clone(), "w2", 2, slow_upper(Duration::from_millis(300))).await;
    registered(&cluster, 2).await;
    let data: Vec<String> = (0..20).map(|i| format!("task {i}")).collect();
    submit(&client, &data).await;
    eventually(Duration::from_secs(20), "w1 busy", || {
        let client = client.clone();
        async move {
            let s = client.status().await.ok()?;
            s.workers
                .iter()
                .any(|w| w.id.0 == "w1" && w.in_flight > 0 && w.completed > 0)
                .then_some(())
        }
    })
    .await;
    w1.kill();
    let tasks = all_done(&client, 20).await;
    assert_upper(&tasks);
    let status = client.status().await.unwrap();
    let w1 = status.workers.iter().find(|w| w.id.0 == "w1").expect("still registered");
    assert!(!w1.healthy, "a dead push worker is unhealthy");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_leader_resumes_push_dispatch_after_the_leader_is_stopped() {
    let mut cluster = TestCluster::start(3).await;
    let leader = cluster.leader().await;
    let client = cluster.client();
    let _w1 =
        PushWorker::start(client.clone(), "w1", 2, slow_upper(Duration::from_millis(100))).await;
    let _w2 =
        PushWorker::start(client.clone(), "w2", 2, slow_upper(Duration::from_millis(100))).await;
    registered(&cluster, 2).await;
    let data: Vec<String> = (0..30).map(|i| format!("task {i}")).collect();
    submit(&client, &data).await;
    eventually(Duration::from_secs(20), "some progress", || {
        let client = client.clone();
        async move { (client.status().await.ok()?.counts.completed >= 5).then_some(()) }
    })
    .await;
    cluster.stop(leader).await;
    let tasks = all_done(&client, 30).await;
    assert_upper(&tasks);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_registrations_and_a_garbage_worker_are_refused_and_nothing_is_lost() {
    // A "worker" listed in the config that answers with garbage.
    let garbage = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let garbage_addr = garbage.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = garbage.accept().await {
            use tokio::io::AsyncWriteExt;
            let _ = s.write_all(b"\x00\x00\x00\x10not a tarpc frame at all").await;
        }
    });
    let extra = format!("{FAST}\n[[push_worker]]\nid = \"junk\"\naddr = \"{garbage_addr}\"\n");
    let cluster = TestCluster::start_with(3, &extra).await;
    cluster.leader().await;
    let client = cluster.client();

    let silent = taskraft_tests::process::free_addr();
    match client.register(&WorkerId("ghost".into()), &silent, 1).await {
        Err(ClientError::Refused(WireError::Invalid(m))) => {
            assert!(m.contains("cannot reach push worker ghost"), "{m}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let good = PushWorker::start(client.clone(), "w1", 2, handler::upper()).await;
    registered(&cluster, 1).await;
    let twin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let twin_addr = twin.local_addr().unwrap().to_string();
    let twin_task = tokio::spawn(push::serve(
        twin,
        identity(WorkerId("w1".into()), twin_addr, 1),
        handler::echo(),
        client.clone(),
        CancellationToken::new(),
    ));
    match twin_task.await.unwrap() {
        Err(ClientError::Refused(WireError::Invalid(m))) => {
            assert!(m.contains("registered from another address"), "{m}")
        }
        other => panic!("expected a duplicate-id refusal, got {other:?}"),
    }

    let data: Vec<String> = (0..10).map(|i| format!("task {i}")).collect();
    submit(&client, &data).await;
    let tasks = all_done(&client, 10).await;
    assert_upper(&tasks);
    assert!(tasks.iter().all(|t| t.worker == Some(WorkerId("w1".into()))));
    let status = client.status().await.unwrap();
    let junk = status.workers.iter().find(|w| w.id.0 == "junk").expect("configured worker listed");
    assert!(!junk.healthy && junk.completed == 0);
    drop(good);
    cluster.shutdown().await;
}

/// Sets its flag when dropped: shows that a handler future was dropped.
struct DroppedFlag(Arc<std::sync::atomic::AtomicBool>);

impl Drop for DroppedFlag {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_pushed_task_stops_the_workers_handler_and_ends_it_cancelled() {
    let cluster = TestCluster::start_with(
        3,
        &FAST.replace("lease_timeout_ms = 1500", "lease_timeout_ms = 60000"),
    )
    .await;
    cluster.leader().await;
    let client = cluster.client();
    let (started, dropped) = (
        Arc::new(std::sync::atomic::AtomicBool::new(false)),
        Arc::new(std::sync::atomic::AtomicBool::new(false)),
    );
    let (s, d) = (started.clone(), dropped.clone());
    let forever: Handler = Arc::new(move |_, _| {
        let (s, guard) = (s.clone(), DroppedFlag(d.clone()));
        Box::pin(async move {
            let _guard = guard;
            s.store(true, std::sync::atomic::Ordering::SeqCst);
            tokio::time::sleep(Duration::from_secs(600)).await;
            Ok(b"never".to_vec())
        })
    });
    let _worker = PushWorker::start(client.clone(), "p1", 1, forever).await;
    submit(&client, &["long".to_string()]).await;
    eventually(Duration::from_secs(20), "the task running on the push worker", || {
        let started = started.clone();
        async move { started.load(std::sync::atomic::Ordering::SeqCst).then_some(()) }
    })
    .await;
    let id = taskraft_core::TaskId(1);
    assert_eq!(client.cancel(vec![id]).await.unwrap(), vec![taskraft_core::Outcome::Accepted]);
    // The leader tells the worker (the lease is a minute long: no expiry here).
    let task = eventually(Duration::from_secs(10), "the task cancelled", || {
        let client = client.clone();
        async move { client.task(id).await.ok().filter(|t| t.status == Status::Cancelled) }
    })
    .await;
    assert_eq!(task.result, None);
    eventually(Duration::from_secs(10), "the handler dropped", || {
        let dropped = dropped.clone();
        async move { dropped.load(std::sync::atomic::Ordering::SeqCst).then_some(()) }
    })
    .await;
    cluster.shutdown().await;
}

/// Idle tasks only in a paused queue give a push worker nothing, and the
/// dispatcher writes nothing for them (an empty `Assign` would be applied,
/// wake the dispatcher, and be proposed again, without end); resumed, the
/// queue drains.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_queue_gives_a_push_worker_nothing_and_writes_nothing() {
    let cluster = TestCluster::start(3).await;
    let leader = cluster.leader().await;
    let client = cluster.client();
    let _w1 = PushWorker::start(client.clone(), "w1", 2, slow_upper(Duration::ZERO)).await;
    registered(&cluster, 1).await;
    let pause = taskraft_core::QueueChange::Paused(true);
    client.set_queue(taskraft_core::DEFAULT_QUEUE, pause).await.unwrap();
    submit(&client, &ORIGIN.map(String::from)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = cluster.applied_index(leader);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let written = cluster.applied_index(leader) - before;
    // At most the worker's registration renewal (every 2 s) and a lease scan.
    assert!(written <= 4, "{written} entries written in 2 s with nothing leasable");
    assert_eq!(client.status().await.unwrap().counts.idle, 5);
    let resume = taskraft_core::QueueChange::Paused(false);
    client.set_queue(taskraft_core::DEFAULT_QUEUE, resume).await.unwrap();
    assert_upper(&all_done(&client, 5).await);
    cluster.shutdown().await;
}
