//! Delays, backoff, cancellation of running tasks and retry.

use super::tests::{assign, complete, fail, submit, task, w};
use super::*;

fn outcome(t: &mut Table, cmd: Command) -> Outcome {
    match t.apply(cmd) {
        Response::Outcome(o) => o,
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn a_delayed_task_is_scheduled_until_due_then_leased() {
    let mut t = Table::default();
    let later = NewTask { delay_ms: 500, ..task("later") };
    let at = NewTask { run_at_ms: Some(300), ..task("at") };
    submit(&mut t, vec![later, at, task("now")]);
    assert_eq!((t.counts().scheduled, t.counts().idle), (2, 1));
    assert_eq!(t.next_due_ms(), Some(300));
    assert_eq!(assign(&mut t, "w01", 0).map(|l| l.task), Some(TaskId(3)));
    assert_eq!(assign(&mut t, "w01", 299), None, "nothing due before 300");
    assert_eq!(assign(&mut t, "w01", 300).map(|l| l.task), Some(TaskId(2)), "due at 300 exactly");
    assert_eq!(t.apply(Command::Wake { now_ms: 499 }), Response::Woken(0));
    assert_eq!(t.apply(Command::Wake { now_ms: 500 }), Response::Woken(1));
    assert_eq!((t.counts().scheduled, t.counts().idle), (0, 1));
    assert_eq!(t.get(TaskId(1)).unwrap().due_ms, None);
}

#[test]
fn a_failed_attempt_backs_off_then_runs_again() {
    let mut t = Table::default();
    let flaky = NewTask {
        retry_base_ms: Some(1000),
        retry_max_ms: Some(8000),
        max_attempts: 3,
        ..task("f")
    };
    submit(&mut t, vec![flaky]);
    let first = assign(&mut t, "w01", 0).unwrap();
    assert_eq!(fail(&mut t, "w01", first), Outcome::Accepted); // at 9
    let row = t.get(TaskId(1)).unwrap();
    assert_eq!(row.status, Status::Scheduled);
    let due = row.due_ms.unwrap();
    assert!((9 + 1000..=9 + 1250).contains(&due), "{due}");
    assert_eq!(assign(&mut t, "w01", due - 1), None);
    let second = assign(&mut t, "w01", due).unwrap();
    assert_eq!(second.attempt, Attempt(2));
    assert_eq!(fail(&mut t, "w01", second), Outcome::Accepted);
    let due = t.get(TaskId(1)).unwrap().due_ms.unwrap();
    assert!((9 + 2000..=9 + 2500).contains(&due), "the second wait doubles: {due}");
}

#[test]
fn an_expired_lease_backs_off_like_a_failure() {
    let mut t = Table::default();
    let slow = NewTask {
        retry_base_ms: Some(1000),
        retry_max_ms: Some(1500),
        max_attempts: 5,
        ..task("s")
    };
    submit(&mut t, vec![slow]);
    let first = assign(&mut t, "w01", 0).unwrap();
    let expired = t.apply(Command::Expire { leases: vec![first], now_ms: 5000 });
    assert_eq!(expired, Response::Expired(vec![first]));
    let due = t.get(TaskId(1)).unwrap().due_ms.unwrap();
    assert!((6000..=6250).contains(&due), "{due}");
    assert_eq!(assign(&mut t, "w01", due - 1), None);
    let second = assign(&mut t, "w01", due).unwrap();
    t.apply(Command::Expire { leases: vec![second], now_ms: due + 10 });
    let wait = t.get(TaskId(1)).unwrap().due_ms.unwrap() - (due + 10);
    assert!((1500..=1875).contains(&wait), "capped at retry_max (plus jitter): {wait}");
}

#[test]
fn a_running_task_cancelled_ends_at_its_workers_next_report() {
    let mut t = Table::default();
    submit(&mut t, vec![task("a"), task("b"), task("c")]);
    let a = assign(&mut t, "w01", 0).unwrap();
    assert_eq!(outcome(&mut t, Command::Cancel { task: a.task, now_ms: 5 }), Outcome::Accepted);
    assert_eq!(outcome(&mut t, Command::Cancel { task: a.task, now_ms: 6 }), Outcome::Duplicate);
    let row = t.get(a.task).unwrap();
    assert_eq!((row.status, row.cancelling), (Status::InProgress, true), "still held");
    // Its worker learns it on the next extension; the task ends cancelled.
    let extend = Command::Extend { lease: a, worker: w("w01"), now_ms: 7 };
    assert_eq!(outcome(&mut t, extend), Outcome::Cancelled);
    assert_eq!(t.get(a.task).unwrap().status, Status::Cancelled);
    // A late result of that lease is answered Cancelled and not recorded.
    assert_eq!(complete(&mut t, "w01", a, "late"), Outcome::Cancelled);
    assert_eq!(t.get(a.task).unwrap().result, None);
    // Someone else's report stays Stale.
    assert_eq!(complete(&mut t, "w02", a, "x"), Outcome::Stale);

    // A cancelled task whose worker completes before extending: not recorded either.
    let b = assign(&mut t, "w01", 10).unwrap();
    outcome(&mut t, Command::Cancel { task: b.task, now_ms: 11 });
    assert_eq!(complete(&mut t, "w01", b, "done"), Outcome::Cancelled);
    assert_eq!(
        (t.get(b.task).unwrap().status, t.get(b.task).unwrap().result.clone()),
        (Status::Cancelled, None)
    );

    // One whose worker died: its lease expires into cancelled, not back to idle.
    let c = assign(&mut t, "w01", 20).unwrap();
    outcome(&mut t, Command::Cancel { task: c.task, now_ms: 21 });
    assert_eq!(
        t.apply(Command::Expire { leases: vec![c], now_ms: 5000 }),
        Response::Expired(vec![c])
    );
    assert_eq!(t.get(c.task).unwrap().status, Status::Cancelled);
    assert_eq!(t.counts(), Counts { cancelled: 3, ..Counts::default() });
}

#[test]
fn retry_gives_a_fresh_budget_and_old_leases_stay_fenced() {
    let mut t = Table::default();
    submit(&mut t, vec![NewTask { max_attempts: 1, ..task("a") }, task("b")]);
    let first = assign(&mut t, "w01", 0).unwrap();
    assert_eq!(fail(&mut t, "w01", first), Outcome::Accepted);
    assert_eq!(t.get(first.task).unwrap().status, Status::Dead);
    let retry = |task| Command::Retry { task, max_attempts: 2, now_ms: 50 };
    assert_eq!(outcome(&mut t, retry(TaskId(2))), Outcome::Stale, "idle: nothing to retry");
    assert_eq!(outcome(&mut t, retry(TaskId(9))), Outcome::NotFound);
    assert_eq!(outcome(&mut t, retry(first.task)), Outcome::Accepted);
    let row = t.get(first.task).unwrap();
    assert_eq!((row.status, row.max_attempts, row.finished_ms), (Status::Idle, 2, None));
    // The attempt counter goes on, so the old lease can never match again.
    let again = assign(&mut t, "w01", 60).unwrap();
    assert_eq!(again, Lease { task: first.task, attempt: Attempt(2) });
    assert_eq!(complete(&mut t, "w01", first, "old"), Outcome::Stale);
    // Two fresh attempts: the first failure re-queues, the second buries.
    assert_eq!(fail(&mut t, "w01", again), Outcome::Accepted);
    assert_eq!(t.get(first.task).unwrap().status, Status::Idle);
    let last = assign(&mut t, "w01", 70).unwrap();
    assert_eq!(fail(&mut t, "w01", last), Outcome::Accepted);
    assert_eq!(t.get(first.task).unwrap().status, Status::Dead);
}

#[test]
fn a_low_priority_task_waiting_past_the_aging_limit_goes_first() {
    let mut t = Table::default();
    let low = NewTask { priority: -5, ..task("low") };
    submit(&mut t, vec![low]); // idle since 0
    let assign_at = |t: &mut Table, now_ms| match t.apply(Command::Assign {
        worker: w("w01"),
        max: 1,
        now_ms,
        aging_ms: 1000,
        queues: vec![],
    }) {
        Response::Assigned(tasks) => tasks[0].id,
        other => panic!("unexpected {other:?}"),
    };
    // A steady stream of urgent work: before the limit, urgent goes first ...
    for now in [100, 500, 999] {
        let urgent = NewTask { priority: 9, ..task("urgent") };
        t.apply(Command::Submit { tasks: vec![urgent], now_ms: now });
        assert_ne!(assign_at(&mut t, now), TaskId(1), "at {now}");
    }
    // ... and once the low one has waited 1000 ms, it is next, however urgent the rest.
    let urgent = NewTask { priority: 9, ..task("urgent") };
    t.apply(Command::Submit { tasks: vec![urgent], now_ms: 1000 });
    assert_eq!(assign_at(&mut t, 1000), TaskId(1));
}

#[test]
fn one_wake_makes_a_bounded_number_of_tasks_idle() {
    let mut t = Table::default();
    let n = MAX_WAKE + 500;
    submit(&mut t, (0..n).map(|_| NewTask { delay_ms: 100, ..task("x") }).collect());
    assert_eq!(t.apply(Command::Wake { now_ms: 100 }), Response::Woken(MAX_WAKE as u64));
    assert_eq!(t.next_due_ms(), Some(100), "more are due: the waker proposes again");
    assert_eq!(t.apply(Command::Wake { now_ms: 100 }), Response::Woken(500));
    assert_eq!(t.counts().idle, n as u64);
}
