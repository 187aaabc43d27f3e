//! `taskraft cancel ID...`: unfinished tasks end dead, "cancelled".

use anyhow::anyhow;
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
                Outcome::Accepted => "cancelled",
                Outcome::Stale => "already finished; left as it is",
                Outcome::NotFound => "not found",
                Outcome::Duplicate => "unchanged",
            };
            println!("{id} {what}");
        }
    }
    let missing: Vec<u64> = args
        .ids
        .iter()
        .zip(&outcomes)
        .filter(|(_, o)| **o == Outcome::NotFound)
        .map(|(id, _)| *id)
        .collect();
    match missing.is_empty() {
        true => Ok(()),
        false => Err(Failure::Failed(anyhow!("no task {missing:?}"))),
    }
}
