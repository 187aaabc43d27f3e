//! The worker protocol: submit, the long-polled `request`, and the lease
//! calls (`complete`, `complete_and_request`, `fail`, `extend`), each proposed
//! through Raft and answered with the applied outcome.

use super::*;

impl Api {
    pub(super) async fn lease_command(
        &self,
        what: &str,
        lease: Lease,
        worker: &WorkerId,
        cmd: Command,
    ) -> Result<Outcome, WireError> {
        match self.propose(cmd).await? {
            Response::Outcome(o) => {
                self.log_fenced(what, lease, worker, o);
                Ok(o)
            }
            other => Err(unexpected(other)),
        }
    }

    pub(super) fn log_fenced(&self, what: &str, lease: Lease, worker: &WorkerId, outcome: Outcome) {
        if matches!(outcome, Outcome::Stale | Outcome::Duplicate) {
            info!(%lease, %worker, ?outcome, "fenced {what}: not recorded");
        }
    }

    /// Whether an `Assign` from `queues` would lease anything now: checked
    /// before proposing one, so that an empty-handed worker writes nothing.
    pub(super) fn leasable(&self, queues: &[String]) -> bool {
        let a = self.0.applied.read();
        a.table.leasable(queues, now_ms(), self.0.settings.aging_ms)
    }

    /// The long poll: leases up to `max` tasks as soon as one is idle, or
    /// answers `NoTask` / `Drained` after `wait_ms`.
    pub(super) async fn poll(
        &self,
        worker: &WorkerId,
        max: u32,
        wait_ms: u64,
        queues: &[String],
    ) -> Result<Assignment, WireError> {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(wait_ms);
        let mut applied = self.0.applied_index.clone();
        let mut metrics = self.0.raft.metrics();
        loop {
            // A deposed leader answers its waiters at once.
            if !self.is_leader() {
                return Err(self.not_leader());
            }
            applied.borrow_and_update();
            if let Some(answer) = self.try_assign(worker, max, queues).await? {
                return Ok(answer);
            }
            // Wait for an apply (a submit, a fail, an expiry may make a task
            // idle), a leadership change, or the end of the poll.
            tokio::select! {
                _ = applied.changed() => {}
                _ = metrics.changed() => {}
                _ = tokio::time::sleep_until(deadline) => return self.empty_handed().await,
            }
        }
    }

    /// Leases up to `max` idle tasks, or `None` when nothing was idle.
    pub(super) async fn try_assign(
        &self,
        worker: &WorkerId,
        max: u32,
        queues: &[String],
    ) -> Result<Option<Assignment>, WireError> {
        if !self.leasable(queues) {
            return Ok(None);
        }
        let cmd = Command::Assign {
            worker: worker.clone(),
            max,
            now_ms: now_ms(),
            aging_ms: self.0.settings.aging_ms,
            queues: queues.to_vec(),
        };
        match self.propose(cmd).await? {
            Response::Assigned(tasks) if tasks.is_empty() => Ok(None),
            Response::Assigned(tasks) => Ok(Some(self.leased(tasks))),
            other => Err(unexpected(other)),
        }
    }

    /// The answer when a long poll ends empty-handed: `Drained` if nothing is
    /// idle or in progress (confirmed with a quorum), else `NoTask`.
    pub(super) async fn empty_handed(&self) -> Result<Assignment, WireError> {
        self.linearizable().await?;
        let counts = self.0.applied.read().table.counts();
        Ok(if counts.unfinished() == 0 { Assignment::Drained } else { Assignment::NoTask })
    }

    pub(super) fn leased(&self, tasks: Vec<Task>) -> Assignment {
        let tasks = tasks
            .into_iter()
            .filter_map(|t| Some(LeasedTask { lease: t.lease()?, data: t.data }))
            .collect();
        Assignment::Leased { tasks, lease_timeout_ms: self.0.settings.lease_timeout_ms }
    }

    pub(crate) async fn submit_tasks(
        &self,
        mut tasks: Vec<NewTask>,
    ) -> Result<Vec<Submitted>, WireError> {
        self.check_submit(&tasks)?;
        let s = &self.0.settings;
        for t in &mut tasks {
            if t.max_attempts == 0 {
                t.max_attempts = s.max_attempts;
            }
            // A task's own base alone may exceed the cluster's cap: the cap grows to it.
            let base = *t.retry_base_ms.get_or_insert(s.retry_base_ms);
            let max = *t.retry_max_ms.get_or_insert(s.retry_max_ms.max(base));
            if base > max {
                return Err(WireError::Invalid(format!(
                    "a retry base of {base} ms above the retry max of {max} ms"
                )));
            }
        }
        match self.propose(Command::Submit { tasks, now_ms: now_ms() }).await? {
            Response::Submitted(s) => Ok(s),
            other => Err(unexpected(other)),
        }
    }

    pub(crate) async fn request_tasks(
        &self,
        worker: WorkerId,
        max: u32,
        wait_ms: u64,
        queues: Vec<String>,
    ) -> Result<Assignment, WireError> {
        Self::check_worker(&worker)?;
        Self::check_request(max, wait_ms)?;
        Self::check_queues(&queues)?;
        self.poll(&worker, max, wait_ms, &queues).await
    }

    pub(crate) async fn complete_one(
        &self,
        lease: Lease,
        worker: WorkerId,
        result: Vec<u8>,
    ) -> Result<Outcome, WireError> {
        Self::check_worker(&worker)?;
        self.check_size("the result", result.len())?;
        let cmd = Command::Complete { lease, worker: worker.clone(), result, now_ms: now_ms() };
        self.lease_command("completion", lease, &worker, cmd).await
    }

    pub(super) async fn complete_and_request_tasks(
        &self,
        worker: WorkerId,
        results: Vec<(Lease, Vec<u8>)>,
        max: u32,
        queues: Vec<String>,
    ) -> Result<(Vec<Outcome>, Assignment), WireError> {
        Self::check_worker(&worker)?;
        Self::check_queues(&queues)?;
        if results.len() > MAX_TASKS_PER_REQUEST as usize {
            return Err(WireError::Invalid(format!(
                "{} results in one call; at most {MAX_TASKS_PER_REQUEST} are allowed",
                results.len()
            )));
        }
        if results.is_empty() && max == 0 {
            return Err(WireError::Invalid("no results to record and no tasks asked for".into()));
        }
        if max > 0 {
            Self::check_request(max, 0)?;
        }
        for (i, (_, result)) in results.iter().enumerate() {
            self.check_size(&format!("result #{}", i + 1), result.len())?;
        }
        let now = now_ms();
        let leases: Vec<Lease> = results.iter().map(|(lease, _)| *lease).collect();
        let mut cmds: Vec<Command> = results
            .into_iter()
            .map(|(lease, result)| Command::Complete {
                lease,
                worker: worker.clone(),
                result,
                now_ms: now,
            })
            .collect();
        // One entry: the results are recorded and the next tasks leased in
        // the same commit, in this order.
        let ask = max > 0 && self.leasable(&queues);
        if ask {
            cmds.push(Command::Assign {
                worker: worker.clone(),
                max,
                now_ms: now,
                aging_ms: self.0.settings.aging_ms,
                queues,
            });
        }
        let response = self.propose(Command::Batch(cmds)).await?;
        let Response::Batch(mut responses) = response else { return Err(unexpected(response)) };
        let next = match (ask, responses.pop()) {
            (true, Some(Response::Assigned(tasks))) if !tasks.is_empty() => self.leased(tasks),
            (true, Some(Response::Assigned(_))) => Assignment::NoTask,
            (false, last) => {
                responses.extend(last);
                Assignment::NoTask
            }
            (true, other) => return Err(unexpected(other.unwrap_or(Response::Empty))),
        };
        if responses.len() != leases.len() {
            return Err(unexpected(Response::Batch(responses)));
        }
        let mut outcomes = Vec::with_capacity(leases.len());
        for (lease, response) in leases.into_iter().zip(responses) {
            let Response::Outcome(outcome) = response else { return Err(unexpected(response)) };
            self.log_fenced("completion", lease, &worker, outcome);
            outcomes.push(outcome);
        }
        Ok((outcomes, next))
    }

    pub(crate) async fn fail_one(
        &self,
        lease: Lease,
        worker: WorkerId,
        error: String,
    ) -> Result<Outcome, WireError> {
        Self::check_worker(&worker)?;
        self.check_size("the error message", error.len())?;
        let cmd = Command::Fail { lease, worker: worker.clone(), error, now_ms: now_ms() };
        self.lease_command("failure report", lease, &worker, cmd).await
    }

    pub(crate) async fn extend_one(
        &self,
        lease: Lease,
        worker: WorkerId,
    ) -> Result<Outcome, WireError> {
        Self::check_worker(&worker)?;
        let cmd = Command::Extend { lease, worker: worker.clone(), now_ms: now_ms() };
        self.lease_command("extension", lease, &worker, cmd).await
    }
}
