//! The per-node sampler: counts leader changes as Raft reports them, and
//! keeps the completions of the last minutes, one sample a second, for the
//! console's throughput chart.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::Metrics;
use crate::{now_ms, Raft};

/// Samples kept: ten minutes at one a second.
pub const SAMPLES: usize = 600;

/// Completions counted by this node, one sample a second: `(unix ms, total)`.
#[derive(Clone, Default)]
pub struct Throughput(Arc<Mutex<VecDeque<(u64, u64)>>>);

impl Throughput {
    fn push(&self, at_ms: u64, completed: u64) {
        let mut s = self.0.lock();
        if s.len() == SAMPLES {
            s.pop_front();
        }
        s.push_back((at_ms, completed));
    }

    /// Completions per second between consecutive samples: `(unix ms, rate)`.
    pub fn rates(&self) -> Vec<(u64, f64)> {
        let s = self.0.lock();
        s.iter()
            .zip(s.iter().skip(1))
            .map(|((t0, c0), (t1, c1))| {
                let secs = (t1.saturating_sub(*t0) as f64 / 1000.0).max(0.001);
                (*t1, c1.saturating_sub(*c0) as f64 / secs)
            })
            .collect()
    }
}

/// Starts the sampler of one node; it ends at `shutdown`.
pub fn spawn(raft: Raft, metrics: Arc<Metrics>, shutdown: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut watch = raft.metrics();
        let mut leader_term = None;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => metrics.throughput.push(now_ms(), metrics.completed.get()),
                changed = watch.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    // One leadership is one term with a known leader.
                    let (known, term) = {
                        let m = watch.borrow();
                        (m.current_leader.is_some(), m.current_term)
                    };
                    if known && leader_term != Some(term) {
                        metrics.leader_changes.inc();
                        leader_term = Some(term);
                    }
                }
            }
        }
    })
}
