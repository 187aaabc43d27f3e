//! Named queues: each task belongs to one (`default` unless submitted to
//! another). Idle tasks are indexed per queue; a queue may be paused, or
//! capped in how many of its tasks are in progress at once (to protect a
//! downstream service), and both are replicated table state, changed by
//! `Command::SetQueue`. [`Table::pick`] chooses what an `Assign` leases.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{Counts, Table};
use crate::task::TaskId;

/// The queue of a task submitted without one.
pub const DEFAULT_QUEUE: &str = "default";

/// A worker asking for this queue takes from every queue.
pub const ANY_QUEUE: &str = "*";

/// A queue's limits.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueSettings {
    /// At most this many of its tasks in progress at once (None: no cap).
    pub max_in_flight: Option<u32>,
    /// While paused, none of its tasks is leased.
    pub paused: bool,
}

/// One change to a queue's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum QueueChange {
    /// Set (or, with None, lift) the cap on tasks in progress.
    MaxInFlight(Option<u32>),
    /// Pause (true) or resume (false).
    Paused(bool),
}

/// One queue as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueStatus {
    /// Its name.
    pub name: String,
    /// Its tasks by status.
    pub counts: Counts,
    /// Its limits.
    pub settings: QueueSettings,
}

/// The idle tasks of one queue, in the two orders `pick` reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Ready {
    /// Priority, then submission order.
    pub(super) by_priority: BTreeSet<(Reverse<i32>, TaskId)>,
    /// Since when idle, for aging.
    pub(super) by_since: BTreeSet<(u64, TaskId)>,
}

impl Table {
    /// Up to `max` idle tasks to lease now to a worker that takes from
    /// `queues` (in that order of preference; empty or `*`: every queue,
    /// as one). Within a choice, tasks idle for `aging_ms` or more come
    /// first (longest waiting first), then by priority and submission order.
    /// Paused queues and queues at their in-flight cap give nothing.
    pub(super) fn pick(
        &self,
        queues: &[String],
        max: usize,
        now_ms: u64,
        aging_ms: u64,
    ) -> Vec<TaskId> {
        let all = queues.is_empty() || queues.iter().any(|q| q == ANY_QUEUE);
        let tiers: Vec<Vec<&str>> = match all {
            true => vec![self.ready.keys().map(String::as_str).collect()],
            false => queues.iter().map(|q| vec![q.as_str()]).collect(),
        };
        let mut room: BTreeMap<&str, usize> = BTreeMap::new();
        for tier in &tiers {
            for q in tier {
                room.insert(q, self.room(q));
            }
        }
        let mut picked = Vec::new();
        let mut taken = BTreeSet::new();
        let mut take = |id: TaskId, q: &str, picked: &mut Vec<TaskId>| {
            let left = room.get_mut(q).expect("every candidate queue has a room entry");
            if picked.len() < max && *left > 0 && taken.insert(id) {
                *left -= 1;
                picked.push(id);
            }
        };
        let aged_limit = now_ms.checked_sub(aging_ms).filter(|_| aging_ms > 0);
        for tier in tiers {
            let ready: Vec<(&str, &Ready)> =
                tier.iter().filter_map(|q| Some((*q, self.ready.get(*q)?))).collect();
            if let Some(limit) = aged_limit {
                let mut aged: Vec<(u64, TaskId, &str)> = ready
                    .iter()
                    .flat_map(|(q, r)| {
                        let range = r.by_since.range(..=(limit, TaskId(u64::MAX)));
                        range.take(max).map(move |(since, id)| (*since, *id, *q))
                    })
                    .collect();
                aged.sort();
                for (_, id, q) in aged {
                    take(id, q, &mut picked);
                }
            }
            let mut rest: Vec<(Reverse<i32>, TaskId, &str)> = ready
                .iter()
                .flat_map(|(q, r)| {
                    r.by_priority.iter().take(2 * max).map(move |(p, id)| (*p, *id, *q))
                })
                .collect();
            rest.sort();
            for (_, id, q) in rest {
                take(id, q, &mut picked);
            }
            if picked.len() == max {
                break;
            }
        }
        picked
    }

    /// Whether an `Assign` from `queues` at `now_ms` would lease anything
    /// (a read-only check before proposing one).
    pub fn leasable(&self, queues: &[String], now_ms: u64, aging_ms: u64) -> bool {
        !self.pick(queues, 1, now_ms, aging_ms).is_empty()
    }

    /// How many more of `queue`'s tasks may be leased now.
    fn room(&self, queue: &str) -> usize {
        let Some(settings) = self.queue_settings.get(queue) else { return usize::MAX };
        if settings.paused {
            return 0;
        }
        let in_flight = self.per_queue.get(queue).map_or(0, |c| c.in_progress);
        settings
            .max_in_flight
            .map_or(usize::MAX, |cap| (cap as u64).saturating_sub(in_flight) as usize)
    }

    /// Applies one change to a queue's settings; a queue back to the
    /// defaults is forgotten.
    pub(super) fn set_queue(&mut self, queue: String, change: QueueChange) {
        let settings = self.queue_settings.entry(queue.clone()).or_default();
        match change {
            QueueChange::MaxInFlight(cap) => settings.max_in_flight = cap,
            QueueChange::Paused(paused) => settings.paused = paused,
        }
        if *settings == QueueSettings::default() {
            self.queue_settings.remove(&queue);
        }
    }

    /// Every queue with tasks or settings, by name.
    pub fn queues(&self) -> Vec<QueueStatus> {
        let names: BTreeSet<&String> =
            self.per_queue.keys().chain(self.queue_settings.keys()).collect();
        names
            .into_iter()
            .map(|name| QueueStatus {
                name: name.clone(),
                counts: self.per_queue.get(name).copied().unwrap_or_default(),
                settings: self.queue_settings.get(name).cloned().unwrap_or_default(),
            })
            .collect()
    }

    /// Up to `max` tasks of `queue` that a cancel would still change (not
    /// finished, not already being cancelled), in id order.
    pub fn cancellable_in(&self, queue: &str, max: usize) -> Vec<TaskId> {
        self.tasks
            .values()
            .filter(|t| t.queue == queue && !t.finished() && !t.cancelling)
            .take(max)
            .map(|t| t.id)
            .collect()
    }

    /// The task submitted with idempotency key `key`, if any.
    pub fn by_key(&self, key: &str) -> Option<TaskId> {
        self.keys.get(key).copied()
    }

    /// The replicated queue settings (stored and snapshotted with the rows).
    pub fn queue_settings(&self) -> &BTreeMap<String, QueueSettings> {
        &self.queue_settings
    }
}
