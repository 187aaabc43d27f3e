//! Pure lease arithmetic for the leader's scanner.
//!
//! A lease runs out `timeout_ms` after its start (or last extension). After a
//! leader change the new leader counts from no earlier than its own election
//! (`leader_since_ms`): a worker may have been unable to reach anyone to
//! extend its lease while there was no leader, and a failover must never cost
//! a worker its lease.

use crate::table::Table;
use crate::task::Lease;

/// When a lease that started at `lease_start_ms` runs out, as seen by a leader
/// elected at `leader_since_ms`.
pub fn deadline_ms(lease_start_ms: u64, leader_since_ms: u64, timeout_ms: u64) -> u64 {
    lease_start_ms.max(leader_since_ms).saturating_add(timeout_ms)
}

/// The leases of in-progress tasks whose deadline is at or before `now_ms`,
/// oldest first, at most `limit`.
pub fn expired(
    table: &Table,
    now_ms: u64,
    leader_since_ms: u64,
    timeout_ms: u64,
    limit: usize,
) -> Vec<Lease> {
    table
        .leases_by_start()
        .take_while(|(start, _)| deadline_ms(*start, leader_since_ms, timeout_ms) <= now_ms)
        .map(|(_, lease)| lease)
        .take(limit)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Command, NewTask, WorkerId};

    fn table_with_leases(starts: &[u64]) -> Table {
        let mut t = Table::default();
        for (i, start) in starts.iter().enumerate() {
            let task = NewTask {
                data: vec![i as u8],
                key: None,
                priority: 0,
                max_attempts: 3,
                ..Default::default()
            };
            t.apply(Command::Submit { tasks: vec![task], now_ms: 0 });
            t.apply(Command::Assign {
                worker: WorkerId("w".into()),
                max: 1,
                now_ms: *start,
                aging_ms: 0,
                queues: vec![],
            });
        }
        t
    }

    #[test]
    fn lease_expires_after_timeout_from_its_start() {
        let t = table_with_leases(&[0, 1000]);
        assert!(expired(&t, 2999, 0, 3000, 10).is_empty());
        assert_eq!(expired(&t, 3000, 0, 3000, 10).len(), 1);
        assert_eq!(expired(&t, 4000, 0, 3000, 10).len(), 2);
    }

    #[test]
    fn new_leader_counts_deadlines_from_its_election() {
        let t = table_with_leases(&[0]);
        // Elected at 2500: the lease that started at 0 lasts until 5500, not 3000.
        assert!(expired(&t, 5499, 2500, 3000, 10).is_empty());
        assert_eq!(expired(&t, 5500, 2500, 3000, 10).len(), 1);
    }

    #[test]
    fn limit_caps_the_batch() {
        let t = table_with_leases(&[0, 1, 2, 3]);
        assert_eq!(expired(&t, 10_000, 0, 3000, 2).len(), 2);
    }
}
