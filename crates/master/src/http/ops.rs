//! `/healthz`, `/readyz` and `/metrics`: what a load balancer and
//! Prometheus ask every master.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::Http;

/// A node is ready while its applied index is at most this many entries
/// behind the commit index it knows.
pub const READY_LAG: u64 = 100;

pub fn routes() -> Router<Http> {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

/// 200 while a leader is known and this node has applied what it knows to
/// be committed (within [`READY_LAG`]); 503 otherwise, with the reason.
async fn readyz(State(h): State<Http>) -> impl IntoResponse {
    let m = h.0.api.raft().metrics().borrow().clone();
    let applied = m.last_applied.map_or(0, |l| l.index);
    let committed = (h.0.metrics.committed_index.get().max(0) as u64).max(applied);
    let reason = not_ready(m.current_leader, applied, committed);
    let status = if reason.is_none() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = json!({
        "ready": reason.is_none(),
        "node": h.0.id,
        "term": m.current_term,
        "leader": m.current_leader,
        "applied": applied,
        "committed": committed,
        "reason": reason,
    });
    (status, Json(body))
}

/// Why a node with this view is not ready, if it is not.
fn not_ready(leader: Option<u64>, applied: u64, committed: u64) -> Option<String> {
    let behind = committed.saturating_sub(applied);
    match leader {
        None => Some("no leader is known".to_string()),
        Some(_) if behind > READY_LAG => {
            Some(format!("{behind} committed entries not applied yet"))
        }
        Some(_) => None,
    }
}

async fn metrics(State(h): State<Http>) -> impl IntoResponse {
    let (counts, queues) = h.0.api.local_counts();
    let text = h.0.metrics.render(h.0.api.raft(), counts, &queues);
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_needs_a_leader_and_applied_within_the_lag_bound() {
        assert_eq!(not_ready(Some(1), 50, 50), None);
        assert_eq!(not_ready(Some(1), 50, 50 + READY_LAG), None, "exactly the bound is ready");
        let behind = not_ready(Some(1), 50, 51 + READY_LAG).expect("not ready");
        assert_eq!(behind, format!("{} committed entries not applied yet", READY_LAG + 1));
        assert_eq!(not_ready(None, 50, 50).as_deref(), Some("no leader is known"));
    }
}
