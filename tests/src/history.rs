//! A history of client operations, one JSON object per line, and the
//! checker that holds a history and the final table to taskraft's
//! guarantees, Jepsen-queue style: it counts rather than stops at the
//! first problem, so a run's summary says how much went wrong.
//!
//! What a nemesis run records for every operation: who did it, what
//! (`submit`, `complete`, or a `fault` the nemesis injected), when it was
//! invoked and returned, the node that answered, and how it ended: `ok`,
//! `fenced` (an applied refusal: stale, duplicate, cancelled), `error`
//! (it did not take effect) or `unknown` (it may have).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use taskraft_core::{Status, Task};

/// One operation, as a history line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    /// The client (producer, worker, nemesis) that ran it.
    pub process: String,
    /// What it did.
    #[serde(flatten)]
    pub f: F,
    /// When it was invoked and when it returned (ms since the run began).
    pub invoke_ms: u64,
    pub return_ms: u64,
    /// The node that answered, when known.
    pub node: Option<u64>,
    /// How it ended.
    pub ret: Ret,
}

/// The operations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "f", rename_all = "snake_case")]
pub enum F {
    /// A submit of one task with a unique payload; `id` once acknowledged.
    Submit { data: String, key: Option<String>, id: Option<u64> },
    /// A lease request; `tasks` holds the (task, attempt) pairs it got.
    Lease { tasks: Vec<(u64, u32)> },
    /// A completion of `task`'s attempt `attempt` with `result`.
    Complete { task: u64, attempt: u32, result: String },
    /// A failure report for `task`'s attempt `attempt`.
    Fail { task: u64, attempt: u32 },
    /// A lease extension for `task`'s attempt `attempt`.
    Extend { task: u64, attempt: u32 },
    /// A fault the nemesis injected (or healed).
    Fault { what: String },
}

/// How an operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ret {
    Ok,
    Fenced,
    Error,
    Unknown,
}

/// What the checker found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Acknowledged submits, and those found in the final table.
    pub acknowledged: u64,
    pub found: u64,
    /// Acknowledged submits missing from the table (ids).
    pub lost: Vec<u64>,
    /// Tasks whose completion was acknowledged (`ok`) more than once.
    pub completed_twice: Vec<u64>,
    /// Completed tasks whose recorded result is not the one sent for their
    /// current attempt (a stale lease's result was recorded), or, for a
    /// push worker's task, not its data upper-cased.
    pub stale_recorded: Vec<u64>,
    /// Keys held by more than one task.
    pub keyed_twice: Vec<String>,
    /// Submits of unknown outcome: in the table once, not at all, or (a
    /// violation) more than once.
    pub unknown_present: u64,
    pub unknown_absent: u64,
    pub unknown_twice: Vec<String>,
    /// The longest time between two successful writes while clients had
    /// something to write (up to the end of the faults: afterwards the
    /// producers stop and only what is left is drained).
    pub longest_write_gap_ms: u64,
}

impl Verdict {
    /// No guarantee was broken.
    pub fn ok(&self) -> bool {
        self.lost.is_empty()
            && self.completed_twice.is_empty()
            && self.stale_recorded.is_empty()
            && self.keyed_twice.is_empty()
            && self.unknown_twice.is_empty()
    }

    /// The counts, one per line.
    pub fn summary(&self) -> String {
        format!(
            "acknowledged submits {} found {} lost {}\ncompleted more than once {}\nstale results recorded {}\nkeys held twice {}\nunknown submits present {} absent {} twice {}\nlongest window without a successful write {} ms",
            self.acknowledged,
            self.found,
            self.lost.len(),
            self.completed_twice.len(),
            self.stale_recorded.len(),
            self.keyed_twice.len(),
            self.unknown_present,
            self.unknown_absent,
            self.unknown_twice.len(),
            self.longest_write_gap_ms
        )
    }
}

/// Reads a history: one JSON object per line (blank lines skipped).
pub fn parse(text: &str) -> Result<Vec<Op>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| format!("line {}: {e}", i + 1)))
        .collect()
}

/// Holds `history` and the final `table` to the guarantees.
pub fn verdict(history: &[Op], table: &[Task]) -> Verdict {
    verdict_with(history, table, &BTreeSet::new(), u64::MAX)
}

/// Like [`verdict`], where tasks completed by the `push` workers (which
/// run the `upper` handler, outside the history) must hold their data
/// upper-cased, and write gaps count up to `load_until_ms` only.
pub fn verdict_with(
    history: &[Op],
    table: &[Task],
    push: &BTreeSet<String>,
    load_until_ms: u64,
) -> Verdict {
    let mut v = Verdict::default();
    let by_id: BTreeMap<u64, &Task> = table.iter().map(|t| (t.id.0, t)).collect();
    let mut by_data: BTreeMap<&[u8], u64> = BTreeMap::new();
    let mut by_key: BTreeMap<&str, u64> = BTreeMap::new();
    for t in table {
        *by_data.entry(&t.data).or_default() += 1;
        if let Some(k) = &t.key {
            *by_key.entry(k).or_default() += 1;
        }
    }
    v.keyed_twice = by_key.iter().filter(|(_, n)| **n > 1).map(|(k, _)| k.to_string()).collect();
    let mut accepted: BTreeMap<u64, Vec<&Op>> = BTreeMap::new();
    let mut writes: Vec<u64> = Vec::new();
    for op in history {
        match (&op.f, op.ret) {
            (F::Submit { id: Some(id), .. }, Ret::Ok) => {
                v.acknowledged += 1;
                match by_id.contains_key(id) {
                    true => v.found += 1,
                    false => v.lost.push(*id),
                }
                writes.push(op.return_ms);
            }
            (F::Submit { data, .. }, Ret::Unknown | Ret::Error) => {
                match by_data.get(data.as_bytes()).copied().unwrap_or(0) {
                    0 => v.unknown_absent += 1,
                    1 => v.unknown_present += 1,
                    _ => v.unknown_twice.push(data.clone()),
                }
            }
            (F::Complete { task, .. }, Ret::Ok) => {
                accepted.entry(*task).or_default().push(op);
                writes.push(op.return_ms);
            }
            _ => {}
        }
    }
    v.completed_twice = accepted.iter().filter(|(_, ops)| ops.len() > 1).map(|(t, _)| *t).collect();
    for t in table.iter().filter(|t| t.status == Status::Completed) {
        let recorded = t.result.as_deref().unwrap_or_default();
        if t.worker.as_ref().is_some_and(|w| push.contains(&w.0)) {
            if recorded != t.data.to_ascii_uppercase() {
                v.stale_recorded.push(t.id.0);
            }
            continue;
        }
        // The result must be one sent for the task's current attempt.
        let sent_for_current = history.iter().any(|op| {
            matches!(&op.f, F::Complete { task, attempt, result }
                if *task == t.id.0 && *attempt == t.attempt.0 && result.as_bytes() == recorded)
        });
        if !sent_for_current {
            v.stale_recorded.push(t.id.0);
        }
    }
    writes.retain(|at| *at <= load_until_ms);
    // The load's end counts as a point: writes that stop early are a gap too.
    if load_until_ms != u64::MAX {
        writes.push(load_until_ms);
    }
    writes.sort_unstable();
    v.longest_write_gap_ms = writes.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    v
}

#[cfg(test)]
mod tests {
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
        let f = F::Complete { task, attempt, result: result.into() };
        Op { process: "w".into(), f, invoke_ms: at, return_ms: at + 1, node: Some(1), ret }
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
        let text: String =
            history.iter().map(|op| serde_json::to_string(op).unwrap() + "\n").collect();
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
}
