//! Retention: what `Purge` removes, and what it must never touch.

use super::tests::{assign, complete, fail, submit, task, w};
use super::*;

fn purge(t: &mut Table, before_ms: u64, max: u32) -> Vec<TaskId> {
    match t.apply(Command::Purge { finished_before_ms: before_ms, max, now_ms: before_ms }) {
        Response::Purged(ids) => ids,
        other => panic!("unexpected {other:?}"),
    }
}

fn complete_at(t: &mut Table, lease: Lease, now_ms: u64) {
    let cmd = Command::Complete { lease, worker: w("w01"), result: b"ok".to_vec(), now_ms };
    assert_eq!(t.apply(cmd), Response::Outcome(Outcome::Accepted));
}

#[test]
fn purge_removes_finished_tasks_older_than_the_cutoff_oldest_first() {
    let mut t = Table::default();
    submit(&mut t, vec![task("a"), task("b"), task("c")]);
    let (l1, l2) = (assign(&mut t, "w01", 0).unwrap(), assign(&mut t, "w01", 0).unwrap());
    complete_at(&mut t, l2, 100);
    complete_at(&mut t, l1, 200);
    assert_eq!(purge(&mut t, 100, 10), vec![], "finished at 100 is not before 100");
    assert_eq!(purge(&mut t, 300, 1), vec![TaskId(2)], "the longest-finished goes first");
    assert_eq!(purge(&mut t, 300, 10), vec![TaskId(1)]);
    assert_eq!(t.get(TaskId(1)), None);
    assert_eq!(t.counts(), Counts { idle: 1, ..Counts::default() });
    assert_eq!(t.oldest_finished_ms(), None);
}

#[test]
fn purge_never_removes_an_unfinished_task() {
    let mut t = Table::default();
    submit(&mut t, vec![task("idle"), task("leased"), task("failed once")]);
    assign(&mut t, "w01", 0).unwrap();
    assign(&mut t, "w01", 0).unwrap();
    let third = assign(&mut t, "w01", 0).unwrap();
    fail(&mut t, "w01", third);
    let before = t.clone();
    assert_eq!(purge(&mut t, u64::MAX, u32::MAX), vec![]);
    assert_eq!(t, before);
}

#[test]
fn dead_tasks_are_purged_like_completed_ones() {
    let mut t = Table::default();
    submit(&mut t, vec![NewTask { max_attempts: 1, ..task("a") }]);
    let lease = assign(&mut t, "w01", 0).unwrap();
    fail(&mut t, "w01", lease);
    assert_eq!(t.get(TaskId(1)).unwrap().status, Status::Dead);
    assert_eq!(purge(&mut t, 10, 10), vec![TaskId(1)]);
}

#[test]
fn ids_are_never_reused_after_a_purge_even_across_a_rebuild() {
    let mut t = Table::default();
    submit(&mut t, vec![task("a")]);
    let lease = assign(&mut t, "w01", 0).unwrap();
    complete(&mut t, "w01", lease, "ok");
    purge(&mut t, u64::MAX, 10);
    let rebuilt = Table::from_parts(t.next_id(), t.tasks().cloned(), []);
    assert_eq!(rebuilt, t);
    for mut table in [t, rebuilt] {
        assert_eq!(submit(&mut table, vec![task("b")]), vec![TaskId(2)]);
        // A late result for the purged task 1 cannot match anything.
        assert_eq!(complete(&mut table, "w01", lease, "late"), Outcome::NotFound);
    }
}

#[test]
fn a_purged_tasks_key_can_be_submitted_again() {
    let mut t = Table::default();
    let keyed = NewTask { key: Some("k".into()), ..task("a") };
    assert_eq!(submit(&mut t, vec![keyed.clone()]), vec![TaskId(1)]);
    let lease = assign(&mut t, "w01", 0).unwrap();
    complete(&mut t, "w01", lease, "ok");
    assert_eq!(submit(&mut t, vec![keyed.clone()]), vec![TaskId(1)], "kept while the task is");
    purge(&mut t, u64::MAX, 10);
    assert_eq!(submit(&mut t, vec![keyed]), vec![TaskId(2)], "forgotten with its task");
}

#[test]
fn purge_names_the_removed_rows_as_touched() {
    let mut t = Table::default();
    submit(&mut t, vec![task("a")]);
    let lease = assign(&mut t, "w01", 0).unwrap();
    complete(&mut t, "w01", lease, "ok");
    let mut touched = BTreeSet::new();
    let cmd = Command::Purge { finished_before_ms: 100, max: 10, now_ms: 100 };
    t.apply_touching(cmd, &mut touched);
    assert_eq!(touched.into_iter().collect::<Vec<_>>(), vec![TaskId(1)]);
}
