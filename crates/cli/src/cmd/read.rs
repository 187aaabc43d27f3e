//! `taskraft status`, `tasks` and `result`: linearizable reads from the leader.

use anyhow::anyhow;
use serde_json::json;
use taskraft_core::{Status, TaskId};

use crate::args::{ReadArgs, ResultArgs, TasksArgs};
use crate::output;
use crate::Failure;

pub async fn status(args: ReadArgs) -> Result<(), Failure> {
    let status = super::client(&args.seeds)?.status().await?;
    if args.json {
        super::print_json(&output::status_json(&status));
    } else {
        println!("{}", output::status_text(&status));
    }
    Ok(())
}

pub async fn tasks(args: TasksArgs) -> Result<(), Failure> {
    let status = match &args.status {
        None => None,
        Some(s) => Some(Status::parse(s).ok_or_else(|| {
            Failure::Usage(anyhow!(
                "unknown status {s:?}; use idle, in_progress, completed or dead"
            ))
        })?),
    };
    let client = super::client(&args.read.seeds)?;
    let page = client.tasks(status, args.after.map(TaskId), args.limit).await?;
    if args.read.json {
        super::print_json(&json!({
            "tasks": page.tasks.iter().map(output::task_json).collect::<Vec<_>>(),
            "next_after": page.next_after.map(|id| id.0),
        }));
    } else {
        for t in &page.tasks {
            println!("{}", output::task_line(t));
        }
        if let Some(next) = page.next_after {
            eprintln!("more tasks: taskraft tasks --after {next}");
        }
    }
    Ok(())
}

pub async fn result(args: ResultArgs) -> Result<(), Failure> {
    let task = super::client(&args.read.seeds)?.task(TaskId(args.id)).await?;
    if args.read.json {
        super::print_json(&output::task_json(&task));
    } else {
        println!("{}", output::task_line(&task));
    }
    Ok(())
}
