//! A nemesis run, Jepsen style: three master processes behind per-link
//! proxies, producers and workers recording every operation, and a seeded
//! schedule of faults (SIGKILL and restart, SIGSTOP/SIGCONT, partitions,
//! one-way cuts, clients cut from a master, worker crashes, the push
//! worker killed, a master replaced through the membership) for a set
//! duration. Then everything is healed, the cluster drains, and the
//! checker holds the history and every replica's table to the guarantees.
//!
//! One master can run under libfaketime with its wall clock off (`skew`);
//! the run then makes it lead at least once. Safety never depends on
//! clocks; docs/reliability.md says what a skew delays.

pub mod clients;
mod faults;
pub mod schedule;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use taskraft_core::Status;
use taskraft_proto::NodeId;

use crate::history::{verdict_with, Verdict};
use crate::ProcCluster;
use faults::World;
use schedule::Schedule;

/// The cluster's timing during a run: short leases and elections, so
/// that many faults fit into a minute; a quick backoff, so that failed
/// tasks come back within the run.
pub const TIMING: &str = "lease_timeout_ms = 1500\nretry_base_ms = 50\nretry_max_ms = 1000\nscan_interval_ms = 100\nheartbeat_interval_ms = 50\nelection_timeout_ms = [200, 500]\nmax_attempts = 5";

/// Producers and pull workers; each half of them dials through its own
/// client proxies (a client group), so one group can be cut alone.
const PRODUCERS: usize = 2;
const WORKERS: usize = 4;
const GROUPS: usize = 2;

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// The `taskraft` binary.
    pub bin: PathBuf,
    /// How long faults are injected (the drain comes after).
    pub duration: Duration,
    /// The schedule's seed.
    pub seed: u64,
    /// A master run under faketime with this offset (e.g. `+30s`).
    pub skew: Option<(NodeId, String)>,
    /// Whether masters are replaced through membership changes.
    pub replace: bool,
    /// The longest tolerated time without a successful write (a majority
    /// is up and connected throughout: faults hit one node at a time).
    pub max_gap: Duration,
    /// Where the history, the summary and the masters' logs are written.
    pub out: Option<PathBuf>,
}

/// What a run found.
#[derive(Debug, Clone)]
pub struct Report {
    pub seed: u64,
    pub verdict: Verdict,
    /// Faults injected, by kind.
    pub faults: BTreeMap<&'static str, u32>,
    /// Operations recorded, tasks in the final table, and how many of
    /// them the push worker completed.
    pub ops: usize,
    pub tasks: usize,
    pub pushed: usize,
    /// Tasks not finished once the cluster was healed and drained (90 s at
    /// most), and how long the drain took: a master with its clock behind
    /// that leads then re-queues abandoned tasks up to its skew late.
    pub unfinished: Vec<u64>,
    pub drain: Duration,
    /// Each master's table digest and applied index at the end.
    pub replicas: Vec<(NodeId, u64, Option<u64>)>,
    /// Whether the skewed master led at some point (when there is one).
    pub skewed_led: Option<bool>,
    /// The run itself went wrong (a command of the runbook failed).
    pub errors: Vec<String>,
    pub max_gap: Duration,
}

impl Report {
    /// The replicas hold one table.
    pub fn converged(&self) -> bool {
        let digests: BTreeSet<(u64, Option<u64>)> =
            self.replicas.iter().map(|(_, d, a)| (*d, *a)).collect();
        digests.len() == 1 && self.replicas.len() >= 3
    }

    /// Every check passed.
    pub fn ok(&self) -> bool {
        self.verdict.ok()
            && self.unfinished.is_empty()
            && self.converged()
            && self.skewed_led != Some(false)
            && self.errors.is_empty()
            && self.verdict.longest_write_gap_ms <= self.max_gap.as_millis() as u64
    }

    /// The counts, one per line, and the seed that reproduces the run.
    pub fn summary(&self) -> String {
        let faults: Vec<String> = self.faults.iter().map(|(k, n)| format!("{k} {n}")).collect();
        let replicas: Vec<String> = self
            .replicas
            .iter()
            .map(|(id, d, a)| format!("{id}: {d:016x} at {}", a.unwrap_or(0)))
            .collect();
        let mut s = format!(
            "seed {}\nfaults: {}\noperations {} tasks {} (completed by the push worker {})\n{}\nunfinished after the drain {} (the drain took {} ms)\nreplicas converged {} ({})\n",
            self.seed,
            faults.join(", "),
            self.ops,
            self.tasks,
            self.pushed,
            self.verdict.summary(),
            self.unfinished.len(),
            self.drain.as_millis(),
            self.converged(),
            replicas.join(", ")
        );
        if let Some(led) = self.skewed_led {
            s += &format!("the skewed master led {led}\n");
        }
        for e in &self.errors {
            s += &format!("error: {e}\n");
        }
        s += &format!(
            "verdict: {}",
            if self.ok() { "ok".to_string() } else { format!("FAILED (seed {})", self.seed) }
        );
        s
    }
}

/// Runs the nemesis as `options` say.
pub async fn run(options: Options) -> Report {
    let bin = options.bin.to_string_lossy().into_owned();
    let cluster = ProcCluster::start_proxied(&bin, 3, TIMING).await;
    cluster.leader().await;
    if let Some(out) = &options.out {
        let _ = std::fs::create_dir_all(out);
    }
    let history_file = options.out.as_ref().map(|out| out.join("history.jsonl"));
    let mut world =
        World::new(cluster, GROUPS, options.skew.clone(), options.seed, history_file.as_deref())
            .await;
    if let Some((id, _)) = options.skew.clone() {
        world.cluster.kill(id);
        world.start_master(id);
    }
    let mut producers = Vec::new();
    for i in 0..PRODUCERS {
        let stop = world.stop.child_token();
        let actor = clients::Actor {
            client: world.client(i % GROUPS),
            name: format!("p{i}"),
            seed: options.seed ^ ((i as u64 + 1) << 32),
            rec: world.rec.clone(),
            stop: stop.clone(),
        };
        producers.push((tokio::spawn(clients::produce(actor)), stop));
    }
    (0..WORKERS).for_each(|i| world.start_worker(i));
    world.start_push();

    let schedule = Schedule::new(options.seed, WORKERS, GROUPS, options.replace);
    let mut faults: BTreeMap<&'static str, u32> = BTreeMap::new();
    let mut errors = Vec::new();
    let started = Instant::now();
    let mut skewed_led = options.skew.as_ref().map(|_| false);
    for (gap, fault) in schedule {
        if started.elapsed() >= options.duration {
            break;
        }
        tokio::time::sleep(gap).await;
        if skewed_led == Some(false) && started.elapsed() > options.duration / 2 {
            skewed_led = Some(world.make_skewed_lead(12).await);
        }
        if let Err(e) = world.inject(fault).await {
            errors.push(format!("{} ms: {e}", world.rec.now_ms()));
            if let Some(out) = &options.out {
                save_logs(out, &world.cluster);
            }
        }
        *faults.entry(fault.kind()).or_default() += 1;
        if let (Some(false), Some((id, _))) = (skewed_led, &options.skew) {
            skewed_led = Some(world.leader().await == Some(*id));
        }
    }

    // Heal, stop producing, let the workers drain what is left.
    let load_until_ms = world.rec.now_ms();
    world.heal_all();
    for (task, stop) in producers {
        stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(20), task).await;
    }
    let reader = world.cluster.client();
    let drained = Instant::now();
    while drained.elapsed() < Duration::from_secs(90) {
        match reader.status().await {
            Ok(s) if s.counts.unfinished() == 0 => break,
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    let drain = drained.elapsed();
    world.stop_workers().await;

    let table = reader.all_tasks(None).await.unwrap_or_else(|e| {
        errors.push(format!("the final table could not be read: {e}"));
        Vec::new()
    });
    let replicas = replicas(&world.cluster).await;
    let history = world.rec.ops();
    let push = BTreeSet::from(["push-1".to_string()]);
    let report = Report {
        seed: options.seed,
        verdict: verdict_with(&history, &table, &push, load_until_ms),
        faults,
        ops: history.len(),
        tasks: table.len(),
        pushed: table
            .iter()
            .filter(|t| {
                t.status == Status::Completed
                    && t.worker.as_ref().is_some_and(|w| push.contains(&w.0))
            })
            .count(),
        unfinished: table.iter().filter(|t| !t.finished()).map(|t| t.id.0).collect(),
        drain,
        replicas,
        skewed_led,
        errors,
        max_gap: options.max_gap,
    };
    if let Some(out) = &options.out {
        world.rec.flush();
        save(out, &world.cluster, &report);
    }
    report
}

/// Waits (up to 30 s) until every master reports the same table, and
/// returns what each one reports then.
async fn replicas(cluster: &ProcCluster) -> Vec<(NodeId, u64, Option<u64>)> {
    let started = Instant::now();
    loop {
        let mut all = Vec::new();
        for id in cluster.running() {
            if let Some(r) = cluster.report(id).await {
                all.push((id, r.digest, r.last_applied));
            }
        }
        let same = all.windows(2).all(|w| (w[0].1, w[0].2) == (w[1].1, w[1].2));
        if (same && all.len() == cluster.running().len())
            || started.elapsed() > Duration::from_secs(30)
        {
            return all;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Writes the summary and the masters' logs into `out` (the history is
/// already there, written as it was recorded).
fn save(out: &std::path::Path, cluster: &ProcCluster, report: &Report) {
    let _ = std::fs::write(out.join("summary.txt"), report.summary() + "\n");
    save_logs(out, cluster);
}

/// Copies the masters' and the push worker's logs into `out`.
fn save_logs(out: &std::path::Path, cluster: &ProcCluster) {
    for name in ["node1", "node2", "node3", "push-1"] {
        let _ = std::fs::write(out.join(format!("{name}.log")), cluster.log(name));
    }
}
