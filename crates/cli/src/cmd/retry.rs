//! `taskraft retry ID...`: dead or cancelled tasks are idle again, with a
//! fresh budget of attempts.

use taskraft_core::{Outcome, TaskId};

use crate::args::RetryArgs;
use crate::Failure;

pub async fn run(args: RetryArgs) -> Result<(), Failure> {
    let client = super::client(&args.read.seeds)?;
    let ids: Vec<TaskId> = args.ids.iter().map(|id| TaskId(*id)).collect();
    let outcomes = client.retry(ids, args.max_attempts.unwrap_or(0)).await?;
    if args.read.json {
        super::print_json(&taskraft_proto::json::retry_json(&args.ids, &outcomes));
    } else {
        for (id, outcome) in args.ids.iter().zip(&outcomes) {
            let what = match outcome {
                Outcome::Accepted => "queued again",
                Outcome::NotFound => "not found",
                _ => "neither dead nor cancelled; left as it is",
            };
            println!("{id} {what}");
        }
    }
    super::none_missing(&args.ids, &outcomes)
}
