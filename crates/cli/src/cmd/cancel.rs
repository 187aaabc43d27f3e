//! `taskraft cancel ID...`: an idle or scheduled task is cancelled at once;
//! a running one is marked, and its worker stops it at its next lease
//! extension (its result, if it still sends one, is not recorded).

use taskraft_core::{Outcome, TaskId};

use crate::args::CancelArgs;
use crate::Failure;

pub async fn run(args: CancelArgs) -> Result<(), Failure> {
    let client = super::client(&args.read.seeds)?;
    let outcomes = client.cancel(args.ids.iter().map(|id| TaskId(*id)).collect()).await?;
    if args.read.json {
        super::print_json(&taskraft_proto::json::cancel_json(&args.ids, &outcomes));
    } else {
        for (id, outcome) in args.ids.iter().zip(&outcomes) {
            let what = match outcome {
                Outcome::Accepted | Outcome::Cancelled => "cancelled",
                Outcome::Duplicate => "already being cancelled",
                Outcome::Stale => "already finished; left as it is",
                Outcome::NotFound => "not found",
            };
            println!("{id} {what}");
        }
    }
    super::none_missing(&args.ids, &outcomes)
}
