//! A worker loop that records every answer it gets, and the checker that
//! holds the cluster's final table against those records.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use taskraft_client::Client;
use taskraft_core::{Lease, Outcome, Status, Task, TaskId, WorkerId};
use taskraft_proto::client::Assignment;

/// One answered completion.
#[derive(Debug, Clone)]
pub struct Record {
    /// The lease completed.
    pub lease: Lease,
    /// Who completed it.
    pub worker: String,
    /// What the cluster answered.
    pub outcome: Outcome,
    /// The result sent.
    pub result: Vec<u8>,
}

/// Every answer the test's workers got.
pub type Records = Arc<Mutex<Vec<Record>>>;

/// The result a test worker sends for a lease: names the worker and the attempt.
pub fn result_for(worker: &str, lease: Lease) -> Vec<u8> {
    format!("{worker}/{}/{}", lease.task, lease.attempt).into_bytes()
}

/// Request → pause → complete, until the cluster is drained. Errors (the
/// cluster unreachable for the client's whole retry budget) are survived:
/// the lease simply expires.
pub async fn work(client: Arc<Client>, name: &str, pause: Duration, records: Records) {
    let worker = WorkerId(name.into());
    loop {
        let leased = match client.request(&worker, 1, Duration::from_millis(500)).await {
            Ok(Assignment::Leased { tasks, .. }) => tasks,
            Ok(Assignment::NoTask) | Err(_) => continue,
            Ok(Assignment::Drained) => return,
        };
        for task in leased {
            tokio::time::sleep(pause).await;
            let result = result_for(name, task.lease);
            if let Ok(outcome) = client.complete(task.lease, &worker, result.clone()).await {
                let record = Record { lease: task.lease, worker: name.into(), outcome, result };
                records.lock().push(record);
            }
        }
    }
}

/// Checks the final table against what was acknowledged and answered:
/// - every acknowledged submit is in the table;
/// - every task ended completed, or dead with its reason;
/// - no task was accepted twice;
/// - the recorded result is the one its lease holder sent, for the attempt in the table.
pub fn check(tasks: &[Task], acknowledged: &BTreeSet<TaskId>, records: &[Record]) {
    let by_id: BTreeMap<TaskId, &Task> = tasks.iter().map(|t| (t.id, t)).collect();
    for id in acknowledged {
        assert!(by_id.contains_key(id), "acknowledged task {id} is lost");
    }
    let mut accepted: BTreeMap<TaskId, Vec<&Record>> = BTreeMap::new();
    for r in records.iter().filter(|r| r.outcome == Outcome::Accepted) {
        accepted.entry(r.lease.task).or_default().push(r);
    }
    for t in tasks {
        match t.status {
            Status::Completed => {}
            Status::Dead | Status::Cancelled => {
                assert!(t.error.is_some(), "task {} is {:?} without a reason", t.id, t.status)
            }
            other => panic!("task {} ended {other:?}", t.id),
        }
        let acc = accepted.get(&t.id).map_or(&[][..], |v| &v[..]);
        assert!(acc.len() <= 1, "task {} was accepted {} times: {acc:?}", t.id, acc.len());
        if t.status != Status::Completed {
            continue;
        }
        let holder = t.worker.as_ref().expect("a completed task has a worker").0.clone();
        let lease = Lease { task: t.id, attempt: t.attempt };
        assert_eq!(
            t.result.as_deref(),
            Some(&result_for(&holder, lease)[..]),
            "task {}: result is not its holder's",
            t.id
        );
        for r in records.iter().filter(|r| r.lease.task == t.id && r.outcome != Outcome::Stale) {
            assert_eq!(
                (r.lease, r.worker.as_str()),
                (lease, holder.as_str()),
                "task {}: answer to a non-holder",
                t.id
            );
        }
    }
}
