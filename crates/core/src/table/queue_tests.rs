//! Named queues: preference order, caps on tasks in progress, pause.

use super::tests::{submit, task, w};
use super::*;

fn into(queue: &str, data: &str) -> NewTask {
    NewTask { queue: Some(queue.into()), ..task(data) }
}

fn lease_from(t: &mut Table, queues: &[&str], max: u32) -> Vec<TaskId> {
    let queues = queues.iter().map(|q| q.to_string()).collect();
    let cmd = Command::Assign { worker: w("w01"), max, now_ms: 10, aging_ms: 0, queues };
    match t.apply(cmd) {
        Response::Assigned(tasks) => tasks.iter().map(|t| t.id).collect(),
        other => panic!("unexpected {other:?}"),
    }
}

fn set(t: &mut Table, queue: &str, change: QueueChange) {
    let r = t.apply(Command::SetQueue { queue: queue.into(), change });
    assert_eq!(r, Response::Outcome(Outcome::Accepted));
}

#[test]
fn a_worker_takes_from_its_queues_in_order_of_preference() {
    let mut t = Table::default();
    submit(&mut t, vec![into("mail", "m1"), into("video", "v1"), task("d1"), into("mail", "m2")]);
    assert_eq!(t.get(TaskId(3)).unwrap().queue, DEFAULT_QUEUE);
    assert_eq!(lease_from(&mut t, &["video", "mail"], 2), vec![TaskId(2), TaskId(1)]);
    assert_eq!(lease_from(&mut t, &["nothing"], 5), vec![]);
    assert!(!t.leasable(&["nothing".into()], 10, 0));
    assert_eq!(lease_from(&mut t, &["*"], 5), vec![TaskId(3), TaskId(4)], "any queue, in order");
    let q = t.queues();
    let mail = q.iter().find(|q| q.name == "mail").unwrap();
    assert_eq!((mail.counts.in_progress, mail.counts.idle), (2, 0));
}

#[test]
fn a_capped_queue_never_has_more_in_progress_and_a_paused_one_gives_nothing() {
    let mut t = Table::default();
    submit(&mut t, (0..6).map(|i| into("api", &format!("a{i}"))).collect());
    submit(&mut t, vec![task("other")]);
    set(&mut t, "api", QueueChange::MaxInFlight(Some(2)));
    assert_eq!(lease_from(&mut t, &["*"], 10).len(), 3, "two from api, and the other one");
    assert_eq!(lease_from(&mut t, &["api"], 10), vec![], "api is at its cap");
    // One finishes: room for one more.
    let first = Lease { task: TaskId(1), attempt: Attempt(1) };
    let done = Command::Complete { lease: first, worker: w("w01"), result: vec![], now_ms: 11 };
    t.apply(done);
    assert_eq!(lease_from(&mut t, &["api"], 10).len(), 1);
    set(&mut t, "api", QueueChange::MaxInFlight(None));
    set(&mut t, "api", QueueChange::Paused(true));
    assert_eq!(lease_from(&mut t, &["api", "*"], 10), vec![], "paused");
    assert!(t.queues().iter().any(|q| q.name == "api" && q.settings.paused));
    set(&mut t, "api", QueueChange::Paused(false));
    assert_eq!(lease_from(&mut t, &["api"], 10).len(), 3, "resumed, no cap");
    assert!(t.queue_settings().is_empty(), "a queue back at the defaults is forgotten");
}

#[test]
fn queue_settings_survive_a_rebuild() {
    let mut t = Table::default();
    submit(&mut t, vec![into("api", "a")]);
    set(&mut t, "api", QueueChange::MaxInFlight(Some(1)));
    let rebuilt = Table::from_parts(t.next_id(), t.tasks().cloned(), [])
        .with_queue_settings(t.queue_settings().clone());
    assert_eq!(rebuilt, t);
    assert_eq!(rebuilt.digest(), t.digest());
}
