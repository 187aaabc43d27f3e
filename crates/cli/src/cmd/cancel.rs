//! `taskraft cancel ID...`: an idle or scheduled task is cancelled at once;
//! a running one is marked, and its worker stops it at its next lease
//! extension (its result, if it still sends one, is not recorded).

use taskraft_core::{Outcome, TaskId};
use taskraft_proto::client::MAX_TASKS_PER_SUBMIT;

use crate::args::CancelArgs;
use crate::Failure;

pub async fn run(mut args: CancelArgs) -> Result<(), Failure> {
    let client = super::client(&args.read.seeds)?;
    if args.key.is_some() || args.queue.is_some() {
        // By key or queue: rounds of up to 10,000 until none is left.
        let (mut ids, mut outcomes) = (Vec::new(), Vec::new());
        loop {
            let round = client.cancel_where(args.key.clone(), args.queue.clone()).await?;
            let last = args.key.is_some() || round.len() < MAX_TASKS_PER_SUBMIT;
            for (id, outcome) in round {
                ids.push(id.0);
                outcomes.push(outcome);
            }
            if last {
                break;
            }
        }
        if ids.is_empty() {
            let what = args.key.as_ref().map_or_else(
                || format!("no unfinished task in queue {:?}", args.queue.as_deref().unwrap_or("")),
                |k| format!("no task with key {k:?}"),
            );
            return Err(Failure::Failed(anyhow::anyhow!(what)));
        }
        args.ids = ids;
        return report(&args, &outcomes);
    }
    let outcomes = client.cancel(args.ids.iter().map(|id| TaskId(*id)).collect()).await?;
    report(&args, &outcomes)
}

fn report(args: &CancelArgs, outcomes: &[Outcome]) -> Result<(), Failure> {
    if args.read.json {
        super::print_json(&taskraft_proto::json::cancel_json(&args.ids, outcomes));
    } else {
        for (id, outcome) in args.ids.iter().zip(outcomes) {
            let what = match outcome {
                Outcome::Accepted | Outcome::Cancelled => "cancelled",
                Outcome::Duplicate => "already being cancelled",
                Outcome::Stale => "already finished; left as it is",
                Outcome::NotFound => "not found",
            };
            println!("{id} {what}");
        }
    }
    super::none_missing(&args.ids, outcomes)
}
