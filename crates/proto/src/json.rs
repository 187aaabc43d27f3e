//! The stable JSON shapes of DESIGN.md: what `--json` prints and what the
//! HTTP API answers. One definition, so the two never drift apart.

use base64::Engine;
use serde_json::{json, Value};
use taskraft_core::{Outcome, QueueStatus, Task};

use crate::client::ClusterStatus;

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
        "queue": t.queue,
        "submitted_ms": t.submitted_ms,
        "finished_ms": t.finished_ms,
        "due_ms": t.due_ms,
        "cancelling": t.cancelling,
    });
    put_bytes(&mut v, "data", Some(&t.data));
    put_bytes(&mut v, "result", t.result.as_deref());
    v
}

/// Puts `bytes` into `v` as `name` (UTF-8 text) or `name_b64` (anything else).
pub fn put_bytes(v: &mut Value, name: &str, bytes: Option<&[u8]>) {
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
        "queues": queues_json(&s.queues),
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

/// Queues with their counts and limits, as `status --json` and `queue list --json` show them.
pub fn queues_json(queues: &[QueueStatus]) -> Value {
    queues
        .iter()
        .map(|q| {
            json!({ "name": q.name, "counts": q.counts,
                    "max_in_flight": q.settings.max_in_flight, "paused": q.settings.paused })
        })
        .collect()
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

/// The bytes a request carries as `name` (text) or `name_b64` (base64):
/// exactly one of the two; an absent pair is empty bytes.
pub fn bytes_from(
    name: &str,
    text: Option<String>,
    b64: Option<String>,
) -> Result<Vec<u8>, String> {
    match (text, b64) {
        (Some(_), Some(_)) => Err(format!("give {name} or {name}_b64, not both")),
        (Some(text), None) => Ok(text.into_bytes()),
        (None, Some(b64)) => base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|e| format!("{name}_b64 is not base64: {e}")),
        (None, None) => Ok(Vec::new()),
    }
}

/// An outcome as JSON spells it.
pub fn outcome_str(o: Outcome) -> &'static str {
    match o {
        Outcome::Accepted => "accepted",
        Outcome::Stale => "stale",
        Outcome::Duplicate => "duplicate",
        Outcome::NotFound => "not_found",
        Outcome::Cancelled => "cancelled",
    }
}

/// `cancel --json`: the ids asked, sorted by what happened to them
/// (an in-progress task is cancelled once its worker stops: `cancelling`).
pub fn cancel_json(ids: &[u64], outcomes: &[Outcome]) -> Value {
    let pick = |want: &[Outcome]| -> Vec<u64> {
        ids.iter().zip(outcomes).filter(|(_, o)| want.contains(o)).map(|(id, _)| *id).collect()
    };
    json!({
        "cancelled": pick(&[Outcome::Accepted, Outcome::Duplicate]),
        "already_finished": pick(&[Outcome::Stale]),
        "not_found": pick(&[Outcome::NotFound]),
    })
}

/// `retry --json`: the ids asked, sorted by what happened to them.
pub fn retry_json(ids: &[u64], outcomes: &[Outcome]) -> Value {
    let pick = |want: Outcome| -> Vec<u64> {
        ids.iter().zip(outcomes).filter(|(_, o)| **o == want).map(|(id, _)| *id).collect()
    };
    json!({
        "retried": pick(Outcome::Accepted),
        "not_dead": pick(Outcome::Stale),
        "not_found": pick(Outcome::NotFound),
    })
}
