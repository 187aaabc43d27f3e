//! [`Table`]: the task rows plus the indexes that keep every command cheap.
//!
//! Only ordered collections are used, so iteration order, and with it the
//! choice of the next idle task, is the same on every replica.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::command::{Command, NewTask, Outcome, PushWorker, Response, Submitted};
use crate::task::{Attempt, Lease, Status, Task, TaskId, WorkerId};

/// The task table. Rows live in `tasks`; everything else is an index derived
/// from them and rebuilt by [`Table::from_tasks`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    tasks: BTreeMap<TaskId, Task>,
    keys: BTreeMap<String, TaskId>,
    /// Idle tasks in the order they are handed out: priority, then submission order.
    idle: BTreeSet<(Reverse<i32>, TaskId)>,
    /// In-progress tasks by lease start, for the scanner.
    leases: BTreeSet<(u64, TaskId)>,
    next_id: u64,
    completed: u64,
    dead: u64,
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
    /// Out of attempts or cancelled.
    pub dead: u64,
}

impl Counts {
    /// All tasks in the table.
    pub fn total(&self) -> u64 {
        self.idle + self.in_progress + self.completed + self.dead
    }
}

impl Table {
    /// Rebuilds a table and its indexes from its rows (a snapshot or the disk).
    pub fn from_tasks(tasks: impl IntoIterator<Item = Task>) -> Table {
        Table::from_parts(tasks, [])
    }

    /// Rebuilds a table from its rows and its push worker registrations.
    pub fn from_parts(
        tasks: impl IntoIterator<Item = Task>,
        push_workers: impl IntoIterator<Item = PushWorker>,
    ) -> Table {
        let push_workers = push_workers.into_iter().map(|w| (w.id.clone(), w)).collect();
        let mut table = Table { push_workers, ..Table::default() };
        for task in tasks {
            table.next_id = table.next_id.max(task.id.0);
            if let Some(key) = &task.key {
                table.keys.insert(key.clone(), task.id);
            }
            table.index(&task);
            table.tasks.insert(task.id, task);
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
            Command::Assign { worker, max, now_ms } => {
                Response::Assigned(self.assign(&worker, max, now_ms, touched))
            }
            Command::Complete { lease, worker, result, now_ms } => {
                Response::Outcome(self.complete(lease, &worker, result, now_ms, touched))
            }
            Command::Fail { lease, worker, error, now_ms } => {
                let outcome = self.check_lease(lease, &worker);
                if outcome == Outcome::Accepted {
                    self.requeue_or_bury(lease.task, error, now_ms, touched);
                }
                Response::Outcome(outcome)
            }
            Command::Extend { lease, worker, now_ms } => {
                let outcome = self.check_lease(lease, &worker);
                if outcome == Outcome::Accepted {
                    self.update(lease.task, touched, |t| t.lease_start_ms = Some(now_ms));
                }
                Response::Outcome(outcome)
            }
            Command::Expire { leases, now_ms } => {
                Response::Expired(self.expire(leases, now_ms, touched))
            }
            Command::Cancel { task, now_ms } => {
                Response::Outcome(self.cancel(task, now_ms, touched))
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
        self.tasks.get(&id)
    }

    /// All tasks in id order.
    pub fn tasks(&self) -> impl Iterator<Item = &Task> {
        self.tasks.values()
    }

    /// Tasks with an id above `after`, in id order.
    pub fn tasks_after(&self, after: TaskId) -> impl Iterator<Item = &Task> {
        self.tasks
            .range((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded))
            .map(|(_, t)| t)
    }

    /// Number of tasks in each status.
    pub fn counts(&self) -> Counts {
        Counts {
            idle: self.idle.len() as u64,
            in_progress: self.leases.len() as u64,
            completed: self.completed,
            dead: self.dead,
        }
    }

    /// In-progress leases ordered by lease start (ms), oldest first.
    pub fn leases_by_start(&self) -> impl Iterator<Item = (u64, Lease)> + '_ {
        self.leases
            .iter()
            .map(|(start, id)| (*start, Lease { task: *id, attempt: self.tasks[id].attempt }))
    }

    /// A digest of every row, equal on two tables exactly when their rows are
    /// equal (up to hash collisions): cheap to compare across replicas.
    pub fn digest(&self) -> u64 {
        let mut h = Fnv::default();
        for t in self.tasks.values() {
            h.u64(t.id.0);
            h.bytes(&t.data);
            h.bytes(t.key.as_deref().unwrap_or("\0").as_bytes());
            h.u64(t.priority as u64);
            h.u64(t.status as u64);
            h.u64(t.attempt.0 as u64);
            h.u64(t.max_attempts as u64);
            h.bytes(t.worker.as_ref().map_or("\0", |w| w.0.as_str()).as_bytes());
            h.u64(t.lease_start_ms.unwrap_or(u64::MAX));
            h.bytes(t.result.as_deref().unwrap_or(b"\0"));
            h.bytes(t.error.as_deref().unwrap_or("\0").as_bytes());
            h.u64(t.submitted_ms);
            h.u64(t.finished_ms.unwrap_or(u64::MAX));
        }
        for w in self.push_workers.values() {
            h.bytes(w.id.0.as_bytes());
            h.bytes(w.addr.as_bytes());
            h.u64(w.capacity as u64);
            h.u64(w.ttl_ms);
            h.u64(w.renewed_ms);
        }
        h.0
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
        let task = Task {
            id,
            data: new.data,
            key: new.key,
            priority: new.priority,
            status: Status::Idle,
            attempt: Attempt(0),
            max_attempts: new.max_attempts.max(1),
            worker: None,
            lease_start_ms: None,
            result: None,
            error: None,
            submitted_ms: now_ms,
            finished_ms: None,
        };
        self.index(&task);
        self.tasks.insert(id, task);
        touched.insert(id);
        Submitted { id, created: true }
    }

    fn assign(
        &mut self,
        worker: &WorkerId,
        max: u32,
        now_ms: u64,
        touched: &mut BTreeSet<TaskId>,
    ) -> Vec<Task> {
        let picked: Vec<TaskId> = self.idle.iter().take(max as usize).map(|(_, id)| *id).collect();
        picked
            .into_iter()
            .map(|id| {
                self.update(id, touched, |t| {
                    t.status = Status::InProgress;
                    t.attempt = Attempt(t.attempt.0 + 1);
                    t.worker = Some(worker.clone());
                    t.lease_start_ms = Some(now_ms);
                });
                self.tasks[&id].clone()
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
        let outcome = self.check_lease(lease, worker);
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
            Status::InProgress if holder => Outcome::Accepted,
            Status::Completed if holder => Outcome::Duplicate,
            _ => Outcome::Stale,
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
            if self.tasks.get(&lease.task).and_then(Task::lease) == Some(lease) {
                let reason = format!("lease of attempt {} expired", lease.attempt);
                self.requeue_or_bury(lease.task, reason, now_ms, touched);
                taken.push(lease);
            }
        }
        taken
    }

    fn cancel(&mut self, id: TaskId, now_ms: u64, touched: &mut BTreeSet<TaskId>) -> Outcome {
        match self.tasks.get(&id).map(|t| t.status) {
            None => Outcome::NotFound,
            Some(Status::Completed | Status::Dead) => Outcome::Stale,
            Some(_) => {
                self.update(id, touched, |t| {
                    t.status = Status::Dead;
                    t.error = Some("cancelled".into());
                    t.lease_start_ms = None;
                    t.finished_ms = Some(now_ms);
                });
                Outcome::Accepted
            }
        }
    }

    /// Ends an attempt that did not complete: back to idle while attempts
    /// remain, else dead. The error is kept either way.
    fn requeue_or_bury(
        &mut self,
        id: TaskId,
        error: String,
        now_ms: u64,
        touched: &mut BTreeSet<TaskId>,
    ) {
        self.update(id, touched, |t| {
            t.status = if t.attempt.0 >= t.max_attempts { Status::Dead } else { Status::Idle };
            t.error = Some(error);
            t.lease_start_ms = None;
            if t.status == Status::Dead {
                t.finished_ms = Some(now_ms);
            }
        });
    }

    /// Changes one row through `f`, keeping the indexes in step.
    fn update(&mut self, id: TaskId, touched: &mut BTreeSet<TaskId>, f: impl FnOnce(&mut Task)) {
        let mut task = self.tasks.remove(&id).expect("update of a task that exists");
        self.unindex(&task);
        f(&mut task);
        self.index(&task);
        self.tasks.insert(id, task);
        touched.insert(id);
    }

    fn index(&mut self, t: &Task) {
        match t.status {
            Status::Idle => _ = self.idle.insert((Reverse(t.priority), t.id)),
            Status::InProgress => {
                let start = t.lease_start_ms.expect("an in-progress task has a lease start");
                self.leases.insert((start, t.id));
            }
            Status::Completed => self.completed += 1,
            Status::Dead => self.dead += 1,
        }
    }

    fn unindex(&mut self, t: &Task) {
        match t.status {
            Status::Idle => _ = self.idle.remove(&(Reverse(t.priority), t.id)),
            Status::InProgress => {
                let start = t.lease_start_ms.expect("an in-progress task has a lease start");
                self.leases.remove(&(start, t.id));
            }
            Status::Completed => self.completed -= 1,
            Status::Dead => self.dead -= 1,
        }
    }
}

/// FNV-1a, 64 bit: tiny, deterministic across platforms and runs.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn bytes(&mut self, b: &[u8]) {
        self.u64(b.len() as u64);
        for byte in b {
            self.0 = (self.0 ^ *byte as u64).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn u64(&mut self, v: u64) {
        for byte in v.to_le_bytes() {
            self.0 = (self.0 ^ byte as u64).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests;
