//! Property test: the table against a naive model, over random command
//! sequences. Checks that no task is lost, counts add up, a stale lease never
//! changes anything, a task completes at most once with its holder's result,
//! and two tables fed the same commands are equal. Purges remove exactly the
//! finished tasks past the cutoff, never an unfinished one, and ids are never
//! reused. A scheduled task (delayed at submit, or backing off after a
//! failed attempt) is never leased before it is due, its backoff stays
//! within its bounds, and `Wake` makes exactly the due tasks idle.

use std::collections::BTreeMap;

use proptest::prelude::*;
use taskraft_core::{
    Attempt, Command, Lease, NewTask, Outcome, QueueChange, Response, Status, Table, TaskId,
    WorkerId,
};

/// What the model remembers of a task: status, attempt, holder, result.
#[derive(Debug, Clone, PartialEq)]
struct ModelTask {
    status: Status,
    attempt: u32,
    worker: Option<String>,
    result: Option<Vec<u8>>,
    /// When the task became completed or dead.
    finished_ms: Option<u64>,
    /// While scheduled: when it is due.
    due_ms: Option<u64>,
    /// Backoff base (0: none); the cap is four times it.
    retry_base_ms: u64,
    /// A failed attempt that must now be backing off: (when, nominal delay).
    backing_off: Option<(u64, u64)>,
    /// The attempt the current budget counts from.
    attempt_base: u32,
    /// Cancelled while in progress, not yet ended.
    cancelling: bool,
    /// While idle: since when.
    idle_since: Option<u64>,
    /// Its queue: "a" or "b".
    queue: String,
}

/// The queues a worker of selector `s` takes from.
fn selector(s: u8) -> Vec<String> {
    match s {
        0 => vec![],
        1 => vec!["a".into()],
        _ => vec!["b".into(), "a".into()],
    }
}

/// The aging limit of every `Assign` in this test.
const AGING_MS: u64 = 300;

#[derive(Debug, Clone)]
enum Op {
    /// `.0 + 1` tasks, delayed by `.1` steps.
    Submit(u8, u8),
    Wake,
    Cancel(u8),
    Retry(u8),
    /// Worker, max, queue selector.
    Assign(u8, u8, u8),
    /// Cap queue "a" (0: lift the cap).
    CapA(u8),
    /// Pause (true) or resume queue "b".
    PauseB(bool),
    Complete(u8, u8, u8),
    Fail(u8, u8, u8),
    Extend(u8, u8, u8),
    ExpireAll,
    ExpireOne(u8, u8),
    /// Purge tasks finished more than `.0` steps ago, at most `.1` of them.
    Purge(u8, u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..3u8, 0..4u8).prop_map(|(n, d)| Op::Submit(n, d)),
        Just(Op::Wake),
        (0..8u8).prop_map(Op::Cancel),
        (0..8u8).prop_map(Op::Retry),
        (0..3u8, 1..3u8, 0..3u8).prop_map(|(w, n, q)| Op::Assign(w, n, q)),
        (0..3u8).prop_map(Op::CapA),
        any::<bool>().prop_map(Op::PauseB),
        (0..3u8, 0..8u8, 0..4u8).prop_map(|(w, t, a)| Op::Complete(w, t, a)),
        (0..3u8, 0..8u8, 0..4u8).prop_map(|(w, t, a)| Op::Fail(w, t, a)),
        (0..3u8, 0..8u8, 0..4u8).prop_map(|(w, t, a)| Op::Extend(w, t, a)),
        Just(Op::ExpireAll),
        (0..8u8, 0..4u8).prop_map(|(t, a)| Op::ExpireOne(t, a)),
        (0..6u8, 1..4u8).prop_map(|(age, max)| Op::Purge(age, max)),
    ]
}

fn worker(w: u8) -> WorkerId {
    WorkerId(format!("w{w}"))
}

fn lease(t: u8, a: u8) -> Lease {
    Lease { task: TaskId(t as u64), attempt: Attempt(a as u32) }
}

fn to_command(op: &Op, now_ms: u64, table: &Table) -> Command {
    match *op {
        Op::Submit(n, delay) => {
            let tasks = (0..=n)
                .map(|i| NewTask {
                    data: vec![i],
                    key: None,
                    priority: i as i32 % 2,
                    max_attempts: 3,
                    delay_ms: delay as u64 * 100,
                    retry_base_ms: Some(if i % 2 == 0 { 0 } else { 100 }),
                    retry_max_ms: Some(if i % 2 == 0 { 0 } else { 400 }),
                    queue: Some(if i < 2 { "a" } else { "b" }.into()),
                    ..Default::default()
                })
                .collect();
            Command::Submit { tasks, now_ms }
        }
        Op::Wake => Command::Wake { now_ms },
        Op::CapA(k) => Command::SetQueue {
            queue: "a".into(),
            change: QueueChange::MaxInFlight((k > 0).then_some(k as u32)),
        },
        Op::PauseB(p) => Command::SetQueue { queue: "b".into(), change: QueueChange::Paused(p) },
        Op::Cancel(t) => Command::Cancel { task: TaskId(t as u64), now_ms },
        Op::Retry(t) => Command::Retry { task: TaskId(t as u64), max_attempts: 3, now_ms },
        Op::Assign(w, n, q) => Command::Assign {
            worker: worker(w),
            max: n as u32,
            now_ms,
            aging_ms: AGING_MS,
            queues: selector(q),
        },
        Op::Complete(w, t, a) => Command::Complete {
            lease: lease(t, a),
            worker: worker(w),
            result: vec![w, t, a],
            now_ms,
        },
        Op::Fail(w, t, a) => {
            Command::Fail { lease: lease(t, a), worker: worker(w), error: "e".into(), now_ms }
        }
        Op::Extend(w, t, a) => Command::Extend { lease: lease(t, a), worker: worker(w), now_ms },
        Op::ExpireAll => {
            Command::Expire { leases: table.leases_by_start().map(|(_, l)| l).collect(), now_ms }
        }
        Op::ExpireOne(t, a) => Command::Expire { leases: vec![lease(t, a)], now_ms },
        Op::Purge(age, max) => Command::Purge {
            finished_before_ms: now_ms.saturating_sub(age as u64 * 100),
            max: max as u32,
            now_ms,
        },
    }
}

/// Applies a lease command to the model, returning the outcome the table must give.
fn model_lease(model: &mut BTreeMap<u64, ModelTask>, cmd: &Command) -> Option<Outcome> {
    let (l, w, now_ms) = match cmd {
        Command::Complete { lease, worker, now_ms, .. }
        | Command::Fail { lease, worker, now_ms, .. }
        | Command::Extend { lease, worker, now_ms } => (lease, worker, *now_ms),
        Command::Cancel { task, now_ms } => return Some(model_cancel(model, *task, *now_ms)),
        Command::Retry { task, now_ms, .. } => return Some(model_retry(model, *task, *now_ms)),
        _ => return None,
    };
    let Some(t) = model.get_mut(&l.task.0) else { return Some(Outcome::NotFound) };
    let holder = t.attempt == l.attempt.0 && t.worker.as_deref() == Some(w.0.as_str());
    Some(match (t.status, holder) {
        (Status::InProgress, true) if t.cancelling => {
            end_cancelled(t, now_ms);
            Outcome::Cancelled
        }
        (Status::Cancelled, true) => Outcome::Cancelled,
        (Status::InProgress, true) => {
            match cmd {
                Command::Complete { result, .. } => {
                    t.status = Status::Completed;
                    t.result = Some(result.clone());
                    t.finished_ms = Some(now_ms);
                }
                Command::Fail { .. } => bury_or_requeue(t, now_ms),
                _ => {}
            }
            Outcome::Accepted
        }
        (Status::Completed, true) => Outcome::Duplicate,
        _ => Outcome::Stale,
    })
}

fn end_cancelled(t: &mut ModelTask, now_ms: u64) {
    t.status = Status::Cancelled;
    t.idle_since = None;
    t.cancelling = false;
    t.due_ms = None;
    t.finished_ms = Some(now_ms);
}

fn model_cancel(model: &mut BTreeMap<u64, ModelTask>, id: TaskId, now_ms: u64) -> Outcome {
    let Some(t) = model.get_mut(&id.0) else { return Outcome::NotFound };
    match t.status {
        Status::Completed | Status::Dead | Status::Cancelled => Outcome::Stale,
        Status::InProgress if t.cancelling => Outcome::Duplicate,
        Status::InProgress => {
            t.cancelling = true;
            Outcome::Accepted
        }
        Status::Idle | Status::Scheduled => {
            end_cancelled(t, now_ms);
            Outcome::Accepted
        }
    }
}

fn model_retry(model: &mut BTreeMap<u64, ModelTask>, id: TaskId, now_ms: u64) -> Outcome {
    let Some(t) = model.get_mut(&id.0) else { return Outcome::NotFound };
    match t.status {
        Status::Dead | Status::Cancelled => {
            t.status = Status::Idle;
            t.idle_since = Some(now_ms);
            t.attempt_base = t.attempt;
            t.finished_ms = None;
            Outcome::Accepted
        }
        _ => Outcome::Stale,
    }
}

/// The end of an attempt that did not complete.
fn bury_or_requeue(t: &mut ModelTask, now_ms: u64) {
    if t.cancelling {
        end_cancelled(t, now_ms);
        return;
    }
    let tried = t.attempt - t.attempt_base;
    if tried >= 3 {
        t.status = Status::Dead;
        t.finished_ms = Some(now_ms);
    } else if t.retry_base_ms == 0 {
        t.status = Status::Idle;
        t.idle_since = Some(now_ms);
    } else {
        // Checked against the table's due time once the command applied.
        let nominal = (t.retry_base_ms << (tried - 1)).min(4 * t.retry_base_ms);
        t.status = Status::Scheduled;
        t.backing_off = Some((now_ms, nominal));
    }
}

/// Makes the model's due tasks idle; returns how many.
fn wake(model: &mut BTreeMap<u64, ModelTask>, now_ms: u64) -> u64 {
    let mut woken = 0;
    for t in model.values_mut() {
        if t.status == Status::Scheduled && t.due_ms.is_some_and(|d| d <= now_ms) {
            t.status = Status::Idle;
            t.idle_since = t.due_ms.take();
            woken += 1;
        }
    }
    woken
}

/// The tasks a purge must remove: finished before the cutoff, oldest first.
fn model_purge(model: &BTreeMap<u64, ModelTask>, before_ms: u64, max: u32) -> Vec<TaskId> {
    let mut due: Vec<(u64, u64)> = model
        .iter()
        .filter_map(|(id, t)| Some((t.finished_ms.filter(|ms| *ms < before_ms)?, *id)))
        .collect();
    due.sort();
    due.into_iter().take(max as usize).map(|(_, id)| TaskId(id)).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn table_agrees_with_a_naive_model(ops in proptest::collection::vec(op(), 1..80)) {
        let mut table = Table::default();
        let mut replica = Table::default();
        let mut model: BTreeMap<u64, ModelTask> = BTreeMap::new();
        let mut acknowledged = 0u64;
        let mut purged = 0u64;
        let mut highest_id = 0u64;
        let (mut cap_a, mut paused_b) = (None::<u64>, false);
        for (i, op) in ops.iter().enumerate() {
            let now = i as u64 * 100;
            let cmd = to_command(op, now, &table);
            let before = table.clone();
            if matches!(cmd, Command::Assign { .. }) {
                wake(&mut model, now);
            }
            let expected = model_lease(&mut model, &cmd);
            let expected_purge = match &cmd {
                Command::Purge { finished_before_ms, max, .. } => {
                    Some(model_purge(&model, *finished_before_ms, *max))
                }
                _ => None,
            };
            let response = table.apply(cmd.clone());
            prop_assert_eq!(replica.apply(cmd.clone()), response.clone());
            match (&response, expected) {
                (Response::Outcome(o), Some(e)) => {
                    prop_assert_eq!(*o, e);
                    // Cancelled ends a task cancelled while in progress; every other refusal changes nothing.
                    let was_cancelled = matches!(&cmd, Command::Complete { lease, .. } | Command::Fail { lease, .. } | Command::Extend { lease, .. }
                        if before.get(lease.task).is_some_and(|t| t.status == Status::Cancelled));
                    if !matches!(*o, Outcome::Accepted | Outcome::Cancelled) || was_cancelled {
                        prop_assert_eq!(&table, &before, "a refused lease changed the table");
                    }
                }
                (Response::Submitted(s), None) => {
                    for s in s {
                        acknowledged += 1;
                        prop_assert!(s.id.0 > highest_id, "id {} given out again", s.id.0);
                        highest_id = s.id.0;
                        let t = table.get(s.id).unwrap();
                        let delay = match op { Op::Submit(_, d) => *d as u64 * 100, _ => 0 };
                        let due = (delay > 0).then_some(now + delay);
                        let status = if due.is_some() { Status::Scheduled } else { Status::Idle };
                        model.insert(s.id.0, ModelTask { status, attempt: 0, worker: None, result: None, finished_ms: None, due_ms: due, retry_base_ms: t.retry_base_ms, backing_off: None, attempt_base: 0, cancelling: false, idle_since: (status == Status::Idle).then_some(now), queue: t.queue.clone() });
                    }
                }
                (Response::Outcome(Outcome::Accepted), None) if matches!(cmd, Command::SetQueue { .. }) => {
                    match op {
                        Op::CapA(k) => cap_a = (*k > 0).then_some(*k as u64),
                        Op::PauseB(p) => paused_b = *p,
                        _ => {}
                    }
                }
                (Response::Assigned(tasks), None) => {
                    let Op::Assign(_, _, q) = op else { unreachable!("an Assign") };
                    let allowed = selector(*q);
                    for t in tasks {
                        let queue = &model[&t.id.0].queue;
                        prop_assert!(allowed.is_empty() || allowed.contains(queue), "leased from {} for {:?}", queue, allowed);
                        prop_assert!(!(paused_b && queue == "b"), "leased from a paused queue");
                    }
                    let in_a = |m: &BTreeMap<u64, ModelTask>| m.values().filter(|t| t.queue == "a" && t.status == Status::InProgress).count() as u64;
                    let leased_a = tasks.iter().filter(|t| model[&t.id.0].queue == "a").count() as u64;
                    if let (Some(cap), true) = (cap_a, leased_a > 0) {
                        prop_assert!(in_a(&model) + leased_a <= cap, "queue a over its cap {}", cap);
                    }
                    // Tasks idle for AGING_MS or more come first, longest waiting first
                    // (checked for workers of every queue while no queue has limits).
                    let limits = cap_a.is_some() || paused_b;
                    let mut aged: Vec<(u64, u64)> = model
                        .iter()
                        .filter(|(_, m)| m.status == Status::Idle)
                        .filter_map(|(id, m)| Some((m.idle_since?, *id)))
                        .filter(|(since, _)| since + AGING_MS <= now)
                        .collect();
                    aged.sort();
                    let k = if limits || !allowed.is_empty() { 0 } else { aged.len().min(tasks.len()) };
                    let first: Vec<u64> = tasks[..k].iter().map(|t| t.id.0).collect();
                    let oldest: Vec<u64> = aged[..k].iter().map(|(_, id)| *id).collect();
                    prop_assert_eq!(first, oldest, "aged tasks first");
                    for t in tasks {
                        let m = model.get_mut(&t.id.0).unwrap();
                        prop_assert_eq!(m.status, Status::Idle, "assigned a task that was not idle");
                        m.status = Status::InProgress;
                        m.idle_since = None;
                        m.attempt += 1;
                        m.worker = Some(t.worker.clone().unwrap().0);
                    }
                }
                (Response::Expired(leases), None) => {
                    for l in leases {
                        let m = model.get_mut(&l.task.0).unwrap();
                        prop_assert_eq!((m.status, m.attempt), (Status::InProgress, l.attempt.0));
                        bury_or_requeue(m, i as u64 * 100);
                    }
                }
                (Response::Purged(ids), None) => {
                    prop_assert_eq!(Some(ids), expected_purge.as_ref());
                    for id in ids {
                        let m = model.remove(&id.0).unwrap();
                        prop_assert!(matches!(m.status, Status::Completed | Status::Dead | Status::Cancelled));
                        purged += 1;
                    }
                }
                (Response::Woken(n), None) => {
                    prop_assert_eq!(*n, wake(&mut model, now), "woke other tasks than the due ones");
                }
                (r, e) => prop_assert!(false, "response {:?} for expected {:?}", r, e),
            }
            // A failed attempt backs off within its bounds.
            for (id, m) in model.iter_mut() {
                if let Some((at, nominal)) = m.backing_off.take() {
                    let due = table.get(TaskId(*id)).unwrap().due_ms.expect("a backing-off task has a due time");
                    prop_assert!(due >= at + nominal && due <= at + nominal + nominal / 4, "backoff {} for nominal {}", due - at, nominal);
                    m.due_ms = Some(due);
                }
            }
            // Nothing lost, counts add up, rows agree with the model.
            prop_assert_eq!(table.counts().total(), acknowledged - purged);
            prop_assert_eq!(table.tasks().count() as u64, acknowledged - purged);
            for t in table.tasks() {
                let m = &model[&t.id.0];
                prop_assert_eq!(t.status, m.status);
                prop_assert_eq!(t.attempt.0, m.attempt);
                prop_assert_eq!(&t.result, &m.result);
                prop_assert_eq!(t.due_ms, m.due_ms);
                prop_assert_eq!(t.cancelling, m.cancelling);
                prop_assert_eq!(t.idle_since_ms, m.idle_since);
            }
        }
        prop_assert_eq!(&table, &replica);
        prop_assert_eq!(table.digest(), replica.digest());
        let rebuilt = Table::from_parts(table.next_id(), table.tasks().cloned(), [])
            .with_queue_settings(table.queue_settings().clone());
        prop_assert_eq!(rebuilt.digest(), table.digest());
        prop_assert_eq!(rebuilt, table);
    }
}
