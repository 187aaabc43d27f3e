//! One test per transition of the lifecycle, and per fenced submission.

use super::*;

pub(super) fn w(name: &str) -> WorkerId {
    WorkerId(name.into())
}

pub(super) fn task(data: &str) -> NewTask {
    NewTask { data: data.into(), key: None, priority: 0, max_attempts: 2, ..Default::default() }
}

pub(super) fn submit(t: &mut Table, tasks: Vec<NewTask>) -> Vec<TaskId> {
    match t.apply(Command::Submit { tasks, now_ms: 0 }) {
        Response::Submitted(s) => s.into_iter().map(|s| s.id).collect(),
        other => panic!("unexpected {other:?}"),
    }
}

pub(super) fn assign(t: &mut Table, worker: &str, now_ms: u64) -> Option<Lease> {
    match t.apply(Command::Assign {
        worker: w(worker),
        max: 1,
        now_ms,
        aging_ms: 0,
        queues: vec![],
    }) {
        Response::Assigned(tasks) => tasks.first().and_then(Task::lease),
        other => panic!("unexpected {other:?}"),
    }
}

pub(super) fn complete(t: &mut Table, worker: &str, lease: Lease, result: &str) -> Outcome {
    let cmd = Command::Complete { lease, worker: w(worker), result: result.into(), now_ms: 9 };
    match t.apply(cmd) {
        Response::Outcome(o) => o,
        other => panic!("unexpected {other:?}"),
    }
}

pub(super) fn fail(t: &mut Table, worker: &str, lease: Lease) -> Outcome {
    let cmd = Command::Fail { lease, worker: w(worker), error: "boom".into(), now_ms: 9 };
    match t.apply(cmd) {
        Response::Outcome(o) => o,
        other => panic!("unexpected {other:?}"),
    }
}

pub(super) fn expire(t: &mut Table, leases: Vec<Lease>) -> Vec<Lease> {
    match t.apply(Command::Expire { leases, now_ms: 3100 }) {
        Response::Expired(l) => l,
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn submitted_tasks_are_idle_and_numbered_in_order() {
    let mut t = Table::default();
    assert_eq!(submit(&mut t, vec![task("a"), task("b")]), vec![TaskId(1), TaskId(2)]);
    assert_eq!(t.get(TaskId(2)).unwrap().status, Status::Idle);
    assert_eq!(t.counts(), Counts { idle: 2, ..Counts::default() });
}

#[test]
fn submit_with_a_known_key_returns_the_existing_task() {
    let mut t = Table::default();
    let keyed = NewTask { key: Some("k".into()), ..task("a") };
    let first = t.apply(Command::Submit { tasks: vec![keyed.clone()], now_ms: 0 });
    let again = t.apply(Command::Submit { tasks: vec![keyed.clone(), keyed], now_ms: 5 });
    assert_eq!(first, Response::Submitted(vec![Submitted { id: TaskId(1), created: true }]));
    let dup = Submitted { id: TaskId(1), created: false };
    assert_eq!(again, Response::Submitted(vec![dup, dup]));
    assert_eq!(t.counts().total(), 1);
}

#[test]
fn assign_takes_priority_then_submission_order() {
    let mut t = Table::default();
    let urgent = NewTask { priority: 5, ..task("urgent") };
    submit(&mut t, vec![task("first"), task("second"), urgent]);
    let order: Vec<u64> = (0..3).map(|_| assign(&mut t, "w01", 0).unwrap().task.0).collect();
    assert_eq!(order, vec![3, 1, 2]);
    assert_eq!(assign(&mut t, "w01", 0), None);
}

#[test]
fn assign_leases_with_a_new_attempt_each_time() {
    let mut t = Table::default();
    submit(&mut t, vec![task("a")]);
    let first = assign(&mut t, "w01", 0).unwrap();
    assert_eq!(first.attempt, Attempt(1));
    assert_eq!(expire(&mut t, vec![first]), vec![first]);
    let second = assign(&mut t, "w02", 3100).unwrap();
    assert_eq!(second.attempt, Attempt(2));
    let row = t.get(TaskId(1)).unwrap();
    assert_eq!((row.status, row.worker.clone()), (Status::InProgress, Some(w("w02"))));
}

#[test]
fn assign_hands_out_several_tasks_at_once() {
    let mut t = Table::default();
    submit(&mut t, vec![task("a"), task("b"), task("c")]);
    let r = t.apply(Command::Assign {
        worker: w("w01"),
        max: 2,
        now_ms: 0,
        aging_ms: 0,
        queues: vec![],
    });
    let Response::Assigned(tasks) = r else { panic!("{r:?}") };
    assert_eq!(tasks.iter().map(|t| t.id.0).collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(t.counts().in_progress, 2);
}

#[test]
fn complete_with_the_current_lease_records_the_result() {
    let mut t = Table::default();
    submit(&mut t, vec![task("a")]);
    let lease = assign(&mut t, "w01", 0).unwrap();
    assert_eq!(complete(&mut t, "w01", lease, "done"), Outcome::Accepted);
    let row = t.get(TaskId(1)).unwrap();
    assert_eq!(row.status, Status::Completed);
    assert_eq!(row.result.as_deref(), Some(&b"done"[..]));
    assert_eq!(row.finished_ms, Some(9));
}

#[test]
fn repeated_completion_is_reported_duplicate_and_keeps_the_first_result() {
    let mut t = Table::default();
    submit(&mut t, vec![task("a")]);
    let lease = assign(&mut t, "w01", 0).unwrap();
    complete(&mut t, "w01", lease, "first");
    assert_eq!(complete(&mut t, "w01", lease, "second"), Outcome::Duplicate);
    assert_eq!(t.get(TaskId(1)).unwrap().result.as_deref(), Some(&b"first"[..]));
}

#[test]
fn late_submission_after_expiry_is_reported_stale() {
    // The origin scenario: w01 stalls on its task past the lease; w02 gets it.
    let mut t = Table::default();
    submit(&mut t, vec![task("task data 3")]);
    let old = assign(&mut t, "w01", 0).unwrap();
    expire(&mut t, vec![old]);
    let new = assign(&mut t, "w02", 3100).unwrap();
    assert_eq!(complete(&mut t, "w02", new, "by w02"), Outcome::Accepted);
    let before = t.clone();
    assert_eq!(complete(&mut t, "w01", old, "by w01"), Outcome::Stale);
    assert_eq!(t, before);
}

#[test]
fn late_submission_before_reassignment_is_stale_too() {
    let mut t = Table::default();
    submit(&mut t, vec![task("a")]);
    let old = assign(&mut t, "w01", 0).unwrap();
    expire(&mut t, vec![old]);
    assert_eq!(complete(&mut t, "w01", old, "late"), Outcome::Stale);
    assert_eq!(t.get(TaskId(1)).unwrap().status, Status::Idle);
}

#[test]
fn another_workers_id_is_stale() {
    let mut t = Table::default();
    submit(&mut t, vec![task("a")]);
    let lease = assign(&mut t, "w01", 0).unwrap();
    let before = t.clone();
    assert_eq!(complete(&mut t, "w02", lease, "x"), Outcome::Stale);
    assert_eq!(fail(&mut t, "w02", lease), Outcome::Stale);
    assert_eq!(t, before);
}

#[test]
fn unknown_task_is_not_found_and_changes_nothing() {
    let mut t = Table::default();
    submit(&mut t, vec![task("a")]);
    let before = t.clone();
    let lease = Lease { task: TaskId(42), attempt: Attempt(1) };
    assert_eq!(complete(&mut t, "w01", lease, "x"), Outcome::NotFound);
    let extend = Command::Extend { lease, worker: w("w01"), now_ms: 1 };
    assert_eq!(t.apply(extend), Response::Outcome(Outcome::NotFound));
    assert_eq!(t, before);
}

#[test]
fn fail_requeues_while_attempts_remain_then_the_task_is_dead() {
    let mut t = Table::default();
    submit(&mut t, vec![task("a")]); // max_attempts = 2
    let first = assign(&mut t, "w01", 0).unwrap();
    assert_eq!(fail(&mut t, "w01", first), Outcome::Accepted);
    assert_eq!(t.get(TaskId(1)).unwrap().status, Status::Idle);
    let second = assign(&mut t, "w01", 10).unwrap();
    assert_eq!(fail(&mut t, "w01", second), Outcome::Accepted);
    let row = t.get(TaskId(1)).unwrap();
    assert_eq!((row.status, row.error.as_deref()), (Status::Dead, Some("boom")));
    assert_eq!(assign(&mut t, "w01", 20), None);
}

#[test]
fn expiry_without_attempts_left_buries_the_task_with_the_reason() {
    let mut t = Table::default();
    submit(&mut t, vec![NewTask { max_attempts: 1, ..task("a") }]);
    let lease = assign(&mut t, "w01", 0).unwrap();
    expire(&mut t, vec![lease]);
    let row = t.get(TaskId(1)).unwrap();
    assert_eq!(row.status, Status::Dead);
    assert_eq!(row.error.as_deref(), Some("lease of attempt 1 expired"));
}

#[test]
fn repeated_or_late_expiry_is_harmless() {
    let mut t = Table::default();
    submit(&mut t, vec![task("a")]);
    let old = assign(&mut t, "w01", 0).unwrap();
    expire(&mut t, vec![old]);
    let new = assign(&mut t, "w02", 3100).unwrap();
    let before = t.clone();
    assert_eq!(expire(&mut t, vec![old]), vec![]);
    assert_eq!(t, before);
    complete(&mut t, "w02", new, "ok");
    assert_eq!(expire(&mut t, vec![new]), vec![]);
    assert_eq!(t.get(TaskId(1)).unwrap().status, Status::Completed);
}

#[test]
fn extend_restarts_the_lease_clock() {
    let mut t = Table::default();
    submit(&mut t, vec![task("a")]);
    let lease = assign(&mut t, "w01", 0).unwrap();
    let r = t.apply(Command::Extend { lease, worker: w("w01"), now_ms: 2000 });
    assert_eq!(r, Response::Outcome(Outcome::Accepted));
    assert_eq!(t.leases_by_start().collect::<Vec<_>>(), vec![(2000, lease)]);
}

#[test]
fn cancel_ends_an_unfinished_task_only() {
    let mut t = Table::default();
    submit(&mut t, vec![task("a"), task("b")]);
    let lease = assign(&mut t, "w01", 0).unwrap();
    complete(&mut t, "w01", lease, "ok");
    assert_eq!(
        t.apply(Command::Cancel { task: TaskId(1), now_ms: 1 }),
        Response::Outcome(Outcome::Stale)
    );
    assert_eq!(
        t.apply(Command::Cancel { task: TaskId(2), now_ms: 1 }),
        Response::Outcome(Outcome::Accepted)
    );
    assert_eq!(t.get(TaskId(2)).unwrap().status, Status::Cancelled);
    assert_eq!(t.counts().cancelled, 1);
    assert_eq!(
        t.apply(Command::Cancel { task: TaskId(3), now_ms: 1 }),
        Response::Outcome(Outcome::NotFound)
    );
}

#[test]
fn rebuilt_table_equals_the_original() {
    let mut t = Table::default();
    submit(&mut t, vec![task("a"), NewTask { key: Some("k".into()), ..task("b") }, task("c")]);
    let lease = assign(&mut t, "w01", 7).unwrap();
    complete(&mut t, "w01", lease, "ok");
    assign(&mut t, "w01", 8);
    let rebuilt = Table::from_parts(t.next_id(), t.tasks().cloned(), []);
    assert_eq!(rebuilt, t);
    assert_eq!(rebuilt.digest(), t.digest());
}

#[test]
fn touched_names_every_changed_row() {
    let mut t = Table::default();
    submit(&mut t, vec![task("a"), task("b")]);
    let mut touched = BTreeSet::new();
    t.apply_touching(
        Command::Assign { worker: w("w01"), max: 1, now_ms: 0, aging_ms: 0, queues: vec![] },
        &mut touched,
    );
    assert_eq!(touched.into_iter().collect::<Vec<_>>(), vec![TaskId(1)]);
}

#[test]
fn push_worker_id_is_held_by_its_live_registration() {
    let mut t = Table::default();
    let reg = |addr: &str, now_ms| Command::Register {
        worker: w("p1"),
        addr: addr.into(),
        capacity: 2,
        ttl_ms: 1000,
        now_ms,
    };
    assert_eq!(t.apply(reg("127.0.0.1:1", 0)), Response::Outcome(Outcome::Accepted));
    assert_eq!(
        t.apply(reg("127.0.0.1:2", 500)),
        Response::Outcome(Outcome::Stale),
        "another address while live"
    );
    assert_eq!(t.apply(reg("127.0.0.1:1", 900)), Response::Outcome(Outcome::Accepted), "renewal");
    assert_eq!(
        t.apply(reg("127.0.0.1:2", 2000)),
        Response::Outcome(Outcome::Accepted),
        "lapsed: taken over"
    );
    assert_eq!(t.push_workers().next().unwrap().addr, "127.0.0.1:2");
    let rebuilt = Table::from_parts(t.next_id(), t.tasks().cloned(), t.push_workers().cloned());
    assert_eq!(rebuilt, t);
    assert_eq!(
        t.apply(Command::Deregister { worker: w("p1"), now_ms: 1 }),
        Response::Outcome(Outcome::Accepted)
    );
    assert_eq!(t.push_workers().count(), 0);
}

#[test]
fn batch_applies_its_commands_in_order_like_separate_entries() {
    let cmds = vec![
        Command::Submit { tasks: vec![task("a"), task("b")], now_ms: 0 },
        Command::Assign { worker: w("w01"), max: 1, now_ms: 1, aging_ms: 0, queues: vec![] },
        Command::Complete {
            lease: Lease { task: TaskId(1), attempt: Attempt(1) },
            worker: w("w01"),
            result: b"ok".to_vec(),
            now_ms: 2,
        },
        Command::Complete {
            lease: Lease { task: TaskId(1), attempt: Attempt(1) },
            worker: w("w02"),
            result: b"no".to_vec(),
            now_ms: 3,
        },
    ];
    let mut separate = Table::default();
    let one_by_one: Vec<Response> = cmds.iter().cloned().map(|c| separate.apply(c)).collect();
    let mut batched = Table::default();
    assert_eq!(batched.apply(Command::Batch(cmds)), Response::Batch(one_by_one));
    assert_eq!(batched, separate);
}
