//! `taskraft-nemesis`: a randomized fault run against three real master
//! processes, with a full-history checker (scripts/nemesis.sh wraps it).
//! Exits 0 when every guarantee held, 1 on a violation (printing the seed
//! that reproduces the run), 2 on bad usage.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use taskraft_tests::nemesis::{self, schedule::seed_of_the_day, Options};

/// Random faults against a taskraft cluster while clients record every
/// operation; then a checker over the history and the replicas.
#[derive(Debug, Parser)]
#[command(name = "taskraft-nemesis")]
struct Args {
    /// The taskraft binary to run the masters and workers with.
    #[arg(long, default_value = "target/release/taskraft")]
    bin: PathBuf,
    /// How long to inject faults (the drain and the checks come after).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// The schedule's seed (default: the day's, days since 1970).
    #[arg(long)]
    seed: Option<u64>,
    /// Run master N under faketime with its clock off by OFFSET (e.g. 3:+30s, 2:-30s).
    #[arg(long, value_name = "N:OFFSET")]
    skew: Option<String>,
    /// Leave out membership changes (replacing a master).
    #[arg(long)]
    no_replace: bool,
    /// The longest tolerated time without a successful write.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    max_gap: Duration,
    /// Where to write history.jsonl, summary.txt and the masters' logs.
    #[arg(long, default_value = "nemesis-out")]
    out: PathBuf,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let skew = match args.skew.as_deref().map(parse_skew) {
        None => None,
        Some(Ok(skew)) => Some(skew),
        Some(Err(e)) => {
            eprintln!("error: --skew {e}");
            return ExitCode::from(2);
        }
    };
    if !args.bin.exists() {
        eprintln!("error: no binary at {} (build it, or pass --bin)", args.bin.display());
        return ExitCode::from(2);
    }
    let seed = args.seed.unwrap_or_else(seed_of_the_day);
    println!(
        "nemesis: seed {seed}, {:?} of faults, output in {}",
        args.duration,
        args.out.display()
    );
    let report = nemesis::run(Options {
        bin: args.bin,
        duration: args.duration,
        seed,
        skew,
        replace: !args.no_replace,
        max_gap: args.max_gap,
        out: Some(args.out),
    })
    .await;
    println!("{}", report.summary());
    if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `N:OFFSET`, e.g. `3:+30s`.
fn parse_skew(s: &str) -> Result<(u64, String), String> {
    let (node, offset) = s.split_once(':').ok_or("must be N:OFFSET, e.g. 3:+30s")?;
    let node = node.parse().map_err(|_| format!("{node:?} is not a node id"))?;
    let ok = offset.starts_with(['+', '-']) && humantime::parse_duration(&offset[1..]).is_ok();
    if !ok {
        return Err(format!("{offset:?} is not an offset like +30s or -30s"));
    }
    Ok((node, offset.to_string()))
}
