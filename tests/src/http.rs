//! A minimal HTTP/1.1 client for tests: one request per connection
//! (`Connection: close`), the raw status, headers and body back.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One answer.
#[derive(Debug)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// Header lines, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked).
    pub body: Vec<u8>,
}

impl Reply {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The body as JSON (panics with the body when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends `method path` to `addr` (host:port) with optional bearer `token`
/// and body; gives up after 30 s.
pub async fn request(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&[u8]>,
) -> Reply {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    request_with(addr, method, path, &headers, body).await
}

/// Sends `method path` with extra `headers` and an optional JSON body.
pub async fn request_with(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Reply {
    let exchange = async {
        let mut s = TcpStream::connect(addr).await.expect("connect to the http port");
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
        for (name, value) in headers {
            head += &format!("{name}: {value}\r\n");
        }
        if let Some(b) = body {
            if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("content-type")) {
                head += "Content-Type: application/json\r\n";
            }
            head += &format!("Content-Length: {}\r\n", b.len());
        }
        head += "\r\n";
        s.write_all(head.as_bytes()).await.expect("send");
        if let Some(b) = body {
            // The server may answer (413) and close before the whole body is sent.
            let _ = s.write_all(b).await;
        }
        let mut raw = Vec::new();
        let _ = s.read_to_end(&mut raw).await;
        parse(&raw)
    };
    tokio::time::timeout(Duration::from_secs(30), exchange).await.expect("http answer in time")
}

/// The value of one sample line of a Prometheus text answer.
pub fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// GET with a token.
pub async fn get(addr: &str, path: &str, token: Option<&str>) -> Reply {
    request(addr, "GET", path, token, None).await
}

/// POST of a JSON value with a token.
pub async fn post(addr: &str, path: &str, token: Option<&str>, body: &Value) -> Reply {
    request(addr, "POST", path, token, Some(body.to_string().as_bytes())).await
}

fn parse(raw: &[u8]) -> Reply {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a complete http head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status code");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers.iter().any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    Reply { status, headers, body }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = data.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&data[..end]).trim(), 16)
            .expect("chunk size");
        if size == 0 {
            break;
        }
        out.extend_from_slice(&data[end + 2..end + 2 + size]);
        data = &data[end + 2 + size + 2..];
    }
    out
}

/// Test timing with leases that outlast any pause of a loaded machine, so
/// that a lease held across a few calls is never taken back meanwhile.
pub fn long_leases() -> String {
    crate::cluster::FAST.replace("lease_timeout_ms = 1500", "lease_timeout_ms = 120000")
}

/// Submits `tasks` (a JSON array) over HTTP; returns their ids.
pub async fn submit(addr: &str, token: Option<&str>, tasks: Value) -> Vec<u64> {
    let r = post(addr, "/v1/tasks", token, &json!({ "tasks": tasks })).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect()
}

/// Leases up to `max` tasks for `worker` over HTTP (a 2 s long poll).
pub async fn lease(addr: &str, worker: &str, max: u32) -> Value {
    let body = json!({ "worker": worker, "max": max, "wait_ms": 2000 });
    let r = post(addr, "/v1/lease", None, &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

/// Posts a worker report to `path`; returns its `outcome`.
pub async fn outcome(addr: &str, path: &str, body: Value) -> String {
    let r = post(addr, path, None, &body).await;
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    r.json()["outcome"].as_str().unwrap().to_string()
}
