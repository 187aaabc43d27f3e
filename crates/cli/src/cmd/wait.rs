//! `taskraft wait`: until no task is idle or in progress, with a progress line.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use anyhow::anyhow;
use serde_json::json;

use crate::args::WaitArgs;
use crate::Failure;

/// How often the counts are read.
const POLL: Duration = Duration::from_millis(200);

pub async fn run(args: WaitArgs) -> Result<(), Failure> {
    let client = super::client(&args.read.seeds)?;
    let started = Instant::now();
    let tty = std::io::stderr().is_terminal();
    let mut last_line = String::new();
    loop {
        let c = client.status().await?.counts;
        let done = c.completed + c.dead;
        let line = format!(
            "{done}/{} done ({} completed, {} dead, {} in progress, {} idle)",
            c.total(),
            c.completed,
            c.dead,
            c.in_progress,
            c.idle
        );
        if c.idle == 0 && c.in_progress == 0 {
            if tty {
                eprintln!("\r{line}");
            }
            if args.read.json {
                super::print_json(
                    &json!({ "counts": c, "waited_ms": started.elapsed().as_millis() as u64 }),
                );
            } else if !tty {
                eprintln!("{line}");
            }
            return Ok(());
        }
        if started.elapsed() >= args.timeout {
            return Err(Failure::Failed(anyhow!("timed out after {:?}: {line}", args.timeout)));
        }
        if tty {
            eprint!("\r{line}");
            let _ = std::io::stderr().flush();
        } else if line != last_line {
            eprintln!("{line}");
        }
        last_line = line;
        tokio::time::sleep(POLL).await;
    }
}
