//! The store (log and table) against openraft's own storage test suite.

use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;
use taskraft_proto::{NodeId, TypeConfig};
use tempfile::TempDir;

use super::{LogStore, StateMachine};

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError<NodeId>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let (log, sm) = super::open(dir.path(), "suite", metrics()).expect("open store");
        sm.cover_everything();
        Ok((dir, log, sm))
    }
}

#[test]
fn store_passes_openraft_storage_suite() -> Result<(), StorageError<NodeId>> {
    Suite::test_all(Builder)
}

#[test]
fn data_dir_of_another_cluster_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(super::open(dir.path(), "alpha", metrics()).unwrap());
    let err = refused(dir.path(), "beta");
    assert!(err.to_string().contains("belongs to cluster \"alpha\""), "{err}");
}

/// A data dir of cluster "c" marked `format`, with a row under `prefix`
/// that is not a task: refused at open as damaged. Returns the dir.
fn refused_with_a_damaged_row(prefix: u8, format: u32) -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = sled::open(dir.path()).unwrap();
        let meta = db.open_tree("meta").unwrap();
        meta.insert("cluster_name", "c").unwrap();
        meta.insert("format", &format.to_be_bytes()).unwrap();
        let mut key = vec![prefix];
        key.extend(1u64.to_be_bytes());
        db.open_tree("table").unwrap().insert(key, &b"\xff\xff not a task"[..]).unwrap();
        db.flush().unwrap();
    }
    let err = refused(dir.path(), "c");
    assert!(err.to_string().contains("is damaged: task row"), "{err}");
    dir
}

#[test]
fn corrupt_task_row_is_detected_at_open() {
    refused_with_a_damaged_row(b'g', super::FORMAT);
}

#[test]
fn truncated_snapshot_file_is_detected_at_open() {
    let dir = tempfile::tempdir().unwrap();
    drop(super::open(dir.path(), "c", metrics()).unwrap());
    std::fs::write(dir.path().join("snapshot.bin"), [200u8, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3]).unwrap();
    let err = refused(dir.path(), "c");
    assert!(err.to_string().contains("snapshot.bin: truncated meta"), "{err}");
}

/// What `attempt` gives once sled's lock from an earlier open of the same
/// dir is gone (sled's background threads release it asynchronously).
fn after_lock<T, E: std::fmt::Display>(mut attempt: impl FnMut() -> Result<T, E>) -> Result<T, E> {
    let started = std::time::Instant::now();
    loop {
        match attempt() {
            Err(e) if e.to_string().contains("lock") && started.elapsed().as_secs() < 10 => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            done => return done,
        }
    }
}

/// The error of opening the store in `dir`.
fn refused(dir: &std::path::Path, cluster: &str) -> super::OpenError {
    after_lock(|| super::open(dir, cluster, metrics())).err().expect("refused")
}

fn metrics() -> std::sync::Arc<crate::metrics::Metrics> {
    std::sync::Arc::new(crate::metrics::Metrics::new(1))
}

#[test]
fn a_data_dir_of_another_storage_format_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    drop(super::open(dir.path(), "c", metrics()).unwrap());
    {
        // What a build from before the format marker leaves: no "format" key.
        let db = after_lock(|| sled::open(dir.path())).unwrap();
        db.open_tree("meta").unwrap().remove("format").unwrap();
        db.flush().unwrap();
    }
    let err = refused(dir.path(), "c");
    let text = err.to_string();
    assert!(text.contains("storage format 1") && text.contains("reads format 4"), "{text}");
}

/// Format 3 kept one task per row under `t`; format 4 keeps many under `g`.
/// A format-3 dir opens with every task, and leaves rows of many and the
/// new marker behind; so does a dir whose upgrade a crash cut short after
/// the marker (one-task rows under format 4).
#[test]
fn a_format_3_data_dir_is_regrouped_at_open_with_every_task() {
    use taskraft_core::{Command, NewTask, Table, Task};

    let mut table = Table::default();
    let tasks =
        (0..70u8).map(|i| NewTask { data: vec![i; 64], max_attempts: 1, ..NewTask::default() });
    table.apply(Command::Submit { tasks: tasks.collect(), now_ms: 1 });
    let written: Vec<Task> = table.tasks().cloned().collect();
    let dir = tempfile::tempdir().unwrap();
    drop(super::open(dir.path(), "c", metrics()).unwrap());
    let raw = |f: &dyn Fn(&sled::Db)| {
        let db = after_lock(|| sled::open(dir.path())).unwrap();
        f(&db);
        db.flush().unwrap();
    };
    let written = &written;
    let one_task_rows = |format: u32| {
        move |db: &sled::Db| {
            db.open_tree("meta").unwrap().insert("format", &format.to_be_bytes()).unwrap();
            let rows = db.open_tree("table").unwrap();
            rows.clear().unwrap();
            for task in written {
                let mut key = vec![b't'];
                key.extend(task.id.0.to_be_bytes());
                rows.insert(key, super::encode(task)).unwrap();
            }
            rows.insert("m:next_id", super::encode(&70u64)).unwrap();
        }
    };
    let opens_regrouped = |case: &str| {
        let (_, sm) = after_lock(|| super::open(dir.path(), "c", metrics())).unwrap();
        let read: Vec<Task> = sm.applied().read().table.tasks().cloned().collect();
        assert_eq!(&read, written, "{case}");
        drop(sm);
        raw(&|db| {
            let rows = db.open_tree("table").unwrap();
            let prefixes: Vec<u8> = rows.iter().keys().map(|k| k.unwrap()[0]).collect();
            assert_eq!(prefixes.iter().filter(|p| **p == b't').count(), 0, "{case}");
            // Ids 1..=70 in rows of 32: rows 0, 1 and 2.
            assert_eq!(prefixes.iter().filter(|p| **p == b'g').count(), 3, "{case}");
            let format = db.open_tree("meta").unwrap().get("format").unwrap().unwrap();
            assert_eq!(format.as_ref(), super::FORMAT.to_be_bytes(), "{case}");
        });
    };
    raw(&one_task_rows(3));
    opens_regrouped("format 3");
    opens_regrouped("reopened");
    raw(&one_task_rows(super::FORMAT));
    opens_regrouped("marked 4, rows not yet rewritten");
    raw(&|db| {
        db.open_tree("meta").unwrap().insert("format", &3u32.to_be_bytes()).unwrap();
    });
    opens_regrouped("rows of many marked 3");
}

/// The marker moves before anything else can fail: a format-3 dir this
/// build refuses (here a damaged row) is not left for an older build, which
/// would read rows of many as no rows at all, to open as format 3.
#[test]
fn a_format_3_dir_is_marked_4_before_its_rows_are_read() {
    let dir = refused_with_a_damaged_row(b't', 3);
    let db = after_lock(|| sled::open(dir.path())).unwrap();
    let format = db.open_tree("meta").unwrap().get("format").unwrap().unwrap();
    assert_eq!(format.as_ref(), super::FORMAT.to_be_bytes());
}

#[test]
fn an_append_is_long_by_its_encoded_bytes_not_its_entry_count() {
    use std::sync::Arc;

    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};
    use taskraft_core::{Command, NewTask};

    use super::log::{is_long, LONG_APPEND_BYTES};

    let entry = |index: u64, payload: EntryPayload<TypeConfig>| {
        Arc::new(Entry::<TypeConfig> {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload,
        })
    };
    let submit = |bytes: usize| {
        let task = NewTask { data: vec![7; bytes], max_attempts: 1, ..NewTask::default() };
        EntryPayload::Normal(Command::Submit { tasks: vec![task], now_ms: 1 })
    };
    let blanks = |n: u64| (1..=n).map(|i| entry(i, EntryPayload::Blank)).collect::<Vec<_>>();
    assert!(!is_long(&[]));
    assert!(!is_long(&blanks(100)), "a hundred blank entries are a few KiB");
    assert!(is_long(&blanks(20_000)), "twenty thousand are several hundred KiB");
    let limit = LONG_APPEND_BYTES as usize;
    assert!(!is_long(&[entry(1, submit(limit / 2))]));
    assert!(is_long(&[entry(1, submit(limit))]), "one entry of a 32 KiB payload");
    assert!(is_long(&[entry(1, submit(limit / 2)), entry(2, submit(limit / 2))]), "two halves");
}

/// openraft 0.9 purges a follower's log up to a snapshot from its leader
/// without waiting for the install: the purge must wait here until the
/// snapshot is durable, and fail (stopping Raft) if the install fails.
#[tokio::test]
async fn a_purge_past_the_table_waits_for_the_snapshot_install() {
    use std::io::Cursor;
    use std::time::Duration;

    use openraft::storage::{RaftLogStorage, RaftStateMachine, SnapshotMeta};
    use openraft::{CommittedLeaderId, LogId, StoredMembership};

    let dir = tempfile::tempdir().unwrap();
    let (mut log, mut sm) = super::open(dir.path(), "c", metrics()).unwrap();
    let at = |index| LogId::new(CommittedLeaderId::new(1, 1), index);
    let meta = |index| SnapshotMeta {
        last_log_id: Some(at(index)),
        last_membership: StoredMembership::default(),
        snapshot_id: format!("{index}-test"),
    };
    let image = super::snapshot::encode_image(&taskraft_core::Table::default().rows_now());

    let purge = tokio::spawn({
        let mut log = log.clone();
        async move { log.purge(at(5)).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!purge.is_finished(), "purged past a table at no entry");
    assert_eq!(log.get_log_state().await.unwrap().last_purged_log_id, None);

    sm.install_snapshot(&meta(5), Box::new(Cursor::new(image))).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), purge).await.unwrap().unwrap().unwrap();
    assert_eq!(log.get_log_state().await.unwrap().last_purged_log_id, Some(at(5)));
    log.purge(at(5)).await.expect("covered: no wait");

    let purge = tokio::spawn({
        let mut log = log.clone();
        async move { log.purge(at(9)).await }
    });
    let broken = Box::new(Cursor::new(vec![1, 2, 3]));
    assert!(sm.install_snapshot(&meta(9), broken).await.is_err());
    let failed = tokio::time::timeout(Duration::from_secs(5), purge).await.unwrap().unwrap();
    assert!(failed.is_err(), "a purge waiting for a failed install fails");
    assert_eq!(log.get_log_state().await.unwrap().last_purged_log_id, Some(at(5)));
}

/// openraft builds a snapshot in its own task while later entries apply: a
/// build that began before an install from the leader and ends after it
/// leaves the installed (newer) snapshot file in place; a newer build
/// replaces it.
#[tokio::test]
async fn a_build_older_than_an_install_keeps_the_installed_snapshot_file() {
    use std::io::Cursor;

    use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine, SnapshotMeta};
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, StoredMembership};

    let dir = tempfile::tempdir().unwrap();
    let (_log, mut sm) = super::open(dir.path(), "c", metrics()).unwrap();
    let at = |index| LogId::new(CommittedLeaderId::new(1, 1), index);
    let blanks = |from: u64, to: u64| {
        (from..=to)
            .map(|i| Entry::<TypeConfig> { log_id: at(i), payload: EntryPayload::Blank })
            .collect::<Vec<_>>()
    };
    let on_file = || {
        let bytes = std::fs::read(dir.path().join(super::SNAPSHOT_FILE)).unwrap();
        super::parse_snapshot(&bytes).unwrap().0.last_log_id
    };
    sm.apply(blanks(1, 5)).await.unwrap();
    let mut older = sm.get_snapshot_builder().await;
    let meta = SnapshotMeta {
        last_log_id: Some(at(10)),
        last_membership: StoredMembership::default(),
        snapshot_id: "10-test".into(),
    };
    let image = super::snapshot::encode_image(&taskraft_core::Table::default().rows_now());
    sm.install_snapshot(&meta, Box::new(Cursor::new(image))).await.unwrap();
    assert_eq!(on_file(), Some(at(10)));
    let built = older.build_snapshot().await.unwrap();
    assert_eq!(
        built.meta.last_log_id,
        Some(at(5)),
        "openraft still gets the snapshot it asked for"
    );
    assert_eq!(on_file(), Some(at(10)), "the installed, newer file is kept");

    sm.apply(blanks(11, 12)).await.unwrap();
    sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
    assert_eq!(on_file(), Some(at(12)), "a newer build replaces it");
}
