//! `taskraft bench`: the standard workloads of BENCH.md.
//!
//! W1 enqueue (C closed-loop producers), W2 drain (worker loops that
//! request and complete), W3 failover (W2 with the leader SIGKILLed at 2 s),
//! W4 soak (a fixed submit rate for a long run with a short retention; runs
//! once, whatever `--runs` says, on the cluster or a spawned one with
//! `--retention`).
//! With `--spawn` every run gets a fresh three-node cluster of this binary
//! in a temp dir; otherwise W1 and W2 run against the cluster of
//! `--seeds`/`--config` and W3 is skipped (it must own the processes).
//! Each workload checks its outcome from the cluster's own record and the
//! command fails if a check fails.

mod ledger;
mod soak;
mod spawn;
mod targets;
mod workloads;

use std::time::Duration;

use anyhow::anyhow;
use serde_json::json;

use crate::args::BenchArgs;
use crate::Failure;
use soak::SoakPlan;
use spawn::Spawned;
use workloads::{DrainPlan, Outcome, Target};

pub async fn run(args: BenchArgs) -> Result<(), Failure> {
    let n = args.n;
    let plan = DrainPlan {
        workers: args.workers,
        batch: args.batch,
        combined: !args.two_calls,
        wait_for_more: false,
    };
    let mut rows: Vec<(String, Vec<Outcome>)> = Vec::new();
    for workload in &args.workloads {
        let runs = match workload.as_str() {
            "w1" => {
                for &c in &args.producers {
                    for (k, name) in w1_layouts(c, &args.connections) {
                        let load = repeat(&args, |t| Box::pin(workloads::enqueue(t, n, c, k)));
                        rows.push((name, load.await?));
                    }
                }
                continue;
            }
            "w2" => repeat(&args, |t| Box::pin(workloads::drain(t, n, plan, None))).await?,
            "w4" => {
                let plan = SoakPlan {
                    rate: args.rate,
                    duration: args.duration,
                    warmup: args.warmup,
                    sample_every: args.sample_every,
                    workers: args.workers,
                };
                soak::check_plan(&plan).map_err(Failure::Usage)?;
                let target = if args.spawn {
                    let retention = format!("retention_ms = {}", args.retention.as_millis());
                    let spawned = Spawned::start_with(&retention)?;
                    Target { client: spawned.client(), spawned: Some(spawned) }
                } else {
                    Target { client: super::client(&args.seeds)?, spawned: None }
                };
                let outcome = soak::soak(target, plan).await?;
                report(&args, "W4 soak", 1, &outcome);
                rows.push((format!("W4 soak, {}/s", args.rate), vec![outcome]));
                continue;
            }
            "w3" if !args.spawn => {
                eprintln!("W3 needs --spawn (the bench must own the processes to SIGKILL the leader); skipped");
                continue;
            }
            "w3" => {
                let mut outcomes = Vec::new();
                for run in 1..=args.runs {
                    let spawned = Spawned::start()?;
                    let target = Target { client: spawned.client(), spawned: Some(spawned) };
                    let o = workloads::drain(target, n, plan, Some(Duration::from_secs(2))).await?;
                    report(&args, "W3 failover", run, &o);
                    outcomes.push(o);
                }
                rows.push(("W3 failover".into(), outcomes));
                continue;
            }
            other => {
                return Err(Failure::Usage(anyhow!(
                    "unknown workload {other:?}; use w1, w2, w3, w4"
                )))
            }
        };
        let mut name = format!("W2 drain, {} workers", args.workers);
        if args.batch > 1 {
            name += &format!(", batch {}", args.batch);
        }
        if args.two_calls {
            name += ", 2 calls";
        }
        rows.push((name, runs));
    }
    print_table(&rows, client_threads());
    targets::print(&rows, args.workers);
    let failed: Vec<String> =
        rows.iter().flat_map(|(_, o)| o.iter().filter_map(|o| o.failed_check.clone())).collect();
    if !failed.is_empty() {
        return Err(Failure::Failed(anyhow!("checks failed: {}", failed.join("; "))));
    }
    Ok(())
}

type RunFuture = std::pin::Pin<Box<dyn std::future::Future<Output = anyhow::Result<Outcome>>>>;

/// Runs one workload `--runs` times, each on a fresh spawned cluster or on the given one.
async fn repeat<F>(args: &BenchArgs, mut once: F) -> Result<Vec<Outcome>, Failure>
where
    F: FnMut(Target) -> RunFuture,
{
    let mut outcomes = Vec::new();
    for run in 1..=args.runs {
        let outcome = if args.spawn {
            let spawned = Spawned::start()?;
            once(Target { client: spawned.client(), spawned: Some(spawned) }).await?
        } else {
            once(Target { client: super::client(&args.seeds)?, spawned: None }).await?
        };
        report(args, "run", run, &outcome);
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// The worker threads of the runtime the bench's client runs on (`--client-threads`).
fn client_threads() -> usize {
    tokio::runtime::Handle::current().metrics().num_workers()
}

fn report(args: &BenchArgs, name: &str, run: usize, o: &Outcome) {
    if args.json {
        println!(
            "{}",
            json!({ "workload": o.name, "run": run, "client_threads": client_threads(), "figures": o.figures, "check": o.failed_check.clone().unwrap_or_else(|| "ok".into()) })
        );
    } else {
        eprintln!(
            "{name} {run}: {} {:.0} tasks/s{}",
            o.name,
            o.tasks_per_s,
            o.failed_check.as_ref().map_or(String::new(), |f| format!("  CHECK FAILED: {f}"))
        );
    }
}

/// W1's connection layouts for `producers` asked for by `--connections`
/// (0: one each), each once: how many connections, and the row's name.
fn w1_layouts(producers: usize, asked: &[usize]) -> Vec<(usize, String)> {
    let mut layouts: Vec<(usize, String)> = Vec::new();
    for k in asked.iter().map(|&k| workloads::connections_for(producers, k)) {
        if !layouts.iter().any(|(l, _)| *l == k) {
            let name = match k == producers {
                true => format!("W1 enqueue, C={producers}"),
                false => format!("W1 enqueue, C={producers}, {k} conn"),
            };
            layouts.push((k, name));
        }
    }
    layouts
}

/// Prints the median run of each workload.
fn print_table(rows: &[(String, Vec<Outcome>)], client_threads: usize) {
    println!(
        "{:<34} {:>12} {:>10} {:>10}  details",
        "workload (median run)", "tasks/s", "p50", "p99"
    );
    for (name, outcomes) in rows {
        if outcomes.is_empty() {
            continue;
        }
        let mut sorted: Vec<&Outcome> = outcomes.iter().collect();
        sorted.sort_by(|a, b| a.tasks_per_s.total_cmp(&b.tasks_per_s));
        let m = sorted[sorted.len() / 2];
        let us = |v: u64| {
            if v >= 1000 {
                format!("{:.1} ms", v as f64 / 1000.0)
            } else {
                format!("{v} µs")
            }
        };
        println!(
            "{:<34} {:>12.0} {:>10} {:>10}  {}",
            name,
            m.tasks_per_s,
            us(m.p50_us),
            us(m.p99_us),
            m.details
        );
        // The failover figures vary far more than throughput: give each
        // one's own median over the runs, with every run's value.
        for figure in ["unavailable_ms", "new_leader_ms", "rejoin_ms"] {
            let mut values: Vec<u64> =
                outcomes.iter().filter_map(|o| o.figures["failover"][figure].as_u64()).collect();
            if values.is_empty() {
                continue;
            }
            values.sort_unstable();
            let all: Vec<String> = values.iter().map(u64::to_string).collect();
            println!(
                "{:<34} {:>12}  median {} ms of {} runs ({})",
                "",
                figure.trim_end_matches("_ms"),
                values[values.len() / 2],
                values.len(),
                all.join(", ")
            );
        }
    }
    println!(
        "acknowledged = committed and fsynced (Raft log fdatasync) on a majority of the 3 masters"
    );
    let threads = match client_threads {
        1 => "one runtime thread".to_owned(),
        n => format!("{n} runtime threads"),
    };
    println!("client = this process, {threads} (--client-threads)");
}

#[cfg(test)]
mod tests {
    use super::w1_layouts;

    #[test]
    fn w1_producer_counts_must_be_positive() {
        use clap::Parser;
        let parse = |producers: &str| {
            let argv = ["taskraft", "bench", "--producers", producers, "--connections", "0,4"];
            crate::args::Cli::try_parse_from(argv).map(|cli| match cli.command {
                crate::args::Command::Bench(b) => (b.producers, b.connections),
                _ => unreachable!("parsed as bench"),
            })
        };
        assert_eq!(parse("1,64").expect("valid"), (vec![1, 64], vec![0, 4]));
        let zero = parse("64,0").expect_err("a count of 0").to_string();
        assert!(zero.contains("must be at least 1"), "{zero}");
    }

    #[test]
    fn w1_layouts_name_each_connection_count_once() {
        let names = |c, asked: &[usize]| -> Vec<(usize, String)> { w1_layouts(c, asked) };
        assert_eq!(
            names(1, &[0, 1]),
            [(1, "W1 enqueue, C=1".to_owned())],
            "one producer, one layout"
        );
        assert_eq!(
            names(64, &[0, 1]),
            [(64, "W1 enqueue, C=64".to_owned()), (1, "W1 enqueue, C=64, 1 conn".to_owned())]
        );
        let capped = names(64, &[4, 100, 64, 0]);
        let counts: Vec<usize> = capped.iter().map(|(k, _)| *k).collect();
        assert_eq!(counts, [4, 64], "more connections than producers is one each");
    }
}
