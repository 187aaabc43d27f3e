//! Printing: task objects and status as the stable JSON of DESIGN.md, or as text.

use base64::Engine;
use serde_json::{json, Value};
use taskraft_core::Task;
use taskraft_proto::client::ClusterStatus;

/// A task as a JSON object; bytes that are not UTF-8 go to `*_b64` fields.
pub fn task_json(t: &Task) -> Value {
    let mut v = json!({
        "id": t.id.0,
        "status": t.status.as_str(),
        "attempt": t.attempt.0,
        "worker": t.worker.as_ref().map(|w| w.0.clone()),
        "error": t.error,
        "key": t.key,
        "priority": t.priority,
        "submitted_ms": t.submitted_ms,
        "finished_ms": t.finished_ms,
    });
    put_bytes(&mut v, "data", Some(&t.data));
    put_bytes(&mut v, "result", t.result.as_deref());
    v
}

fn put_bytes(v: &mut Value, name: &str, bytes: Option<&[u8]>) {
    let obj = v.as_object_mut().expect("task json is an object");
    match bytes.map(std::str::from_utf8) {
        None => _ = obj.insert(name.into(), Value::Null),
        Some(Ok(text)) => _ = obj.insert(name.into(), Value::String(text.into())),
        Some(Err(_)) => {
            let b64 = base64::engine::general_purpose::STANDARD.encode(bytes.unwrap_or_default());
            obj.insert(format!("{name}_b64"), Value::String(b64));
        }
    }
}

/// `status --json`.
pub fn status_json(s: &ClusterStatus) -> Value {
    let leader = s.members.iter().find(|m| Some(m.id) == s.leader);
    json!({
        "cluster": s.cluster,
        "term": s.term,
        "leader": leader.map(|m| json!({"id": m.id, "client_addr": m.client_addr})),
        "members": members_json(s),
        "counts": s.counts,
        "workers": s.workers.iter().map(|w| json!({
            "id": w.id.0,
            "mode": "push",
            "addr": w.addr,
            "healthy": w.healthy,
            "in_flight": w.in_flight,
            "completed": w.completed,
            "capacity": w.capacity,
        })).collect::<Vec<_>>(),
    })
}

/// The live membership, as `status --json` and `member list --json` show it.
pub fn members_json(s: &ClusterStatus) -> Value {
    s.members
        .iter()
        .map(|m| {
            json!({
                "id": m.id,
                "client_addr": m.client_addr,
                "peer_addr": m.peer_addr,
                "role": m.role,
                "voter": m.voter,
                "last_applied": m.last_applied,
                "lag": m.lag,
            })
        })
        .collect()
}

/// One line per member.
pub fn member_lines(s: &ClusterStatus) -> String {
    let mut out = String::new();
    for m in &s.members {
        let applied = m.last_applied.map_or("-".to_string(), |i| i.to_string());
        let lag = m.lag.map_or("-".to_string(), |i| i.to_string());
        let kind = if m.voter { "voter" } else { "learner" };
        out += &format!(
            "  node {:<3} {:<12} {:<8} client {:<21} peer {:<21} log {:<8} lag {}\n",
            m.id, m.role, kind, m.client_addr, m.peer_addr, applied, lag
        );
    }
    out
}

/// `status` as text.
pub fn status_text(s: &ClusterStatus) -> String {
    let mut out = format!("cluster {}  term {}", s.cluster, s.term);
    if let Some(m) = s.members.iter().find(|m| Some(m.id) == s.leader) {
        out += &format!("  leader node {} ({})", m.id, m.client_addr);
    }
    out.push('\n');
    out += &member_lines(s);
    for w in &s.workers {
        let health = if w.healthy { "healthy" } else { "unhealthy" };
        out += &format!(
            "  push worker {:<8} {:<21} {:<9} in flight {}/{}  completed {}\n",
            w.id.0, w.addr, health, w.in_flight, w.capacity, w.completed
        );
    }
    let c = s.counts;
    out += &format!(
        "tasks: {} idle, {} in progress, {} completed, {} dead",
        c.idle, c.in_progress, c.completed, c.dead
    );
    out
}

/// One line per task.
pub fn task_line(t: &Task) -> String {
    let show = |b: &[u8]| String::from_utf8_lossy(b).replace('\n', "\\n");
    let result = t.result.as_deref().map(show).unwrap_or_default();
    let error = t.error.as_deref().map(|e| format!("  error: {e}")).unwrap_or_default();
    let worker = t.worker.as_ref().map_or("-", |w| w.0.as_str());
    format!(
        "{:>6}  {:<11} attempt {}  worker {:<8} {:?} -> {:?}{}",
        t.id.0,
        t.status.as_str(),
        t.attempt.0,
        worker,
        show(&t.data),
        result,
        error
    )
}
