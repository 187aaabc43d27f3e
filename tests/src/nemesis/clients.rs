//! The nemesis's clients: producers that submit (some with keys) and retry
//! unknown outcomes as a real client would, and pull workers that lease,
//! extend, complete, fail, or go silent. Every call is one history line.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use taskraft_client::{Client, ClientError};
use taskraft_core::{Lease, NewTask, Outcome, WorkerId};
use taskraft_proto::client::Assignment;
use tokio_util::sync::CancellationToken;

use crate::history::{Op, Ret, F};

/// Every operation of a run, timed from its start, kept in memory and,
/// when given a file, written to it line by line as it returns (so a run
/// that dies still leaves its history).
pub struct Recorder {
    start: Instant,
    ops: Mutex<Vec<Op>>,
    file: Mutex<Option<std::io::BufWriter<std::fs::File>>>,
    /// A master's client address → its id, to name the node that answered.
    nodes: BTreeMap<String, u64>,
}

impl Recorder {
    /// A recorder for a cluster whose masters answer at `nodes`, writing
    /// the history to `file` if given.
    pub fn new(nodes: BTreeMap<String, u64>, file: Option<&std::path::Path>) -> Arc<Recorder> {
        let file = file.and_then(|path| std::fs::File::create(path).ok());
        Arc::new(Recorder {
            start: Instant::now(),
            ops: Mutex::new(Vec::new()),
            file: Mutex::new(file.map(std::io::BufWriter::new)),
            nodes,
        })
    }

    fn push(&self, op: Op) {
        if let Some(file) = self.file.lock().as_mut() {
            use std::io::Write;
            let line = serde_json::to_string(&op).expect("an op is JSON");
            let _ = writeln!(file, "{line}");
            if matches!(op.f, F::Fault { .. }) {
                let _ = file.flush();
            }
        }
        self.ops.lock().push(op);
    }

    /// Writes out what is buffered.
    pub fn flush(&self) {
        if let Some(file) = self.file.lock().as_mut() {
            let _ = std::io::Write::flush(file);
        }
    }

    /// Milliseconds since the run began.
    pub fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// Records an operation invoked at `invoke_ms` that just returned.
    pub fn record(&self, process: &str, f: F, invoke_ms: u64, client: &Client, ret: Ret) {
        let node = client.leader().and_then(|a| self.nodes.get(&a).copied());
        let op = Op { process: process.into(), f, invoke_ms, return_ms: self.now_ms(), node, ret };
        self.push(op);
    }

    /// A fault (or its end), as the nemesis saw it.
    pub fn fault(&self, what: String) {
        let at = self.now_ms();
        let op = Op {
            process: "nemesis".into(),
            f: F::Fault { what },
            invoke_ms: at,
            return_ms: at,
            node: None,
            ret: Ret::Ok,
        };
        self.push(op);
    }

    /// Every operation so far, in the order they returned.
    pub fn ops(&self) -> Vec<Op> {
        self.ops.lock().clone()
    }
}

/// How a call that failed for good ended: refused (it did not happen), or
/// unknown (it may have).
fn failed(e: &ClientError) -> Ret {
    match e {
        ClientError::Refused(_) | ClientError::NoSeeds => Ret::Error,
        ClientError::Unavailable { .. } | ClientError::Unknown(_) => Ret::Unknown,
    }
}

/// One producer or worker: its client, name, random source, recorder, and
/// the token that ends it.
pub struct Actor {
    pub client: Arc<Client>,
    pub name: String,
    pub seed: u64,
    pub rec: Arc<Recorder>,
    pub stop: CancellationToken,
}

/// Submits one task at a time until `stop`, every other one with a key; a
/// keyed submit of unknown outcome is sent again (the key makes that safe),
/// an unkeyed one is not (it might then exist twice).
pub async fn produce(actor: Actor) {
    let Actor { client, name, seed, rec, stop } = actor;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut seq = 0u64;
    while !stop.is_cancelled() {
        seq += 1;
        let data = format!("{name}-{seq}");
        let key = rng.gen_bool(0.5).then(|| format!("k-{data}"));
        for _ in 0..3 {
            let task =
                NewTask { data: data.clone().into_bytes(), key: key.clone(), ..Default::default() };
            let at = rec.now_ms();
            let (ret, id) = match client.submit(vec![task]).await {
                Ok(s) => (Ret::Ok, s.first().map(|s| s.id.0)),
                Err(e) => (failed(&e), None),
            };
            let f = F::Submit { data: data.clone(), key: key.clone(), id };
            rec.record(&name, f, at, &client, ret);
            if ret != Ret::Unknown || key.is_none() || stop.is_cancelled() {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(5..30))).await;
    }
}

/// What a worker does with one leased task.
enum Plan {
    Complete,
    Fail,
    /// Go silent: the lease runs out and the task goes back.
    Abandon,
}

/// Leases up to two tasks at a time until `stop`; works on each for a few
/// milliseconds (extending now and then), then completes it (the result
/// names the worker and the lease), fails it, or abandons it.
pub async fn work(actor: Actor) {
    let Actor { client, name, seed, rec, stop } = actor;
    let mut rng = StdRng::seed_from_u64(seed);
    let worker = WorkerId(name.clone());
    while !stop.is_cancelled() {
        let at = rec.now_ms();
        let leased = match client.request(&worker, 2, Duration::from_millis(300)).await {
            Ok(Assignment::Leased { tasks, .. }) => tasks,
            Ok(Assignment::NoTask | Assignment::Drained) | Err(_) => {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let pairs = leased.iter().map(|t| (t.lease.task.0, t.lease.attempt.0)).collect();
        rec.record(&name, F::Lease { tasks: pairs }, at, &client, Ret::Ok);
        for task in leased {
            if stop.is_cancelled() {
                return; // crashed (or the run is over): what is left is abandoned
            }
            let plan = match rng.gen_range(0..100) {
                0..=89 => Plan::Complete,
                90..=96 => Plan::Fail,
                _ => Plan::Abandon,
            };
            tokio::time::sleep(Duration::from_millis(rng.gen_range(0..40))).await;
            if rng.gen_bool(0.2) {
                report(&client, &rec, &name, task.lease, Report::Extend).await;
            }
            match plan {
                Plan::Complete => report(&client, &rec, &name, task.lease, Report::Complete).await,
                Plan::Fail => report(&client, &rec, &name, task.lease, Report::Fail).await,
                Plan::Abandon => {}
            }
        }
    }
}

/// A report on one lease.
#[derive(Clone, Copy)]
enum Report {
    Complete,
    Fail,
    Extend,
}

/// The result a nemesis worker sends: names the worker and the lease.
pub fn result_for(worker: &str, lease: Lease) -> String {
    format!("{worker}/{}/{}", lease.task, lease.attempt)
}

async fn report(client: &Client, rec: &Recorder, name: &str, lease: Lease, what: Report) {
    let worker = WorkerId(name.into());
    let (task, attempt) = (lease.task.0, lease.attempt.0);
    let at = rec.now_ms();
    let (f, answer) = match what {
        Report::Complete => {
            let result = result_for(name, lease);
            let answer = client.complete(lease, &worker, result.clone().into_bytes()).await;
            (F::Complete { task, attempt, result }, answer)
        }
        Report::Fail => {
            (F::Fail { task, attempt }, client.fail(lease, &worker, "nemesis".into()).await)
        }
        Report::Extend => (F::Extend { task, attempt }, client.extend(lease, &worker).await),
    };
    let ret = match answer {
        Ok(Outcome::Accepted) => Ret::Ok,
        Ok(_) => Ret::Fenced,
        Err(e) => failed(&e),
    };
    rec.record(name, f, at, client, ret);
}
