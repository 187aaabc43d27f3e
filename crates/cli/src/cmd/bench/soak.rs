//! W4 soak: a fixed submit rate drained by worker loops for a long run with
//! a short retention, sampling every master's memory and disk.
//!
//! The check: nothing acknowledged is lost, nothing is accepted twice, and
//! no master's RSS or data dir grows by more than [`MAX_GROWTH`] (an RSS
//! also by more than [`RSS_SLACK_BYTES`], a data
//! dir also by more than [`DISK_SLACK_BYTES`]) between the
//! end of the first third of the run and its end. Each end is the median of
//! the samples in a window of a sixth of the run (the second half of the
//! first third; the last sixth), since sled's segment files and the
//! snapshot come and go in steps: one sample is a sawtooth's tooth. A
//! warm-up (`--warmup`) runs the same load first without being compared: a
//! master's RSS steps up with its first few snapshots and then holds.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use parking_lot::Mutex;
use serde_json::{json, Value};
use taskraft_client::Client;
use taskraft_core::{NewTask, TaskId};

use super::workloads::{self, drain_loop, DrainPlan, Outcome, Shared, Target};

/// Largest growth of RSS or disk allowed between the first third and the end.
const MAX_GROWTH: f64 = 0.20;
/// A data dir grows and shrinks by whole sled segments (1-1.5 MB steps seen):
/// a small one may swing by more than [`MAX_GROWTH`] without a trend, so disk
/// growth must also exceed this to count.
const DISK_SLACK_BYTES: f64 = 4.0 * 1024.0 * 1024.0;
/// A master's RSS steps up once when a snapshot is built or installed (the
/// allocator keeps the encoding buffers and sled's cache fills; seen up to
/// ~22 MB in a debug build, see docs/performance.md), at whatever moment the
/// snapshot falls in a short run: RSS growth must also exceed this to count.
/// A leak outgrows it in a long soak; a short one cannot tell one step from it.
const RSS_SLACK_BYTES: f64 = 32.0 * 1024.0 * 1024.0;
/// Fewest samples in each window of the comparison.
const MIN_WINDOW: usize = 3;
/// How often the producer submits (its rate is spread over these ticks).
const PRODUCER_TICK: Duration = Duration::from_millis(10);
/// Lost tasks looked up in the cluster and named in the failed check.
const MAX_LOST_SHOWN: usize = 5;
/// How long the workers get to finish what was submitted after the producer stops.
const GRACE: Duration = Duration::from_secs(60);

/// How a soak runs.
#[derive(Debug, Clone, Copy)]
pub struct SoakPlan {
    /// Tasks submitted per second.
    pub rate: u64,
    /// How long the producer runs after the warm-up.
    pub duration: Duration,
    /// Load before the compared part of the run.
    pub warmup: Duration,
    /// Time between two samples of every master.
    pub sample_every: Duration,
    /// Worker loops.
    pub workers: usize,
}

/// One master at one moment.
#[derive(Debug, Clone)]
struct Sample {
    at_s: f64,
    node: u64,
    rss: u64,
    disk: u64,
    snapshot: u64,
    tasks: u64,
}

/// Runs W4 against `target`.
pub async fn soak(target: Target, plan: SoakPlan) -> anyhow::Result<Outcome> {
    let client = target.client.clone();
    let shared = Arc::new(Shared::default());
    shared.wanted.store(u64::MAX, Ordering::Relaxed);
    let drain = DrainPlan { workers: plan.workers, batch: 1, combined: true, wait_for_more: true };
    let started = Instant::now();
    let loops: Vec<_> = (0..plan.workers)
        .map(|i| {
            let name = format!("soak-w{i:02}");
            tokio::spawn(drain_loop(workloads::own_client(&client), name, drain, shared.clone()))
        })
        .collect();
    let samples = Arc::new(Mutex::new(Vec::new()));
    let sampler = tokio::spawn(sample(client.clone(), plan.sample_every, started, samples.clone()));
    let submit_errors = produce(&client, plan, &shared).await;
    let produced_s = started.elapsed().as_secs_f64();
    let grace_end = Instant::now() + GRACE;
    while shared.ledger.lock().pending() > 0 && Instant::now() < grace_end {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    shared.wanted.store(0, Ordering::Relaxed);
    sampler.abort();
    let _ = sampler.await;
    let samples = std::mem::take(&mut *samples.lock());
    let mut done_hist = workloads::histogram();
    for l in loops {
        let (_, d) = l.await?;
        done_hist.add(d).ok();
    }
    let (lost, twice, accepted, lost_ids) = {
        let ledger = shared.ledger.lock();
        let ids: Vec<u64> = ledger.pending_ids().take(MAX_LOST_SHOWN).collect();
        (ledger.pending(), ledger.twice, ledger.accepted_count(), ids)
    };
    let (failed_completes, duplicates) = (
        shared.failed_completes.load(Ordering::Relaxed),
        shared.duplicate_answers.load(Ordering::Relaxed),
    );
    let mut failed = Vec::new();
    if lost > 0 || twice > 0 {
        let where_now = where_now(&client, &lost_ids).await;
        failed.push(format!(
            "{lost} acknowledged tasks never completed ({where_now}), {twice} completed twice"
        ));
    }
    let growth = growth_by_node(&samples, plan.warmup.as_secs_f64(), plan.duration.as_secs_f64());
    if growth.is_empty() {
        failed.push("too few samples to compare memory and disk".into());
    }
    for (node, what, from, to) in &growth {
        let slack = if *what == "disk" { DISK_SLACK_BYTES } else { RSS_SLACK_BYTES };
        if *to > *from * (1.0 + MAX_GROWTH) && *to > *from + slack {
            failed.push(format!("node {node} {what} grew from {from:.0} to {to:.0} bytes"));
        }
    }
    print_samples(&samples);
    let growth_text: Vec<String> = growth
        .iter()
        .map(|(n, w, a, b)| format!("node {n} {w} {:.0}→{:.0} MB", a / 1e6, b / 1e6))
        .collect();
    Ok(Outcome {
        name: format!("w4 rate={} workers={}", plan.rate, plan.workers),
        tasks_per_s: accepted as f64 / produced_s,
        p50_us: done_hist.value_at_quantile(0.5),
        p99_us: done_hist.value_at_quantile(0.99),
        details: format!(
            "{accepted} completed, {lost} lost, {twice} completed twice, {submit_errors} failed submits, \
             {failed_completes} failed completes, {duplicates} answered duplicate; {}",
            growth_text.join(", ")
        ),
        figures: json!({ "rate": plan.rate, "seconds": produced_s, "completed": accepted, "lost": lost,
            "completed_twice": twice, "failed_submits": submit_errors,
            "failed_completes": failed_completes, "duplicate_answers": duplicates,
            "samples": samples.iter().map(sample_json).collect::<Vec<Value>>() }),
        failed_check: (!failed.is_empty()).then(|| format!("soak: {}", failed.join("; "))),
    })
}

/// What the cluster holds now of the tasks in `ids` (the first lost ones):
/// a task that is absent was purged after finishing, or never applied.
async fn where_now(client: &Client, ids: &[u64]) -> String {
    let mut parts = Vec::new();
    for id in ids {
        let state = match client.task(TaskId(*id)).await {
            Ok(t) => format!("{:?} attempt {} worker {:?}", t.status, t.attempt.0, t.worker),
            Err(e) => format!("not found: {e}"),
        };
        parts.push(format!("task {id}: {state}"));
    }
    parts.join("; ")
}

/// Submits at `plan.rate` for `plan.duration`, keyed so that a retried
/// submit is never recorded twice; returns how many tasks could not be submitted.
async fn produce(client: &Client, plan: SoakPlan, shared: &Shared) -> u64 {
    let started = Instant::now();
    // Keys unique to this run, so that a submit never matches an earlier
    // run's task on the same cluster (which would be counted as new here).
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let (mut sent, mut errors) = (0u64, 0u64);
    let mut tick = tokio::time::interval(PRODUCER_TICK);
    while started.elapsed() < plan.warmup + plan.duration {
        tick.tick().await;
        let due = (started.elapsed().as_secs_f64() * plan.rate as f64) as u64;
        let count = due.saturating_sub(sent).min(1000);
        if count == 0 {
            continue;
        }
        let tasks = (sent..sent + count)
            .map(|i| NewTask {
                data: workloads::payload(i as usize),
                key: Some(format!("soak-{run}-{i}")),
                priority: 0,
                max_attempts: 0,
                ..Default::default()
            })
            .collect();
        sent += count;
        match client.submit(tasks).await {
            Ok(ids) => {
                let mut ledger = shared.ledger.lock();
                ids.iter().for_each(|s| ledger.submitted(s.id.0));
            }
            Err(_) => errors += count,
        }
    }
    errors
}

/// Samples every member each `every` into `samples`, until aborted.
async fn sample(
    client: Arc<Client>,
    every: Duration,
    started: Instant,
    samples: Arc<Mutex<Vec<Sample>>>,
) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let batch = sample_once(&client, started).await;
        for s in &batch {
            eprintln!("w4 sample: {}", sample_line(s));
        }
        samples.lock().extend(batch);
    }
}

async fn sample_once(client: &Client, started: Instant) -> Vec<Sample> {
    let Ok(status) = client.status().await else { return Vec::new() };
    let mut out = Vec::new();
    for m in status.members {
        if let Ok(r) = client.node_report_at(&m.client_addr).await {
            out.push(Sample {
                at_s: started.elapsed().as_secs_f64(),
                node: r.id,
                rss: r.rss_bytes,
                disk: r.data_dir_bytes,
                snapshot: r.snapshot_bytes,
                tasks: r.counts.total(),
            });
        }
    }
    out
}

/// Per node and measure: the median over the second half of the first
/// third of the run after the warm-up, and over its last sixth.
fn growth_by_node(
    samples: &[Sample],
    warmup_s: f64,
    run_s: f64,
) -> Vec<(u64, &'static str, f64, f64)> {
    let sixth = run_s / 6.0;
    let mut nodes: Vec<u64> = samples.iter().map(|s| s.node).collect();
    nodes.sort_unstable();
    nodes.dedup();
    let mut out = Vec::new();
    for node in nodes {
        let window = |from: f64, to: f64| -> Vec<&Sample> {
            samples.iter().filter(|s| s.node == node && s.at_s > from && s.at_s <= to).collect()
        };
        let early = window(warmup_s + sixth, warmup_s + 2.0 * sixth);
        let late = window(warmup_s + 5.0 * sixth, f64::MAX);
        if early.len() < MIN_WINDOW || late.len() < MIN_WINDOW {
            continue;
        }
        let median = |xs: &[&Sample], f: fn(&Sample) -> u64| {
            let mut v: Vec<u64> = xs.iter().map(|s| f(s)).collect();
            v.sort_unstable();
            v[v.len() / 2] as f64
        };
        out.push((node, "rss", median(&early, |s| s.rss), median(&late, |s| s.rss)));
        out.push((node, "disk", median(&early, |s| s.disk), median(&late, |s| s.disk)));
    }
    out
}

fn print_samples(samples: &[Sample]) {
    println!("# W4 samples: t_s node rss_mb disk_mb snapshot_mb tasks");
    for s in samples {
        println!("{}", sample_line(s));
    }
}

/// One sample as a plot-friendly line: `t_s node rss_mb disk_mb snapshot_mb tasks`.
fn sample_line(s: &Sample) -> String {
    let mb = |b: u64| b as f64 / 1e6;
    format!(
        "{:.0} {} {:.1} {:.1} {:.1} {}",
        s.at_s,
        s.node,
        mb(s.rss),
        mb(s.disk),
        mb(s.snapshot),
        s.tasks
    )
}

fn sample_json(s: &Sample) -> Value {
    json!({ "t_s": s.at_s, "node": s.node, "rss_bytes": s.rss, "disk_bytes": s.disk,
        "snapshot_bytes": s.snapshot, "tasks": s.tasks })
}

/// A usage error for a soak that cannot check anything.
pub fn check_plan(plan: &SoakPlan) -> anyhow::Result<()> {
    let samples = plan.duration.as_secs_f64() / plan.sample_every.as_secs_f64();
    if samples < (MIN_WINDOW * 6) as f64 {
        return Err(anyhow!(
            "a {:?} soak sampled every {:?} gives {samples:.0} samples; the check needs at least {}",
            plan.duration,
            plan.sample_every,
            MIN_WINDOW * 6
        ))
        .context("use a longer --duration or a shorter --sample-every");
    }
    Ok(())
}
