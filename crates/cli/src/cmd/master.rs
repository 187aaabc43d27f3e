//! `taskraft master`: run one node until SIGINT or SIGTERM.

use anyhow::anyhow;
use taskraft_master::Node;
use taskraft_proto::ClusterConfig;

use crate::args::MasterArgs;
use crate::Failure;

pub async fn run(args: MasterArgs) -> Result<(), Failure> {
    let config = ClusterConfig::load(&args.config).map_err(|e| Failure::Usage(e.into()))?;
    config.node(args.id).map_err(|e| Failure::Usage(e.into()))?;
    let node = Node::start(&config, args.id).await.map_err(|e| match e {
        taskraft_master::NodeError::Config(m) => Failure::Usage(anyhow!(m)),
        other => Failure::Failed(other.into()),
    })?;
    super::shutdown_signal().cancelled().await;
    node.shutdown().await;
    Ok(())
}
