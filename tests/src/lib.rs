//! Test harnesses for taskraft clusters on real sockets and real sled dirs.
//!
//! - [`TestCluster`]: masters in this process (each a full `Node` with its
//!   own sled dir and ports bound on 127.0.0.1:0), stopped and restarted at will;
//! - [`ProcCluster`]: masters as child processes of the real binary, for
//!   SIGKILL / SIGSTOP / SIGCONT;
//! - [`story::Story`]: a cluster under a checked load, for fault stories;
//! - [`nemesis`]: random faults for minutes against recording clients,
//!   and a checker over the whole history ([`history`]).
//!
//! Both wait on conditions with deadlines, never on fixed sleeps alone.

pub mod check;
pub mod cluster;
pub mod history;
pub mod http;
pub mod nemesis;
pub mod process;
pub mod proxy;
pub mod story;

pub use cluster::TestCluster;
pub use process::ProcCluster;
pub use proxy::{Mode, Proxy};

use std::time::{Duration, Instant};

/// A task of `data`, with no key, priority or retry limit of its own.
pub fn task(data: &str) -> taskraft_core::NewTask {
    taskraft_core::NewTask { data: data.as_bytes().to_vec(), ..Default::default() }
}

/// `n` tasks of data "`prefix` 1" to "`prefix` n" (see [`task`]).
pub fn tasks(prefix: &str, n: usize) -> Vec<taskraft_core::NewTask> {
    (1..=n).map(|i| task(&format!("{prefix} {i}"))).collect()
}

/// Polls `check` every 20 ms until it returns `Some`, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(started.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs `cmd` without blocking the test's runtime, asserts that it
/// succeeds, and returns what it printed (stdout, then stderr).
pub async fn output_ok(cmd: &mut tokio::process::Command, what: &str) -> String {
    output(cmd, what).await.unwrap_or_else(|e| panic!("{e}"))
}

/// Runs `cmd` without blocking the test's runtime; what it printed
/// (stdout, then stderr) if it succeeds, else why not.
pub async fn output(cmd: &mut tokio::process::Command, what: &str) -> Result<String, String> {
    let out = cmd.output().await.map_err(|e| format!("{what}: {e}"))?;
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    match out.status.success() {
        true => Ok(text),
        false => Err(format!("{what} failed: {text}")),
    }
}

/// A cluster.toml for `n` nodes at the given addresses, with data dirs under `dir`.
pub fn config_text(name: &str, dir: &std::path::Path, ports: &[Ports], extra: &str) -> String {
    let mut text = format!("[cluster]\nname = \"{name}\"\n{extra}\n");
    for (i, Ports { peer, client, http }) in ports.iter().enumerate() {
        let id = i + 1;
        let data = dir.join(format!("node{id}"));
        text += &format!(
            "\n[[node]]\nid = {id}\npeer_addr = \"{peer}\"\nclient_addr = \"{client}\"\nhttp_addr = \"{http}\"\ndata_dir = \"{}\"\n",
            data.display()
        );
    }
    text
}

/// The three ports of one master in a test config.
#[derive(Debug, Clone)]
pub struct Ports {
    /// Raft traffic.
    pub peer: String,
    /// Workers and the CLI.
    pub client: String,
    /// Metrics, health, the JSON API and the console.
    pub http: String,
}

impl Ports {
    /// Three free ports on 127.0.0.1.
    pub fn free() -> Ports {
        let free = process::free_addr;
        Ports { peer: free(), client: free(), http: free() }
    }
}
