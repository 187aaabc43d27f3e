//! The checker against hand-made histories: each guarantee is broken once.

use taskraft_core::{Attempt, TaskId, WorkerId};

use super::*;

fn task(id: u64, data: &str, key: Option<&str>, attempt: u32, result: Option<&str>) -> Task {
    Task {
        id: TaskId(id),
        data: data.into(),
        key: key.map(String::from),
        priority: 0,
        queue: "default".into(),
        status: if result.is_some() { Status::Completed } else { Status::Idle },
        attempt: Attempt(attempt),
        max_attempts: 3,
        worker: Some(WorkerId("w".into())),
        lease_start_ms: None,
        result: result.map(|r| r.as_bytes().to_vec()),
        error: None,
        submitted_ms: 0,
        finished_ms: result.map(|_| 1),
        due_ms: None,
        retry_base_ms: 0,
        retry_max_ms: 0,
        attempt_base: 0,
        cancelling: false,
        idle_since_ms: result.is_none().then_some(0),
    }
}

fn submit(data: &str, id: Option<u64>, ret: Ret, at: u64) -> Op {
    let f = F::Submit { data: data.into(), key: None, id };
    Op { process: "p".into(), f, invoke_ms: at, return_ms: at + 1, node: Some(1), ret }
}

fn complete(task: u64, attempt: u32, result: &str, ret: Ret, at: u64) -> Op {
    op(F::Complete { task, attempt, result: result.into() }, ret, at)
}

/// A clean run: everything acknowledged is there, each task completed
/// once with its current attempt's result.
fn clean() -> (Vec<Op>, Vec<Task>) {
    let history = vec![
        submit("a", Some(1), Ret::Ok, 0),
        submit("b", Some(2), Ret::Ok, 10),
        submit("c", None, Ret::Unknown, 20),
        complete(1, 1, "A", Ret::Ok, 30),
        complete(2, 1, "B-late", Ret::Fenced, 40),
        complete(2, 2, "B", Ret::Ok, 50),
    ];
    let table = vec![
        task(1, "a", None, 1, Some("A")),
        task(2, "b", None, 2, Some("B")),
        task(3, "c", None, 0, None),
    ];
    (history, table)
}

#[test]
fn a_clean_history_passes_and_the_lines_round_trip() {
    let (history, table) = clean();
    let v = verdict(&history, &table);
    assert!(v.ok(), "{}", v.summary());
    assert_eq!((v.acknowledged, v.found, v.unknown_present), (2, 2, 1));
    assert_eq!(v.longest_write_gap_ms, 20, "writes returned at 1, 11, 31 and 51 ms");
    let early = verdict_with(&history, &table, &BTreeSet::new(), 31);
    assert_eq!(early.longest_write_gap_ms, 20, "the gap from 11 to 31 ms counts");
    let earlier = verdict_with(&history, &table, &BTreeSet::new(), 30);
    assert_eq!(earlier.longest_write_gap_ms, 19, "writes at 1 and 11 ms, then none until 30");
    let text: String = history.iter().map(|op| serde_json::to_string(op).unwrap() + "\n").collect();
    assert_eq!(parse(&text).unwrap(), history);
    assert!(text.lines().next().unwrap().contains("\"f\":\"submit\""), "{text}");
}

#[test]
fn a_lost_write_is_caught() {
    let (history, mut table) = clean();
    table.retain(|t| t.id.0 != 2);
    let v = verdict(&history, &table);
    assert_eq!(v.lost, vec![2]);
    assert!(!v.ok());
}

#[test]
fn a_double_completion_is_caught() {
    let (mut history, table) = clean();
    history.push(complete(1, 1, "A", Ret::Ok, 60));
    let v = verdict(&history, &table);
    assert_eq!(v.completed_twice, vec![1]);
    assert!(!v.ok());
}

#[test]
fn a_stale_result_recorded_is_caught() {
    let (history, mut table) = clean();
    // Task 2 holds attempt 1's result, though attempt 2 is current.
    table[1].result = Some(b"B-late".to_vec());
    let v = verdict(&history, &table);
    assert_eq!(v.stale_recorded, vec![2]);
    assert!(!v.ok());
}

#[test]
fn a_push_workers_result_must_be_its_data_upper_cased() {
    let (history, mut table) = clean();
    table.push(task(4, "d", None, 1, Some("D")));
    table[3].worker = Some(WorkerId("push-1".into()));
    let push = BTreeSet::from(["push-1".to_string()]);
    assert!(verdict_with(&history, &table, &push, u64::MAX).ok());
    table[3].result = Some(b"d".to_vec());
    assert_eq!(verdict_with(&history, &table, &push, u64::MAX).stale_recorded, vec![4]);
    assert_eq!(verdict(&history, &table).stale_recorded, vec![4], "not in the history");
}

#[test]
fn a_key_held_twice_and_an_unknown_submit_applied_twice_are_caught() {
    let (history, mut table) = clean();
    table[0].key = Some("k".into());
    table[1].key = Some("k".into());
    table.push(task(4, "c", None, 0, None));
    let v = verdict(&history, &table);
    assert_eq!(v.keyed_twice, vec!["k".to_string()]);
    assert_eq!(v.unknown_twice, vec!["c".to_string()]);
    assert!(!v.ok());
}

fn op(f: F, ret: Ret, at: u64) -> Op {
    Op { process: "w".into(), f, invoke_ms: at, return_ms: at + 1, node: Some(1), ret }
}

#[test]
fn an_attempt_leased_twice_is_caught() {
    let (mut history, table) = clean();
    history.push(op(F::Lease { tasks: vec![(1, 1), (2, 2)] }, Ret::Ok, 5));
    history.push(op(F::Lease { tasks: vec![(2, 1)] }, Ret::Ok, 6));
    history.push(op(F::Lease { tasks: vec![(2, 1)] }, Ret::Unknown, 7));
    assert!(verdict(&history, &table).ok(), "each attempt leased once (the unknown one aside)");
    history.push(op(F::Lease { tasks: vec![(2, 2)] }, Ret::Ok, 8));
    let v = verdict(&history, &table);
    assert_eq!(v.leased_twice, vec![(2, 2)]);
    assert!(!v.ok());
}

#[test]
fn an_attempt_ended_twice_is_caught() {
    let (mut history, table) = clean();
    history.push(op(F::Fail { task: 2, attempt: 1 }, Ret::Ok, 35));
    history.push(op(F::Fail { task: 1, attempt: 1 }, Ret::Fenced, 36));
    assert!(verdict(&history, &table).ok(), "attempt 1 of task 2 failed once, then 2 completed");
    let mut twice = history.clone();
    twice.push(op(F::Fail { task: 2, attempt: 1 }, Ret::Ok, 37));
    assert_eq!(verdict(&twice, &table).ended_twice, vec![2], "failed twice");
    let mut both = history.clone();
    both.push(op(F::Fail { task: 1, attempt: 1 }, Ret::Ok, 38));
    assert_eq!(verdict(&both, &table).ended_twice, vec![1], "completed and failed");
    // Task 3's completion had an unknown outcome; it was applied.
    let mut unseen = history;
    let mut table = table;
    table[2] = task(3, "c", None, 1, Some("C"));
    unseen.push(complete(3, 1, "C", Ret::Unknown, 60));
    assert!(verdict(&unseen, &table).ok());
    unseen.push(op(F::Fail { task: 3, attempt: 1 }, Ret::Ok, 70));
    let v = verdict(&unseen, &table);
    assert_eq!(v.ended_twice, vec![3], "failed, yet completed by that attempt in the table");
    assert!(!v.ok());
}

#[test]
fn an_extension_after_the_end_is_caught() {
    let (mut history, table) = clean();
    history.push(op(F::Extend { task: 1, attempt: 1 }, Ret::Ok, 25));
    history.push(op(F::Extend { task: 1, attempt: 1 }, Ret::Fenced, 45));
    history.push(op(F::Extend { task: 2, attempt: 2 }, Ret::Ok, 45));
    assert!(verdict(&history, &table).ok(), "before the end, or fenced");
    history.push(op(F::Extend { task: 1, attempt: 1 }, Ret::Ok, 45));
    let v = verdict(&history, &table);
    assert_eq!(v.extended_after_end, vec![1]);
    assert!(!v.ok());
}
