//! The table tree's writer: batches of changed rows go to sled on a thread
//! of its own, in the order they were made.
//!
//! A sled batch of a few hundred rows costs milliseconds of CPU (node
//! splits and copies, its page cache): in W1 with 64 producers it was a
//! sixth of the leader's samples, on the one thread that also runs Raft,
//! the connections and the log's fsync. The batches come every 50 ms or
//! 8 rows (up to 256 tasks), not per entry, so handing them to another thread costs a few
//! wake-ups a second. An apply waits only for room in the queue, never for
//! a batch: the log holds every entry until the table is flushed, and a
//! snapshot or install waits with [`TableWriter::flush`] for every batch
//! before it and the flush after. The first error stops the writer; every
//! later call returns it, and the next apply stops the node before it
//! changes the table (fail-stop).
//!
//! The queue is short: an apply that finds it full waits (without holding
//! the runtime's thread), so sled's unflushed memory stays bounded as it
//! was when each apply waited for the flush. Batches are queued in the
//! order they are made because openraft runs one state machine call at a
//! time (apply, snapshot builder, install).

use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};

/// Jobs queued at most; a full queue holds up the apply that adds one.
const QUEUED: usize = 8;

enum Job {
    /// A batch to apply, then a flush if asked.
    Write { batch: Option<sled::Batch>, flush: bool },
    /// Flushes the tree and says so.
    Flush(oneshot::Sender<Result<(), String>>),
}

/// Room for one job in the queue, taken before the job is made, so that
/// nothing can come between making a batch and queueing it.
pub struct Slot<'a>(mpsc::Permit<'a, Job>);

impl Slot<'_> {
    /// Queues `batch` (if any) and a flush (if asked) after every job before.
    pub fn write(self, batch: Option<sled::Batch>, flush: bool) {
        if batch.is_some() || flush {
            self.0.send(Job::Write { batch, flush });
        }
    }
}

/// Applies batches to one tree, in order, on its own thread.
pub struct TableWriter {
    jobs: Option<mpsc::Sender<Job>>,
    failed: Arc<Mutex<Option<String>>>,
    thread: Option<JoinHandle<()>>,
}

impl TableWriter {
    /// Starts the writer of `tree`.
    pub fn start(tree: sled::Tree) -> std::io::Result<TableWriter> {
        let (jobs, mut queue) = mpsc::channel::<Job>(QUEUED);
        let failed: Arc<Mutex<Option<String>>> = Arc::default();
        let first = failed.clone();
        let thread = std::thread::Builder::new().name("table-writer".into()).spawn(move || {
            let written =
                |r: sled::Result<()>| r.map_err(|e| format!("writing the task table: {e}"));
            while let Some(job) = queue.blocking_recv() {
                let known = first.lock().clone();
                let (reply, result) = match (job, known) {
                    (Job::Write { .. }, Some(_)) => continue,
                    (Job::Write { batch, flush }, None) => {
                        let applied = batch.map_or(Ok(()), |b| tree.apply_batch(b));
                        let flushed = applied.and_then(|()| match flush {
                            true => tree.flush().map(drop),
                            false => Ok(()),
                        });
                        (None, written(flushed))
                    }
                    (Job::Flush(reply), Some(error)) => (Some(reply), Err(error)),
                    (Job::Flush(reply), None) => (Some(reply), written(tree.flush().map(drop))),
                };
                if let Err(error) = &result {
                    first.lock().get_or_insert_with(|| error.clone());
                }
                if let Some(reply) = reply {
                    let _ = reply.send(result);
                }
            }
        })?;
        Ok(TableWriter { jobs: Some(jobs), failed, thread: Some(thread) })
    }

    /// Room for the next job, once the queue has it; an error if an
    /// earlier job failed.
    pub async fn slot(&self) -> Result<Slot<'_>, String> {
        let permit = self.jobs()?.reserve().await.map_err(|_| stopped())?;
        Ok(Slot(permit))
    }

    /// Queues `batch` from a blocking thread.
    pub fn write_blocking(&self, batch: sled::Batch) -> Result<(), String> {
        let job = Job::Write { batch: Some(batch), flush: false };
        self.jobs()?.blocking_send(job).map_err(|_| stopped())
    }

    /// Waits until every batch queued before is written and the tree flushed.
    pub async fn flush(&self) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.jobs()?.send(Job::Flush(tx)).await.map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }

    /// The queue, unless an earlier job failed.
    fn jobs(&self) -> Result<&mpsc::Sender<Job>, String> {
        if let Some(error) = self.failed.lock().clone() {
            return Err(error);
        }
        self.jobs.as_ref().ok_or_else(stopped)
    }
}

fn stopped() -> String {
    "the table writer stopped".to_owned()
}

impl Drop for TableWriter {
    /// Writes what is queued, then stops, so that the tree is closed once
    /// the node is.
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::TableWriter;

    /// Batches land in the order they were queued, and `flush` returns only
    /// once every batch before it is in the tree and the writer is idle.
    #[tokio::test]
    async fn batches_land_in_order_and_a_flush_waits_for_them() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let tree = db.open_tree("table").unwrap();
        let writer = TableWriter::start(tree.clone()).unwrap();
        for i in 0u32..100 {
            let mut batch = sled::Batch::default();
            batch.insert(&i.to_be_bytes(), &i.to_be_bytes());
            batch.insert("last", &i.to_be_bytes());
            writer.slot().await.unwrap().write(Some(batch), i % 10 == 0);
        }
        // A batch that takes sled a while.
        let mut big = sled::Batch::default();
        for i in 100u32..20_100 {
            big.insert(&i.to_be_bytes(), &i.to_be_bytes());
        }
        big.insert("last", "big");
        writer.slot().await.unwrap().write(Some(big), false);
        writer.flush().await.unwrap();
        assert_eq!(tree.get("last").unwrap().unwrap().as_ref(), b"big");
        assert_eq!(tree.len(), 20_101);
    }
}
