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
    /// (task, attempt) pairs handed out by more than one acknowledged lease.
    pub leased_twice: Vec<(u64, u32)>,
    /// Tasks one attempt of which was acknowledged as ended twice
    /// (completed and failed, or failed twice), or failed but found
    /// completed by that attempt in the final table.
    pub ended_twice: Vec<u64>,
    /// Tasks whose lease was extended (acknowledged) after the attempt's
    /// end had been acknowledged.
    pub extended_after_end: Vec<u64>,
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
            && self.leased_twice.is_empty()
            && self.ended_twice.is_empty()
            && self.extended_after_end.is_empty()
    }

    /// The counts, one per line.
    pub fn summary(&self) -> String {
        format!(
            "acknowledged submits {} found {} lost {}\ncompleted more than once {}\nstale results recorded {}\nkeys held twice {}\nunknown submits present {} absent {} twice {}\nattempts leased twice {} ended twice {} extended after their end {}\nlongest window without a successful write {} ms",
            self.acknowledged,
            self.found,
            self.lost.len(),
            self.completed_twice.len(),
            self.stale_recorded.len(),
            self.keyed_twice.len(),
            self.unknown_present,
            self.unknown_absent,
            self.unknown_twice.len(),
            self.leased_twice.len(),
            self.ended_twice.len(),
            self.extended_after_end.len(),
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
    check_attempts(history, &by_id, &mut v);
    writes.retain(|at| *at <= load_until_ms);
    // The load's end counts as a point: writes that stop early are a gap too.
    if load_until_ms != u64::MAX {
        writes.push(load_until_ms);
    }
    writes.sort_unstable();
    v.longest_write_gap_ms = writes.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    v
}

/// The fencing of attempts: each (task, attempt) is leased once, ends
/// once (completed or failed), and is not extended after it ended.
fn check_attempts(history: &[Op], by_id: &BTreeMap<u64, &Task>, v: &mut Verdict) {
    let mut leased: BTreeMap<(u64, u32), u32> = BTreeMap::new();
    let mut ended: BTreeMap<(u64, u32), Vec<&Op>> = BTreeMap::new();
    let mut ended_twice = BTreeSet::new();
    for op in history.iter().filter(|op| op.ret == Ret::Ok) {
        match &op.f {
            F::Lease { tasks } => {
                tasks.iter().for_each(|pair| *leased.entry(*pair).or_default() += 1)
            }
            F::Complete { task, attempt, .. } => {
                ended.entry((*task, *attempt)).or_default().push(op)
            }
            F::Fail { task, attempt } => {
                ended.entry((*task, *attempt)).or_default().push(op);
                let t = by_id.get(task);
                if t.is_some_and(|t| t.status == Status::Completed && t.attempt.0 == *attempt) {
                    ended_twice.insert(*task);
                }
            }
            _ => {}
        }
    }
    v.leased_twice = leased.into_iter().filter(|(_, n)| *n > 1).map(|(pair, _)| pair).collect();
    ended_twice.extend(ended.iter().filter(|(_, ops)| ops.len() > 1).map(|((t, _), _)| *t));
    v.ended_twice = ended_twice.into_iter().collect();
    let mut late = BTreeSet::new();
    for op in history.iter().filter(|op| op.ret == Ret::Ok) {
        if let F::Extend { task, attempt } = &op.f {
            let ends = ended.get(&(*task, *attempt)).map_or(&[][..], |ops| &ops[..]);
            if ends.iter().any(|end| end.return_ms < op.invoke_ms) {
                late.insert(*task);
            }
        }
    }
    v.extended_after_end = late.into_iter().collect();
}

#[cfg(test)]
mod tests;
