//! `taskraft backup` (online, from the leader) and `taskraft restore`
//! (offline, into the empty data dirs of a new cluster).

use anyhow::{anyhow, Context};
use serde_json::json;
use taskraft_master::store::backup::{read_backup, seed, RestoreError};
use taskraft_proto::ClusterConfig;

use crate::args::{BackupArgs, RestoreArgs};
use crate::Failure;

pub async fn backup(args: BackupArgs) -> Result<(), Failure> {
    let client = super::client(&args.read.seeds)?;
    let mut bytes = Vec::new();
    let info = client.backup(&mut bytes).await?;
    let tmp = args.file.with_extension("tmp");
    std::fs::write(&tmp, &bytes)
        .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
        .and_then(|()| std::fs::rename(&tmp, &args.file))
        .with_context(|| format!("writing {}", args.file.display()))?;
    let c = info.counts;
    if args.read.json {
        super::print_json(&json!({
            "file": args.file.display().to_string(), "bytes": info.bytes, "crc32": info.crc32,
            "last_applied": info.last_applied, "digest": info.digest, "counts": c,
        }));
    } else {
        println!(
            "backup of {} tasks ({} idle, {} in progress, {} completed, {} dead) at log index {}: {} ({} bytes, crc32 {:08x}, digest {:016x})",
            c.total(), c.idle, c.in_progress, c.completed, c.dead,
            info.last_applied.unwrap_or(0), args.file.display(), info.bytes, info.crc32, info.digest
        );
    }
    Ok(())
}

pub fn restore(args: RestoreArgs) -> Result<(), Failure> {
    let config = ClusterConfig::load(&args.config).map_err(|e| Failure::Usage(e.into()))?;
    let bytes = std::fs::read(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))
        .map_err(Failure::Usage)?;
    let (header, table) = read_backup(&bytes).map_err(|e| Failure::Usage(e.into()))?;
    // Only the initial members are seeded; other listed nodes start empty
    // and wait to be added, as on a brand-new cluster.
    let members = config.initial_membership();
    let dirs = config
        .node
        .iter()
        .filter(|n| members.contains_key(&n.id))
        .map(|n| (n.id, args.data_root.join(&n.data_dir)))
        .collect();
    seed(&dirs, &members, &config.cluster.name, &table).map_err(|e| match e {
        RestoreError::NotEmpty(_) | RestoreError::Bad(_) => Failure::Usage(e.into()),
        other => Failure::Failed(anyhow!(other)),
    })?;
    let c = table.counts();
    if args.json {
        super::print_json(&json!({
            "cluster": config.cluster.name, "from_cluster": header.cluster,
            "nodes": members.keys().collect::<Vec<_>>(), "digest": table.digest(), "counts": c,
        }));
    } else {
        println!(
            "restored {} tasks (digest {:016x}, taken from cluster {:?} at log index {}) into the data dirs of nodes {:?}; start the masters",
            c.total(), table.digest(), header.cluster, header.last_applied.unwrap_or(0),
            members.keys().collect::<Vec<_>>()
        );
    }
    Ok(())
}
