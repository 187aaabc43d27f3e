//! The nemesis's hands: the masters behind per-link proxies, the clients
//! behind per-group proxies, the workers, and what each [`Fault`] does to
//! them and how it is healed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use taskraft_client::{Client, ClientOptions};
use taskraft_proto::NodeId;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::clients::{work, Actor, Recorder};
use super::schedule::{Fault, Target};
use crate::process::{free_addr, Proc};
use crate::{Mode, ProcCluster, Proxy};

/// One pull worker: its loop and the token that makes it crash (stop at
/// once, abandoning what it holds).
struct PullWorker {
    task: JoinHandle<()>,
    crash: CancellationToken,
}

/// Everything the nemesis acts on.
pub struct World {
    pub cluster: ProcCluster,
    /// `clients[group][node]`: the proxy a client group dials for a master.
    client_proxies: Vec<BTreeMap<NodeId, Proxy>>,
    /// The masters run under `faketime` with this offset (e.g. `+30s`).
    pub skew: Option<(NodeId, String)>,
    pub rec: Arc<Recorder>,
    workers: Vec<PullWorker>,
    /// Workers started so far (a replacement gets a new name).
    started: usize,
    push: Option<Proc>,
    push_addr: String,
    seed: u64,
    pub stop: CancellationToken,
}

impl World {
    /// Masters of `cluster` (already started), `groups` client groups.
    pub async fn new(
        cluster: ProcCluster,
        groups: usize,
        skew: Option<(NodeId, String)>,
        seed: u64,
        history: Option<&std::path::Path>,
    ) -> World {
        let mut client_proxies = Vec::new();
        for _ in 0..groups {
            let mut group = BTreeMap::new();
            for id in cluster.running() {
                let addr = cluster.config.node(id).expect("node").client_addr.clone();
                group.insert(id, Proxy::start(addr).await);
            }
            client_proxies.push(group);
        }
        let nodes = cluster
            .running()
            .into_iter()
            .map(|id| (cluster.config.node(id).expect("node").client_addr.clone(), id))
            .collect();
        let rec = Recorder::new(nodes, history);
        World {
            cluster,
            client_proxies,
            skew,
            rec,
            workers: Vec::new(),
            started: 0,
            push: None,
            push_addr: free_addr(),
            seed,
            stop: CancellationToken::new(),
        }
    }

    /// A client of group `group`: short timeouts, so that an operation
    /// ends (and is recorded) within seconds even while faults last.
    pub fn client(&self, group: usize) -> Arc<Client> {
        let routes = self.client_proxies[group]
            .iter()
            .map(|(id, p)| {
                (self.cluster.config.node(*id).expect("node").client_addr.clone(), p.addr.clone())
            })
            .collect();
        let options = ClientOptions {
            call_timeout: Duration::from_millis(1000),
            retry_for: Duration::from_secs(5),
            routes,
            ..ClientOptions::default()
        };
        Arc::new(Client::with_options(self.cluster.config.seeds(), options))
    }

    /// Starts (or restarts) master `id`, with libfaketime preloaded if it
    /// is the skewed one. (Not through the `faketime` command: it forks, so
    /// signals would reach it and not the master.)
    pub fn start_master(&mut self, id: NodeId) {
        match &self.skew {
            Some((skewed, offset)) if *skewed == id => {
                let offset = offset.clone();
                let lib = libfaketime();
                let env = [("LD_PRELOAD", lib.as_str()), ("FAKETIME", offset.as_str())];
                self.cluster.start_node_with(id, &env, &[]);
            }
            _ => self.cluster.start_node(id),
        }
    }

    /// Starts pull worker number `index` (a new name each time).
    pub fn start_worker(&mut self, index: usize) {
        self.started += 1;
        let name = format!("w{index}-{}", self.started);
        let crash = self.stop.child_token();
        let client = self.client(index % self.client_proxies.len());
        let seed = self.seed.wrapping_mul(31).wrapping_add(self.started as u64);
        let actor = Actor { client, name, seed, rec: self.rec.clone(), stop: crash.clone() };
        let task = tokio::spawn(work(actor));
        let worker = PullWorker { task, crash };
        match self.workers.get_mut(index) {
            Some(slot) => *slot = worker,
            None => self.workers.push(worker),
        }
    }

    /// Starts the push worker process (the `upper` handler), always as `push-1`.
    pub fn start_push(&mut self) {
        let args = ["--id", "push-1", "--push", "--listen", &self.push_addr, "--handler", "upper"];
        self.push = Some(self.cluster.worker("push-1", &args));
    }

    /// The leader now, as the masters themselves report it (the highest
    /// term wins), or `None` during an election.
    pub async fn leader(&self) -> Option<NodeId> {
        let mut best: Option<(u64, NodeId)> = None;
        for id in self.cluster.running() {
            let report =
                tokio::time::timeout(Duration::from_secs(2), self.cluster.report(id)).await;
            if let Ok(Some(r)) = report {
                if r.role == "leader" && best.is_none_or(|(term, _)| r.term > term) {
                    best = Some((r.term, id));
                }
            }
        }
        best.map(|(_, id)| id)
    }

    /// The node a fault hits: the leader, or a follower (any running
    /// master when the one asked for is not there).
    async fn resolve(&self, target: Target) -> Result<NodeId, String> {
        let leader = self.leader().await;
        let running = self.cluster.running();
        let followers: Vec<NodeId> =
            running.iter().copied().filter(|id| Some(*id) != leader).collect();
        let pick = |list: &[NodeId], i: usize| list.get(i % list.len().max(1)).copied();
        let node = match (target, leader) {
            (Target::Leader, Some(l)) => Some(l),
            (Target::Leader, None) => pick(&running, 0),
            (Target::Follower(i), _) => pick(&followers, i).or_else(|| pick(&running, i)),
        };
        node.ok_or_else(|| "no master is running to inject a fault into".to_string())
    }

    /// Injects `fault`, waits its time, and heals it.
    pub async fn inject(&mut self, fault: Fault) -> Result<(), String> {
        match fault {
            Fault::Kill { target, down } => {
                let n = self.resolve(target).await?;
                self.rec.fault(format!("kill {n}"));
                self.cluster.kill(n);
                tokio::time::sleep(down).await;
                self.start_master(n);
                self.rec.fault(format!("restart {n}"));
            }
            Fault::Pause { target, down } => {
                let n = self.resolve(target).await?;
                self.rec.fault(format!("pause {n}"));
                self.cluster.node(n).signal("STOP");
                tokio::time::sleep(down).await;
                self.cluster.node(n).signal("CONT");
                self.rec.fault(format!("resume {n}"));
            }
            Fault::Isolate { target, down, blackhole } => {
                let n = self.resolve(target).await?;
                let mode = if blackhole { Mode::Blackhole } else { Mode::Cut };
                self.rec.fault(format!("isolate {n} ({mode:?})"));
                self.cluster.isolate(n, mode);
                tokio::time::sleep(down).await;
                self.cluster.heal();
                self.rec.fault("heal".into());
            }
            Fault::OneWay { target, down } => {
                let n = self.resolve(target).await?;
                self.rec.fault(format!("cut links from {n}"));
                for m in self.cluster.running().into_iter().filter(|m| *m != n) {
                    self.cluster.link(n, m, Mode::Cut);
                }
                tokio::time::sleep(down).await;
                self.cluster.heal();
                self.rec.fault("heal".into());
            }
            Fault::ClientCut { target, group, down } => {
                let n = self.resolve(target).await?;
                self.rec.fault(format!("cut client group {group} from {n}"));
                self.client_proxies[group][&n].set(Mode::Cut);
                tokio::time::sleep(down).await;
                self.client_proxies[group][&n].set(Mode::Pass);
                self.rec.fault("heal".into());
            }
            Fault::KillWorker { index } => {
                let index = index % self.workers.len();
                self.rec.fault(format!("crash worker {index}"));
                self.workers[index].crash.cancel();
                self.start_worker(index);
            }
            Fault::KillPushWorker { down } => {
                self.rec.fault("kill push worker".into());
                self.push = None; // SIGKILL on drop
                tokio::time::sleep(down).await;
                self.start_push();
                self.rec.fault("restart push worker".into());
            }
            Fault::Replace { target } => {
                let n = self.resolve(target).await?;
                self.rec.fault(format!("replace {n}"));
                self.cluster.wipe(n);
                // Membership commands are idempotent: a try that ran out of
                // time during a leader change is simply made again.
                let removed = self.cli_retried(&["member", "remove", &n.to_string()]).await;
                self.start_master(n);
                removed?;
                self.cli_retried(&["member", "add", &n.to_string(), "--timeout", "60s"]).await?;
                self.rec.fault(format!("replaced {n}"));
            }
        }
        Ok(())
    }

    /// Kills the leader until the skewed master leads (at most `tries`
    /// times); true once it does.
    pub async fn make_skewed_lead(&mut self, tries: usize) -> bool {
        let Some((skewed, _)) = self.skew.clone() else { return false };
        for _ in 0..tries {
            let leader = self.wait_leader(Duration::from_secs(15)).await;
            match leader {
                Some(l) if l == skewed => return true,
                Some(l) => {
                    self.rec.fault(format!("kill {l} (for the skewed master to lead)"));
                    self.cluster.kill(l);
                    let next = self.wait_leader(Duration::from_secs(15)).await;
                    self.start_master(l);
                    self.rec.fault(format!("restart {l}"));
                    if next == Some(skewed) {
                        return true;
                    }
                }
                None => return false,
            }
        }
        false
    }

    /// Waits up to `timeout` for a leader.
    pub async fn wait_leader(&self, timeout: Duration) -> Option<NodeId> {
        let started = std::time::Instant::now();
        while started.elapsed() < timeout {
            if let Some(l) = self.leader().await {
                return Some(l);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    /// Heals everything: links, client links, the push worker.
    pub fn heal_all(&mut self) {
        self.cluster.heal();
        for group in &self.client_proxies {
            group.values().for_each(|p| p.set(Mode::Pass));
        }
        if self.push.is_none() {
            self.start_push();
        }
    }

    /// Stops every pull worker and waits for them.
    pub async fn stop_workers(&mut self) {
        self.stop.cancel();
        for w in self.workers.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(20), w.task).await;
        }
    }

    /// [`World::cli`], made up to three times until it succeeds.
    async fn cli_retried(&self, args: &[&str]) -> Result<String, String> {
        let mut last = String::new();
        for _ in 0..3 {
            match self.cli(args).await {
                Ok(out) => return Ok(out),
                Err(e) => last = e,
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        Err(last)
    }

    /// Runs a CLI command against the cluster, bounded in time.
    async fn cli(&self, args: &[&str]) -> Result<String, String> {
        let mut cmd = tokio::process::Command::new(&self.cluster.bin);
        cmd.args(args).arg("--config").arg(&self.cluster.config_path).kill_on_drop(true);
        let what = format!("taskraft {}", args.join(" "));
        tokio::time::timeout(Duration::from_secs(90), crate::output(&mut cmd, &what))
            .await
            .map_err(|_| format!("{what}: no answer in 90 s"))?
    }
}

/// Where Debian's `faketime` package put the multi-threaded libfaketime.
pub fn libfaketime() -> String {
    let dirs = std::fs::read_dir("/usr/lib").into_iter().flatten().flatten().map(|e| e.path());
    dirs.chain([std::path::PathBuf::from("/usr/lib")])
        .map(|d| d.join("faketime/libfaketimeMT.so.1"))
        .find(|p| p.exists())
        .map(|p| p.display().to_string())
        .expect("libfaketime not found: install Debian's faketime package (.ci/run does)")
}
