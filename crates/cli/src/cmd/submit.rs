//! `taskraft submit`: add tasks from arguments, a file or stdin.

use std::io::BufRead;

use anyhow::{anyhow, Context};
use serde_json::json;
use taskraft_core::NewTask;

use crate::args::SubmitArgs;
use crate::Failure;

/// Tasks per submit call: large enough to batch, small enough for one frame.
const CHUNK: usize = 1000;

pub async fn run(args: SubmitArgs) -> Result<(), Failure> {
    let lines = payloads(&args)?;
    if lines.is_empty() {
        return Err(Failure::Usage(anyhow!(
            "nothing to submit: give DATA arguments, --file or --stdin"
        )));
    }
    let client = super::client(&args.seeds)?;
    let many = lines.len() > 1;
    let ms = |d: std::time::Duration| d.as_millis().min(u64::MAX as u128) as u64;
    let run_at_ms = args
        .at
        .map(|at| at.duration_since(std::time::UNIX_EPOCH).map(ms))
        .transpose()
        .map_err(|_| Failure::Usage(anyhow!("--at: a time before 1970")))?;
    let tasks: Vec<NewTask> = lines
        .into_iter()
        .enumerate()
        .map(|(i, data)| NewTask {
            data: data.into_bytes(),
            key: args.key.as_ref().map(|k| if many { format!("{k}-{}", i + 1) } else { k.clone() }),
            priority: args.priority,
            max_attempts: args.max_attempts.unwrap_or(0),
            delay_ms: args.delay.map_or(0, ms),
            run_at_ms,
            retry_base_ms: args.retry_base.map(ms),
            retry_max_ms: args.retry_max.map(ms),
            queue: args.queue.clone(),
        })
        .collect();
    let mut ids = Vec::with_capacity(tasks.len());
    for chunk in tasks.chunks(CHUNK) {
        ids.extend(client.submit(chunk.to_vec()).await?.into_iter().map(|s| s.id.0));
    }
    if args.json {
        super::print_json(&json!({ "ids": ids }));
    } else {
        for id in ids {
            println!("{id}");
        }
    }
    Ok(())
}

fn payloads(args: &SubmitArgs) -> Result<Vec<String>, Failure> {
    let mut all = args.data.clone();
    let read = |r: &mut dyn BufRead| -> std::io::Result<Vec<String>> {
        r.lines().filter(|l| l.as_ref().map_or(true, |l| !l.is_empty())).collect()
    };
    if let Some(path) = &args.file {
        let file = std::fs::File::open(path)
            .with_context(|| format!("cannot open {}", path.display()))
            .map_err(Failure::Usage)?;
        all.extend(read(&mut std::io::BufReader::new(file))?);
    }
    if args.stdin {
        all.extend(read(&mut std::io::stdin().lock())?);
    }
    Ok(all)
}
