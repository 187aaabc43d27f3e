//! `taskraft worker`: the pull loop until drained (with --exit-when-done) or signalled.

use anyhow::anyhow;
use taskraft_core::WorkerId;
use taskraft_worker::{handler, push, Worker, WorkerOptions};
use tracing::info;

use crate::args::WorkerArgs;
use crate::Failure;

pub async fn run(args: WorkerArgs) -> Result<(), Failure> {
    if args.id.trim().is_empty() {
        return Err(Failure::Usage(anyhow!("--id must not be empty")));
    }
    let handler = match &args.exec {
        Some(cmd) => handler::exec_with_grace(cmd.clone(), args.kill_grace),
        None => handler::builtin(&args.handler).map_err(|e| Failure::Usage(anyhow!(e)))?,
    };
    let client = super::client(&args.seeds)?;
    let options = WorkerOptions {
        concurrency: args.concurrency,
        extend: !args.no_extend,
        exit_when_done: args.exit_when_done,
        poll_wait: args.poll_wait,
        queues: args.queues.clone(),
    };
    if args.push {
        return push(args, handler, client).await;
    }
    info!(worker = %args.id, seeds = ?client.seeds(), "worker started");
    let worker = Worker::new(client, WorkerId(args.id.clone()), options);
    let summary = worker.run(handler, super::shutdown_signal()).await?;
    info!(worker = %args.id, completed = summary.completed, failed = summary.failed, fenced = summary.fenced, "worker stopped");
    Ok(())
}

async fn push(
    args: WorkerArgs,
    handler: taskraft_worker::Handler,
    client: std::sync::Arc<taskraft_client::Client>,
) -> Result<(), Failure> {
    let listen = args.listen.clone().expect("clap requires --listen with --push");
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .map_err(|e| Failure::Usage(anyhow!("cannot listen on {listen}: {e}")))?;
    let advertise = args
        .advertise
        .clone()
        .unwrap_or_else(|| listener.local_addr().map_or(listen, |a| a.to_string()));
    info!(worker = %args.id, %advertise, "push worker started");
    let capacity = args.concurrency.clamp(1, 256) as u32;
    let token = super::token(&args.seeds)?;
    let stop = super::shutdown_signal();
    let me = push::PushIdentity { id: WorkerId(args.id), advertise, capacity, token };
    push::serve(listener, me, handler, client, stop).await?;
    Ok(())
}
