//! A throwaway three-node cluster of this very binary, in a temp dir.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use taskraft_client::{Client, ClientOptions};
use taskraft_proto::{ClusterConfig, NodeId};
use tempfile::TempDir;

/// The timing the bench runs with (BENCH.md: lease 3000 ms).
const TIMING: &str = "lease_timeout_ms = 3000\nscan_interval_ms = 500\nheartbeat_interval_ms = 50\nelection_timeout_ms = [150, 300]";

/// Three masters started by the bench, killed when dropped.
pub struct Spawned {
    _dir: TempDir,
    config_path: PathBuf,
    /// The cluster's config.
    pub config: ClusterConfig,
    children: BTreeMap<NodeId, Child>,
}

fn free_addr() -> anyhow::Result<String> {
    Ok(taskraft_proto::transport::free_loopback_addr()?)
}

impl Spawned {
    /// Writes a config and starts the three masters.
    pub fn start() -> anyhow::Result<Spawned> {
        Spawned::start_with("")
    }

    /// Like [`Spawned::start`], with `extra` lines in the `[cluster]` table.
    pub fn start_with(extra: &str) -> anyhow::Result<Spawned> {
        let dir = tempfile::tempdir()?;
        let mut text = format!("[cluster]\nname = \"bench\"\n{TIMING}\n{extra}\n");
        for id in 1..=3 {
            let data = dir.path().join(format!("node{id}"));
            text += &format!(
                "[[node]]\nid = {id}\npeer_addr = \"{}\"\nclient_addr = \"{}\"\ndata_dir = \"{}\"\n",
                free_addr()?,
                free_addr()?,
                data.display()
            );
        }
        let config_path = dir.path().join("cluster.toml");
        std::fs::write(&config_path, &text)?;
        let config = ClusterConfig::parse(&text)?;
        let mut spawned = Spawned { _dir: dir, config_path, config, children: BTreeMap::new() };
        for id in 1..=3 {
            spawned.start_node(id)?;
        }
        Ok(spawned)
    }

    /// Starts (or restarts) one master on its data dir.
    pub fn start_node(&mut self, id: NodeId) -> anyhow::Result<()> {
        let exe = std::env::current_exe().context("locating this binary")?;
        // Three masters share the machine: each on one thread, the cheapest
        // in CPU per commit, unless the environment asks otherwise.
        let threads = match std::env::var("TASKRAFT_MASTER_THREADS") {
            Ok(n) if n.parse::<usize>().is_ok() => n,
            Ok(n) => {
                bail!("TASKRAFT_MASTER_THREADS={n:?}: expected a thread count (0: one per core)")
            }
            Err(_) => "1".into(),
        };
        let child = Command::new(exe)
            .args(["master", "--config"])
            .arg(&self.config_path)
            .args(["--id", &id.to_string(), "--threads", &threads])
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting a master")?;
        self.children.insert(id, child);
        Ok(())
    }

    /// SIGKILLs one master.
    pub fn kill(&mut self, id: NodeId) -> anyhow::Result<()> {
        let mut child =
            self.children.remove(&id).ok_or_else(|| anyhow!("node {id} is not running"))?;
        child.kill()?;
        child.wait()?;
        Ok(())
    }

    /// CPU time (user + system) the running masters have used so far, in
    /// milliseconds, from /proc; `None` where /proc cannot tell.
    pub fn cpu_ms(&self) -> Option<f64> {
        // SAFETY: sysconf reads a constant of the system.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        if ticks <= 0 {
            return None;
        }
        let mut total = 0u64;
        for child in self.children.values() {
            let stat = std::fs::read_to_string(format!("/proc/{}/stat", child.id())).ok()?;
            // Fields after the command name (which may hold spaces): state is
            // the first; utime and stime are the 12th and 13th.
            let rest = &stat[stat.rfind(')')? + 2..];
            let fields: Vec<&str> = rest.split(' ').collect();
            total += fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        }
        Some(total as f64 * 1000.0 / ticks as f64)
    }

    /// A client seeded with all three masters.
    pub fn client(&self) -> Arc<Client> {
        let options =
            ClientOptions { call_timeout: Duration::from_millis(1000), ..ClientOptions::default() };
        Arc::new(Client::with_options(self.config.seeds(), options))
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        for child in self.children.values_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
