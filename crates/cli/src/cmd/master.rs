//! `taskraft master`: run one node until SIGINT or SIGTERM.

use std::time::Duration;

use anyhow::anyhow;
use taskraft_master::{Node, NodeOptions};
use taskraft_proto::ClusterConfig;

use crate::args::MasterArgs;
use crate::Failure;

/// How long a master that stopped on a fatal error spends shutting down
/// before it exits regardless.
const FATAL_SHUTDOWN: Duration = Duration::from_secs(5);

pub async fn run(args: MasterArgs) -> Result<(), Failure> {
    let config = ClusterConfig::load(&args.config).map_err(|e| Failure::Usage(e.into()))?;
    config.node(args.id).map_err(|e| Failure::Usage(e.into()))?;
    let mut options = NodeOptions::default();
    for route in &args.peer_route {
        let parsed =
            route.split_once('=').and_then(|(id, addr)| Some((id.parse().ok()?, addr.to_string())));
        let (id, addr) = parsed
            .ok_or_else(|| Failure::Usage(anyhow!("--peer-route {route:?}: expected ID=ADDR")))?;
        options.peer_routes.insert(id, addr);
    }
    let node = Node::start(&config, args.id, options).await.map_err(|e| match e {
        taskraft_master::NodeError::Config(m) => Failure::Usage(anyhow!(m)),
        // Restarting will not help: the operator must replace the node.
        e @ taskraft_master::NodeError::StillAMember(_) => Failure::Usage(e.into()),
        other => Failure::Failed(other.into()),
    })?;
    let signal = super::shutdown_signal();
    tokio::select! {
        () = signal.cancelled() => {}
        error = node.fatal() => {
            // Fail-stop: a node that could not persist a write must not go
            // on answering; a supervisor restarts it once the cause is fixed
            // (a full disk freed), and it catches up from the leader.
            tracing::error!(%error, "raft stopped on a fatal error; this master exits");
            exit_anyway_after(FATAL_SHUTDOWN);
            node.shutdown().await;
            return Err(Failure::Failed(anyhow!("raft stopped on a fatal error: {error}")));
        }
    }
    node.shutdown().await;
    Ok(())
}

/// Exits the process with status 1 after `after`, whatever is still running.
/// A storage that failed may never finish what a clean shutdown waits for:
/// sled, after a write failed (a full disk), waits forever in the flush it
/// runs when its last handle is dropped. Fail-stop must stop.
fn exit_anyway_after(after: Duration) {
    std::thread::spawn(move || {
        std::thread::sleep(after);
        tracing::error!(
            ?after,
            "the shutdown after a fatal error did not finish; exiting without it"
        );
        std::process::exit(1);
    });
}
