//! `taskraft status`, `tasks` and `result`: linearizable reads from the leader.

use anyhow::anyhow;
use futures::future::join_all;
use serde_json::json;
use taskraft_client::ClientError;
use taskraft_core::{Status, TaskId};
use taskraft_proto::client::NodeReport;

use crate::args::{ReadArgs, ResultArgs, TasksArgs};
use crate::output;
use crate::Failure;

pub async fn status(args: ReadArgs) -> Result<(), Failure> {
    let client = super::client(&args.seeds)?;
    // Every seed's own view first, all at once (one call timeout at most):
    // when no master knows a leader, that is the answer, at once.
    let views = join_all(client.seeds().iter().map(|addr| {
        let client = client.clone();
        async move { (addr.clone(), client.node_report_at(addr).await) }
    }))
    .await;
    if !views.iter().any(|(_, r)| r.as_ref().is_ok_and(|r| r.leader.is_some())) {
        return no_leader(&views, args.json);
    }
    let status = client.status().await?;
    if args.json {
        super::print_json(&output::status_json(&status));
    } else {
        println!("{}", output::status_text(&status));
    }
    Ok(())
}

/// One line (or JSON object) per seed: its role, or `refused`, `timeout`,
/// `unauthorized`, `tls`; then exit 1 with the first error in full.
fn no_leader(
    views: &[(String, Result<NodeReport, ClientError>)],
    json: bool,
) -> Result<(), Failure> {
    let state = |r: &Result<NodeReport, ClientError>| match r {
        Ok(report) => report.role.clone(),
        Err(e) => {
            let text = e.to_string();
            if text.contains("refused") {
                "refused".to_string()
            } else if text.contains("token") || text.contains("nauthorized") {
                "unauthorized".to_string()
            } else if text.contains("tls") || text.contains("certificate") {
                "tls".to_string()
            } else {
                "timeout".to_string()
            }
        }
    };
    if json {
        let nodes: Vec<_> = views
            .iter()
            .map(|(addr, r)| {
                let report = r.as_ref().ok();
                json!({
                    "client_addr": addr,
                    "state": state(r),
                    "id": report.map(|r| r.id),
                    "term": report.map(|r| r.term),
                    "last_applied": report.and_then(|r| r.last_applied),
                })
            })
            .collect();
        super::print_json(&json!({"leader": null, "nodes": nodes}));
    } else {
        println!("no master knows a leader:");
        for (addr, r) in views {
            let detail = match r {
                Ok(report) => format!(" (node {}, term {})", report.id, report.term),
                Err(_) => String::new(),
            };
            println!("  {addr:<21} {}{detail}", state(r));
        }
    }
    // The first error in full, for what a one-word state cannot say.
    match views.iter().find_map(|(_, r)| r.as_ref().err()) {
        Some(e) => Err(Failure::Failed(anyhow!("no leader is known; first error: {e}"))),
        None => Err(Failure::Failed(anyhow!("no leader is known"))),
    }
}

pub async fn tasks(args: TasksArgs) -> Result<(), Failure> {
    let status = match &args.status {
        None => None,
        Some(s) => Some(Status::parse(s).ok_or_else(|| {
            Failure::Usage(anyhow!("unknown status {s:?}; use {}", Status::CHOICES))
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
