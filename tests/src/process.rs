//! [`ProcCluster`]: masters (and workers) as child processes of the real
//! binary, so that tests can SIGKILL, SIGSTOP and SIGCONT them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use taskraft_client::{Client, ClientOptions};
use taskraft_proto::{ClusterConfig, NodeId};
use tempfile::TempDir;

use crate::{config_text, eventually, Mode, Ports, Proxy};

/// A child process killed (SIGKILL) and reaped on drop.
pub struct Proc(pub Child);

impl Proc {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Sends a signal by name (`KILL`, `STOP`, `CONT`, `TERM`).
    pub fn signal(&self, name: &str) {
        let status =
            Command::new("kill").arg(format!("-{name}")).arg(self.pid().to_string()).status();
        assert!(status.is_ok_and(|s| s.success()), "kill -{name} {}", self.pid());
    }

    /// Whether the process has exited.
    pub fn has_exited(&mut self) -> bool {
        self.0.try_wait().expect("try_wait").is_some()
    }

    /// Waits up to `timeout` for the process to exit; returns its exit code.
    pub async fn wait(&mut self, timeout: Duration) -> Option<i32> {
        eventually(timeout, "process exit", || {
            let r = self.0.try_wait().expect("try_wait");
            async move { r }
        })
        .await
        .code()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Masters running as processes of the real binary.
pub struct ProcCluster {
    /// The `taskraft` binary under test.
    pub bin: PathBuf,
    /// The config file every process reads.
    pub config_path: PathBuf,
    /// The parsed config.
    pub config: ClusterConfig,
    /// Data dirs, logs and the config; removed on drop.
    pub dir: TempDir,
    nodes: BTreeMap<NodeId, Proc>,
    /// `links[(from, to)]`: the proxy `from` dials to reach `to`'s peer port.
    links: BTreeMap<(NodeId, NodeId), Proxy>,
}

/// A free port on 127.0.0.1 that no outgoing connection will take meanwhile.
pub fn free_addr() -> String {
    taskraft_proto::transport::free_loopback_addr().expect("a free port")
}

impl ProcCluster {
    /// Writes a config for `n` nodes and starts them all.
    pub fn start(bin: &str, n: usize, extra: &str) -> ProcCluster {
        ProcCluster::launch(bin, n, extra, BTreeMap::new())
    }

    /// Lists `listed` nodes in the config but forms the cluster of the first
    /// `initial` (`initial_members`); the others are spares, running blank
    /// and waiting for `taskraft member add`. (A brand-new cluster forms
    /// only once every listed node has answered that it holds nothing.)
    pub fn start_with_spares(bin: &str, listed: usize, initial: usize, extra: &str) -> ProcCluster {
        let addrs = (0..listed).map(|_| Ports::free()).collect();
        let extra = format!("{}\n{extra}", initial_members(initial));
        ProcCluster::launch_at(bin, addrs, &extra, BTreeMap::new())
    }

    /// Like [`ProcCluster::start`], with a [`Proxy`] on every peer link
    /// (one per ordered pair of nodes), so links can be cut, blackholed or delayed.
    pub async fn start_proxied(bin: &str, n: usize, extra: &str) -> ProcCluster {
        ProcCluster::start_proxied_with_spares(bin, n, n, extra).await
    }

    /// [`ProcCluster::start_with_spares`] behind proxies.
    pub async fn start_proxied_with_spares(
        bin: &str,
        n: usize,
        initial: usize,
        extra: &str,
    ) -> ProcCluster {
        let addrs: Vec<Ports> = (0..n).map(|_| Ports::free()).collect();
        let mut links = BTreeMap::new();
        for from in 1..=n {
            for to in (1..=n).filter(|to| *to != from) {
                let proxy = Proxy::start(addrs[to - 1].peer.clone()).await;
                links.insert((from as NodeId, to as NodeId), proxy);
            }
        }
        let extra = format!("{}\n{extra}", initial_members(initial));
        ProcCluster::launch_at(bin, addrs, &extra, links)
    }

    fn launch(
        bin: &str,
        n: usize,
        extra: &str,
        links: BTreeMap<(NodeId, NodeId), Proxy>,
    ) -> ProcCluster {
        let addrs = (0..n).map(|_| Ports::free()).collect();
        ProcCluster::launch_at(bin, addrs, extra, links)
    }

    /// Writes the config for nodes at `addrs` and starts them all, dialling
    /// each other through `links` where given.
    fn launch_at(
        bin: &str,
        addrs: Vec<Ports>,
        extra: &str,
        links: BTreeMap<(NodeId, NodeId), Proxy>,
    ) -> ProcCluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let text = config_text("proc", dir.path(), &addrs, extra);
        let config_path = dir.path().join("cluster.toml");
        std::fs::write(&config_path, &text).expect("write config");
        let config = ClusterConfig::parse(&text).expect("config");
        let mut cluster = ProcCluster {
            bin: bin.into(),
            config_path,
            config,
            dir,
            nodes: BTreeMap::new(),
            links,
        };
        for id in 1..=addrs.len() as NodeId {
            cluster.start_node(id);
        }
        cluster
    }

    /// Sets the link from `from` to `to` to `mode`.
    pub fn link(&self, from: NodeId, to: NodeId, mode: Mode) {
        self.links[&(from, to)].set(mode);
    }

    /// SIGKILLs a master and deletes its data dir: a machine lost for good.
    pub fn wipe(&mut self, id: NodeId) {
        self.kill(id);
        let dir = &self.config.node(id).expect("listed node").data_dir;
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Takes master `id` out of the running set without killing it (it exited by itself).
    pub fn take(&mut self, id: NodeId) -> Option<Proc> {
        self.nodes.remove(&id)
    }

    /// Sets every link into and out of `id` to `mode`.
    pub fn isolate(&self, id: NodeId, mode: Mode) {
        for ((from, to), proxy) in &self.links {
            if *from == id || *to == id {
                proxy.set(mode);
            }
        }
    }

    /// Restores every link.
    pub fn heal(&self) {
        self.links.values().for_each(|p| p.set(Mode::Pass));
    }

    /// Starts (or restarts) one master; its output is appended to `nodeN.log`.
    pub fn start_node(&mut self, id: NodeId) {
        self.start_node_with(id, &[], &[]);
    }

    /// Like [`ProcCluster::start_node`], with `env` set (e.g. libfaketime's
    /// `LD_PRELOAD` and `FAKETIME`) and `args` added.
    pub fn start_node_with(&mut self, id: NodeId, env: &[(&str, &str)], args: &[&str]) {
        let log = self.log_path(&format!("node{id}"));
        let out = std::fs::OpenOptions::new().create(true).append(true).open(&log).expect("log");
        let routes: Vec<String> = self
            .links
            .iter()
            .filter(|((from, _), _)| *from == id)
            .flat_map(|((_, to), proxy)| {
                ["--peer-route".to_string(), format!("{to}={}", proxy.addr)]
            })
            .collect();
        let child = Command::new(&self.bin)
            .args(["master", "--config"])
            .arg(&self.config_path)
            .args(["--id", &id.to_string()])
            .args(routes)
            // Both runtimes under every fault: odd nodes single-threaded,
            // even ones one thread per core.
            .args(["--threads", if id % 2 == 1 { "1" } else { "0" }])
            .args(args)
            .envs(env.iter().copied())
            .env("RUST_LOG", "info,openraft=error,tarpc=error")
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .spawn()
            .expect("spawn master");
        self.nodes.insert(id, Proc(child));
    }

    /// Where a process's log goes.
    pub fn log_path(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.log"))
    }

    /// The running master with this id.
    pub fn node(&self, id: NodeId) -> &Proc {
        &self.nodes[&id]
    }

    /// Ids of the running masters.
    pub fn running(&self) -> Vec<NodeId> {
        self.nodes.keys().copied().collect()
    }

    /// Asks one master for its own view (any role answers).
    pub async fn report(&self, id: NodeId) -> Option<taskraft_proto::client::NodeReport> {
        let addr = &self.config.node(id).ok()?.client_addr;
        self.client().node_report_at(addr).await.ok()
    }

    /// Waits until every running master has applied the same log and holds
    /// the same table; returns the digest.
    pub async fn converged(&self) -> u64 {
        eventually(Duration::from_secs(30), "replicas to converge", || async {
            let mut reports = Vec::new();
            for id in self.running() {
                reports.push(self.report(id).await?);
            }
            let same = reports
                .windows(2)
                .all(|w| w[0].digest == w[1].digest && w[0].last_applied == w[1].last_applied);
            same.then(|| reports[0].digest)
        })
        .await
    }

    /// SIGKILLs a master and reaps it.
    pub fn kill(&mut self, id: NodeId) {
        drop(self.nodes.remove(&id));
    }

    /// `http://` or `https://` and a master's `http_addr`.
    pub fn http_url(&self, id: NodeId) -> String {
        let scheme = if self.config.cluster.tls_ca.is_some() { "https" } else { "http" };
        let addr = self.config.node(id).expect("node").http_addr.clone().expect("http_addr");
        format!("{scheme}://{addr}")
    }

    /// A client seeded with every master.
    pub fn client(&self) -> Arc<Client> {
        let token = self.config.credentials(false).expect("credentials");
        let options =
            ClientOptions { retry_for: Duration::from_secs(20), token, ..ClientOptions::default() };
        Arc::new(Client::with_options(self.config.seeds(), options))
    }

    /// Waits until the cluster answers `status` and returns the leader's id.
    pub async fn leader(&self) -> NodeId {
        let client = self.client();
        eventually(Duration::from_secs(20), "a leader", || {
            let client = client.clone();
            async move { client.status().await.ok().and_then(|s| s.leader) }
        })
        .await
    }

    /// Runs a CLI command against this cluster (with `--config`) and returns its output.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(&self.bin)
            .args(args)
            .arg("--config")
            .arg(&self.config_path)
            .env_remove("TASKRAFT_SEEDS")
            .output()
            .expect("run taskraft")
    }

    /// Like [`ProcCluster::cli`], without blocking the test's runtime, and
    /// asserting that the command succeeds; returns what it printed
    /// (stdout, then stderr).
    pub async fn cli_ok(&self, args: &[&str]) -> String {
        self.cli_try(args).await.unwrap_or_else(|e| panic!("{e}"))
    }

    /// Like [`ProcCluster::cli_ok`]; why it failed instead of a panic.
    pub async fn cli_try(&self, args: &[&str]) -> Result<String, String> {
        let mut cmd = tokio::process::Command::new(&self.bin);
        cmd.args(args).arg("--config").arg(&self.config_path).env_remove("TASKRAFT_SEEDS");
        crate::output(&mut cmd, &format!("taskraft {}", args.join(" "))).await
    }

    /// The voters of the live membership, as the leader reports them.
    pub async fn voters(&self) -> Vec<NodeId> {
        let status = self.client().status().await.expect("status");
        status.members.iter().filter(|m| m.voter).map(|m| m.id).collect()
    }

    /// Starts a worker process (`taskraft worker --config ... ARGS`), logging to `name.log`.
    pub fn worker(&self, name: &str, args: &[&str]) -> Proc {
        let log = self.log_path(name);
        let out = std::fs::File::create(&log).expect("log");
        let child = Command::new(&self.bin)
            .arg("worker")
            .arg("--config")
            .arg(&self.config_path)
            .args(args)
            .env("RUST_LOG", "info")
            .env_remove("TASKRAFT_SEEDS")
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log"))
            .stderr(out)
            .spawn()
            .expect("spawn worker");
        Proc(child)
    }

    /// The text of a process's log.
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.log_path(name)).unwrap_or_default()
    }
}

/// `initial_members` for nodes 1 to `n`.
fn initial_members(n: usize) -> String {
    let ids: Vec<String> = (1..=n).map(|i| i.to_string()).collect();
    format!("initial_members = [{}]", ids.join(", "))
}

/// The data dir of node `id` under a cluster's temp dir.
pub fn data_dir(dir: &Path, id: NodeId) -> PathBuf {
    dir.join(format!("node{id}"))
}
