//! The table tree's writer: batches of changed rows go to sled on a thread
//! of its own, in the order they were made.
//!
//! A sled batch of a few hundred rows costs milliseconds of CPU (node
//! splits and copies, its page cache): in W1 with 64 producers it was a
//! sixth of the leader's samples, on the one thread that also runs Raft,
//! the connections and the log's fsync. The batches come every 50 ms or
//! 256 rows, not per entry, so handing them to another thread costs a few
//! wake-ups a second. Nothing waits for a batch: the log holds every entry
//! until the table is flushed, and a snapshot or install waits with
//! [`TableWriter::flush`] for every batch before it and the flush after.
//! The first error stops the writer; every later call returns it, and the
//! apply that gets it stops the node (fail-stop).
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
    Batch(sled::Batch),
    /// Flushes the tree, and says so when asked.
    Flush(Option<oneshot::Sender<Result<(), String>>>),
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
                let (reply, result) = match job {
                    Job::Batch(_) if known.is_some() => continue,
                    Job::Batch(batch) => (None, written(tree.apply_batch(batch))),
                    Job::Flush(reply) => match known {
                        Some(error) => (reply, Err(error)),
                        None => (reply, written(tree.flush().map(drop))),
                    },
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

    /// Queues `batch` after every batch before it; an error if an earlier
    /// one failed.
    pub async fn write(&self, batch: sled::Batch) -> Result<(), String> {
        self.jobs()?.send(Job::Batch(batch)).await.map_err(|_| stopped())
    }

    /// [`TableWriter::write`] from a blocking thread.
    pub fn write_blocking(&self, batch: sled::Batch) -> Result<(), String> {
        self.jobs()?.blocking_send(Job::Batch(batch)).map_err(|_| stopped())
    }

    /// Flushes the tree once the batches queued before are written, without
    /// waiting for it.
    pub async fn flush_later(&self) -> Result<(), String> {
        self.jobs()?.send(Job::Flush(None)).await.map_err(|_| stopped())
    }

    /// Waits until every batch queued before is written and the tree flushed.
    pub async fn flush(&self) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.jobs()?.send(Job::Flush(Some(tx))).await.map_err(|_| stopped())?;
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
            writer.write(batch).await.unwrap();
            writer.flush_later().await.unwrap();
        }
        // A batch that takes sled a while.
        let mut big = sled::Batch::default();
        for i in 100u32..20_100 {
            big.insert(&i.to_be_bytes(), &i.to_be_bytes());
        }
        big.insert("last", "big");
        writer.write(big).await.unwrap();
        writer.flush().await.unwrap();
        assert_eq!(tree.get("last").unwrap().unwrap().as_ref(), b"big");
        assert_eq!(tree.len(), 20_101);
    }
}
