//! Property test: the table against a naive model, over random command
//! sequences. Checks that no task is lost, counts add up, a stale lease never
//! changes anything, a task completes at most once with its holder's result,
//! and two tables fed the same commands are equal.

use std::collections::BTreeMap;

use proptest::prelude::*;
use taskraft_core::{
    Attempt, Command, Lease, NewTask, Outcome, Response, Status, Table, TaskId, WorkerId,
};

/// What the model remembers of a task: status, attempt, holder, result.
#[derive(Debug, Clone, PartialEq)]
struct ModelTask {
    status: Status,
    attempt: u32,
    worker: Option<String>,
    result: Option<Vec<u8>>,
}

#[derive(Debug, Clone)]
enum Op {
    Submit(u8),
    Assign(u8, u8),
    Complete(u8, u8, u8),
    Fail(u8, u8, u8),
    Extend(u8, u8, u8),
    ExpireAll,
    ExpireOne(u8, u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..3u8).prop_map(Op::Submit),
        (0..3u8, 1..3u8).prop_map(|(w, n)| Op::Assign(w, n)),
        (0..3u8, 0..8u8, 0..4u8).prop_map(|(w, t, a)| Op::Complete(w, t, a)),
        (0..3u8, 0..8u8, 0..4u8).prop_map(|(w, t, a)| Op::Fail(w, t, a)),
        (0..3u8, 0..8u8, 0..4u8).prop_map(|(w, t, a)| Op::Extend(w, t, a)),
        Just(Op::ExpireAll),
        (0..8u8, 0..4u8).prop_map(|(t, a)| Op::ExpireOne(t, a)),
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
        Op::Submit(n) => {
            let tasks = (0..=n)
                .map(|i| NewTask {
                    data: vec![i],
                    key: None,
                    priority: i as i32 % 2,
                    max_attempts: 3,
                })
                .collect();
            Command::Submit { tasks, now_ms }
        }
        Op::Assign(w, n) => Command::Assign { worker: worker(w), max: n as u32, now_ms },
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
    }
}

/// Applies a lease command to the model, returning the outcome the table must give.
fn model_lease(model: &mut BTreeMap<u64, ModelTask>, cmd: &Command) -> Option<Outcome> {
    let (l, w) = match cmd {
        Command::Complete { lease, worker, .. }
        | Command::Fail { lease, worker, .. }
        | Command::Extend { lease, worker, .. } => (lease, worker),
        _ => return None,
    };
    let Some(t) = model.get_mut(&l.task.0) else { return Some(Outcome::NotFound) };
    let holder = t.attempt == l.attempt.0 && t.worker.as_deref() == Some(w.0.as_str());
    Some(match (t.status, holder) {
        (Status::InProgress, true) => {
            match cmd {
                Command::Complete { result, .. } => {
                    t.status = Status::Completed;
                    t.result = Some(result.clone());
                }
                Command::Fail { .. } => {
                    t.status = if t.attempt >= 3 { Status::Dead } else { Status::Idle };
                }
                _ => {}
            }
            Outcome::Accepted
        }
        (Status::Completed, true) => Outcome::Duplicate,
        _ => Outcome::Stale,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn table_agrees_with_a_naive_model(ops in proptest::collection::vec(op(), 1..80)) {
        let mut table = Table::default();
        let mut replica = Table::default();
        let mut model: BTreeMap<u64, ModelTask> = BTreeMap::new();
        let mut acknowledged = 0u64;
        for (i, op) in ops.iter().enumerate() {
            let cmd = to_command(op, i as u64 * 100, &table);
            let before = table.clone();
            let expected = model_lease(&mut model, &cmd);
            let response = table.apply(cmd.clone());
            prop_assert_eq!(replica.apply(cmd.clone()), response.clone());
            match (&response, expected) {
                (Response::Outcome(o), Some(e)) => {
                    prop_assert_eq!(*o, e);
                    if *o != Outcome::Accepted {
                        prop_assert_eq!(&table, &before, "a refused lease changed the table");
                    }
                }
                (Response::Submitted(s), None) => {
                    for s in s {
                        acknowledged += 1;
                        model.insert(s.id.0, ModelTask { status: Status::Idle, attempt: 0, worker: None, result: None });
                    }
                }
                (Response::Assigned(tasks), None) => {
                    for t in tasks {
                        let m = model.get_mut(&t.id.0).unwrap();
                        prop_assert_eq!(m.status, Status::Idle, "assigned a task that was not idle");
                        m.status = Status::InProgress;
                        m.attempt += 1;
                        m.worker = Some(t.worker.clone().unwrap().0);
                    }
                }
                (Response::Expired(leases), None) => {
                    for l in leases {
                        let m = model.get_mut(&l.task.0).unwrap();
                        prop_assert_eq!((m.status, m.attempt), (Status::InProgress, l.attempt.0));
                        m.status = if m.attempt >= 3 { Status::Dead } else { Status::Idle };
                    }
                }
                (r, e) => prop_assert!(false, "response {:?} for expected {:?}", r, e),
            }
            // Nothing lost, counts add up, rows agree with the model.
            prop_assert_eq!(table.counts().total(), acknowledged);
            for t in table.tasks() {
                let m = &model[&t.id.0];
                prop_assert_eq!(t.status, m.status);
                prop_assert_eq!(t.attempt.0, m.attempt);
                prop_assert_eq!(&t.result, &m.result);
            }
        }
        prop_assert_eq!(&table, &replica);
        prop_assert_eq!(table.digest(), replica.digest());
        prop_assert_eq!(Table::from_tasks(table.tasks().cloned()), table);
    }
}
