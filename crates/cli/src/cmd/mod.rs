//! One module per subcommand; this one dispatches and holds what they share.

mod backup;
mod bench;
mod cancel;
mod master;
mod member;
mod queue;
mod read;
pub(crate) use queue::queue_lines;
mod retry;
mod submit;
mod wait;
mod worker;

use std::sync::Arc;

use anyhow::anyhow;
use taskraft_client::{Client, ClientOptions};
use taskraft_proto::config::credentials_from_env;
use taskraft_proto::ClusterConfig;
use tokio_util::sync::CancellationToken;

use crate::args::{Command, Seeds};
use crate::Failure;

/// Runs one subcommand.
pub async fn run(command: Command) -> Result<(), Failure> {
    match command {
        Command::Master(a) => master::run(a).await,
        Command::Worker(a) => worker::run(a).await,
        Command::Submit(a) => submit::run(a).await,
        Command::Status(a) => read::status(a).await,
        Command::Tasks(a) => read::tasks(a).await,
        Command::Result(a) => read::result(a).await,
        Command::Wait(a) => wait::run(a).await,
        Command::Cancel(a) => cancel::run(a).await,
        Command::Retry(a) => retry::run(a).await,
        Command::Backup(a) => backup::backup(a).await,
        Command::Restore(a) => backup::restore(a),
        Command::Bench(a) => bench::run(a).await,
        Command::Member(c) => member::run(c).await,
        Command::Queue(c) => queue::run(c).await,
    }
}

/// The config a client command reads: `--config` (which must load), else
/// `./cluster.toml` when it exists (or when there are no seeds: then it is
/// the seed list and must load too).
fn config(seeds: &Seeds, seeded: bool) -> Result<Option<ClusterConfig>, Failure> {
    let path = seeds.config_path();
    if seeds.config.is_none() && seeded && !path.exists() {
        return Ok(None);
    }
    ClusterConfig::load(&path).map(Some).map_err(|e| match seeded {
        true => Failure::Usage(e.into()),
        false => Failure::Usage(anyhow!("{e}\nno seeds: pass --seeds A,B,C, set TASKRAFT_SEEDS, or point --config at cluster.toml")),
    })
}

/// A client for the seeds of `--seeds`, `TASKRAFT_SEEDS` or the config file.
/// The config's token and TLS settings apply whatever supplies the seeds;
/// without a config, they come from `TASKRAFT_TOKEN` and `TASKRAFT_TLS_CA`.
fn client(seeds: &Seeds) -> Result<Arc<Client>, Failure> {
    let list: Vec<String> =
        seeds.seeds.iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
    let mut options = ClientOptions { retry_for: seeds.retry_for, ..ClientOptions::default() };
    let config = config(seeds, !list.is_empty())?;
    options.token = match &config {
        Some(c) => c.credentials(false),
        None => credentials_from_env(),
    }
    .map_err(|e| Failure::Usage(e.into()))?;
    let list = match (list.is_empty(), config) {
        (true, Some(c)) => c.seeds(),
        _ => list,
    };
    Ok(Arc::new(Client::with_options(list, options)))
}

/// A push worker's credentials: the config's (or TASKRAFT_TOKEN / TASKRAFT_TLS_CA).
fn token(seeds: &Seeds) -> Result<taskraft_proto::auth::Credentials, Failure> {
    match config(seeds, true)? {
        Some(config) => config.credentials(true),
        None => credentials_from_env(),
    }
    .map_err(|e| Failure::Usage(e.into()))
}

/// A token cancelled on the first SIGINT or SIGTERM.
fn shutdown_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("signal received; shutting down");
        cancel.cancel();
    });
    token
}

/// Prints a JSON value on one line.
/// Exit 1 naming the ids answered `NotFound`, if any (cancel, retry).
fn none_missing(ids: &[u64], outcomes: &[taskraft_core::Outcome]) -> Result<(), Failure> {
    let missing: Vec<u64> = ids
        .iter()
        .zip(outcomes)
        .filter(|(_, o)| **o == taskraft_core::Outcome::NotFound)
        .map(|(id, _)| *id)
        .collect();
    match missing.is_empty() {
        true => Ok(()),
        false => Err(Failure::Failed(anyhow::anyhow!("no task {missing:?}"))),
    }
}

fn print_json(v: &serde_json::Value) {
    println!("{v}");
}
