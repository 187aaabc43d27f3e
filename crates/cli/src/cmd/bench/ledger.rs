//! What the drain loops share: which tasks were submitted and which
//! completions the cluster recorded, from the answers the loops got.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use parking_lot::Mutex;
use taskraft_core::{Lease, Outcome as LeaseOutcome};

/// What the drain loops share.
#[derive(Default)]
pub struct Shared {
    /// Accepted completions still wanted; the loops stop at zero (on a
    /// cluster that holds other tasks too, draining all of it is not the run).
    pub wanted: AtomicU64,
    pub failed_completes: AtomicU64,
    /// Completions answered `Duplicate`: an earlier attempt of the same call
    /// was recorded but its answer was lost, and the client retried it.
    pub duplicate_answers: AtomicU64,
    pub(super) killed_at: Mutex<Option<Instant>>,
    pub(super) first_after_kill: Mutex<Option<Instant>>,
    pub(super) last_accept: Mutex<Option<Instant>>,
    /// Which tasks were recorded completed (W4 checks it).
    pub ledger: Mutex<Ledger>,
}

impl Shared {
    /// Counts the answer to a completion of `lease`, sent by a loop that
    /// asked for the lease at `requested`, answered at `at`.
    ///
    /// `Accepted` records the task. So does `Duplicate`: only this loop held
    /// the lease, so the completion already recorded is its own earlier
    /// attempt, whose answer was lost (a timeout, a broken connection) before
    /// the client retried; the task completed once. Counting it as lost
    /// would blame the cluster for the network.
    pub fn answered(&self, lease: Lease, outcome: LeaseOutcome, requested: Instant, at: Instant) {
        match outcome {
            LeaseOutcome::Accepted => self.ledger.lock().accepted(lease.task.0),
            LeaseOutcome::Duplicate => {
                self.duplicate_answers.fetch_add(1, Ordering::Relaxed);
                self.ledger.lock().recorded(lease.task.0);
            }
            _ => return,
        }
        let _ =
            self.wanted.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |w| w.checked_sub(1));
        *self.last_accept.lock() = Some(at);
        let killed = *self.killed_at.lock();
        if killed.is_some_and(|k| requested > k) {
            self.first_after_kill.lock().get_or_insert(at);
        }
    }
}

/// Task ids seen submitted and recorded completed, as bitsets indexed by id.
#[derive(Default)]
pub struct Ledger {
    submitted: Vec<u64>,
    accepted: Vec<u64>,
    /// Accepted answers for a task already recorded: must stay 0.
    pub twice: u64,
}

impl Ledger {
    fn set(bits: &mut Vec<u64>, id: u64) -> bool {
        let (word, bit) = ((id / 64) as usize, 1u64 << (id % 64));
        if bits.len() <= word {
            bits.resize(word + 1, 0);
        }
        let was = bits[word] & bit != 0;
        bits[word] |= bit;
        was
    }

    /// Records an acknowledged submit.
    pub fn submitted(&mut self, id: u64) {
        Ledger::set(&mut self.submitted, id);
    }

    /// Records an `Accepted` completion: a second one for the same task is
    /// counted in [`Ledger::twice`].
    pub fn accepted(&mut self, id: u64) {
        if Ledger::set(&mut self.accepted, id) {
            self.twice += 1;
        }
    }

    /// Records a completion the cluster reports as already recorded (a
    /// `Duplicate` answer to a retried call): never counted twice.
    pub fn recorded(&mut self, id: u64) {
        Ledger::set(&mut self.accepted, id);
    }

    /// Submitted tasks not (yet) recorded completed.
    pub fn pending(&self) -> u64 {
        self.pending_words().map(|(_, left)| left.count_ones() as u64).sum()
    }

    /// The ids of submitted tasks not (yet) recorded completed.
    pub fn pending_ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.pending_words().flat_map(|(word, left)| {
            (0..64).filter(move |b| left & (1 << b) != 0).map(move |b| word as u64 * 64 + b)
        })
    }

    /// Each word of the bitsets, with the bits of the pending tasks.
    fn pending_words(&self) -> impl Iterator<Item = (usize, u64)> + '_ {
        let accepted = |i: usize| self.accepted.get(i).copied().unwrap_or(0);
        self.submitted.iter().enumerate().map(move |(i, s)| (i, s & !accepted(i)))
    }

    /// Completions of distinct tasks recorded.
    pub fn accepted_count(&self) -> u64 {
        self.accepted.iter().map(|w| w.count_ones() as u64).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use taskraft_core::{Attempt, TaskId};

    fn lease(task: u64) -> Lease {
        Lease { task: TaskId(task), attempt: Attempt(1) }
    }

    #[test]
    fn a_duplicate_answer_records_the_task_once_and_a_second_accept_counts_twice() {
        let shared = Shared { wanted: AtomicU64::new(10), ..Shared::default() };
        let now = Instant::now();
        for id in [3, 64, 130] {
            shared.ledger.lock().submitted(id);
        }
        shared.answered(lease(3), LeaseOutcome::Accepted, now, now);
        shared.answered(lease(64), LeaseOutcome::Duplicate, now, now);
        shared.answered(lease(130), LeaseOutcome::Stale, now, now);
        let ledger = shared.ledger.lock();
        assert_eq!(ledger.pending_ids().collect::<Vec<_>>(), vec![130]);
        assert_eq!((ledger.pending(), ledger.accepted_count(), ledger.twice), (1, 2, 0));
        drop(ledger);
        assert_eq!(shared.wanted.load(Ordering::Relaxed), 8);
        assert_eq!(shared.duplicate_answers.load(Ordering::Relaxed), 1);
        shared.answered(lease(64), LeaseOutcome::Duplicate, now, now);
        assert_eq!(
            shared.ledger.lock().twice,
            0,
            "a duplicate answer is never a second completion"
        );
        shared.answered(lease(3), LeaseOutcome::Accepted, now, now);
        assert_eq!(shared.ledger.lock().twice, 1);
    }
}
