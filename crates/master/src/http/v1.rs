//! The JSON API under `/v1/`: the CLI's calls and the worker protocol, in
//! the CLI's `--json` shapes.
//!
//! | call | answer |
//! |---|---|
//! | `GET /v1/status` | `status --json` |
//! | `POST /v1/tasks` `{"tasks": [{"data": ..}]}` | `{"ids": [..], "created": [..]}` |
//! | `GET /v1/tasks?status=&after=&limit=` | `{"tasks": [..], "next_after": ..}` |
//! | `GET /v1/tasks/{id}` | one task |
//! | `POST /v1/cancel` `{"ids": [..]}` | `cancel --json` |
//! | `POST /v1/retry` `{"ids": [..], "max_attempts"}` | `retry --json` |
//! | `POST /v1/lease` `{"worker", "max", "wait_ms"}` | `{"state": "leased", "tasks": [..]}`, `no_task` or `drained` |
//! | `POST /v1/complete` `{"worker", "task", "attempt", "result"}` | `{"outcome": ..}` |
//! | `POST /v1/fail` `{"worker", "task", "attempt", "error"}` | `{"outcome": ..}` |
//! | `POST /v1/extend` `{"worker", "task", "attempt"}` | `{"outcome": ..}` |
//!
//! Bytes travel as UTF-8 strings (`data`, `result`) or, when they are not
//! text, base64 (`data_b64`, `result_b64`). An outcome is `accepted`,
//! `stale`, `duplicate` or `not_found`: applied answers, always 200.

use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::Uri;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use taskraft_core::{Attempt, Lease, NewTask, Outcome, Status, TaskId, WorkerId};
use taskraft_proto::client::Assignment;
use taskraft_proto::json as shapes;

use super::reply::ApiError;
use super::Http;

pub fn routes() -> Router<Http> {
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/tasks", post(submit).get(list))
        .route("/v1/tasks/{id}", get(one))
        .route("/v1/cancel", post(cancel))
        .route("/v1/retry", post(retry))
        .route("/v1/lease", post(lease))
        .route("/v1/complete", post(complete))
        .route("/v1/fail", post(fail))
        .route("/v1/extend", post(extend))
}

type Answer = Result<Json<Value>, ApiError>;

async fn status(State(h): State<Http>, uri: Uri) -> Answer {
    let s = h.0.api.cluster_status().await.map_err(|e| h.error(e, &uri))?;
    Ok(Json(shapes::status_json(&s)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubmitBody {
    tasks: Vec<NewTaskBody>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewTaskBody {
    #[serde(default)]
    data: Option<String>,
    #[serde(default)]
    data_b64: Option<String>,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    priority: i32,
    /// 0 or absent: the cluster's `max_attempts`.
    #[serde(default)]
    max_attempts: u32,
    /// Not leased before this long after the submit (ms).
    #[serde(default)]
    delay_ms: u64,
    /// Not leased before this time (ms since the Unix epoch, leader's clock).
    #[serde(default)]
    run_at_ms: Option<u64>,
    /// Backoff after a failed attempt (absent: the cluster's `retry_base_ms`).
    #[serde(default)]
    retry_base_ms: Option<u64>,
    /// Longest backoff (absent: the cluster's `retry_max_ms`).
    #[serde(default)]
    retry_max_ms: Option<u64>,
    /// The queue (absent: `default`).
    #[serde(default)]
    queue: Option<String>,
}

async fn submit(State(h): State<Http>, uri: Uri, body: Body) -> Answer {
    let body: SubmitBody = h.body(body).await?;
    let mut tasks = Vec::with_capacity(body.tasks.len());
    for (i, t) in body.tasks.into_iter().enumerate() {
        let data = shapes::bytes_from("data", t.data, t.data_b64)
            .map_err(|e| ApiError::invalid(format!("tasks[{i}]: {e}")))?;
        tasks.push(NewTask {
            data,
            key: t.key,
            priority: t.priority,
            max_attempts: t.max_attempts,
            delay_ms: t.delay_ms,
            run_at_ms: t.run_at_ms,
            retry_base_ms: t.retry_base_ms,
            retry_max_ms: t.retry_max_ms,
            queue: t.queue,
        });
    }
    let submitted = h.0.api.submit_tasks(tasks).await.map_err(|e| h.error(e, &uri))?;
    let ids: Vec<u64> = submitted.iter().map(|s| s.id.0).collect();
    let created: Vec<bool> = submitted.iter().map(|s| s.created).collect();
    Ok(Json(json!({ "ids": ids, "created": created })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    status: Option<String>,
    after: Option<u64>,
    limit: Option<u32>,
}

async fn list(
    State(h): State<Http>,
    uri: Uri,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Answer {
    let Query(q) = query.map_err(|e| ApiError::invalid(e.body_text()))?;
    let status =
        match q.status.as_deref() {
            None | Some("") => None,
            Some(s) => Some(Status::parse(s).ok_or_else(|| {
                ApiError::invalid(format!("status {s:?}: use {}", Status::CHOICES))
            })?),
        };
    let page =
        h.0.api
            .task_page(status, q.after.map(TaskId), q.limit.unwrap_or(100))
            .await
            .map_err(|e| h.error(e, &uri))?;
    let tasks: Vec<Value> = page.tasks.iter().map(shapes::task_json).collect();
    Ok(Json(json!({ "tasks": tasks, "next_after": page.next_after.map(|t| t.0) })))
}

async fn one(State(h): State<Http>, uri: Uri, id: Result<Path<u64>, PathRejection>) -> Answer {
    let Path(id) = id.map_err(|e| ApiError::invalid(e.body_text()))?;
    let task = h.0.api.one_task(TaskId(id)).await.map_err(|e| h.error(e, &uri))?;
    Ok(Json(shapes::task_json(&task)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CancelBody {
    #[serde(default)]
    ids: Vec<u64>,
    /// Instead of ids: the task with this idempotency key ...
    #[serde(default)]
    key: Option<String>,
    /// ... or up to 10,000 unfinished tasks of this queue.
    #[serde(default)]
    queue: Option<String>,
}

async fn cancel(State(h): State<Http>, uri: Uri, body: Body) -> Answer {
    let body: CancelBody = h.body(body).await?;
    if body.key.is_some() || body.queue.is_some() {
        if !body.ids.is_empty() {
            return Err(ApiError::invalid("give ids, a key or a queue, not several"));
        }
        let found =
            h.0.api.cancel_where_now(body.key, body.queue).await.map_err(|e| h.error(e, &uri))?;
        let (ids, outcomes): (Vec<u64>, Vec<_>) =
            found.into_iter().map(|(id, o)| (id.0, o)).unzip();
        return Ok(Json(shapes::cancel_json(&ids, &outcomes)));
    }
    let ids: Vec<TaskId> = body.ids.iter().map(|i| TaskId(*i)).collect();
    let outcomes = h.0.api.cancel_tasks(ids).await.map_err(|e| h.error(e, &uri))?;
    Ok(Json(shapes::cancel_json(&body.ids, &outcomes)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RetryBody {
    ids: Vec<u64>,
    /// 0 or absent: the cluster's `max_attempts`.
    #[serde(default)]
    max_attempts: u32,
}

async fn retry(State(h): State<Http>, uri: Uri, body: Body) -> Answer {
    let body: RetryBody = h.body(body).await?;
    let ids: Vec<TaskId> = body.ids.iter().map(|i| TaskId(*i)).collect();
    let outcomes =
        h.0.api.retry_tasks(ids, body.max_attempts).await.map_err(|e| h.error(e, &uri))?;
    Ok(Json(shapes::retry_json(&body.ids, &outcomes)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LeaseBody {
    worker: String,
    #[serde(default = "one_task")]
    max: u32,
    #[serde(default)]
    wait_ms: u64,
    /// Queues to take from, in order of preference (absent or `*`: any).
    #[serde(default)]
    queues: Vec<String>,
}

fn one_task() -> u32 {
    1
}

async fn lease(State(h): State<Http>, uri: Uri, body: Body) -> Answer {
    let body: LeaseBody = h.body(body).await?;
    let assignment =
        h.0.api
            .request_tasks(WorkerId(body.worker), body.max, body.wait_ms, body.queues)
            .await
            .map_err(|e| h.error(e, &uri))?;
    Ok(Json(match assignment {
        Assignment::Leased { tasks, lease_timeout_ms } => {
            let tasks: Vec<Value> = tasks
                .iter()
                .map(|t| {
                    let mut v = json!({ "task": t.lease.task.0, "attempt": t.lease.attempt.0 });
                    shapes::put_bytes(&mut v, "data", Some(&t.data));
                    v
                })
                .collect();
            json!({ "state": "leased", "tasks": tasks, "lease_timeout_ms": lease_timeout_ms })
        }
        Assignment::NoTask => json!({ "state": "no_task" }),
        Assignment::Drained => json!({ "state": "drained" }),
    }))
}

/// The lease a report names.
fn lease_of(task: u64, attempt: u32) -> Lease {
    Lease { task: TaskId(task), attempt: Attempt(attempt) }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CompleteBody {
    worker: String,
    task: u64,
    attempt: u32,
    #[serde(default)]
    result: Option<String>,
    #[serde(default)]
    result_b64: Option<String>,
}

async fn complete(State(h): State<Http>, uri: Uri, body: Body) -> Answer {
    let b: CompleteBody = h.body(body).await?;
    let result = shapes::bytes_from("result", b.result, b.result_b64).map_err(ApiError::invalid)?;
    let (lease, worker) = (lease_of(b.task, b.attempt), WorkerId(b.worker));
    let outcome =
        h.0.api.complete_one(lease, worker, result).await.map_err(|e| h.error(e, &uri))?;
    Ok(Json(outcome_json(outcome)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FailBody {
    worker: String,
    task: u64,
    attempt: u32,
    error: String,
}

async fn fail(State(h): State<Http>, uri: Uri, body: Body) -> Answer {
    let b: FailBody = h.body(body).await?;
    let (lease, worker) = (lease_of(b.task, b.attempt), WorkerId(b.worker));
    let outcome = h.0.api.fail_one(lease, worker, b.error).await.map_err(|e| h.error(e, &uri))?;
    Ok(Json(outcome_json(outcome)))
}

async fn extend(State(h): State<Http>, uri: Uri, body: Body) -> Answer {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct ExtendBody {
        worker: String,
        task: u64,
        attempt: u32,
    }
    let b: ExtendBody = h.body(body).await?;
    let (lease, worker) = (lease_of(b.task, b.attempt), WorkerId(b.worker));
    let outcome = h.0.api.extend_one(lease, worker).await.map_err(|e| h.error(e, &uri))?;
    Ok(Json(outcome_json(outcome)))
}

fn outcome_json(o: Outcome) -> Value {
    json!({ "outcome": shapes::outcome_str(o) })
}
