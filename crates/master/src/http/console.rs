//! The web console: one self-contained page at `/` (no CDN, no build step)
//! and its data at `/v1/console`, which every node answers from its own
//! view, so the page stays live while the leader changes. The leader adds
//! what only it knows: member lag and push workers; a page opened on a
//! follower therefore reads the leader's view when the leader answers, and
//! each master's own term from its `/readyz`.
//!
//! The page lists every node's console URL; when the node it reads from
//! stops answering it moves to the next one (CORS allows exactly the
//! cluster's own console origins).

use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use taskraft_proto::client::ClusterStatus;
use taskraft_proto::json::members_json;

use super::Http;
use crate::now_ms;

const PAGE: &str = include_str!("console.html");

/// How long the leader may take to confirm its view before the console
/// shows the local one.
const STATUS_TIMEOUT: Duration = Duration::from_millis(800);

pub fn routes() -> Router<Http> {
    Router::new().route("/", get(page)).route("/v1/console", get(data))
}

async fn page() -> impl IntoResponse {
    ([(header::CACHE_CONTROL, "no-cache")], Html(PAGE))
}

async fn data(State(h): State<Http>) -> Json<Value> {
    let report = h.0.api.report().await;
    let status: Option<ClusterStatus> = match report.role.as_str() {
        "leader" => tokio::time::timeout(STATUS_TIMEOUT, h.0.api.cluster_status())
            .await
            .ok()
            .and_then(Result::ok),
        _ => None,
    };
    let nodes: Vec<Value> =
        h.0.http_addrs
            .keys()
            .filter_map(|id| Some(json!({ "id": id, "url": h.url_of(*id)? })))
            .collect();
    let mut members = match &status {
        Some(s) => members_json(s),
        None => local_members(&h, report.leader),
    };
    for m in members.as_array_mut().into_iter().flatten() {
        let url = m["id"].as_u64().and_then(|id| h.url_of(id));
        m["url"] = json!(url);
    }
    let push = status.as_ref().map(|s| s.workers.clone()).unwrap_or_default();
    let mut workers: Vec<Value> = push
        .iter()
        .map(|w| {
            json!({ "id": w.id.0, "mode": "push", "holding": w.in_flight, "capacity": w.capacity,
                    "healthy": w.healthy, "completed": w.completed, "oldest_lease_ms": null })
        })
        .collect();
    for holder in h.0.api.holders() {
        match workers.iter_mut().find(|w| w["id"] == holder.worker.0.as_str()) {
            // A push worker: the dispatcher's view, plus the tasks it holds.
            Some(w) => {
                w["tasks"] = json!(holder.tasks);
                w["oldest_lease_ms"] = json!(holder.oldest_lease_ms);
            }
            None => workers.push(json!({ "id": holder.worker.0, "mode": "pull",
                "holding": holder.holding, "oldest_lease_ms": holder.oldest_lease_ms,
                "tasks": holder.tasks })),
        }
    }
    let counts = status.as_ref().map_or(report.counts, |s| s.counts);
    Json(json!({
        "node": report.id,
        "role": report.role,
        "term": report.term,
        "leader": report.leader,
        "leader_url": report.leader.and_then(|id| h.url_of(id)),
        "view": if status.is_some() { "leader" } else { "local" },
        "nodes": nodes,
        "members": members,
        "counts": counts,
        "last_applied": report.last_applied,
        "throughput": h.0.metrics.throughput.rates(),
        "workers": workers,
        "failures": h.0.metrics.recent.list(),
        "at_ms": now_ms(),
    }))
}

/// The membership as this node holds it; roles beyond its own and the
/// leader's are what the membership says (lag is the leader's to know).
fn local_members(h: &Http, leader: Option<u64>) -> Value {
    let m = h.0.api.raft().metrics().borrow().clone();
    let membership = m.membership_config.membership();
    let voters: Vec<u64> = membership.voter_ids().collect();
    membership
        .nodes()
        .map(|(id, node)| {
            let voter = voters.contains(id);
            let role = match () {
                _ if Some(*id) == leader => "leader",
                _ if voter => "follower",
                _ => "learner",
            };
            let applied = (*id == m.id).then(|| m.last_applied.map(|l| l.index)).flatten();
            json!({ "id": id, "client_addr": node.client_addr, "peer_addr": node.peer_addr,
                    "role": role, "voter": voter, "last_applied": applied, "lag": null })
        })
        .collect()
}
