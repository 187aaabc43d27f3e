//! Input checks, run before anything is proposed: a refused call changes nothing.

use super::*;
use taskraft_proto::client::MAX_DELAY_MS;

/// Longest queue name.
const MAX_QUEUE_NAME_BYTES: usize = 64;
/// Most queues one worker names.
const MAX_QUEUES_PER_REQUEST: usize = 32;
/// Most attempts a task may be given (at submit, or by a retry).
pub(super) const MAX_ATTEMPTS: u32 = 10_000;

impl Api {
    pub(super) fn check_worker(worker: &WorkerId) -> Result<(), WireError> {
        if worker.0.trim().is_empty() {
            return Err(WireError::Invalid("the worker id is empty".into()));
        }
        if worker.0.len() > MAX_WORKER_ID_BYTES {
            return Err(WireError::Invalid(format!(
                "the worker id is {} bytes; at most {MAX_WORKER_ID_BYTES} are allowed",
                worker.0.len()
            )));
        }
        Ok(())
    }

    pub(super) fn check_size(&self, what: &str, len: usize) -> Result<(), WireError> {
        let limit = self.0.settings.max_payload_bytes;
        if len as u64 > limit {
            return Err(WireError::Invalid(format!(
                "{what} is {len} bytes; the cluster's max_payload_bytes is {limit}"
            )));
        }
        Ok(())
    }

    pub(super) fn check_submit(&self, tasks: &[NewTask]) -> Result<(), WireError> {
        if tasks.is_empty() {
            return Err(WireError::Invalid("no tasks to submit".into()));
        }
        if tasks.len() > MAX_TASKS_PER_SUBMIT {
            return Err(WireError::Invalid(format!(
                "{} tasks in one submit; at most {MAX_TASKS_PER_SUBMIT} are allowed",
                tasks.len()
            )));
        }
        for (i, t) in tasks.iter().enumerate() {
            self.check_size(&format!("the payload of task #{}", i + 1), t.data.len())?;
            let far = now_ms().saturating_add(MAX_DELAY_MS);
            let retry = [t.retry_base_ms, t.retry_max_ms];
            if t.delay_ms > MAX_DELAY_MS
                || t.run_at_ms.is_some_and(|at| at > far)
                || retry.into_iter().flatten().any(|ms| ms > MAX_DELAY_MS)
            {
                return Err(WireError::Invalid(format!(
                    "task #{} is scheduled, or backs off, more than {} days ahead",
                    i + 1,
                    MAX_DELAY_MS / 86_400_000
                )));
            }
            if let (Some(base), Some(max)) = (t.retry_base_ms, t.retry_max_ms) {
                if base > max {
                    return Err(WireError::Invalid(format!(
                        "task #{}: retry base {base} ms is above its retry max {max} ms",
                        i + 1
                    )));
                }
            }
            if t.max_attempts > MAX_ATTEMPTS {
                return Err(WireError::Invalid(format!(
                    "task #{}: {} attempts; at most {MAX_ATTEMPTS}",
                    i + 1,
                    t.max_attempts
                )));
            }
            if let Some(q) = &t.queue {
                Self::check_queue_name(q, false)?;
            }
            if t.key.as_ref().is_some_and(|k| k.len() > MAX_KEY_BYTES) {
                return Err(WireError::Invalid(format!(
                    "the key of task #{} is longer than {MAX_KEY_BYTES} bytes",
                    i + 1
                )));
            }
        }
        Ok(())
    }

    /// Queue names: 1 to 64 bytes of letters, digits, `-`, `_`, `.`, or `*`
    /// (every queue) in a worker's list.
    pub(super) fn check_queue_name(name: &str, any_allowed: bool) -> Result<(), WireError> {
        let fine = (1..=MAX_QUEUE_NAME_BYTES).contains(&name.len())
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if fine || (any_allowed && name == taskraft_core::ANY_QUEUE) {
            return Ok(());
        }
        Err(WireError::Invalid(format!(
            "queue name {name:?}: use 1 to {MAX_QUEUE_NAME_BYTES} letters, digits, '-', '_' or '.'"
        )))
    }

    pub(super) fn check_queues(queues: &[String]) -> Result<(), WireError> {
        if queues.len() > MAX_QUEUES_PER_REQUEST {
            return Err(WireError::Invalid(format!(
                "{} queues in one request; at most {MAX_QUEUES_PER_REQUEST}",
                queues.len()
            )));
        }
        queues.iter().try_for_each(|q| Self::check_queue_name(q, true))
    }

    pub(super) fn check_request(max: u32, wait_ms: u64) -> Result<(), WireError> {
        if max == 0 || max > MAX_TASKS_PER_REQUEST {
            return Err(WireError::Invalid(format!(
                "asked for {max} tasks; ask for 1 to {MAX_TASKS_PER_REQUEST}"
            )));
        }
        if wait_ms > MAX_WAIT_MS {
            return Err(WireError::Invalid(format!(
                "a wait of {wait_ms} ms; at most {MAX_WAIT_MS} ms is allowed"
            )));
        }
        Ok(())
    }
}
