//! [`Table::digest`]: a cheap fingerprint of a replica's rows, compared
//! across replicas by tests and operators (`node_report`).

use super::Table;

impl Table {
    /// A digest of every row, equal on two tables exactly when their rows are
    /// equal (up to hash collisions): cheap to compare across replicas.
    pub fn digest(&self) -> u64 {
        let mut h = Fnv::default();
        h.u64(self.next_id);
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
            h.u64(t.due_ms.unwrap_or(u64::MAX));
            h.u64(t.retry_base_ms);
            h.u64(t.retry_max_ms);
            h.u64(u64::from(t.attempt_base));
            h.u64(u64::from(t.cancelling));
            h.u64(t.idle_since_ms.unwrap_or(u64::MAX));
            h.bytes(t.queue.as_bytes());
        }
        for (name, q) in &self.queue_settings {
            h.bytes(name.as_bytes());
            h.u64(q.max_in_flight.map_or(u64::MAX, u64::from));
            h.u64(u64::from(q.paused));
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
