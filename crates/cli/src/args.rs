//! The command line, as clap types. Every subcommand and flag has its help text here.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

mod bench;
pub use bench::BenchArgs;

/// taskraft: hands tasks from a replicated master to workers, and survives the master's death.
#[derive(Debug, Parser)]
#[command(
    name = "taskraft",
    version,
    about = "taskraft: hands tasks from a replicated master (Raft, three nodes) to workers, and survives the master's death.",
    long_about = None
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Print errors only: no warnings while a call retries (RUST_LOG overrides).
    #[arg(long, global = true)]
    pub quiet: bool,
    /// Log lines as text, or as one JSON object per line (for log collectors).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one master node of the cluster described by the config.
    Master(MasterArgs),
    /// Run a worker: pull (request a task, process it, submit the result, repeat), or with --push a DoTask server.
    Worker(WorkerArgs),
    /// Submit tasks (arguments, --file one per line, or --stdin one per line).
    Submit(SubmitArgs),
    /// Show members, leader, term and task counts.
    Status(ReadArgs),
    /// List tasks, a page at a time (--limit, --after; the JSON carries next_after).
    Tasks(TasksArgs),
    /// Show one task and its result.
    Result(ResultArgs),
    /// Wait until no task is idle or in progress.
    Wait(WaitArgs),
    /// Cancel tasks that have not finished: idle or scheduled ones at once; a running one's worker stops it at its next lease extension.
    Cancel(CancelArgs),
    /// Re-queue dead or cancelled tasks with a fresh budget of attempts.
    Retry(RetryArgs),
    /// Write a consistent, checksummed backup of the table (taken on the leader) to FILE.
    Backup(BackupArgs),
    /// Offline: seed the empty data dirs of a new cluster (the initial members of --config) from a backup.
    Restore(RestoreArgs),
    /// Change the cluster's masters online: list them, add one (learner, catch-up, voter), remove one.
    #[command(subcommand)]
    Member(MemberCommand),
    /// Named queues: list them with their counts and limits, cap or lift their tasks in progress, pause or resume them.
    #[command(subcommand)]
    Queue(QueueCommand),
    /// Run the standard workloads (W1 enqueue, W2 drain, W3 failover, W4 soak) and print their figures.
    Bench(BenchArgs),
}

/// A multi-threaded runtime of `n` worker threads (0: tokio's default, one per core).
fn multi_thread(n: usize) -> std::io::Result<tokio::runtime::Runtime> {
    match n {
        0 => tokio::runtime::Runtime::new(),
        n => tokio::runtime::Builder::new_multi_thread().worker_threads(n).enable_all().build(),
    }
}

/// Where the cluster is, for every client command.
#[derive(Debug, Args)]
pub struct Seeds {
    /// Client addresses of the masters, comma-separated (any subset works; the leader is found).
    #[arg(long, env = "TASKRAFT_SEEDS", value_delimiter = ',')]
    pub seeds: Vec<String>,
    /// The cluster config [default: cluster.toml]: the seed list when --seeds is not given, and
    /// the token and TLS settings whenever it is given or ./cluster.toml exists.
    #[arg(long, env = "TASKRAFT_CONFIG")]
    pub config: Option<PathBuf>,
    /// How long a call keeps retrying (across leader changes) before it fails.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub retry_for: Duration,
}

impl Seeds {
    /// The config file to read: --config, else ./cluster.toml.
    pub fn config_path(&self) -> PathBuf {
        self.config.clone().unwrap_or_else(|| PathBuf::from("cluster.toml"))
    }
}

#[derive(Debug, Args)]
pub struct MasterArgs {
    /// The cluster config.
    #[arg(long, env = "TASKRAFT_CONFIG", default_value = "cluster.toml")]
    pub config: PathBuf,
    /// This node's id, as in a [[node]] table of the config.
    #[arg(long)]
    pub id: u64,
    /// Dial node ID at ADDR instead of its peer_addr (a proxy or NAT in between). Repeatable.
    #[arg(long, value_name = "ID=ADDR")]
    pub peer_route: Vec<String>,
    /// Threads that run the node's tasks: 0, one per core; 1, a single-threaded
    /// runtime, which spends the least CPU per commit and suits masters that
    /// share a machine (the bench's and the demo's); N, that many. Snapshots,
    /// long log appends and backups run on blocking threads either way.
    #[arg(long, env = "TASKRAFT_MASTER_THREADS", default_value_t = 0)]
    pub threads: usize,
}

impl MasterArgs {
    /// The tokio runtime `--threads` asks for.
    pub fn runtime(&self) -> std::io::Result<tokio::runtime::Runtime> {
        match self.threads {
            1 => tokio::runtime::Builder::new_current_thread().enable_all().build(),
            n => multi_thread(n),
        }
    }
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub seeds: Seeds,
    /// This worker's name, unique among workers (e.g. w01).
    #[arg(long)]
    pub id: String,
    /// Run CMD with `sh -c`, the task's data on stdin; stdout is the result, a non-zero exit a failure.
    #[arg(long, value_name = "CMD", conflicts_with = "handler")]
    pub exec: Option<String>,
    /// When a running task is cancelled, its --exec command gets SIGTERM, then SIGKILL this much later.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub kill_grace: Duration,
    /// A built-in handler: echo, upper or sleep:MS.
    #[arg(long, default_value = "echo")]
    pub handler: String,
    /// Tasks processed at once.
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
    /// Take tasks only from these queues, in this order of preference (a,b); '*': any.
    #[arg(long, value_delimiter = ',', default_value = "*")]
    pub queues: Vec<String>,
    /// Exit once nothing is idle or in progress.
    #[arg(long)]
    pub exit_when_done: bool,
    /// Do not extend leases while a task runs (reproduces the origin's timeout scenario).
    #[arg(long)]
    pub no_extend: bool,
    /// Push mode: serve DoTask on --listen and register with the cluster instead of pulling.
    /// A push worker is given tasks of every queue, so --queues does not apply.
    #[arg(long, requires = "listen", conflicts_with = "queues")]
    pub push: bool,
    /// Push mode: the address to serve DoTask on (IP:port).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Push mode: the address the leader should call, if not --listen (a NAT in between).
    #[arg(long, value_name = "ADDR")]
    pub advertise: Option<String>,
    /// How long one request for a task waits before asking again.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub poll_wait: Duration,
}

#[derive(Debug, Args)]
pub struct SubmitArgs {
    #[command(flatten)]
    pub seeds: Seeds,
    /// Task payloads, one task each.
    pub data: Vec<String>,
    /// Read tasks from a file, one per line.
    #[arg(long, conflicts_with = "stdin")]
    pub file: Option<PathBuf>,
    /// Read tasks from standard input, one per line.
    #[arg(long)]
    pub stdin: bool,
    /// Idempotency key; with several tasks, task i gets KEY-i. A repeated key returns the existing task.
    #[arg(long)]
    pub key: Option<String>,
    /// Priority: higher runs first.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub priority: i32,
    /// The queue (default: "default").
    #[arg(long)]
    pub queue: Option<String>,
    /// Not before this long from now (e.g. 30s, 5m): the task is `scheduled` until then.
    #[arg(long, value_parser = humantime::parse_duration, conflicts_with = "at")]
    pub delay: Option<Duration>,
    /// Not before this time, RFC 3339 (e.g. 2026-12-01T10:00:00Z); by the leader's clock.
    #[arg(long, value_parser = humantime::parse_rfc3339_weak)]
    pub at: Option<std::time::SystemTime>,
    /// Assignments before the task is dead (default: the cluster's max_attempts).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_attempts: Option<u32>,
    /// First wait after a failed attempt, doubling each time (default: the cluster's retry_base_ms; 0s: none).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub retry_base: Option<Duration>,
    /// Longest wait between attempts (default: the cluster's retry_max_ms).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub retry_max: Option<Duration>,
    /// Print {"ids": [...]}.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ReadArgs {
    #[command(flatten)]
    pub seeds: Seeds,
    /// Print one JSON document.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct TasksArgs {
    #[command(flatten)]
    pub read: ReadArgs,
    /// Only tasks in this status: idle, scheduled, in_progress, completed, dead or cancelled.
    #[arg(long)]
    pub status: Option<String>,
    /// Most tasks to list (1 to 1000); a page may hold fewer (8 MiB of data at most).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: u32,
    /// List tasks with ids above ID: the cursor printed as next_after by the previous page.
    #[arg(long, value_name = "ID")]
    pub after: Option<u64>,
}

#[derive(Debug, Args)]
pub struct ResultArgs {
    #[command(flatten)]
    pub read: ReadArgs,
    /// The task id.
    pub id: u64,
}

#[derive(Debug, Args)]
pub struct CancelArgs {
    #[command(flatten)]
    pub read: ReadArgs,
    /// The task ids (exit 1 if one does not exist).
    #[arg(required_unless_present_any = ["key", "queue"], conflicts_with_all = ["key", "queue"])]
    pub ids: Vec<u64>,
    /// Cancel the task submitted with this idempotency key.
    #[arg(long, conflicts_with = "queue")]
    pub key: Option<String>,
    /// Cancel every task of this queue that has not finished.
    #[arg(long)]
    pub queue: Option<String>,
}

#[derive(Debug, Args)]
pub struct RetryArgs {
    #[command(flatten)]
    pub read: ReadArgs,
    /// Attempts each task gets from now (default: the cluster's max_attempts).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_attempts: Option<u32>,
    /// The task ids (exit 1 if one does not exist).
    #[arg(required = true)]
    pub ids: Vec<u64>,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    #[command(flatten)]
    pub read: ReadArgs,
    /// Where to write the backup (written to FILE.tmp, then renamed).
    pub file: PathBuf,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The backup file.
    pub file: PathBuf,
    /// The new cluster's config: every [[node]]'s data_dir is seeded, and must be empty.
    #[arg(long, env = "TASKRAFT_CONFIG", default_value = "cluster.toml")]
    pub config: PathBuf,
    /// Resolve relative data_dir paths under DIR, where the masters will run
    /// (scripts/start-cluster.sh runs them in run/).
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub data_root: PathBuf,
    /// Print one JSON document.
    #[arg(long)]
    pub json: bool,
}

/// `taskraft queue ...`.
#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// Every queue with tasks or limits: counts by status, cap, paused.
    List(ReadArgs),
    /// Cap (or lift the cap on) how many of a queue's tasks are in progress at once, across all workers.
    Set(QueueSetArgs),
    /// Stop leasing a queue's tasks (those in progress finish).
    Pause(QueueNameArgs),
    /// Lease a paused queue's tasks again.
    Resume(QueueNameArgs),
}

#[derive(Debug, Args)]
pub struct QueueSetArgs {
    #[command(flatten)]
    pub read: ReadArgs,
    /// The queue.
    pub name: String,
    /// At most this many of its tasks in progress at once.
    #[arg(long, required_unless_present = "unlimited", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_in_flight: Option<u32>,
    /// Lift the cap.
    #[arg(long, conflicts_with = "max_in_flight")]
    pub unlimited: bool,
}

#[derive(Debug, Args)]
pub struct QueueNameArgs {
    #[command(flatten)]
    pub read: ReadArgs,
    /// The queue.
    pub name: String,
}

/// `taskraft member ...`.
#[derive(Debug, Subcommand)]
pub enum MemberCommand {
    /// The live membership: voters and learners, their role, log index and lag behind the leader.
    List(ReadArgs),
    /// Add master ID: as a learner, wait until it has caught up (a progress line), then make it a voter.
    /// Start the node first (taskraft master --id ID, with an empty data dir).
    Add(MemberAddArgs),
    /// Remove master ID from the membership (the leader too: it steps down and another is elected).
    /// Refused when the change could not reach a quorum. Stop the node and wipe its data dir afterwards.
    Remove(MemberRemoveArgs),
    /// Wait until master ID is a member that answers the leader and has caught up (for scripts,
    /// e.g. scripts/rolling-restart.sh after restarting a node). Exit 1 on --timeout.
    Wait(MemberWaitArgs),
}

#[derive(Debug, Args)]
pub struct MemberWaitArgs {
    #[command(flatten)]
    pub read: ReadArgs,
    /// The node's id.
    pub id: u64,
    /// Give up (exit 1) after this long.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

#[derive(Debug, Args)]
pub struct MemberAddArgs {
    #[command(flatten)]
    pub read: ReadArgs,
    /// The node's id.
    pub id: u64,
    /// The node's Raft address (default: its [[node]] entry in --config).
    #[arg(long, requires = "client_addr")]
    pub peer_addr: Option<String>,
    /// The node's client address (default: its [[node]] entry in --config).
    #[arg(long, requires = "peer_addr")]
    pub client_addr: Option<String>,
    /// Give up (exit 1, leaving a learner) if it has not caught up after this long.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

#[derive(Debug, Args)]
pub struct MemberRemoveArgs {
    #[command(flatten)]
    pub read: ReadArgs,
    /// The node's id.
    pub id: u64,
}

#[derive(Debug, Args)]
pub struct WaitArgs {
    #[command(flatten)]
    pub read: ReadArgs,
    /// Give up (exit 1) after this long.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// A count of one or more.
fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}
