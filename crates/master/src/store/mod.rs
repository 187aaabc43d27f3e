//! Persistence: the Raft log in its own write-ahead log, the task table in sled.
//!
//! A node's data dir holds
//! - `wal/`: the Raft log, the vote and the purge point (see [`wal`]);
//! - sled's files, two trees: `meta` (cluster name, storage format) and
//!   `table`: the tasks (many to a row) plus the applied log id, the membership and
//!   the push worker registry, so that one `sled::Batch` updates the state
//!   machine atomically;
//! - `snapshot.bin`, the current snapshot (see [`snapshot`]).
//!
//! Every write that openraft is told is durable has been fsynced by the log.
//! The table is not fsynced per apply: after a crash it is replayed from the
//! log, which keeps every entry after the last snapshot, and building or
//! installing a snapshot flushes the table first. The log purges nothing
//! that the table or a snapshot file does not hold durably ([`cover`]).

pub mod backup;
mod cover;
pub mod failpoint;
mod log;
mod snapshot;
mod state_machine;
#[cfg(test)]
mod tests;
pub mod wal;

use std::path::Path;
use std::sync::Arc;

use crate::metrics::Metrics;

/// The Raft log's directory inside a data dir.
pub const WAL_DIR: &str = "wal";

/// sled's page cache per node.
const SLED_CACHE_BYTES: u64 = 128 * 1024 * 1024;

/// The layout of stored rows and log entries. A data dir written with
/// another layout is refused at open with a clear error, never misread.
/// 2: task rows gained scheduling, retry, cancel and aging fields (a data
/// dir from before has no marker and counts as 1).
/// 3: the Raft log moved out of sled into `wal/`.
/// 4: tasks stored many to a row (`state_machine::TASKS_PER_ROW`).
pub const FORMAT: u32 = 4;

/// The older format this build opens: the marker moves to [`FORMAT`] at
/// once, and the one-task rows are rewritten in rows of many.
const UPGRADES_FROM: u32 = 3;

pub use log::{LogStore, MAX_REPLICATION_READ_BYTES};
pub use snapshot::{decode_image, parse_snapshot, Image, SNAPSHOT_FILE};
pub use state_machine::{Applied, StateMachine};

/// Why a data dir could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// sled could not open or read the directory.
    #[error("cannot open the data dir {dir}: {source}")]
    Sled { dir: String, source: sled::Error },
    /// The directory holds another cluster's data.
    #[error("the data dir {dir} belongs to cluster {found:?}, not {expected:?}; point data_dir at this cluster's own directory")]
    OtherCluster { dir: String, found: String, expected: String },
    /// The directory was written by a taskraft with another storage format.
    #[error("the data dir {dir} has storage format {found}; this taskraft reads format {FORMAT}. Drain the cluster with the build that wrote it (taskraft wait), then start this build on empty data dirs")]
    Format { dir: String, found: u32 },
    /// The Raft log cannot be read back.
    #[error("{source}. This node will not start on a log it cannot trust (it could vote with entries it lost). {REPLACE} (data dir {dir})")]
    Log { dir: String, source: wal::WalError },
    /// The table cannot be read back, or lost writes the log no longer holds.
    #[error("the data dir {dir} is damaged: {what}. This node will not start on a table it cannot trust. {REPLACE}")]
    Corrupt { dir: String, what: String },
}

/// What to do with a damaged data dir: the blank-node rule refuses a wiped
/// member until it is replaced (docs/operations.md, "Replace a master").
const REPLACE: &str = "Move the data dir aside and replace the node: `taskraft member remove ID`, start it on an empty data dir, then `taskraft member add ID`; it catches up from the leader";

/// Opens (or creates) a node's store in `dir` for the cluster `cluster_name`;
/// its fsyncs, applies and snapshots are counted on `metrics`.
pub fn open(
    dir: &Path,
    cluster_name: &str,
    metrics: Arc<Metrics>,
) -> Result<(LogStore, StateMachine), OpenError> {
    let db = open_db(dir, cluster_name)?;
    let shown = dir.display().to_string();
    let sled_err = |source| OpenError::Sled { dir: shown.clone(), source };
    let wal = wal::Wal::open(&dir.join(WAL_DIR), metrics.clone())
        .map_err(|source| OpenError::Log { dir: shown.clone(), source })?;
    let (_, purged) = wal.log_state();
    let sm = StateMachine::open(db.open_tree("table").map_err(sled_err)?, dir, metrics.clone())
        .map_err(|what| OpenError::Corrupt { dir: shown.clone(), what })?;
    let log = LogStore::new(wal, metrics, sm.cover());
    // The table (or the snapshot it was rebuilt from) covers what the log
    // has purged, unless the table's file lost flushed writes (sled
    // recovers a damaged or cut file to an older state, silently) with no
    // snapshot to rebuild it from.
    let applied = sm.applied().read().last_applied;
    if let Some(purged) = purged.filter(|p| applied.is_none_or(|a| a.index < p.index)) {
        let at = applied.map_or("no entry".to_string(), |a| format!("log index {}", a.index));
        let what = format!("its table is at {at}, but the log starts after index {}: the table lost writes the log cannot replay (its file damaged or cut short)", purged.index);
        return Err(OpenError::Corrupt { dir: shown, what });
    }
    Ok((log, sm))
}

/// Opens (or creates) the sled Db in `dir`, refusing another cluster's.
/// A dir of format [`UPGRADES_FROM`] is marked [`FORMAT`] first: this build
/// reads its one-task rows whatever the marker says and rewrites them (in
/// `StateMachine::open`), while an older build, which would read the rows
/// of many as no rows at all, refuses it from now on.
fn open_db(dir: &Path, cluster_name: &str) -> Result<sled::Db, OpenError> {
    let shown = dir.display().to_string();
    let sled_err = |source| OpenError::Sled { dir: shown.clone(), source };
    // The table lives in memory anyway; a small page cache keeps RSS down.
    let db = sled::Config::new()
        .path(dir)
        .cache_capacity(SLED_CACHE_BYTES)
        .flush_every_ms(None)
        .open()
        .map_err(sled_err)?;
    let meta = db.open_tree("meta").map_err(sled_err)?;
    match meta.get("cluster_name").map_err(sled_err)? {
        Some(found) if found.as_ref() != cluster_name.as_bytes() => {
            return Err(OpenError::OtherCluster {
                dir: shown,
                found: String::from_utf8_lossy(&found).into_owned(),
                expected: cluster_name.to_owned(),
            });
        }
        Some(_) => {
            let found = match meta.get("format").map_err(sled_err)? {
                Some(v) => v.as_ref().try_into().map(u32::from_be_bytes).unwrap_or(0),
                None => 1,
            };
            if found != FORMAT && found != UPGRADES_FROM {
                return Err(OpenError::Format { dir: shown, found });
            }
            if found == UPGRADES_FROM {
                meta.insert("format", &FORMAT.to_be_bytes()).map_err(sled_err)?;
                db.flush().map_err(sled_err)?;
                tracing::info!(
                    from = UPGRADES_FROM,
                    to = FORMAT,
                    "data dir marked with the new storage format"
                );
            }
        }
        None => {
            // One batch: a crash cannot leave a name without a format.
            let mut first = sled::Batch::default();
            first.insert("cluster_name", cluster_name.as_bytes());
            first.insert("format", &FORMAT.to_be_bytes());
            meta.apply_batch(first).map_err(sled_err)?;
            db.flush().map_err(sled_err)?;
        }
    }
    Ok(db)
}

/// Encodes a stored value. Encoding our own types into memory cannot fail.
fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    bincode::serialize(value).expect("bincode encodes in-memory values")
}

/// Decodes a stored value.
fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, bincode::Error> {
    bincode::deserialize(bytes)
}
