//! The three workloads, each returning its figures and its check.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use taskraft_client::{Client, ClientOptions};
use taskraft_core::{Lease, NewTask, WorkerId};
use taskraft_proto::client::{Assignment, LeasedTask};

pub use super::ledger::Shared;
use super::spawn::Spawned;

/// Where a run goes: a client, and the processes when the bench owns them.
pub struct Target {
    /// A client of the cluster.
    pub client: Arc<Client>,
    /// The masters, when started by the bench (W3 needs them).
    pub spawned: Option<Spawned>,
}

/// One run's figures.
pub struct Outcome {
    /// The workload's name.
    pub name: String,
    /// Throughput.
    pub tasks_per_s: f64,
    /// Median latency of the timed operation.
    pub p50_us: u64,
    /// 99th percentile latency.
    pub p99_us: u64,
    /// A one-line summary of the other figures.
    pub details: String,
    /// Every figure, for `--json`.
    pub figures: Value,
    /// Why the check failed, if it did.
    pub failed_check: Option<String>,
}

/// Task `i`'s payload: `i` as 16 zero-padded digits, then 48 filler bytes a..z.
pub fn payload(i: usize) -> Vec<u8> {
    let mut p = format!("{i:016}").into_bytes();
    p.extend((0..48u8).map(|j| b'a' + j % 26));
    p
}

pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("histogram bounds")
}

pub fn own_client(shared: &Client) -> Arc<Client> {
    let options =
        ClientOptions { call_timeout: Duration::from_millis(1000), ..ClientOptions::default() };
    Arc::new(Client::with_options(shared.seeds().to_vec(), options))
}

/// How many connections W1's `producers` share when `--connections` asks
/// for `asked`: 0 is one each, and never more than one each.
pub fn connections_for(producers: usize, asked: usize) -> usize {
    match asked {
        0 => producers,
        k => k.min(producers),
    }
}

/// W1: `producers` closed-loop producers, sharing `connections` clients
/// round-robin (see [`connections_for`]), submit `n` keyed tasks one at a
/// time.
pub async fn enqueue(
    target: Target,
    n: usize,
    producers: usize,
    connections: usize,
) -> anyhow::Result<Outcome> {
    let status = target.client.status().await.context("status before W1")?;
    let before = status.counts.total();
    let cpu_before = target.spawned.as_ref().and_then(Spawned::cpu_ms);
    let run: u32 = rand::random();
    let next = Arc::new(AtomicUsize::new(0));
    let retries = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    let connections = connections_for(producers, connections);
    for _ in 0..connections {
        let client = own_client(&target.client);
        // Connected to the leader before the clock starts, in every layout.
        client.status().await.context("a W1 client's first call")?;
        clients.push(client);
    }
    let started = Instant::now();
    let mut handles = Vec::new();
    for p in 0..producers {
        let client = clients[p % clients.len()].clone();
        let (next, retries) = (next.clone(), retries.clone());
        handles.push(tokio::spawn(async move {
            let mut hist = histogram();
            let mut last = Instant::now();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return (hist, last);
                }
                let task = NewTask {
                    data: payload(i),
                    key: Some(format!("{run:08x}-{i}")),
                    priority: 0,
                    max_attempts: 0,
                    ..Default::default()
                };
                let t0 = Instant::now();
                while client.submit(vec![task.clone()]).await.is_err() {
                    retries.fetch_add(1, Ordering::Relaxed);
                }
                last = Instant::now();
                hist.record(t0.elapsed().as_micros() as u64).ok();
            }
        }));
    }
    let mut hist = histogram();
    let mut end = started;
    for h in handles {
        let (h, last) = h.await?;
        hist.add(h).ok();
        end = end.max(last);
    }
    let secs = (end - started).as_secs_f64();
    let after = target.client.status().await?;
    let held = after.counts.total() - before;
    let entries = after.last_log_index.unwrap_or(0) - status.last_log_index.unwrap_or(0);
    let cpu_per_entry = match (cpu_before, target.spawned.as_ref().and_then(Spawned::cpu_ms)) {
        (Some(b), Some(a)) if entries > 0 => Some((a - b) / entries as f64),
        _ => None,
    };
    let failed_check =
        (held != n as u64).then(|| format!("W1: the cluster holds {held} new tasks, not {n}"));
    let retries = retries.load(Ordering::Relaxed);
    Ok(Outcome {
        name: format!("w1 c={producers} conn={connections}"),
        tasks_per_s: n as f64 / secs,
        p50_us: hist.value_at_quantile(0.5),
        p99_us: hist.value_at_quantile(0.99),
        details: format!(
            "{held} held, {retries} retries, {entries} log entries{}",
            cpu_per_entry
                .map_or(String::new(), |c| format!(", {c:.2} ms CPU per entry (3 masters)"))
        ),
        figures: json!({ "n": n, "producers": producers, "connections": connections, "seconds": secs, "tasks_per_s": n as f64 / secs,
            "p50_us": hist.value_at_quantile(0.5), "p99_us": hist.value_at_quantile(0.99), "retries": retries,
            "log_entries": entries, "cpu_ms_per_entry": cpu_per_entry }),
        failed_check,
    })
}

/// A lease batch in hand: the tasks, their lease, and when they were asked for.
type InHand = (Vec<LeasedTask>, Duration, Instant);

/// One worker loop of W2/W3: request up to `batch`, complete them (all at
/// once, as a prefetching client acks), until drained. With `combined`, one
/// `complete_and_request` call records the whole batch and asks for the
/// next one, and `request` long-polls only when that found nothing idle.
pub async fn drain_loop(
    client: Arc<Client>,
    name: String,
    plan: DrainPlan,
    shared: Arc<Shared>,
) -> (Histogram<u64>, Histogram<u64>) {
    let (mut req_hist, mut done_hist) = (histogram(), histogram());
    let worker = WorkerId(name);
    let mut next: Option<InHand> = None;
    while shared.wanted.load(Ordering::Relaxed) > 0 {
        let (tasks, lease, sent) = match next.take() {
            Some(in_hand) => in_hand,
            None => {
                let sent = Instant::now();
                match client.request(&worker, plan.batch, Duration::from_millis(500)).await {
                    Ok(Assignment::Leased { tasks, lease_timeout_ms }) => {
                        req_hist.record(sent.elapsed().as_micros() as u64).ok();
                        (tasks, Duration::from_millis(lease_timeout_ms), sent)
                    }
                    Ok(Assignment::Drained) if !plan.wait_for_more => return (req_hist, done_hist),
                    Ok(Assignment::Drained) => continue,
                    Ok(Assignment::NoTask) | Err(_) => continue,
                }
            }
        };
        let give_up = sent + lease;
        if plan.combined {
            let leases: Vec<Lease> = tasks.iter().map(|t| t.lease).collect();
            if let Some((latency, in_hand)) =
                complete_all(&client, &worker, &leases, plan.batch, sent, give_up, &shared).await
            {
                done_hist.record(latency).ok();
                next = in_hand;
            }
            continue;
        }
        let completes =
            tasks.iter().map(|t| complete(&client, &worker, t.lease, sent, give_up, &shared));
        for latency in futures::future::join_all(completes).await.into_iter().flatten() {
            done_hist.record(latency).ok();
        }
    }
    (req_hist, done_hist)
}

/// Runs `call` until it is answered, retrying every 100 ms (each failure
/// counted) until `give_up`; returns when the answered attempt was sent,
/// when its answer came, and the answer.
async fn until_answered<T, F, Fut>(
    give_up: Instant,
    shared: &Shared,
    call: F,
) -> Option<(Instant, Instant, T)>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = taskraft_client::Result<T>>,
{
    loop {
        let sent = Instant::now();
        match call().await {
            Ok(answer) => return Some((sent, Instant::now(), answer)),
            Err(_) => {
                shared.failed_completes.fetch_add(1, Ordering::Relaxed);
                if Instant::now() > give_up {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Completes one lease, retrying while it lasts; returns the latency of the
/// answered attempt.
async fn complete(
    client: &Client,
    worker: &WorkerId,
    lease: Lease,
    requested: Instant,
    give_up: Instant,
    shared: &Shared,
) -> Option<u64> {
    let (sent, at, outcome) =
        until_answered(give_up, shared, || client.complete(lease, worker, b"ok".to_vec())).await?;
    shared.answered(lease, outcome, requested, at);
    Some((at - sent).as_micros() as u64)
}

/// Completes all `leases` and asks for up to `max` next tasks in one call
/// (`complete_and_request`), retrying while the leases last; returns the
/// latency of the answered attempt and the next tasks, if any.
async fn complete_all(
    client: &Client,
    worker: &WorkerId,
    leases: &[Lease],
    max: u32,
    requested: Instant,
    give_up: Instant,
    shared: &Shared,
) -> Option<(u64, Option<InHand>)> {
    let results: Vec<(Lease, Vec<u8>)> = leases.iter().map(|l| (*l, b"ok".to_vec())).collect();
    let (sent, at, (outcomes, assignment)) = until_answered(give_up, shared, || {
        client.complete_and_request(worker, results.clone(), max)
    })
    .await?;
    for (lease, outcome) in leases.iter().zip(outcomes) {
        shared.answered(*lease, outcome, requested, at);
    }
    let in_hand = match assignment {
        Assignment::Leased { tasks, lease_timeout_ms } => {
            Some((tasks, Duration::from_millis(lease_timeout_ms), sent))
        }
        _ => None,
    };
    Some(((at - sent).as_micros() as u64, in_hand))
}

/// How W2/W3's worker loops run.
#[derive(Debug, Clone, Copy)]
pub struct DrainPlan {
    /// Worker loops, each with its own connection.
    pub workers: usize,
    /// Tasks leased per request.
    pub batch: u32,
    /// Complete and request in one call.
    pub combined: bool,
    /// Keep polling when the cluster is drained (W4: more tasks are coming).
    pub wait_for_more: bool,
}

/// W2 (and W3 with `kill_at`): `workers` loops drain `n` queued tasks.
pub async fn drain(
    mut target: Target,
    n: usize,
    plan: DrainPlan,
    kill_at: Option<Duration>,
) -> anyhow::Result<Outcome> {
    let DrainPlan { workers, batch, combined, .. } = plan;
    let client = target.client.clone();
    let before = client.status().await.context("status before the drain")?;
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let tasks = chunk
            .iter()
            .map(|i| NewTask {
                data: payload(*i),
                key: None,
                priority: 0,
                max_attempts: 0,
                ..Default::default()
            })
            .collect();
        client.submit(tasks).await.context("queueing tasks")?;
    }
    let shared = Arc::new(Shared { wanted: AtomicU64::new(n as u64), ..Shared::default() });
    let started = Instant::now();
    let loops: Vec<_> = (0..workers)
        .map(|i| {
            tokio::spawn(drain_loop(
                own_client(&client),
                format!("bench-w{i:02}"),
                plan,
                shared.clone(),
            ))
        })
        .collect();
    let mut failover = json!(null);
    if let (Some(after), Some(spawned)) = (kill_at, target.spawned.as_mut()) {
        failover = kill_leader(&client, spawned, after, &shared).await?;
    }
    let (mut req_hist, mut done_hist) = (histogram(), histogram());
    for l in loops {
        let (r, d) = l.await?;
        req_hist.add(r).ok();
        done_hist.add(d).ok();
    }
    let end = shared.last_accept.lock().unwrap_or(started);
    let secs = (end - started).as_secs_f64();
    let after = client.status().await?;
    let completed = after.counts.completed - before.counts.completed;
    let twice = client.all_tasks(None).await?.iter().filter(|t| t.attempt.0 > 1).count();
    let lost = n as u64 - completed.min(n as u64);
    let mut failed_check = None;
    // On a cluster that held other unfinished tasks, only the count is checked.
    let others = before.counts.unfinished();
    let leftovers = after.counts.unfinished();
    if completed < n as u64 || (others == 0 && leftovers != 0) {
        failed_check = Some(format!(
            "drain: {completed} of {n} completed, {} idle, {} in progress",
            after.counts.idle, after.counts.in_progress
        ));
    }
    if kill_at.is_some() {
        if let Some(spawned) = target.spawned.as_mut() {
            failover["rejoin_ms"] =
                json!(rejoin(&client, spawned, failover["killed"].as_u64().unwrap_or(0)).await?);
        }
    }
    let elections = after.term - before.term;
    let failed = shared.failed_completes.load(Ordering::Relaxed);
    let duplicates = shared.duplicate_answers.load(Ordering::Relaxed);
    let accepted_twice = shared.ledger.lock().twice;
    let name = if kill_at.is_some() { "w3" } else { "w2" };
    let mut details = format!("{completed} completed, {lost} lost, {twice} delivered twice, {failed} failed completes, {duplicates} answered duplicate, {elections} term changes");
    if kill_at.is_some() {
        details += &format!(
            "; unavailable {}, new leader seen {} ms, rejoin {} ms",
            match failover["unavailable_ms"].as_u64() {
                Some(ms) => format!("{ms} ms"),
                None => "not measured (no task was requested after the kill)".into(),
            },
            failover["new_leader_ms"],
            failover["rejoin_ms"]
        );
    }
    Ok(Outcome {
        name: format!("{name} workers={workers} batch={batch} combined={combined}"),
        tasks_per_s: n as f64 / secs,
        p50_us: done_hist.value_at_quantile(0.5),
        p99_us: done_hist.value_at_quantile(0.99),
        details,
        figures: json!({ "n": n, "workers": workers, "batch": batch, "combined": combined, "seconds": secs, "tasks_per_s": n as f64 / secs,
            "complete_p50_us": done_hist.value_at_quantile(0.5), "complete_p99_us": done_hist.value_at_quantile(0.99),
            "request_p50_us": req_hist.value_at_quantile(0.5), "request_p99_us": req_hist.value_at_quantile(0.99),
            "completed": completed, "lost": lost, "delivered_twice": twice, "failed_completes": failed,
            "duplicate_answers": duplicates, "term_changes": elections, "accepted_twice": accepted_twice, "failover": failover }),
        failed_check,
    })
}

/// W3's fault: after `after`, or once half the tasks wanted are completed
/// if that comes first (so that the kill lands mid-drain however fast the
/// cluster drains), SIGKILL the leader; measure the new leader and the
/// first accepted completion of a task requested after the kill.
async fn kill_leader(
    client: &Client,
    spawned: &mut Spawned,
    after: Duration,
    shared: &Shared,
) -> anyhow::Result<Value> {
    let (started, half) = (Instant::now(), shared.wanted.load(Ordering::Relaxed) / 2);
    while started.elapsed() < after && shared.wanted.load(Ordering::Relaxed) > half {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let leader = client.status().await?.leader.context("no leader to kill")?;
    spawned.kill(leader)?;
    let killed = Instant::now();
    *shared.killed_at.lock() = Some(killed);
    let survivors: Vec<String> = spawned
        .config
        .node
        .iter()
        .filter(|n| n.id != leader)
        .map(|n| n.client_addr.clone())
        .collect();
    let probe = Client::with_options(
        survivors.clone(),
        ClientOptions { call_timeout: Duration::from_millis(200), ..ClientOptions::default() },
    );
    let new_leader_ms = loop {
        let mut seen = false;
        for addr in &survivors {
            seen |= probe.node_report_at(addr).await.is_ok_and(|r| r.role == "leader");
        }
        if seen || killed.elapsed() > Duration::from_secs(30) {
            break killed.elapsed().as_millis() as u64;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    // None: every task left was leased before the kill (a drain shorter
    // than the workers' leases), so none was requested after it.
    let unavailable_ms = loop {
        if let Some(first) = *shared.first_after_kill.lock() {
            break Some((first - killed).as_millis() as u64);
        }
        if shared.wanted.load(Ordering::Relaxed) == 0 {
            break None;
        }
        anyhow::ensure!(
            killed.elapsed() < Duration::from_secs(60),
            "W3: no completion of a task requested after the kill was accepted within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    Ok(
        json!({ "killed": leader, "new_leader_ms": new_leader_ms, "unavailable_ms": unavailable_ms }),
    )
}

/// Restarts the killed node and measures until it has applied what the leader has.
async fn rejoin(client: &Client, spawned: &mut Spawned, killed: u64) -> anyhow::Result<u64> {
    let addr = spawned.config.node(killed)?.client_addr.clone();
    let started = Instant::now();
    spawned.start_node(killed)?;
    loop {
        let target = client.status().await?.last_applied;
        if client
            .node_report_at(&addr)
            .await
            .is_ok_and(|r| r.last_applied >= target && r.role == "follower")
        {
            return Ok(started.elapsed().as_millis() as u64);
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(60),
            "node {killed} did not rejoin in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
