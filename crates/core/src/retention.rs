//! Pure retention arithmetic for the leader's purger.
//!
//! A finished (completed, dead or cancelled) task is kept `retention_ms` after it finished (the
//! leader's clock at the commit that finished it); after that the leader
//! proposes `Purge` with the cutoff inside the command, so every replica
//! removes the same rows. A retention of 0 keeps everything.

use crate::table::Table;

/// The `finished_before_ms` of a purge proposed at `now_ms`, or `None` when
/// nothing may be purged: retention 0 (keep forever), or a clock so early
/// that no task can be old enough.
pub fn cutoff_ms(now_ms: u64, retention_ms: u64) -> Option<u64> {
    if retention_ms == 0 {
        return None;
    }
    now_ms.checked_sub(retention_ms)
}

/// The cutoff to purge with at `now_ms`, when at least one task is past it.
pub fn due(table: &Table, now_ms: u64, retention_ms: u64) -> Option<u64> {
    let cutoff = cutoff_ms(now_ms, retention_ms)?;
    (table.oldest_finished_ms()? < cutoff).then_some(cutoff)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Command, NewTask, Response, WorkerId};

    fn table_finished_at(times: &[u64]) -> Table {
        let mut t = Table::default();
        for (i, at) in times.iter().enumerate() {
            let task = NewTask {
                data: vec![i as u8],
                key: None,
                priority: 0,
                max_attempts: 1,
                ..Default::default()
            };
            t.apply(Command::Submit { tasks: vec![task], now_ms: 0 });
            let Response::Assigned(leased) = t.apply(Command::Assign {
                worker: WorkerId("w".into()),
                max: 1,
                now_ms: 0,
                aging_ms: 0,
                queues: vec![],
            }) else {
                panic!("assign answers Assigned")
            };
            let lease = leased[0].lease().unwrap();
            let worker = WorkerId("w".into());
            t.apply(Command::Complete { lease, worker, result: vec![], now_ms: *at });
        }
        t
    }

    #[test]
    fn zero_retention_keeps_everything() {
        let t = table_finished_at(&[0]);
        assert_eq!(cutoff_ms(u64::MAX, 0), None);
        assert_eq!(due(&t, 1_000_000, 0), None);
    }

    #[test]
    fn a_task_is_due_only_once_past_the_retention() {
        let t = table_finished_at(&[1000, 5000]);
        assert_eq!(due(&t, 3000, 2000), None, "finished at 1000, cutoff 1000: not before it");
        assert_eq!(due(&t, 3001, 2000), Some(1001));
        assert_eq!(due(&t, 500, 2000), None, "a clock before the retention purges nothing");
    }

    #[test]
    fn an_empty_table_is_never_due() {
        assert_eq!(due(&Table::default(), 10_000, 1), None);
    }
}
