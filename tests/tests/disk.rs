//! Disk faults on real master processes: a disk that fills up stops the
//! master (fail-stop) and, once space is freed, a restart recovers it with
//! nothing acknowledged lost; a damaged Raft log file, or a table file that
//! lost writes the log no longer holds, is refused at start, the node never
//! serves from it, and it is replaced as the error says.
//!
//! The full disk is a size-limited tmpfs mounted on the node's data dir: the
//! test needs root, as CI has (it fails, never skips, without it).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use taskraft_client::{Client, ClientOptions};
use taskraft_core::NewTask;
use taskraft_tests::{cluster::FAST, eventually, tasks, ProcCluster};

const BIN: &str = env!("CARGO_BIN_EXE_taskraft-under-test");
/// Never the lowest id: a node of another id may also come back empty.
const VICTIM: u64 = 3;

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("run a system command");
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A tmpfs of `size` mounted on `dir` for the life of the value.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(dir: &Path, size: &str) -> Mount {
        run(Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir));
        Mount(dir.to_owned())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the filesystem of `dir` with one file until it is full.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).expect("filler");
    let chunk = vec![0u8; 64 * 1024];
    while file.write_all(&chunk).is_ok() {}
    // The last bytes a partial chunk left.
    while file.write_all(&chunk[..512]).is_ok() {}
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_stops_the_master_and_after_freeing_space_it_catches_up_losing_nothing() {
    let mut cluster = ProcCluster::start(BIN, 3, FAST);
    let client = cluster.client();
    let mut acknowledged = client.submit(tasks("before", 50)).await.expect("submit").len();
    cluster.converged().await;

    // Move the victim's data dir onto a small tmpfs.
    cluster.kill(VICTIM);
    let dir = cluster.config.node(VICTIM).unwrap().data_dir.clone();
    let saved = dir.with_extension("saved");
    std::fs::rename(&dir, &saved).unwrap();
    std::fs::create_dir(&dir).unwrap();
    let mount = Mount::tmpfs(&dir, "48m");
    run(Command::new("cp").arg("-a").arg(format!("{}/.", saved.display())).arg(&dir));
    cluster.start_node(VICTIM);
    cluster.converged().await;

    let filler = fill(&dir);
    // The other two masters keep committing. The victim's log writes into
    // segments zeroed before the disk filled, so the first write to fail is
    // its table's (sled), or the log's once those segments are full.
    let mut victim = cluster.take(VICTIM).expect("running");
    let mut round = 0;
    while !victim.has_exited() && round < 800 {
        let batch = (0..20).map(|i| NewTask {
            data: format!("full{round}-{i}-{}", "x".repeat(4000)).into_bytes(),
            ..Default::default()
        });
        acknowledged += client.submit(batch.collect()).await.expect("submit").len();
        round += 1;
    }
    let code = victim.wait(Duration::from_secs(30)).await;
    assert_eq!(code, Some(1), "a master that cannot write its data exits with status 1");
    let log = cluster.log(&format!("node{VICTIM}"));
    assert!(log.contains("fatal error"), "{log}");
    assert!(log.contains("No space left on device"), "{log}");

    // Freed: the restarted master catches up and the three tables agree.
    std::fs::remove_file(filler).unwrap();
    acknowledged += client.submit(tasks("freed", 20)).await.expect("submit").len();
    cluster.start_node(VICTIM);
    cluster.converged().await;
    let report = cluster.report(VICTIM).await.expect("the victim answers");
    assert_eq!(
        report.counts.total(),
        acknowledged as u64,
        "every acknowledged task is on the victim"
    );
    drop(cluster);
    drop(mount);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_log_file_is_refused_at_start_and_the_node_is_replaced_as_the_error_says() {
    let mut cluster = ProcCluster::start(BIN, 3, FAST);
    let client = cluster.client();
    client.submit(tasks("a", 200)).await.expect("submit");
    // A restart starts a new log segment: the damaged one is then not the last.
    cluster.kill(VICTIM);
    cluster.start_node(VICTIM);
    client.submit(tasks("b", 50)).await.expect("submit");
    cluster.converged().await;
    cluster.kill(VICTIM);

    let wal = cluster.config.node(VICTIM).unwrap().data_dir.join("wal");
    let files = std::fs::read_dir(&wal).unwrap().map(|e| e.unwrap().path());
    let mut segments: Vec<PathBuf> =
        files.filter(|p| p.extension().is_some_and(|e| e == "wal")).collect();
    segments.sort();
    assert!(segments.len() >= 2, "{segments:?}");
    let first = &segments[0];
    let mut bytes = std::fs::read(first).unwrap();
    // Segments are zeroed ahead: flip a byte in the middle of what was written.
    let at = bytes.iter().rposition(|b| *b != 0).expect("frames") / 2;
    bytes[at] ^= 0x04;
    std::fs::write(first, bytes).unwrap();

    cluster.start_node(VICTIM);
    let mut victim = cluster.take(VICTIM).expect("started");
    let code = victim.wait(Duration::from_secs(20)).await;
    assert_eq!(code, Some(1), "a master whose log is damaged does not start");
    let log = cluster.log(&format!("node{VICTIM}"));
    assert!(log.contains("is corrupt at byte"), "{log}");
    assert!(log.contains("Move the data dir"), "{log}");

    // The others carry on; the victim is replaced as the message says.
    let more = client.submit(tasks("c", 10)).await.expect("the two others still commit").len();
    assert_eq!(more, 10);
    let dir = cluster.config.node(VICTIM).unwrap().data_dir.clone();
    std::fs::rename(&dir, dir.with_extension("damaged")).unwrap();
    cluster.cli_ok(&["member", "remove", &VICTIM.to_string()]).await;
    cluster.start_node(VICTIM);
    cluster.cli_ok(&["member", "add", &VICTIM.to_string()]).await;
    let digest = cluster.converged().await;
    let report =
        eventually(Duration::from_secs(10), "the victim's report", || cluster.report(VICTIM)).await;
    assert_eq!(report.digest, digest);
    assert_eq!(report.counts.total(), 260);
}

/// The table's file (sled's `db` in the data dir) damaged while a master
/// is down, after its log was purged behind a snapshot: a byte flipped in
/// the middle, late in the file, or the file cut short. sled recovers such
/// a file to an older state without a word; the master sees its table
/// behind its own snapshot, rebuilds the table from it, replays the log
/// after it, and ends with the others' table. Without the snapshot file as
/// well, nothing can rebuild what the log no longer holds: the master
/// refuses to start and says what to do, and the others carry on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_table_file_is_rebuilt_from_the_snapshot_or_refused_never_served() {
    for damage in ["flip", "flip-late", "cut", "cut, and no snapshot file"] {
        let mut cluster = taskraft_tests::TestCluster::start(3).await;
        let leader = cluster.leader().await;
        let client = cluster.client();
        for i in 0..30 {
            client.submit(tasks(&format!("{i}"), 2)).await.expect("submit");
        }
        cluster.converged().await;
        let victim = cluster.running().into_iter().find(|id| *id != leader).unwrap();
        let raft = cluster.node(victim).raft.clone();
        raft.trigger().snapshot().await.unwrap();
        let index = cluster.applied_index(victim);
        eventually(Duration::from_secs(10), "snapshot built", || async {
            raft.metrics().borrow().snapshot.is_some_and(|s| s.index >= index).then_some(())
        })
        .await;
        raft.trigger().purge_log(index).await.unwrap();
        eventually(Duration::from_secs(10), "log purged", || async {
            raft.metrics().borrow().purged.is_some_and(|p| p.index >= index).then_some(())
        })
        .await;
        cluster.stop(victim).await;
        // Written while the victim is down: it must catch up past its snapshot.
        client.submit(tasks("later", 3)).await.expect("the others commit");

        let data_dir = cluster.config.node(victim).unwrap().data_dir.clone();
        let db = data_dir.join("db");
        let mut bytes = std::fs::read(&db).unwrap();
        let len = bytes.len();
        match damage {
            "flip" => bytes[len / 2] ^= 0x10,
            "flip-late" => bytes[len * 9 / 10] ^= 0x10,
            _ => bytes.truncate(len / 3),
        }
        std::fs::write(&db, bytes).unwrap();
        if damage.contains("no snapshot") {
            std::fs::remove_file(data_dir.join("snapshot.bin")).unwrap();
            // The sled lock of the stopped node is released asynchronously.
            let refused = eventually(Duration::from_secs(10), "the start refused", || async {
                match taskraft_master::Node::start(&cluster.config, victim, Default::default())
                    .await
                {
                    Ok(_) => panic!("{damage}: started on a table it cannot trust"),
                    Err(e) => Some(e.to_string()).filter(|e| !e.contains("lock")),
                }
            })
            .await;
            assert!(refused.contains("is damaged: its table is at"), "{damage}: {refused}");
            assert!(refused.contains("taskraft member remove"), "{damage}: {refused}");
        } else {
            cluster.restart(victim).await;
        }
        // The others (and the rebuilt victim) hold one table with every task.
        let digest = cluster.converged().await;
        let total = cluster.node(leader).applied().read().table.counts().total();
        assert_eq!(total, 63, "{damage}");
        if !damage.contains("no snapshot") {
            assert_eq!(cluster.digest(victim), digest, "{damage}: the victim's table");
        }
        cluster.shutdown().await;
    }
}

/// A follower SIGKILLed while it installs a snapshot from its leader
/// (decoding the image, rewriting its table) restarts and catches up.
/// openraft purges the follower's log up to the snapshot as soon as it hands
/// the install to the state machine; if the purge reached the disk before
/// the snapshot did, the restarted node found a log that starts after its
/// table ends and refused to start. The log now purges only what the table
/// or a snapshot file durably covers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_killed_while_installing_a_snapshot_restarts_and_catches_up() {
    let mut cluster = ProcCluster::start(BIN, 3, &format!("{FAST}\nsnapshot_every = 300"));
    let leader = cluster.leader().await;
    let victim = cluster.running().into_iter().rev().find(|id| *id != leader).unwrap();
    // Debug-build masters writing large entries: give each call time.
    let options = ClientOptions {
        call_timeout: Duration::from_secs(10),
        token: cluster.config.credentials(false).unwrap(),
        ..ClientOptions::default()
    };
    let client = Arc::new(Client::with_options(cluster.config.seeds(), options));
    client.submit(tasks("before", 10)).await.expect("submit");
    cluster.converged().await;
    // Down, not stopped: the leader purges no entry a replication to it is still sending.
    cluster.kill(victim);

    // One entry per submit, four submitters: enough entries that the leader
    // snapshots (every 300 to 420 entries) and purges the log behind the
    // victim, and a table large enough that installing it takes a while.
    let payload = |tag: String| {
        (0..16)
            .map(|i| NewTask {
                data: format!("{tag}-{i}:{}", "x".repeat(1000)).into_bytes(),
                ..Default::default()
            })
            .collect::<Vec<_>>()
    };
    let started = std::time::Instant::now();
    let mut round = 0;
    loop {
        let calls = (0..4).map(|s| {
            let client = client.clone();
            let tag = format!("r{round}s{s}");
            tokio::spawn(async move {
                for i in 0..25 {
                    client.submit(payload(format!("{tag}i{i}"))).await.expect("submit");
                }
            })
        });
        for call in calls.collect::<Vec<_>>() {
            call.await.unwrap();
        }
        round += 1;
        let snapshot = cluster.report(leader).await.map_or(0, |r| r.snapshot_bytes);
        if snapshot > 0 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "the leader never built a snapshot");
    }
    // Entries past the snapshot as well, so that the victim ends on the log.
    client.submit(tasks("after", 5)).await.expect("submit");

    cluster.start_node(victim);
    let name = format!("node{victim}");
    // Both lines: the install began, and the log purge waits for it (in
    // the window that a kill used to turn into a node refusing to start).
    let waiting = std::time::Instant::now();
    while !["installing a snapshot", "the log purge waits"]
        .iter()
        .all(|l| cluster.log(&name).contains(l))
    {
        let log = cluster.log(&name);
        assert!(
            waiting.elapsed() < Duration::from_secs(60),
            "the victim never installed a snapshot: {}\nleader: {}",
            &log[log.len().saturating_sub(6000)..],
            {
                let l = cluster.log(&format!("node{leader}"));
                l[l.len().saturating_sub(3000)..].to_string()
            }
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    cluster.kill(victim);
    assert!(
        !cluster.log(&name).contains("snapshot installed"),
        "the kill came after the install: make the table larger"
    );

    cluster.start_node(victim);
    let tail = |log: String| log[log.len().saturating_sub(2000)..].to_string();
    eventually(Duration::from_secs(30), "the victim to answer", || async {
        let log = cluster.log(&name);
        assert!(!log.contains("is damaged"), "the victim refused to start: {}", tail(log));
        cluster.report(victim).await.map(|_| ())
    })
    .await;
    let digest = cluster.converged().await;
    assert_eq!(cluster.report(victim).await.expect("the victim answers").digest, digest);
}
