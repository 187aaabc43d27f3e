//! JSON answers: errors as `{"error": CODE, "message": TEXT}` with a 4xx or
//! 5xx status, and request bodies parsed strictly (size limit, JSON, no
//! unknown fields) before anything reaches the service layer.

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use taskraft_proto::WireError;

use super::Http;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// For redirects: where to go.
    location: Option<String>,
    /// Extra fields (the leader, for `not_leader`).
    extra: Value,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), location: None, extra: Value::Null }
    }

    /// 400: the request is malformed; nothing changed.
    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.code, "message": self.message });
        if let (Some(obj), Value::Object(extra)) = (body.as_object_mut(), self.extra) {
            obj.extend(extra);
        }
        let mut r = (self.status, Json(body)).into_response();
        if let Some(to) = self.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
            r.headers_mut().insert(header::LOCATION, to);
        }
        r
    }
}

impl Http {
    /// The answer for a service error. `NotLeader` becomes a redirect to
    /// the same path on the leader's HTTP address when it is known.
    pub(super) fn error(&self, e: WireError, uri: &Uri) -> ApiError {
        let message = e.to_string();
        match e {
            WireError::NotLeader { leader: Some(hint) } => match self.url_of(hint.id) {
                Some(base) => {
                    let path = uri.path_and_query().map_or("/", |p| p.as_str());
                    let mut err =
                        ApiError::new(StatusCode::TEMPORARY_REDIRECT, "not_leader", message);
                    err.location = Some(format!("{base}{path}"));
                    err.extra = json!({ "leader": { "id": hint.id, "url": base } });
                    err
                }
                None => {
                    let mut err = ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "not_leader",
                        format!(
                            "{message}; node {} has no http_addr in this node's config",
                            hint.id
                        ),
                    );
                    err.extra = json!({ "leader": { "id": hint.id, "url": null } });
                    err
                }
            },
            WireError::NotLeader { leader: None } => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "no_leader", message)
            }
            WireError::Unavailable(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
            }
            WireError::Invalid(_) => ApiError::new(StatusCode::BAD_REQUEST, "invalid", message),
            WireError::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, "not_found", message),
            WireError::Unauthorized(_) => {
                ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
            }
        }
    }

    /// Reads a JSON body of at most the port's limit into `T`.
    pub(super) async fn body<T: DeserializeOwned>(&self, body: Body) -> Result<T, ApiError> {
        let limit = self.0.body_limit;
        let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("the request body is over {limit} bytes"),
            )
        })?;
        serde_json::from_slice(&bytes).map_err(|e| ApiError::invalid(format!("bad JSON body: {e}")))
    }
}
