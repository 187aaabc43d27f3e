//! `taskraft member list|add|remove`: the cluster's masters, changed online.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use serde_json::json;
use taskraft_client::{Client, Progress};
use taskraft_proto::{ClusterConfig, NodeInfo};

use crate::args::{MemberAddArgs, MemberCommand, MemberRemoveArgs, MemberWaitArgs, ReadArgs};
use crate::output;
use crate::Failure;

pub async fn run(command: MemberCommand) -> Result<(), Failure> {
    match command {
        MemberCommand::List(a) => list(a).await,
        MemberCommand::Add(a) => add(a).await,
        MemberCommand::Remove(a) => remove(a).await,
        MemberCommand::Wait(a) => wait(a).await,
    }
}

/// A node within this many entries of the leader has caught up.
const CAUGHT_UP_LAG: u64 = 100;

async fn wait(args: MemberWaitArgs) -> Result<(), Failure> {
    let client = super::client(&args.read.seeds)?;
    let started = Instant::now();
    loop {
        if let Some((role, lag)) = caught_up(&client, args.id).await {
            if args.read.json {
                super::print_json(&json!({"id": args.id, "role": role, "lag": lag}));
            } else {
                println!("node {} is back: {role}, {lag} entries behind the leader", args.id);
            }
            return Ok(());
        }
        if started.elapsed() >= args.timeout {
            return Err(Failure::Failed(anyhow!(
                "node {} has not caught up within {:?}; see its log",
                args.id,
                args.timeout
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Node `id`'s role and lag once it answers itself (so a process that was
/// just restarted, not its predecessor's last heartbeat, is what counts),
/// follows the current leader, and is within [`CAUGHT_UP_LAG`] of it.
async fn caught_up(client: &Client, id: u64) -> Option<(String, u64)> {
    let status = client.status().await.ok()?;
    let member = status.members.iter().find(|m| m.id == id)?;
    let report = client.node_report_at(&member.client_addr).await.ok()?;
    let behind = status.last_applied?.saturating_sub(report.last_applied.unwrap_or(0));
    (report.leader == status.leader && behind <= CAUGHT_UP_LAG).then_some((report.role, behind))
}

async fn list(args: ReadArgs) -> Result<(), Failure> {
    let s = super::client(&args.seeds)?.status().await?;
    if args.json {
        super::print_json(&json!({
            "cluster": s.cluster,
            "term": s.term,
            "leader": s.leader,
            "last_log_index": s.last_log_index,
            "changing": s.changing,
            "members": output::members_json(&s),
        }));
    } else {
        let leader = s.leader.map_or("none".to_string(), |l| format!("node {l}"));
        let changing = if s.changing { "  (a membership change is under way)" } else { "" };
        println!("cluster {}  term {}  leader {leader}{changing}", s.cluster, s.term);
        print!("{}", output::member_lines(&s));
    }
    Ok(())
}

/// The node's addresses: the flags, else its `[[node]]` entry in the config.
fn addresses(args: &MemberAddArgs) -> Result<NodeInfo, Failure> {
    if let (Some(peer_addr), Some(client_addr)) = (&args.peer_addr, &args.client_addr) {
        return Ok(NodeInfo { peer_addr: peer_addr.clone(), client_addr: client_addr.clone() });
    }
    let config = ClusterConfig::load(&args.read.seeds.config_path()).map_err(|e| {
        Failure::Usage(anyhow!(
            "{e}\nthe new node's addresses come from its [[node]] entry in --config, or from --peer-addr and --client-addr"
        ))
    })?;
    let node = config.node(args.id).map_err(|_| {
        Failure::Usage(anyhow!(
            "{} has no [[node]] with id {}; add one, or pass --peer-addr and --client-addr",
            args.read.seeds.config_path().display(),
            args.id
        ))
    })?;
    Ok(node.info())
}

async fn add(args: MemberAddArgs) -> Result<(), Failure> {
    let node = addresses(&args)?;
    let client = super::client(&args.read.seeds)?;
    let (id, json) = (args.id, args.read.json);
    let mut last = None;
    client
        .add_member(id, node.clone(), args.timeout, |p| {
            if json || last.as_ref() == Some(p) {
                return;
            }
            match p {
                Progress::CatchingUp { matched: None, last } => {
                    eprintln!("node {id}: learner, waiting for its first entries (snapshot?); leader at {last}")
                }
                Progress::CatchingUp { matched: Some(m), last } => eprintln!(
                    "node {id}: learner, caught up to {m} of {last} (lag {})",
                    last.saturating_sub(*m)
                ),
                Progress::Promoting => eprintln!("node {id}: caught up; promoting to voter"),
            }
            let _ = std::io::stderr().flush();
            last = Some(p.clone());
        })
        .await?;
    if json {
        super::print_json(
            &json!({"added": id, "peer_addr": node.peer_addr, "client_addr": node.client_addr}),
        );
    } else {
        println!("node {id} is a voter ({node})");
    }
    Ok(())
}

async fn remove(args: MemberRemoveArgs) -> Result<(), Failure> {
    let client = super::client(&args.read.seeds)?;
    client.remove_member(args.id).await?;
    if args.read.json {
        super::print_json(&json!({"removed": args.id}));
    } else {
        println!(
            "node {} is no longer a member; stop it, and wipe its data dir before it ever joins again",
            args.id
        );
    }
    Ok(())
}
