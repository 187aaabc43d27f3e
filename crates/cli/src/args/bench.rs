//! `taskraft bench`'s flags.

use std::time::Duration;

use clap::Args;

use super::{at_least_one, multi_thread, Seeds};

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub seeds: Seeds,
    /// Start three masters of this binary in temp dirs for every run (needed for W3).
    #[arg(long)]
    pub spawn: bool,
    /// Workloads to run: w1, w2, w3, and w4 (the soak; only when named).
    #[arg(long, value_delimiter = ',', default_value = "w1,w2,w3")]
    pub workloads: Vec<String>,
    /// Runs of each workload; the table shows the median run.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Tasks per run.
    #[arg(long, default_value_t = 20000)]
    pub n: usize,
    /// Worker loops in W2 and W3, each with its own connection.
    #[arg(long, default_value_t = 8)]
    pub workers: usize,
    /// Tasks leased per request in W2 and W3 (batched leases).
    #[arg(long, default_value_t = 1)]
    pub batch: u32,
    /// W2/W3 workers request and complete in two calls, BENCH.md's literal
    /// loop, instead of completing and requesting the next task in one call.
    #[arg(long)]
    pub two_calls: bool,
    /// W1 producer counts.
    #[arg(long, value_delimiter = ',', default_value = "1,64", value_parser = at_least_one)]
    pub producers: Vec<usize>,
    /// W1 connection layouts: for each count K, the producers share K
    /// client connections round-robin; 0 gives each producer its own. The
    /// default runs both ends: one connection each, and one shared by all
    /// (how one application uses a client, as with NATS's).
    #[arg(long, value_delimiter = ',', default_value = "0,1")]
    pub connections: Vec<usize>,
    /// W4: tasks submitted per second.
    #[arg(long, default_value_t = 2000)]
    pub rate: u64,
    /// W4: how long tasks are submitted.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// W4: load run first and left out of the memory and disk comparison.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    /// W4 with --spawn: the spawned cluster's retention_ms.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub retention: Duration,
    /// W4: time between two samples of every master's RSS and disk.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub sample_every: Duration,
    /// Also print one JSON line per run.
    #[arg(long)]
    pub json: bool,
    /// Runtime threads of the bench's client. 1 keeps a call's client-side
    /// hand-offs (caller, connection task) on one thread, as suits a client
    /// on a machine the masters share; 0, one per core; N, that many.
    #[arg(long, default_value_t = 1)]
    pub client_threads: usize,
}

impl BenchArgs {
    /// The tokio runtime `--client-threads` asks for. Multi-threaded even
    /// for one thread: the bench's driver (the future `block_on` runs on the
    /// main thread) starts and kills masters with blocking calls, which must
    /// not stall the client's thread.
    pub fn runtime(&self) -> std::io::Result<tokio::runtime::Runtime> {
        multi_thread(self.client_threads)
    }
}
