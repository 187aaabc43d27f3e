//! `taskraft wait`: until no task is idle or in progress. On a terminal a
//! progress bar (done of total, rate, time left); otherwise a plain line
//! each time the counts change, for logs and CI.

use std::time::{Duration, Instant};

use anyhow::anyhow;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;
use taskraft_core::Counts;

use crate::args::WaitArgs;
use crate::Failure;

/// How often the counts are read.
const POLL: Duration = Duration::from_millis(200);

fn line(c: &Counts) -> String {
    let scheduled =
        if c.scheduled > 0 { format!(", {} scheduled", c.scheduled) } else { String::new() };
    let cancelled =
        if c.cancelled > 0 { format!(", {} cancelled", c.cancelled) } else { String::new() };
    format!(
        "{}/{} done ({} completed, {} dead, {} in progress, {} idle{scheduled}{cancelled})",
        c.total() - c.unfinished(),
        c.total(),
        c.completed,
        c.dead,
        c.in_progress,
        c.idle
    )
}

pub async fn run(args: WaitArgs) -> Result<(), Failure> {
    let client = super::client(&args.read.seeds)?;
    let started = Instant::now();
    // Hidden when stderr is not a terminal: plain lines are printed instead.
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} done  {per_sec}  ETA {eta}  {msg}")
            .expect("a valid template"),
    );
    let plain = bar.is_hidden();
    let mut last_line = String::new();
    loop {
        let c = client.status().await?.counts;
        let text = line(&c);
        bar.set_length(c.total());
        bar.set_position(c.total() - c.unfinished());
        bar.set_message(format!("{} in progress, {} idle, {} dead", c.in_progress, c.idle, c.dead));
        if plain && text != last_line {
            eprintln!("{text}");
        }
        if c.unfinished() == 0 {
            bar.finish();
            if args.read.json {
                super::print_json(
                    &json!({ "counts": c, "waited_ms": started.elapsed().as_millis() as u64 }),
                );
            }
            return Ok(());
        }
        if started.elapsed() >= args.timeout {
            bar.abandon();
            return Err(Failure::Failed(anyhow!("timed out after {:?}: {text}", args.timeout)));
        }
        last_line = text;
        tokio::time::sleep(POLL).await;
    }
}
