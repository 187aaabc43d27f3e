//! The web console in a real browser: headless Chromium loads the page from
//! a master, runs its script against the live cluster, and must show the
//! leader and the task counts; a screenshot is kept for people to look at.
//!
//! Needs Debian's `chromium` (`.ci/run` installs it when missing); without
//! it this test fails, it does not skip.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;
use taskraft_tests::cluster::FAST;
use taskraft_tests::http::post;
use taskraft_tests::TestCluster;

const CHROMIUM: &str = "chromium";

/// Runs headless Chromium on `url` with `what` (`--dump-dom` or
/// `--screenshot=PATH`) and returns its stdout.
async fn chromium(url: &str, what: &str, profile: &Path) -> String {
    let run = tokio::process::Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1400,1000",
            // Let the page's script fetch and render before the dump.
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(what)
        .arg(url)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(90), run)
        .await
        .expect("chromium finished in time")
        .unwrap_or_else(|e| {
            panic!("cannot run {CHROMIUM} ({e}); install Debian's chromium package (.ci/run does)")
        });
    assert!(out.status.success(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The text of the element with `id` in a DOM dump.
fn element_text<'a>(dom: &'a str, id: &str) -> Option<&'a str> {
    let start = dom.find(&format!("id=\"{id}\""))?;
    let open = start + dom[start..].find('>')? + 1;
    let close = open + dom[open..].find('<')?;
    Some(&dom[open..close])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_the_leader_and_the_counts_in_a_real_browser() {
    // Leases long enough to outlast the browser's start on a slow machine.
    let timing = FAST.replace("lease_timeout_ms = 1500", "lease_timeout_ms = 120000");
    let cluster = TestCluster::start_with(3, &format!("{timing}\ntoken = \"c0nsole\"")).await;
    let leader = cluster.leader().await;
    let http = cluster.http(leader);
    let tasks = json!({ "tasks": [{ "data": "a" }, { "data": "b" }, { "data": "c" }] });
    let r = post(&http, "/v1/tasks", Some("c0nsole"), &tasks).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let leased =
        post(&http, "/v1/lease", Some("c0nsole"), &json!({ "worker": "browser-test", "max": 1 }))
            .await
            .json();
    let t = &leased["tasks"][0];
    let done = json!({ "worker": "browser-test", "task": t["task"], "attempt": t["attempt"], "result": "A" });
    assert_eq!(
        post(&http, "/v1/complete", Some("c0nsole"), &done).await.json()["outcome"],
        "accepted"
    );
    // A second lease stays open: the workers table shows who holds what.
    let held =
        post(&http, "/v1/lease", Some("c0nsole"), &json!({ "worker": "holder-9", "max": 1 }))
            .await
            .json();
    let held_task = held["tasks"][0]["task"].as_u64().expect("a second task leased");
    // And a third fails: it is idle again, and listed under recent failures.
    let third = post(&http, "/v1/lease", Some("c0nsole"), &json!({ "worker": "w3", "max": 1 }))
        .await
        .json();
    let t = &third["tasks"][0];
    let failed = json!({ "worker": "w3", "task": t["task"], "attempt": t["attempt"], "error": "upstream said 503" });
    assert_eq!(
        post(&http, "/v1/fail", Some("c0nsole"), &failed).await.json()["outcome"],
        "accepted"
    );
    cluster.converged().await;

    // Opened on a follower: the console works from any master.
    let follower = cluster.running().into_iter().find(|id| *id != leader).unwrap();
    let url = format!("http://{}/#token=c0nsole", cluster.http(follower));
    let profile = tempfile::tempdir().unwrap();
    let dom = chromium(&url, "--dump-dom", profile.path()).await;
    assert_eq!(element_text(&dom, "leader"), Some(format!("node {leader}").as_str()), "{dom}");
    assert_eq!(element_text(&dom, "count-idle"), Some("1"), "{dom}");
    assert_eq!(element_text(&dom, "count-completed"), Some("1"), "{dom}");
    assert_eq!(element_text(&dom, "count-in_progress"), Some("1"), "{dom}");
    let holder = format!("<td>holder-9</td><td>pull</td><td>1</td><td>#{held_task}</td>");
    assert!(dom.contains(&holder), "the workers table: {dom}");
    assert!(dom.contains("upstream said 503"), "the recent failures: {dom}");
    // Opened on the follower, it reads the leader's view (lag, push
    // workers), and every master's own term.
    let opened =
        format!("node {leader} (leader, leader view); opened on node {follower} (follower)");
    assert!(dom.contains(&opened), "read through the follower: {dom}");
    let term = element_text(&dom, "term").expect("the cluster's term");
    let terms = dom.matches(&format!("<td class=\"term\">{term}</td>")).count();
    assert_eq!(terms, 3, "each master's term in the members table: {dom}");
    assert!(dom.contains("class=\"role-leader\""), "the members table marks the leader: {dom}");

    // Without the token the page loads but shows no data.
    let bare = tempfile::tempdir().unwrap();
    let dom = chromium(&format!("http://{http}/"), "--dump-dom", bare.path()).await;
    assert_eq!(element_text(&dom, "count-idle"), Some("-"), "{dom}");

    let shot: PathBuf = Path::new(env!("CARGO_TARGET_TMPDIR")).join("console.png");
    let _ = std::fs::remove_file(&shot);
    chromium(&url, &format!("--screenshot={}", shot.display()), profile.path()).await;
    let png = std::fs::read(&shot).expect("the screenshot was written");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "{} bytes", png.len());
    println!("console screenshot: {}", shot.display());
    cluster.shutdown().await;
}
