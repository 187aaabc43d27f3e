//! [`Metrics`]: what a master exports at `/metrics`, in the Prometheus text
//! format (OpenMetrics), through the `prometheus-client` crate.
//!
//! Three kinds of figures, each recorded where it happens:
//! - task events (submitted, leased, completed, ...), counted by
//!   [`events`] as each log entry is applied. Every master applies the same
//!   log, so every master counts the same events (from its own start);
//! - latencies of the write path: group-commit size and commit latency on
//!   the leader (the proposer), log fsync on every node (the log store),
//!   snapshot builds;
//! - gauges read when scraped ([`Metrics::render`]): tasks by status, the
//!   Raft term, role, indexes and per-follower lag.
//!
//! Every metric is listed in docs/operations.md, "Metrics".

pub mod events;
pub mod recent;
pub mod sampler;

use openraft::ServerState;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use taskraft_core::{Counts, QueueStatus};
use taskraft_proto::NodeId;

use crate::Raft;

/// A `status` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    status: &'static str,
}

/// A `kind` label of fenced answers: `stale` or `duplicate`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    kind: &'static str,
}

/// A queue and a status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabel {
    queue: String,
    status: &'static str,
}

/// A `follower` label (a node id).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FollowerLabel {
    follower: String,
}

/// The metrics of one master node. Share it with an `Arc`.
pub struct Metrics {
    registry: Registry,
    /// Task events, counted at apply.
    pub submitted: Counter,
    pub leased: Counter,
    pub completed: Counter,
    pub failed: Counter,
    pub expired: Counter,
    pub cancelled: Counter,
    pub fenced: Family<KindLabel, Counter>,
    /// Submit to first lease, seconds.
    pub queue_wait: Histogram,
    /// Lease (or last extension) to completion, seconds.
    pub run_time: Histogram,
    /// Proposal to applied on the leader, seconds.
    pub commit_latency: Histogram,
    /// Commands per Raft entry on the leader.
    pub group_size: Histogram,
    /// Group commit waits for callers just answered: begun, and ended by
    /// the timer before the group filled.
    pub group_waits: Counter,
    pub group_waits_expired: Counter,
    /// One log append's fsync, seconds.
    pub log_fsync: Histogram,
    /// One snapshot build (encode, flush, write), seconds.
    pub snapshot_build: Histogram,
    /// Size of the last snapshot built or installed.
    pub snapshot_bytes: Gauge,
    /// The latest failures, for the console.
    pub recent: recent::Recent,
    /// Completions a second over the last minutes, for the console.
    pub throughput: sampler::Throughput,
    /// Times this node saw a new leader.
    pub leader_changes: Counter,
    /// The commit index this node last learned (saved by Raft).
    pub committed_index: Gauge,
    /// Leader: appends carrying only a commit index, answered without a message.
    pub commit_notices_skipped: Counter,
    pub appends_answered_early: Counter,
    tasks: Family<StatusLabel, Gauge>,
    queue_tasks: Family<QueueLabel, Gauge>,
    term: Gauge,
    is_leader: Gauge,
    applied_index: Gauge,
    last_log_index: Gauge,
    follower_lag: Family<FollowerLabel, Gauge>,
}

/// Latency buckets: 0.1 ms to ~6.5 s, doubling.
fn seconds() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 17))
}

impl Metrics {
    /// The metrics of node `id`, all at zero.
    pub fn new(id: NodeId) -> Metrics {
        let mut r = Registry::with_prefix("taskraft");
        let counter = |r: &mut Registry, name: &str, help: &str| {
            let c = Counter::default();
            r.register(name, help, c.clone());
            c
        };
        let histogram = |r: &mut Registry, name: &str, help: &str, h: Histogram, unit| {
            match unit {
                Some(unit) => r.register_with_unit(name, help, unit, h.clone()),
                None => r.register(name, help, h.clone()),
            }
            h
        };
        let gauge = |r: &mut Registry, name: &str, help: &str| {
            let g: Gauge = Gauge::default();
            r.register(name, help, g.clone());
            g
        };
        let submitted = counter(
            &mut r,
            "tasks_submitted",
            "Tasks added to the table (a repeated key counts once)",
        );
        let leased = counter(&mut r, "tasks_leased", "Leases handed out (pull and push)");
        let completed = counter(
            &mut r,
            "tasks_completed",
            "Tasks completed with a result (accepted completions)",
        );
        let failed = counter(
            &mut r,
            "tasks_failed",
            "Accepted failure reports (the task is re-queued or dead)",
        );
        let expired = counter(&mut r, "leases_expired", "Leases taken back by the lease scanner");
        let cancelled = counter(&mut r, "tasks_cancelled", "Tasks cancelled before they finished");
        let fenced = Family::<KindLabel, Counter>::default();
        // Both kinds exist from the start, at 0, so rate() sees the first one.
        for kind in ["stale", "duplicate", "cancelled"] {
            fenced.get_or_create(&KindLabel { kind }).inc_by(0);
        }
        r.register("fenced", "Reports not recorded: kind=stale (not the current lease), duplicate (already completed by this lease) or cancelled (the task was cancelled)", fenced.clone());
        let queue_wait = histogram(
            &mut r,
            "queue_wait",
            "Time from submit to the first lease",
            seconds(),
            Some(Unit::Seconds),
        );
        let run_time = histogram(
            &mut r,
            "run_time",
            "Time from lease (or its last extension) to completion",
            seconds(),
            Some(Unit::Seconds),
        );
        let commit_latency = histogram(
            &mut r,
            "commit_latency",
            "Leader: time from proposal to applied (group commit queue, replication, fsync, apply)",
            seconds(),
            Some(Unit::Seconds),
        );
        let group_size = histogram(
            &mut r,
            "group_commit_size",
            "Leader: commands carried by one Raft entry",
            Histogram::new(exponential_buckets(1.0, 2.0, 11)),
            None,
        );
        let group_waits = counter(
            &mut r,
            "group_commit_waits",
            "Leader: times a group commit waited for the callers of the group before it (cluster.group_commit_wait_us)",
        );
        let group_waits_expired = counter(
            &mut r,
            "group_commit_waits_expired",
            "Leader: group commit waits that ended on the timer before every caller of the group before came back",
        );
        let log_fsync = histogram(
            &mut r,
            "log_fsync",
            "Time of one Raft log append including its fsync",
            seconds(),
            Some(Unit::Seconds),
        );
        let snapshot_build = histogram(
            &mut r,
            "snapshot_build",
            "Time to build and persist one snapshot",
            seconds(),
            Some(Unit::Seconds),
        );
        let snapshot_bytes =
            gauge(&mut r, "snapshot_size_bytes", "Size of the last snapshot built or installed");
        let leader_changes = counter(
            &mut r,
            "raft_leader_changes",
            "Times this node saw a new leader (itself included)",
        );
        let committed_index = gauge(
            &mut r,
            "raft_committed_index",
            "Highest log index this node knows to be committed",
        );
        let commit_notices_skipped = counter(
            &mut r,
            "raft_commit_notices_skipped",
            "Leader: AppendEntries without entries (a new commit index, a heartbeat) not sent because the follower had just confirmed the same log",
        );
        let appends_answered_early = counter(
            &mut r,
            "raft_appends_answered_early",
            "Leader: appends of openraft's replication answered by the follower's answer to the same entries, sent before this node's own fsync",
        );
        let tasks = Family::<StatusLabel, Gauge>::default();
        r.register("tasks", "Tasks in the table by status", tasks.clone());
        let queue_tasks = Family::<QueueLabel, Gauge>::default();
        r.register("queue_tasks", "Tasks of each queue by status", queue_tasks.clone());
        let term = gauge(&mut r, "raft_term", "This node's current Raft term");
        let is_leader = gauge(&mut r, "raft_is_leader", "1 on the leader, 0 elsewhere");
        let applied_index =
            gauge(&mut r, "raft_applied_index", "Last log index applied to this node's table");
        let last_log_index =
            gauge(&mut r, "raft_last_log_index", "Last log index in this node's log");
        let follower_lag = Family::<FollowerLabel, Gauge>::default();
        r.register(
            "raft_replication_lag",
            "Leader only: entries each follower or learner is behind the leader's log",
            follower_lag.clone(),
        );
        let node = Gauge::<i64, std::sync::atomic::AtomicI64>::default();
        r.register("node_id", "This master's node id", node.clone());
        node.set(id as i64);
        Metrics {
            registry: r,
            submitted,
            leased,
            completed,
            failed,
            expired,
            cancelled,
            fenced,
            queue_wait,
            run_time,
            commit_latency,
            group_size,
            group_waits,
            group_waits_expired,
            log_fsync,
            snapshot_build,
            snapshot_bytes,
            recent: recent::Recent::default(),
            throughput: sampler::Throughput::default(),
            leader_changes,
            committed_index,
            commit_notices_skipped,
            appends_answered_early,
            tasks,
            queue_tasks,
            term,
            is_leader,
            applied_index,
            last_log_index,
            follower_lag,
        }
    }

    /// Counts a fenced answer.
    pub fn fence(&self, kind: &'static str) {
        self.fenced.get_or_create(&KindLabel { kind }).inc();
    }

    /// Reads the gauges from Raft and the table, then encodes everything.
    pub fn render(&self, raft: &Raft, counts: Counts, queues: &[QueueStatus]) -> String {
        for (status, n) in by_status(&counts) {
            self.tasks.get_or_create(&StatusLabel { status }).set(n as i64);
        }
        self.queue_tasks.clear();
        for q in queues {
            for (status, n) in by_status(&q.counts) {
                let label = QueueLabel { queue: q.name.clone(), status };
                self.queue_tasks.get_or_create(&label).set(n as i64);
            }
        }
        let m = raft.metrics().borrow().clone();
        self.term.set(m.current_term as i64);
        self.is_leader.set(i64::from(m.state == ServerState::Leader));
        self.applied_index.set(m.last_applied.map_or(0, |l| l.index) as i64);
        let last = m.last_log_index.unwrap_or(0);
        self.last_log_index.set(last as i64);
        self.follower_lag.clear();
        for (id, matched) in m.replication.iter().flatten() {
            if *id == m.id {
                continue;
            }
            let held = matched.map_or(0, |l| l.index);
            self.follower_lag
                .get_or_create(&FollowerLabel { follower: id.to_string() })
                .set(last.saturating_sub(held) as i64);
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

fn by_status(c: &Counts) -> [(&'static str, u64); 6] {
    [
        ("idle", c.idle),
        ("scheduled", c.scheduled),
        ("in_progress", c.in_progress),
        ("completed", c.completed),
        ("dead", c.dead),
        ("cancelled", c.cancelled),
    ]
}

/// Seconds between two instants, for histograms.
pub fn since(start: std::time::Instant) -> f64 {
    start.elapsed().as_secs_f64()
}

/// Milliseconds as seconds.
pub fn ms_to_s(ms: u64) -> f64 {
    ms as f64 / 1000.0
}
