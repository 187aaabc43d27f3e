//! Per-task changes an operator asks for: cancel and retry. Each call is
//! one Raft entry for all its ids, with one outcome per id, in order.

use super::*;

impl Api {
    /// Cancels tasks that have not finished: `Accepted` (idle or scheduled:
    /// cancelled now; in progress: marked, ended at its worker's next
    /// report), `Duplicate` (already being cancelled), `Stale` (already
    /// finished) or `NotFound`.
    pub(crate) async fn cancel_tasks(&self, ids: Vec<TaskId>) -> Result<Vec<Outcome>, WireError> {
        let now = now_ms();
        let outcomes =
            self.per_task("cancel", &ids, |task| Command::Cancel { task, now_ms: now }).await?;
        let cancelled = outcomes.iter().filter(|o| **o == Outcome::Accepted).count();
        info!(cancelled, asked = ids.len(), "tasks cancelled");
        Ok(outcomes)
    }

    /// Cancels the task with `key`, or up to [`MAX_TASKS_PER_SUBMIT`] tasks
    /// of `queue` that are not finished nor being cancelled.
    pub(crate) async fn cancel_where_now(
        &self,
        key: Option<String>,
        queue: Option<String>,
    ) -> Result<Vec<(TaskId, Outcome)>, WireError> {
        if key.is_some() == queue.is_some() {
            return Err(WireError::Invalid("name a key or a queue (one of the two)".into()));
        }
        if let Some(q) = &queue {
            Self::check_queue_name(q, false)?;
        }
        self.linearizable().await?;
        let ids: Vec<TaskId> = {
            let a = self.0.applied.read();
            match (&key, &queue) {
                (Some(k), _) => a.table.by_key(k).into_iter().collect(),
                (_, Some(q)) => a.table.cancellable_in(q, MAX_TASKS_PER_SUBMIT),
                _ => Vec::new(),
            }
        };
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let outcomes = self.cancel_tasks(ids.clone()).await?;
        Ok(ids.into_iter().zip(outcomes).collect())
    }

    /// Gives dead or cancelled tasks a fresh budget of `max_attempts`
    /// attempts (0: the cluster's): `Accepted`, `Stale` (neither dead nor
    /// cancelled) or `NotFound`.
    pub(crate) async fn retry_tasks(
        &self,
        ids: Vec<TaskId>,
        max_attempts: u32,
    ) -> Result<Vec<Outcome>, WireError> {
        if max_attempts > checks::MAX_ATTEMPTS {
            return Err(WireError::Invalid(format!(
                "{max_attempts} attempts; at most {}",
                checks::MAX_ATTEMPTS
            )));
        }
        let budget = if max_attempts == 0 { self.0.settings.max_attempts } else { max_attempts };
        let now = now_ms();
        let outcomes = self
            .per_task("retry", &ids, |task| Command::Retry {
                task,
                max_attempts: budget,
                now_ms: now,
            })
            .await?;
        let retried = outcomes.iter().filter(|o| **o == Outcome::Accepted).count();
        info!(retried, asked = ids.len(), "tasks retried");
        Ok(outcomes)
    }

    /// Changes a queue's limits: online, replicated, effective at the next lease.
    pub(crate) async fn set_queue_now(
        &self,
        queue: String,
        change: taskraft_core::QueueChange,
    ) -> Result<(), WireError> {
        Self::check_queue_name(&queue, false)?;
        info!(%queue, ?change, "queue changed");
        match self.propose(Command::SetQueue { queue, change }).await? {
            Response::Outcome(Outcome::Accepted) => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Proposes `cmd(id)` for every id as one entry; one outcome per id.
    async fn per_task(
        &self,
        what: &str,
        ids: &[TaskId],
        cmd: impl Fn(TaskId) -> Command,
    ) -> Result<Vec<Outcome>, WireError> {
        if ids.is_empty() || ids.len() > MAX_TASKS_PER_SUBMIT {
            return Err(WireError::Invalid(format!(
                "{} ids; {what} 1 to {MAX_TASKS_PER_SUBMIT} tasks per call",
                ids.len()
            )));
        }
        let response =
            self.propose(Command::Batch(ids.iter().map(|id| cmd(*id)).collect())).await?;
        let Response::Batch(responses) = response else { return Err(unexpected(response)) };
        let outcomes: Vec<Outcome> = responses
            .into_iter()
            .filter_map(|r| match r {
                Response::Outcome(o) => Some(o),
                _ => None,
            })
            .collect();
        if outcomes.len() != ids.len() {
            return Err(WireError::Unavailable(format!("unexpected answers to a {what}")));
        }
        Ok(outcomes)
    }
}
