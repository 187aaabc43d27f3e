//! The HTTP port of a master (`[[node]] http_addr`): Prometheus metrics,
//! health checks, the JSON API under `/v1/` and the web console at `/`.
//!
//! The JSON API calls the same service layer as the tarpc client port
//! ([`Api`]): every check, limit and fencing answer is the one the CLI
//! gets. Only the leader answers `/v1/` calls other than `/v1/console`; a
//! follower answers `307 Temporary Redirect` to the same path on the
//! leader's `http_addr`, so a client follows it and re-sends its body.
//!
//! With a cluster token, every request but `/healthz`, the console page
//! itself (static code, no data) and CORS preflights must carry
//! `Authorization: Bearer TOKEN`. With TLS configured, the port speaks
//! HTTPS with the node's certificate.
//!
//! - [`ops`]: `/healthz`, `/readyz`, `/metrics`;
//! - [`v1`]: the JSON API;
//! - [`console`]: the console page and its data;
//! - [`reply`]: JSON errors and body parsing.

mod console;
mod ops;
mod reply;
mod stall;
mod v1;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use taskraft_proto::auth::Credentials;
use taskraft_proto::{ClusterConfig, NodeId};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::api::Api;
use crate::metrics::Metrics;
use reply::ApiError;

/// Open connections one HTTP port serves at once; more wait in the backlog.
const MAX_CONNECTIONS: usize = 1024;
/// A client must finish its TLS handshake and each request's headers this fast.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection whose client sends nothing for this long is closed (above
/// the longest long poll, during which the client sends nothing either).
const READ_STALL: Duration = Duration::from_secs(90);
/// A connection whose client reads nothing of its answers for this long is closed.
const WRITE_STALL: Duration = Duration::from_secs(30);

/// What the HTTP handlers share. Cheap to clone.
#[derive(Clone)]
pub struct Http(Arc<Inner>);

struct Inner {
    api: Api,
    metrics: Arc<Metrics>,
    id: NodeId,
    /// `http` or `https`.
    scheme: &'static str,
    /// Every configured node's HTTP address, for redirects and the console.
    http_addrs: BTreeMap<NodeId, String>,
    /// The console's origins (`scheme://http_addr`): the only ones CORS allows.
    origins: BTreeSet<String>,
    token: Credentials,
    /// Largest request body read.
    body_limit: usize,
}

impl Http {
    /// The HTTP side of node `id` of `config`.
    pub fn new(config: &ClusterConfig, id: NodeId, api: Api, metrics: Arc<Metrics>) -> Http {
        let token = api.credentials();
        let scheme = if token.tls().is_some() { "https" } else { "http" };
        let http_addrs: BTreeMap<NodeId, String> =
            config.node.iter().filter_map(|n| Some((n.id, n.http_addr.clone()?))).collect();
        let origins = http_addrs.values().map(|a| format!("{scheme}://{a}")).collect();
        // Room for the largest batch a submit may carry, base64 included.
        let body_limit = (config.cluster.max_payload_bytes as usize).saturating_mul(2) + (16 << 20);
        Http(Arc::new(Inner { api, metrics, id, scheme, http_addrs, origins, token, body_limit }))
    }

    /// `scheme://http_addr` of node `id`, if it has one.
    fn url_of(&self, id: NodeId) -> Option<String> {
        self.0.http_addrs.get(&id).map(|a| format!("{}://{a}", self.0.scheme))
    }
}

/// The routes, behind the token check and CORS.
fn router(http: Http) -> Router {
    Router::new()
        .merge(ops::routes())
        .merge(v1::routes())
        .merge(console::routes())
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such path") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "not with this method",
            )
        })
        .layer(middleware::from_fn_with_state(http.clone(), guard))
        .with_state(http)
}

/// Paths anyone may read: the liveness probe and the console's static page.
fn is_open(method: &Method, path: &str) -> bool {
    method == Method::GET && matches!(path, "/healthz" | "/")
}

/// The token check, the browser checks, and CORS for the console's own origins.
async fn guard(State(h): State<Http>, req: Request, next: Next) -> Response {
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .filter(|o| h.0.origins.contains(*o))
        .map(str::to_owned);
    if let Err(refused) = browser_checks(&h, &req, origin.is_some()) {
        return refused.into_response();
    }
    if req.method() == Method::OPTIONS {
        let mut r = StatusCode::NO_CONTENT.into_response();
        if let Some(o) = &origin {
            allow(&mut r, o);
            let hs = r.headers_mut();
            hs.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST"));
            hs.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static("authorization, content-type"),
            );
            hs.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
        }
        return r;
    }
    let authorized = !h.0.token.has_token()
        || is_open(req.method(), req.uri().path())
        || bearer(&req).is_some_and(|t| h.0.token.matches(t.as_bytes()));
    let mut r = if authorized {
        next.run(req).await
    } else {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "wrong or missing token: send Authorization: Bearer <the cluster token>",
        )
        .into_response()
    };
    if let Some(o) = &origin {
        allow(&mut r, o);
    }
    r
}

/// What keeps other web pages out, token or not: a request from a page of
/// another origin is refused (the cluster's own consoles excepted); writes
/// must be JSON (which a page cannot send to another origin without CORS);
/// and without a token, the Host must be one the cluster serves under
/// (DNS rebinding).
fn browser_checks(h: &Http, req: &Request, own_origin: bool) -> Result<(), ApiError> {
    let header_str = |name| req.headers().get(name).and_then(|v| v.to_str().ok());
    if header_str(header::ORIGIN).is_some_and(|o| !own_origin && o != "null") {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden_origin",
            "requests from other web pages are refused",
        ));
    }
    if req.method() == Method::POST
        && !header_str(header::CONTENT_TYPE).is_some_and(|t| t.starts_with("application/json"))
    {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as Content-Type: application/json",
        ));
    }
    if !h.0.token.has_token() {
        let host = header_str(header::HOST).unwrap_or_default();
        let port = host.rsplit_once(':').map(|(_, p)| p);
        let served = h.0.http_addrs.values().any(|a| {
            let (ip, a_port) = a.rsplit_once(':').unwrap_or((a, ""));
            let any_ip = matches!(ip, "0.0.0.0" | "[::]");
            a == host || (port == Some(a_port) && (any_ip || host.starts_with("localhost:")))
        });
        if !served {
            return Err(ApiError::new(
                StatusCode::MISDIRECTED_REQUEST,
                "unknown_host",
                format!("Host {host:?} is not an http_addr of this cluster; set a token to serve other names"),
            ));
        }
    }
    Ok(())
}

fn bearer(req: &Request) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn allow(r: &mut Response, origin: &str) {
    if let Ok(v) = HeaderValue::from_str(origin) {
        r.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        r.headers_mut().insert(header::VARY, HeaderValue::from_static("Origin"));
    }
}

/// Serves HTTP (or HTTPS, with TLS configured) on `listener` until
/// `shutdown`; then open connections are dropped too, long polls included.
pub fn serve(listener: TcpListener, http: Http, shutdown: CancellationToken) -> JoinHandle<()> {
    let acceptor = http.0.token.tls().and_then(|t| t.acceptor()).cloned();
    let router = router(http);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                _ = shutdown.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        warn!(error = %e, "http accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            // Full: close at once rather than leave clients hanging in the backlog.
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                debug!("http connection refused: {MAX_CONNECTIONS} open");
                drop(stream);
                continue;
            };
            let _ = stream.set_nodelay(true);
            let stream = stall::Stall::new(stream, READ_STALL, WRITE_STALL);
            let (router, acceptor, shutdown) = (router.clone(), acceptor.clone(), shutdown.clone());
            tokio::spawn(async move {
                let connection = async move {
                    match acceptor {
                        None => connection(stream, router).await,
                        Some(tls) => {
                            match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(stream)).await
                            {
                                Ok(Ok(stream)) => connection(stream, router).await,
                                Ok(Err(e)) => debug!(error = %e, "http tls handshake failed"),
                                Err(_) => debug!("http tls handshake timed out"),
                            }
                        }
                    }
                };
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = connection => {}
                }
                drop(slot);
            });
        }
    })
}

async fn connection<S>(io: S, router: Router)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HANDSHAKE_TIMEOUT)
        .serve_connection(TokioIo::new(io), TowerToHyperService::new(router))
        .await;
    if let Err(e) = served {
        debug!(error = %e, "http connection ended with an error");
    }
}
