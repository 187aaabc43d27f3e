//! Task events from applied commands: what each entry did to the table,
//! counted on [`Metrics`].
//!
//! A command moves into the table when applied, so its shape is taken
//! first ([`Probe::of`], no payload copied) and matched with the table's
//! answer afterwards ([`observe`]).

use taskraft_core::{Command, Lease, Outcome, Response, Table, TaskId};

use super::recent::KEPT;

use super::{ms_to_s, Metrics};

/// The shape of a command, enough to read its answer.
#[derive(Debug)]
pub enum Probe {
    Submit,
    Assign,
    /// The lease's start (or last extension) before the command, and its time.
    Complete {
        start: Option<u64>,
        now_ms: u64,
    },
    Fail(Lease, u64),
    Extend,
    Expire(u64),
    Cancel(TaskId, u64),
    Batch(Vec<Probe>),
    Other,
}

impl Probe {
    /// The shape of `cmd`, about to be applied to `table`.
    pub fn of(cmd: &Command, table: &Table) -> Probe {
        match cmd {
            Command::Submit { .. } => Probe::Submit,
            Command::Assign { .. } => Probe::Assign,
            Command::Complete { lease, now_ms, .. } => Probe::Complete {
                start: table.get(lease.task).and_then(|t| t.lease_start_ms),
                now_ms: *now_ms,
            },
            Command::Fail { lease, now_ms, .. } => Probe::Fail(*lease, *now_ms),
            Command::Extend { .. } => Probe::Extend,
            Command::Expire { now_ms, .. } => Probe::Expire(*now_ms),
            Command::Cancel { task, now_ms } => Probe::Cancel(*task, *now_ms),
            Command::Batch(cmds) => {
                Probe::Batch(cmds.iter().map(|c| Probe::of(c, table)).collect())
            }
            _ => Probe::Other,
        }
    }
}

/// Counts what a command of shape `probe` did, given its answer and the
/// table right after it.
pub fn observe(m: &Metrics, probe: &Probe, response: &Response, table: &Table) {
    match (probe, response) {
        (Probe::Batch(probes), Response::Batch(responses)) => {
            for (p, r) in probes.iter().zip(responses) {
                observe(m, p, r, table);
            }
        }
        (Probe::Submit, Response::Submitted(ids)) => {
            m.submitted.inc_by(ids.iter().filter(|s| s.created).count() as u64);
        }
        (Probe::Assign, Response::Assigned(tasks)) => {
            m.leased.inc_by(tasks.len() as u64);
            for t in tasks.iter().filter(|t| t.attempt.0 == 1) {
                let start = t.lease_start_ms.unwrap_or(t.submitted_ms);
                m.queue_wait.observe(ms_to_s(start.saturating_sub(t.submitted_ms)));
            }
        }
        (Probe::Complete { start, now_ms }, Response::Outcome(Outcome::Accepted)) => {
            m.completed.inc();
            if let Some(start) = start {
                m.run_time.observe(ms_to_s(now_ms.saturating_sub(*start)));
            }
        }
        (Probe::Fail(lease, at), Response::Outcome(Outcome::Accepted)) => {
            m.failed.inc();
            m.recent.record(table, *lease, "failed", *at);
        }
        (Probe::Cancel(id, at), Response::Outcome(Outcome::Accepted)) => {
            m.cancelled.inc();
            if let Some(t) = table.get(*id) {
                m.recent.record(table, Lease { task: *id, attempt: t.attempt }, "cancelled", *at);
            }
        }
        (Probe::Complete { .. } | Probe::Fail(..) | Probe::Extend, Response::Outcome(o)) => match o
        {
            Outcome::Stale => m.fence("stale"),
            Outcome::Duplicate => m.fence("duplicate"),
            Outcome::Cancelled => m.fence("cancelled"),
            _ => {}
        },
        (Probe::Expire(at), Response::Expired(leases)) => {
            m.expired.inc_by(leases.len() as u64);
            // Only the newest few matter to the console.
            for lease in leases.iter().skip(leases.len().saturating_sub(KEPT)) {
                m.recent.record(table, *lease, "expired", *at);
            }
        }
        _ => {}
    }
}
