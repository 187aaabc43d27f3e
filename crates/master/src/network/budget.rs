//! The byte budget of a replication stream's appends.
//!
//! openraft gives an AppendEntries one heartbeat interval and fills it with
//! up to 300 entries, whatever their size: a follower far behind on large
//! entries (submits of a thousand tasks) got appends it could not store in
//! time, again and again, and never caught up. An append is cut to a byte
//! budget here and reported as the partial success openraft's API provides
//! for this; the rest goes in the next one. The budget of each replication
//! stream starts at [`MAX_APPEND_BYTES`], halves after an append that did
//! not finish in time (down to [`MIN_APPEND_BYTES`]) and doubles after one
//! that did.

use taskraft_proto::{NodeId, TypeConfig};

/// The most encoded entry bytes one AppendEntries carries; a single entry
/// goes whole, however large. In the 1,000,000-task load (entries of
/// ~100 KB), 256 KiB left masters at 1.35-1.41 GB RSS where 1 MiB gave
/// 1.4-2.1 GB, with fewer timed-out appends (docs/performance.md).
pub const MAX_APPEND_BYTES: u64 = crate::store::MAX_REPLICATION_READ_BYTES;

/// The least a replication stream's budget shrinks to.
pub const MIN_APPEND_BYTES: u64 = 32 << 10;

/// A replication stream's append budget: [`MAX_APPEND_BYTES`] to start
/// with, halved after an append that did not finish in time, doubled after
/// one that did.
pub(super) struct Budget {
    bytes: u64,
    /// An append is under way: still set at the next one when openraft gave
    /// up on the last (it drops the call at its timeout).
    sending: bool,
}

impl Default for Budget {
    fn default() -> Self {
        Budget { bytes: MAX_APPEND_BYTES, sending: false }
    }
}

impl Budget {
    /// Cuts `entries` to the budget before they are sent (see
    /// [`cut_to_budget`]). At the full budget there is nothing to cut and no
    /// size to add up: the log read already stopped at that many bytes
    /// (`LogStore::limited_get_log_entries`), counting records, which are
    /// longer than their entries' encoding.
    pub(super) fn cut(
        &mut self,
        entries: &mut Vec<openraft::Entry<TypeConfig>>,
    ) -> Option<openraft::LogId<NodeId>> {
        if std::mem::take(&mut self.sending) {
            self.shrink();
        }
        self.sending = !entries.is_empty();
        if self.bytes >= MAX_APPEND_BYTES {
            return None;
        }
        cut_to_budget(entries, self.bytes)
    }

    /// The append ended: answered in time (`Some(true)`), out of time
    /// (`Some(false)`) or otherwise (`None`).
    pub(super) fn ended(&mut self, in_time: Option<bool>) {
        if std::mem::take(&mut self.sending) {
            match in_time {
                Some(true) => self.bytes = (self.bytes * 2).min(MAX_APPEND_BYTES),
                Some(false) => self.shrink(),
                None => {}
            }
        }
    }

    fn shrink(&mut self) {
        self.bytes = (self.bytes / 2).max(MIN_APPEND_BYTES);
    }
}

/// Cuts `entries` after the last one that keeps them within `budget`
/// encoded bytes (at least one stays); returns the id of the last one kept
/// when it cut anything.
pub fn cut_to_budget(
    entries: &mut Vec<openraft::Entry<TypeConfig>>,
    budget: u64,
) -> Option<openraft::LogId<NodeId>> {
    if entries.len() < 2 {
        return None;
    }
    let mut bytes = 0u64;
    for (i, entry) in entries.iter().enumerate() {
        bytes = bytes.saturating_add(bincode::serialized_size(entry).unwrap_or(u64::MAX));
        if bytes > budget && i > 0 {
            entries.truncate(i);
            return Some(entries[i - 1].log_id);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};
    use taskraft_core::{Command, NewTask};
    use taskraft_proto::TypeConfig;

    use super::{cut_to_budget, Budget, MAX_APPEND_BYTES, MIN_APPEND_BYTES};

    fn entries(sizes: &[usize]) -> Vec<Entry<TypeConfig>> {
        let entry = |(i, bytes): (usize, &usize)| {
            let task = NewTask { data: vec![7; *bytes], ..NewTask::default() };
            Entry {
                log_id: LogId::new(CommittedLeaderId::new(1, 1), i as u64 + 1),
                payload: EntryPayload::Normal(Command::Submit { tasks: vec![task], now_ms: 1 }),
            }
        };
        sizes.iter().enumerate().map(entry).collect()
    }

    #[test]
    fn an_append_is_cut_to_its_byte_budget_keeping_at_least_one_entry() {
        let mut small = entries(&[100; 10]);
        assert_eq!(cut_to_budget(&mut small, 10_000), None, "within the budget");
        assert_eq!(small.len(), 10);

        let mut large = entries(&[3000; 10]);
        let last = cut_to_budget(&mut large, 10_000).expect("cut");
        assert_eq!(large.len(), 3, "three of ~3 KB fit in 10 KB, four do not");
        assert_eq!(last.index, 3);

        let mut huge = entries(&[50_000, 10, 10]);
        assert_eq!(cut_to_budget(&mut huge, 10_000).map(|l| l.index), Some(1));
        assert_eq!(huge.len(), 1, "one entry goes whole, however large");

        let mut one = entries(&[50_000]);
        assert_eq!(cut_to_budget(&mut one, 10_000), None);
        assert!(cut_to_budget(&mut Vec::new(), 10).is_none());
    }

    #[test]
    fn a_budget_halves_after_an_append_out_of_time_and_doubles_after_one_in_time() {
        let mut budget = Budget::default();
        budget.cut(&mut entries(&[10]));
        budget.ended(Some(false));
        assert_eq!(budget.bytes, MAX_APPEND_BYTES / 2);
        // An append openraft gave up on (the call dropped, never ended).
        budget.cut(&mut entries(&[10]));
        budget.cut(&mut entries(&[10]));
        assert_eq!(budget.bytes, MAX_APPEND_BYTES / 4);
        budget.ended(Some(true));
        assert_eq!(budget.bytes, MAX_APPEND_BYTES / 2);
        budget.cut(&mut Vec::new());
        budget.ended(Some(false));
        assert_eq!(budget.bytes, MAX_APPEND_BYTES / 2, "a heartbeat changes nothing");
        for _ in 0..10 {
            budget.cut(&mut entries(&[10]));
            budget.ended(Some(false));
        }
        assert_eq!(budget.bytes, MIN_APPEND_BYTES);
        for _ in 0..10 {
            budget.cut(&mut entries(&[10]));
            budget.ended(Some(true));
        }
        assert_eq!(budget.bytes, MAX_APPEND_BYTES);
    }
}
