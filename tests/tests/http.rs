//! The HTTP port: the JSON API with its fencing answers, redirects from
//! followers, refused input, the token and CORS, on in-process masters
//! with real sockets. (Metrics and health checks: metrics.rs.)

use std::time::Duration;

use serde_json::json;
use taskraft_tests::cluster::FAST;
use taskraft_tests::http::{get, lease, long_leases, outcome, post, request, request_with, submit};
use taskraft_tests::TestCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_protocol_over_http_keeps_every_fencing_answer() {
    let cluster = TestCluster::start_with(3, &long_leases()).await;
    let leader = cluster.http(cluster.leader().await);
    let ids = submit(&leader, None, json!([{ "data": "hello" }, { "data_b64": "/wA=" }])).await;
    assert_eq!(ids.len(), 2);
    let keyed = json!({"tasks": [{"data": "k", "key": "once"}]});
    let a = post(&leader, "/v1/tasks", None, &keyed).await.json();
    let b = post(&leader, "/v1/tasks", None, &keyed).await.json();
    assert_eq!(a["ids"], b["ids"], "a repeated key returns the same task");
    assert_eq!(b["created"], json!([false]));

    // Lease both payloads: text as `data`, other bytes as `data_b64`.
    let leased = lease(&leader, "py-1", 2).await;
    assert_eq!(leased["state"], "leased", "{leased}");
    assert_eq!(leased["lease_timeout_ms"], 120000);
    let tasks = leased["tasks"].as_array().unwrap();
    assert_eq!(tasks[0]["data"], "hello");
    assert_eq!(tasks[1]["data_b64"], "/wA=");
    let (task, attempt) =
        (tasks[0]["task"].as_u64().unwrap(), tasks[0]["attempt"].as_u64().unwrap());
    let report = |result: &str| json!({"worker": "py-1", "task": task, "attempt": attempt, "result": result});

    assert_eq!(
        outcome(&leader, "/v1/extend", json!({"worker": "py-1", "task": task, "attempt": attempt}))
            .await,
        "accepted"
    );
    assert_eq!(outcome(&leader, "/v1/complete", report("HELLO")).await, "accepted");
    assert_eq!(outcome(&leader, "/v1/complete", report("HELLO")).await, "duplicate");
    let late = json!({"worker": "py-1", "task": task, "attempt": attempt + 1, "result": "x"});
    assert_eq!(outcome(&leader, "/v1/complete", late).await, "stale");
    let missing = json!({"worker": "py-1", "task": 999, "attempt": 1, "result": "x"});
    assert_eq!(outcome(&leader, "/v1/complete", missing).await, "not_found");
    let other = tasks[1]["task"].as_u64().unwrap();
    // Fail and extend are fenced the same way: a lease that is not the
    // task's current one is stale, and changes nothing.
    let wrong = json!({"worker": "py-1", "task": other, "attempt": 2, "error": "boom"});
    assert_eq!(outcome(&leader, "/v1/fail", wrong).await, "stale");
    let wrong = json!({"worker": "py-1", "task": other, "attempt": 2});
    assert_eq!(outcome(&leader, "/v1/extend", wrong).await, "stale");
    let done = json!({"worker": "py-1", "task": task, "attempt": attempt});
    assert_eq!(outcome(&leader, "/v1/extend", done).await, "duplicate", "its own finished lease");
    let failed = json!({"worker": "py-1", "task": other, "attempt": 1, "error": "boom"});
    assert_eq!(outcome(&leader, "/v1/fail", failed.clone()).await, "accepted");
    assert_eq!(outcome(&leader, "/v1/fail", failed).await, "stale", "a second report of it");

    // Reads: one task, a page, status; then cancel.
    let one = get(&leader, &format!("/v1/tasks/{task}"), None).await.json();
    assert_eq!(
        (one["status"].as_str(), one["result"].as_str()),
        (Some("completed"), Some("HELLO"))
    );
    let page = get(&leader, "/v1/tasks?limit=2", None).await.json();
    assert_eq!(page["tasks"].as_array().unwrap().len(), 2);
    let next = page["next_after"].as_u64().expect("a second page");
    let rest = get(&leader, &format!("/v1/tasks?after={next}&limit=2"), None).await.json();
    assert_eq!(rest["tasks"].as_array().unwrap().len(), 1);
    let idle = get(&leader, "/v1/tasks?status=idle", None).await.json();
    assert!(idle["tasks"].as_array().unwrap().iter().all(|t| t["status"] == "idle"));
    let cancelled = post(&leader, "/v1/cancel", None, &json!({"ids": [other, task, 777]})).await;
    assert_eq!(
        cancelled.json(),
        json!({"cancelled": [other], "already_finished": [task], "not_found": [777]})
    );
    let status = get(&leader, "/v1/status", None).await.json();
    assert_eq!(status["counts"]["completed"], 1);
    assert_eq!(status["counts"]["cancelled"], 1);
    // A cancelled task can be retried: idle again.
    let retried = post(&leader, "/v1/retry", None, &json!({"ids": [other, task]})).await.json();
    assert_eq!(retried, json!({"retried": [other], "not_dead": [task], "not_found": []}));
    let again = get(&leader, &format!("/v1/tasks/{other}"), None).await.json();
    assert_eq!(again["status"], "idle");
    assert_eq!(status["members"].as_array().unwrap().len(), 3);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_redirects_to_the_leader_and_a_long_poll_waits_for_work() {
    let cluster = TestCluster::start_with(3, &long_leases()).await;
    let leader_id = cluster.leader().await;
    let follower = cluster.running().into_iter().find(|id| *id != leader_id).unwrap();
    let body = json!({ "tasks": [{ "data": "via follower" }] });
    let r = post(&cluster.http(follower), "/v1/tasks", None, &body).await;
    assert_eq!(r.status, 307, "{}", r.text());
    let to = format!("http://{}/v1/tasks", cluster.http(leader_id));
    assert_eq!(r.header("location"), Some(to.as_str()));
    assert_eq!(r.json()["error"], "not_leader");
    assert_eq!(r.json()["leader"]["id"], leader_id);
    let q = get(&cluster.http(follower), "/v1/tasks?status=idle&limit=5", None).await;
    assert_eq!(q.status, 307);
    assert!(q.header("location").unwrap().ends_with("/v1/tasks?status=idle&limit=5"));

    // Nothing was written through the follower; a long poll on the leader
    // returns as soon as a task arrives.
    let leader = cluster.http(leader_id);
    let started = std::time::Instant::now();
    let waiting = tokio::spawn({
        let leader = leader.clone();
        async move {
            let body = json!({ "worker": "w", "max": 1, "wait_ms": 20000 });
            post(&leader, "/v1/lease", None, &body).await.json()
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "the lease waits for a task");
    submit(&leader, None, json!([{ "data": "late" }])).await;
    let leased = waiting.await.unwrap();
    let waited = started.elapsed();
    // It waited for the task, and came back with it, not at its deadline.
    assert!(waited >= Duration::from_millis(500) && waited < Duration::from_secs(15), "{waited:?}");
    assert_eq!(leased["tasks"][0]["data"], "late", "{leased}");
    assert_eq!(leased["tasks"][0]["task"], 1, "the follower wrote nothing");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_json_error_and_writes_nothing() {
    let cluster = TestCluster::start_with(3, &long_leases()).await;
    let id = cluster.leader().await;
    let leader = cluster.http(id);
    submit(&leader, None, json!([{ "data": "keep" }])).await;
    let before = cluster.converged().await;
    let cases: Vec<(&str, &str, Vec<u8>, u16)> = vec![
        ("POST", "/v1/tasks", b"{not json".to_vec(), 400),
        ("POST", "/v1/tasks", br#"{"tasks": [{"data": "x", "colour": "red"}]}"#.to_vec(), 400),
        ("POST", "/v1/tasks", br#"{"tasks": [{"data": "x", "data_b64": "eA=="}]}"#.to_vec(), 400),
        ("POST", "/v1/tasks", br#"{"tasks": [{"data_b64": "***"}]}"#.to_vec(), 400),
        // Over max_payload_bytes (4096 in FAST): refused by the service layer.
        (
            "POST",
            "/v1/tasks",
            format!(r#"{{"tasks": [{{"data": "{}"}}]}}"#, "x".repeat(5000)).into_bytes(),
            400,
        ),
        // Over the port's body limit (twice the payload limit plus 16 MiB).
        ("POST", "/v1/tasks", vec![b' '; 17 << 20], 413),
        ("POST", "/v1/lease", br#"{"worker": "", "max": 1}"#.to_vec(), 400),
        ("POST", "/v1/lease", br#"{"worker": "w", "max": 1, "wait_ms": 99999999}"#.to_vec(), 400),
        ("POST", "/v1/complete", br#"{"worker": "w", "task": 1}"#.to_vec(), 400),
        ("POST", "/v1/cancel", br#"{"ids": []}"#.to_vec(), 400),
        ("GET", "/v1/tasks?status=lost", Vec::new(), 400),
        ("GET", "/v1/tasks?limit=0", Vec::new(), 400),
        ("GET", "/v1/tasks?page=2", Vec::new(), 400),
        ("GET", "/v1/tasks/abc", Vec::new(), 400),
        ("GET", "/v1/tasks/999", Vec::new(), 404),
        ("GET", "/nowhere", Vec::new(), 404),
        ("DELETE", "/v1/tasks", Vec::new(), 405),
    ];
    for (method, path, body, want) in cases {
        let body = (!body.is_empty()).then_some(body.as_slice());
        let r = request(&leader, method, path, None, body).await;
        assert_eq!(r.status, want, "{method} {path}: {}", r.text());
        let err = r.json();
        assert!(err["error"].is_string() && err["message"].is_string(), "{method} {path}: {err}");
    }
    // What other web pages could send: a form post, a foreign origin, another host name.
    let json_body: &[u8] = br#"{"tasks": [{"data": "from a web page"}]}"#;
    let browser_cases: Vec<(Vec<(&str, &str)>, u16)> = vec![
        (vec![("Content-Type", "text/plain")], 415),
        (vec![("Content-Type", "application/json"), ("Origin", "http://evil.example")], 403),
    ];
    for (headers, want) in browser_cases {
        let r = request_with(&leader, "POST", "/v1/tasks", &headers, Some(json_body)).await;
        assert_eq!(r.status, want, "{headers:?}: {}", r.text());
        assert!(r.json()["error"].is_string());
    }
    let port = leader.rsplit(':').next().unwrap();
    let rebound = format!(
        "GET /v1/status HTTP/1.1\r\nHost: evil.example:{port}\r\nConnection: close\r\n\r\n"
    );
    let r = raw(&leader, rebound.as_bytes()).await;
    assert!(r.starts_with("HTTP/1.1 421"), "{r}");
    let status = get(&leader, "/v1/status", None).await.json();
    assert_eq!(status["counts"]["idle"], 1, "{status}");
    assert_eq!(cluster.converged().await, before, "no entry was written");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_guards_everything_but_the_liveness_probe_and_the_page() {
    let cluster = TestCluster::start_with(3, &format!("{FAST}\ntoken = \"s3cret\"")).await;
    let leader = cluster.http(cluster.leader().await);
    assert_eq!(get(&leader, "/healthz", None).await.status, 200);
    assert_eq!(get(&leader, "/", None).await.status, 200);
    for path in ["/metrics", "/readyz", "/v1/status", "/v1/console", "/v1/tasks"] {
        let none = get(&leader, path, None).await;
        assert_eq!(none.status, 401, "{path}");
        assert_eq!(none.json()["error"], "unauthorized");
        assert_eq!(get(&leader, path, Some("wrong")).await.status, 401, "{path}");
        assert_eq!(get(&leader, path, Some("s3cret")).await.status, 200, "{path}");
    }
    let body = json!({"tasks": [{"data": "x"}]});
    assert_eq!(post(&leader, "/v1/tasks", None, &body).await.status, 401);
    assert_eq!(post(&leader, "/v1/tasks", Some("s3cret"), &body).await.status, 200);
    let status = get(&leader, "/v1/status", Some("s3cret")).await.json();
    assert_eq!(status["counts"]["idle"], 1, "the refused submit wrote nothing");
    cluster.shutdown().await;
}

/// Sends raw bytes and returns the answer as text.
async fn raw(addr: &str, bytes: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(15), s.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the server answers and closes");
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_lets_only_the_cluster_s_own_consoles_read_across_masters() {
    let cluster = TestCluster::start_with(3, &format!("{FAST}\ntoken = \"t\"")).await;
    let leader = cluster.http(cluster.leader().await);
    let other = cluster.running().into_iter().map(|id| cluster.http(id)).find(|a| *a != leader);
    let own = format!("http://{}", other.unwrap());
    let allowed = |r: &taskraft_tests::http::Reply| {
        r.header("access-control-allow-origin").map(str::to_owned)
    };

    // A preflight from another master's console: allowed, with the token header.
    let pre = [("Origin", own.as_str()), ("Access-Control-Request-Headers", "authorization")];
    let r = request_with(&leader, "OPTIONS", "/v1/console", &pre, None).await;
    assert_eq!((r.status, allowed(&r)), (204, Some(own.clone())));
    assert!(r.header("access-control-allow-headers").unwrap().contains("authorization"));
    let read = [("Origin", own.as_str()), ("Authorization", "Bearer t")];
    let r = request_with(&leader, "GET", "/v1/console", &read, None).await;
    assert_eq!((r.status, allowed(&r)), (200, Some(own.clone())));

    // Any other origin gets no CORS headers, and still needs the token.
    let evil = [("Origin", "http://evil.example"), ("Authorization", "Bearer t")];
    let r = request_with(&leader, "GET", "/v1/console", &evil, None).await;
    assert_eq!(allowed(&r), None);
    let r = request_with(&leader, "OPTIONS", "/v1/tasks", &evil[..1], None).await;
    assert_eq!(allowed(&r), None);
    let r = request_with(&leader, "GET", "/v1/console", &read[..1], None).await;
    assert_eq!((r.status, allowed(&r)), (401, Some(own)), "a 401 the console can read");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_http_is_refused_and_the_port_keeps_serving() {
    let cluster = TestCluster::start_with(3, &long_leases()).await;
    let leader = cluster.http(cluster.leader().await);
    let garbage: [&[u8]; 4] = [
        b"\x00\x01\x02 not http at all\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n",
        b"POST /v1/tasks HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"TRFT1\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",
    ];
    for bytes in garbage {
        let text = raw(&leader, bytes).await;
        assert!(text.is_empty() || text.starts_with("HTTP/1.1 4"), "{text}");
    }
    let r = get(&leader, "/v1/status", None).await;
    assert_eq!(r.status, 200, "still serving: {}", r.text());
    cluster.shutdown().await;
}
