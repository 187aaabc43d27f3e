//! `taskraft queue list | set NAME --max-in-flight K | pause NAME | resume NAME`.

use serde_json::json;
use taskraft_core::{QueueChange, QueueStatus};

use crate::args::QueueCommand;
use crate::Failure;

pub async fn run(command: QueueCommand) -> Result<(), Failure> {
    let (read, name, change) = match command {
        QueueCommand::List(read) => {
            let queues = super::client(&read.seeds)?.status().await?.queues;
            if read.json {
                super::print_json(&json!({ "queues": taskraft_proto::json::queues_json(&queues) }));
            } else {
                print!("{}", queue_lines(&queues));
            }
            return Ok(());
        }
        QueueCommand::Set(a) => {
            let cap = if a.unlimited { None } else { a.max_in_flight };
            (a.read, a.name, QueueChange::MaxInFlight(cap))
        }
        QueueCommand::Pause(a) => (a.read, a.name, QueueChange::Paused(true)),
        QueueCommand::Resume(a) => (a.read, a.name, QueueChange::Paused(false)),
    };
    super::client(&read.seeds)?.set_queue(&name, change.clone()).await?;
    if read.json {
        super::print_json(&json!({ "queue": name, "changed": format!("{change:?}") }));
    } else {
        println!("queue {name}: {}", describe(&change));
    }
    Ok(())
}

fn describe(change: &QueueChange) -> String {
    match change {
        QueueChange::MaxInFlight(Some(k)) => format!("at most {k} in progress"),
        QueueChange::MaxInFlight(None) => "no cap on tasks in progress".into(),
        QueueChange::Paused(true) => "paused".into(),
        QueueChange::Paused(false) => "resumed".into(),
    }
}

/// One line per queue.
pub(crate) fn queue_lines(queues: &[QueueStatus]) -> String {
    let mut out = String::new();
    for q in queues {
        let c = q.counts;
        let cap = q.settings.max_in_flight.map_or("-".to_string(), |k| k.to_string());
        let paused = if q.settings.paused { "  PAUSED" } else { "" };
        out += &format!(
            "  queue {:<16} {} idle, {} scheduled, {} in progress (cap {cap}), {} completed, {} dead, {} cancelled{paused}\n",
            q.name, c.idle, c.scheduled, c.in_progress, c.completed, c.dead, c.cancelled
        );
    }
    out
}
