//! [`Table`]: the task rows plus the indexes that keep every command cheap.
//!
//! Only ordered collections are used, so iteration order, and with it the
//! choice of the next idle task, is the same on every replica.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::command::{Command, NewTask, Outcome, PushWorker, Response, Submitted};
use crate::retry::backoff_ms;
use crate::task::{Attempt, Lease, Status, Task, TaskId, WorkerId};

/// Most scheduled tasks one command makes idle: bounds the work of one
/// apply (and so the pause it adds to heartbeats) on every replica, when
/// many tasks fall due at the same moment.
pub const MAX_WAKE: usize = 2000;

/// The task table. Rows live in `tasks`; everything else is an index derived
/// from them and rebuilt by [`Table::from_parts`]. Each row is shared
/// ([`Arc`]) so that [`Table::rows_now`] can hand out the rows of a moment
/// without copying them; a row shared that way is copied when it changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    tasks: BTreeMap<TaskId, Arc<Task>>,
    keys: BTreeMap<String, TaskId>,
    /// Idle tasks per queue, in the orders they are handed out ([`queues`]).
    ready: BTreeMap<String, Ready>,
    /// Idle tasks in all queues.
    idle_count: u64,
    /// Tasks per queue by status (queues with no task are absent).
    per_queue: BTreeMap<String, Counts>,
    /// Queue limits, replicated (queues at the defaults are absent).
    queue_settings: BTreeMap<String, QueueSettings>,
    /// In-progress tasks by lease start, for the scanner.
    leases: BTreeSet<(u64, TaskId)>,
    /// Scheduled tasks by the time they are due.
    scheduled: BTreeSet<(u64, TaskId)>,
    /// Completed and dead tasks by the time they finished, for retention.
    finished: BTreeSet<(u64, TaskId)>,
    /// The highest id ever given out. Kept apart from the rows (and stored
    /// with them) because purged tasks must never have their ids reused: a
    /// late result for a purged task must not fence-match a new one.
    next_id: u64,
    completed: u64,
    dead: u64,
    cancelled: u64,
    /// Registered push workers, by id.
    push_workers: BTreeMap<WorkerId, PushWorker>,
}

/// Number of tasks in each status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Waiting to be assigned.
    pub idle: u64,
    /// Leased to a worker.
    pub in_progress: u64,
    /// Finished with a result.
    pub completed: u64,
    /// Out of attempts.
    pub dead: u64,
    /// Waiting for their time (a delay, or a backoff after a failed attempt).
    pub scheduled: u64,
    /// Cancelled before they finished.
    pub cancelled: u64,
}

impl Counts {
    /// All tasks in the table.
    pub fn total(&self) -> u64 {
        self.unfinished() + self.completed + self.dead + self.cancelled
    }

    /// Tasks that will still run: idle, scheduled or in progress.
    pub fn unfinished(&self) -> u64 {
        self.idle + self.scheduled + self.in_progress
    }
}

impl Table {
    /// Rebuilds a table from the highest id it ever gave out ([`Table::next_id`]),
    /// its rows and its push worker registrations (a snapshot or the disk).
    pub fn from_parts(
        next_id: u64,
        tasks: impl IntoIterator<Item = Task>,
        push_workers: impl IntoIterator<Item = PushWorker>,
    ) -> Table {
        let push_workers = push_workers.into_iter().map(|w| (w.id.clone(), w)).collect();
        let mut table = Table { push_workers, next_id, ..Table::default() };
        for task in tasks {
            table.next_id = table.next_id.max(task.id.0);
            if let Some(key) = &task.key {
                table.keys.insert(key.clone(), task.id);
            }
            table.index(&task);
            table.tasks.insert(task.id, Arc::new(task));
        }
        table
    }

    /// Applies one command; see the crate docs for the lifecycle.
    pub fn apply(&mut self, cmd: Command) -> Response {
        self.apply_touching(cmd, &mut BTreeSet::new())
    }

    /// Like [`Table::apply`], and adds the id of every row it changed to
    /// `touched`, so that storage can write just those rows.
    pub fn apply_touching(&mut self, cmd: Command, touched: &mut BTreeSet<TaskId>) -> Response {
        match cmd {
            Command::Submit { tasks, now_ms } => Response::Submitted(
                tasks.into_iter().map(|t| self.submit(t, now_ms, touched)).collect(),
            ),
            Command::Assign { worker, max, now_ms, aging_ms, queues } => {
                self.wake(now_ms, touched);
                let picked = self.pick(&queues, max as usize, now_ms, aging_ms);
                Response::Assigned(self.assign(&worker, picked, now_ms, touched))
            }
            Command::SetQueue { queue, change } => {
                self.set_queue(queue, change);
                Response::Outcome(Outcome::Accepted)
            }
            Command::Wake { now_ms } => Response::Woken(self.wake(now_ms, touched)),
            Command::Complete { lease, worker, result, now_ms } => {
                Response::Outcome(self.complete(lease, &worker, result, now_ms, touched))
            }
            Command::Fail { lease, worker, error, now_ms } => {
                let outcome = self.report(lease, &worker, now_ms, touched);
                if outcome == Outcome::Accepted {
                    self.requeue_or_bury(lease.task, error, now_ms, touched);
                }
                Response::Outcome(outcome)
            }
            Command::Extend { lease, worker, now_ms } => {
                let outcome = self.report(lease, &worker, now_ms, touched);
                if outcome == Outcome::Accepted {
                    self.update(lease.task, touched, |t| t.lease_start_ms = Some(now_ms));
                }
                Response::Outcome(outcome)
            }
            Command::Retry { task, max_attempts, now_ms } => {
                Response::Outcome(self.retry(task, max_attempts, now_ms, touched))
            }
            Command::Expire { leases, now_ms } => {
                Response::Expired(self.expire(leases, now_ms, touched))
            }
            Command::Cancel { task, now_ms } => {
                Response::Outcome(self.cancel(task, now_ms, touched))
            }
            Command::Purge { finished_before_ms, max, .. } => {
                Response::Purged(self.purge(finished_before_ms, max, touched))
            }
            Command::Register { worker, addr, capacity, ttl_ms, now_ms } => {
                Response::Outcome(self.register(worker, addr, capacity, ttl_ms, now_ms))
            }
            Command::Batch(cmds) => {
                Response::Batch(cmds.into_iter().map(|c| self.apply_touching(c, touched)).collect())
            }
            Command::Deregister { worker, .. } => {
                Response::Outcome(match self.push_workers.remove(&worker) {
                    Some(_) => Outcome::Accepted,
                    None => Outcome::NotFound,
                })
            }
        }
    }

    /// Registered push workers (live or lapsed), by id.
    pub fn push_workers(&self) -> impl Iterator<Item = &PushWorker> {
        self.push_workers.values()
    }

    /// One task by id.
    pub fn get(&self, id: TaskId) -> Option<&Task> {
        self.tasks.get(&id).map(Arc::as_ref)
    }

    /// All tasks in id order.
    pub fn tasks(&self) -> impl Iterator<Item = &Task> {
        self.tasks.values().map(Arc::as_ref)
    }

    /// Tasks with an id in `ids`, in id order.
    pub fn tasks_in(&self, ids: std::ops::Range<TaskId>) -> impl Iterator<Item = &Task> {
        self.tasks.range(ids).map(|(_, t)| t.as_ref())
    }

    /// Tasks with an id above `after`, in id order.
    pub fn tasks_after(&self, after: TaskId) -> impl Iterator<Item = &Task> {
        self.tasks
            .range((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded))
            .map(|(_, t)| t.as_ref())
    }

    /// The highest task id ever given out; the next submit gets the one after.
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    /// Finished tasks (completed, dead or cancelled), the most recently
    /// finished first.
    pub fn finished_newest_first(&self) -> impl Iterator<Item = &Task> + '_ {
        self.finished.iter().rev().filter_map(|(_, id)| self.get(*id))
    }

    /// When the longest-finished task still in the table finished (ms), if any.
    pub fn oldest_finished_ms(&self) -> Option<u64> {
        self.finished.first().map(|(ms, _)| *ms)
    }

    /// Number of tasks in each status.
    pub fn counts(&self) -> Counts {
        Counts {
            idle: self.idle_count,
            in_progress: self.leases.len() as u64,
            completed: self.completed,
            dead: self.dead,
            scheduled: self.scheduled.len() as u64,
            cancelled: self.cancelled,
        }
    }

    /// When the earliest scheduled task is due (ms), if any.
    pub fn next_due_ms(&self) -> Option<u64> {
        self.scheduled.first().map(|(ms, _)| *ms)
    }

    /// In-progress leases ordered by lease start (ms), oldest first.
    pub fn leases_by_start(&self) -> impl Iterator<Item = (u64, Lease)> + '_ {
        self.leases
            .iter()
            .map(|(start, id)| (*start, Lease { task: *id, attempt: self.tasks[id].attempt }))
    }

    fn register(
        &mut self,
        worker: WorkerId,
        addr: String,
        capacity: u32,
        ttl_ms: u64,
        now_ms: u64,
    ) -> Outcome {
        if let Some(existing) = self.push_workers.get(&worker) {
            if existing.addr != addr && existing.live(now_ms) {
                return Outcome::Stale;
            }
        }
        let entry = PushWorker { id: worker.clone(), addr, capacity, ttl_ms, renewed_ms: now_ms };
        self.push_workers.insert(worker, entry);
        Outcome::Accepted
    }

    fn submit(&mut self, new: NewTask, now_ms: u64, touched: &mut BTreeSet<TaskId>) -> Submitted {
        if let Some(id) = new.key.as_ref().and_then(|k| self.keys.get(k)) {
            return Submitted { id: *id, created: false };
        }
        self.next_id += 1;
        let id = TaskId(self.next_id);
        if let Some(key) = &new.key {
            self.keys.insert(key.clone(), id);
        }
        let due = new.run_at_ms.unwrap_or(0).max(now_ms.saturating_add(new.delay_ms));
        let task = Task {
            id,
            data: new.data,
            key: new.key,
            priority: new.priority,
            queue: new.queue.unwrap_or_else(|| DEFAULT_QUEUE.to_string()),
            status: if due > now_ms { Status::Scheduled } else { Status::Idle },
            idle_since_ms: (due <= now_ms).then_some(now_ms),
            attempt: Attempt(0),
            max_attempts: new.max_attempts.max(1),
            worker: None,
            lease_start_ms: None,
            result: None,
            error: None,
            submitted_ms: now_ms,
            finished_ms: None,
            due_ms: (due > now_ms).then_some(due),
            retry_base_ms: new.retry_base_ms.unwrap_or(0),
            retry_max_ms: new.retry_max_ms.unwrap_or(0),
            attempt_base: 0,
            cancelling: false,
        };
        self.index(&task);
        self.tasks.insert(id, Arc::new(task));
        touched.insert(id);
        Submitted { id, created: true }
    }

    fn assign(
        &mut self,
        worker: &WorkerId,
        picked: Vec<TaskId>,
        now_ms: u64,
        touched: &mut BTreeSet<TaskId>,
    ) -> Vec<Task> {
        picked
            .into_iter()
            .map(|id| {
                self.update(id, touched, |t| {
                    t.status = Status::InProgress;
                    t.idle_since_ms = None;
                    t.attempt = Attempt(t.attempt.0 + 1);
                    t.worker = Some(worker.clone());
                    t.lease_start_ms = Some(now_ms);
                });
                Task::clone(&self.tasks[&id])
            })
            .collect()
    }

    fn complete(
        &mut self,
        lease: Lease,
        worker: &WorkerId,
        result: Vec<u8>,
        now_ms: u64,
        touched: &mut BTreeSet<TaskId>,
    ) -> Outcome {
        let outcome = self.report(lease, worker, now_ms, touched);
        if outcome == Outcome::Accepted {
            self.update(lease.task, touched, |t| {
                t.status = Status::Completed;
                t.result = Some(result);
                t.lease_start_ms = None;
                t.finished_ms = Some(now_ms);
            });
        }
        outcome
    }

    /// Whether `worker` holds `lease` now. A repeat of the completing lease is
    /// `Duplicate`; every other mismatch is `Stale`.
    fn check_lease(&self, lease: Lease, worker: &WorkerId) -> Outcome {
        let Some(task) = self.tasks.get(&lease.task) else {
            return Outcome::NotFound;
        };
        let holder = task.attempt == lease.attempt && task.worker.as_ref() == Some(worker);
        match task.status {
            Status::InProgress if holder && task.cancelling => Outcome::Cancelled,
            Status::InProgress if holder => Outcome::Accepted,
            Status::Completed if holder => Outcome::Duplicate,
            Status::Cancelled if holder => Outcome::Cancelled,
            _ => Outcome::Stale,
        }
    }

    /// [`Table::check_lease`] for a report (complete, fail, extend) of
    /// `lease`; a report on a task cancelled while in progress ends it
    /// cancelled, and is answered `Cancelled`.
    fn report(
        &mut self,
        lease: Lease,
        worker: &WorkerId,
        now_ms: u64,
        touched: &mut BTreeSet<TaskId>,
    ) -> Outcome {
        let outcome = self.check_lease(lease, worker);
        if outcome == Outcome::Cancelled && self.tasks[&lease.task].status == Status::InProgress {
            self.end_cancelled(lease.task, now_ms, touched);
        }
        outcome
    }

    /// Ends a task `cancelled`.
    fn end_cancelled(&mut self, id: TaskId, now_ms: u64, touched: &mut BTreeSet<TaskId>) {
        self.update(id, touched, |t| {
            t.status = Status::Cancelled;
            t.idle_since_ms = None;
            t.error = Some("cancelled".into());
            t.lease_start_ms = None;
            t.due_ms = None;
            t.cancelling = false;
            t.finished_ms = Some(now_ms);
        });
    }

    /// Gives a dead or cancelled task a fresh attempt budget.
    fn retry(
        &mut self,
        id: TaskId,
        max_attempts: u32,
        now_ms: u64,
        touched: &mut BTreeSet<TaskId>,
    ) -> Outcome {
        match self.tasks.get(&id).map(|t| t.status) {
            None => Outcome::NotFound,
            Some(Status::Dead | Status::Cancelled) => {
                self.update(id, touched, |t| {
                    t.status = Status::Idle;
                    t.idle_since_ms = Some(now_ms);
                    t.attempt_base = t.attempt.0;
                    t.max_attempts = max_attempts.max(1);
                    t.finished_ms = None;
                });
                Outcome::Accepted
            }
            Some(_) => Outcome::Stale,
        }
    }

    fn expire(
        &mut self,
        leases: Vec<Lease>,
        now_ms: u64,
        touched: &mut BTreeSet<TaskId>,
    ) -> Vec<Lease> {
        let mut taken = Vec::new();
        for lease in leases {
            if self.get(lease.task).and_then(Task::lease) == Some(lease) {
                if self.tasks[&lease.task].cancelling {
                    self.end_cancelled(lease.task, now_ms, touched);
                } else {
                    let reason = format!("lease of attempt {} expired", lease.attempt);
                    self.requeue_or_bury(lease.task, reason, now_ms, touched);
                }
                taken.push(lease);
            }
        }
        taken
    }

    fn cancel(&mut self, id: TaskId, now_ms: u64, touched: &mut BTreeSet<TaskId>) -> Outcome {
        match self.tasks.get(&id).map(|t| (t.status, t.cancelling)) {
            None => Outcome::NotFound,
            Some((Status::Completed | Status::Dead | Status::Cancelled, _)) => Outcome::Stale,
            Some((Status::InProgress, true)) => Outcome::Duplicate,
            Some((Status::InProgress, false)) => {
                self.update(id, touched, |t| t.cancelling = true);
                Outcome::Accepted
            }
            Some((Status::Idle | Status::Scheduled, _)) => {
                self.end_cancelled(id, now_ms, touched);
                Outcome::Accepted
            }
        }
    }

    /// Removes up to `max` finished (completed, dead or cancelled) tasks that finished before
    /// `before_ms`, longest-finished first, with their idempotency keys.
    /// Unfinished tasks are never touched: they are not in `finished`.
    fn purge(&mut self, before_ms: u64, max: u32, touched: &mut BTreeSet<TaskId>) -> Vec<TaskId> {
        let ids: Vec<TaskId> = self
            .finished
            .range(..(before_ms, TaskId(0)))
            .take(max as usize)
            .map(|(_, id)| *id)
            .collect();
        for id in &ids {
            let task = self.tasks.remove(id).expect("an indexed task exists");
            self.unindex(&task);
            if let Some(key) = &task.key {
                self.keys.remove(key);
            }
            touched.insert(*id);
        }
        ids
    }

    /// Ends an attempt that did not complete: while attempts remain, back
    /// to idle, or scheduled after the task's backoff ([`crate::retry`]);
    /// else dead. The error is kept either way.
    fn requeue_or_bury(
        &mut self,
        id: TaskId,
        error: String,
        now_ms: u64,
        touched: &mut BTreeSet<TaskId>,
    ) {
        self.update(id, touched, |t| {
            t.error = Some(error);
            t.lease_start_ms = None;
            let tried = t.attempt.0 - t.attempt_base;
            if tried >= t.max_attempts {
                t.status = Status::Dead;
                t.finished_ms = Some(now_ms);
                return;
            }
            let delay = backoff_ms(t.retry_base_ms, t.retry_max_ms, t.id, tried);
            if delay == 0 {
                t.status = Status::Idle;
                t.idle_since_ms = Some(now_ms);
            } else {
                t.status = Status::Scheduled;
                t.due_ms = Some(now_ms.saturating_add(delay));
            }
        });
    }

    /// Makes the scheduled tasks due at `now_ms` idle, earliest first, at
    /// most [`MAX_WAKE`] (the waker proposes again while more are due);
    /// returns how many.
    fn wake(&mut self, now_ms: u64, touched: &mut BTreeSet<TaskId>) -> u64 {
        let due: Vec<TaskId> = self
            .scheduled
            .range(..=(now_ms, TaskId(u64::MAX)))
            .take(MAX_WAKE)
            .map(|(_, id)| *id)
            .collect();
        for id in &due {
            self.update(*id, touched, |t| {
                t.status = Status::Idle;
                // Waiting since it was due, for aging.
                t.idle_since_ms = t.due_ms.take();
            });
        }
        due.len() as u64
    }

    /// Changes one row through `f`, keeping the indexes in step.
    fn update(&mut self, id: TaskId, touched: &mut BTreeSet<TaskId>, f: impl FnOnce(&mut Task)) {
        let mut task = self.tasks.remove(&id).expect("update of a task that exists");
        self.unindex(&task);
        f(Arc::make_mut(&mut task));
        self.index(&task);
        self.tasks.insert(id, task);
        touched.insert(id);
    }

    fn index(&mut self, t: &Task) {
        self.count_in_queue(t, true);
        match t.status {
            Status::Idle => {
                let ready = self.ready.entry(t.queue.clone()).or_default();
                ready.by_priority.insert((Reverse(t.priority), t.id));
                ready.by_since.insert((t.idle_since_ms.unwrap_or(0), t.id));
                self.idle_count += 1;
            }
            Status::InProgress => {
                let start = t.lease_start_ms.expect("an in-progress task has a lease start");
                self.leases.insert((start, t.id));
            }
            Status::Completed => self.completed += 1,
            Status::Dead => self.dead += 1,
            Status::Cancelled => self.cancelled += 1,
            Status::Scheduled => {
                self.scheduled.insert((t.due_ms.unwrap_or(0), t.id));
            }
        }
        if let Some(ms) = t.finished_ms.filter(|_| t.finished()) {
            self.finished.insert((ms, t.id));
        }
    }

    fn unindex(&mut self, t: &Task) {
        self.count_in_queue(t, false);
        match t.status {
            Status::Idle => {
                if let Some(ready) = self.ready.get_mut(&t.queue) {
                    ready.by_priority.remove(&(Reverse(t.priority), t.id));
                    ready.by_since.remove(&(t.idle_since_ms.unwrap_or(0), t.id));
                    if ready.by_priority.is_empty() {
                        self.ready.remove(&t.queue);
                    }
                }
                self.idle_count -= 1;
            }
            Status::InProgress => {
                let start = t.lease_start_ms.expect("an in-progress task has a lease start");
                self.leases.remove(&(start, t.id));
            }
            Status::Completed => self.completed -= 1,
            Status::Dead => self.dead -= 1,
            Status::Cancelled => self.cancelled -= 1,
            Status::Scheduled => {
                self.scheduled.remove(&(t.due_ms.unwrap_or(0), t.id));
            }
        }
        if let Some(ms) = t.finished_ms.filter(|_| t.finished()) {
            self.finished.remove(&(ms, t.id));
        }
    }
}

impl Table {
    /// Adds (or removes) `t` to its queue's counts; a queue left with no
    /// task is dropped.
    fn count_in_queue(&mut self, t: &Task, add: bool) {
        let c = self.per_queue.entry(t.queue.clone()).or_default();
        let field = match t.status {
            Status::Idle => &mut c.idle,
            Status::InProgress => &mut c.in_progress,
            Status::Completed => &mut c.completed,
            Status::Dead => &mut c.dead,
            Status::Scheduled => &mut c.scheduled,
            Status::Cancelled => &mut c.cancelled,
        };
        *field = if add { *field + 1 } else { field.saturating_sub(1) };
        if c.total() == 0 {
            self.per_queue.remove(&t.queue);
        }
    }

    /// Sets the replicated queue settings (a table rebuilt from storage).
    pub fn with_queue_settings(mut self, settings: BTreeMap<String, QueueSettings>) -> Table {
        self.queue_settings = settings;
        self
    }
}

mod digest;
mod page;
mod queues;
mod rows;
pub use page::{Page, PageLimits};
use queues::Ready;
pub use queues::{QueueChange, QueueSettings, QueueStatus, ANY_QUEUE, DEFAULT_QUEUE};
pub use rows::RowsNow;
#[cfg(test)]
mod page_tests;
#[cfg(test)]
mod purge_tests;
#[cfg(test)]
mod queue_tests;
#[cfg(test)]
mod schedule_tests;
#[cfg(test)]
mod tests;
