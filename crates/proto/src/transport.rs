//! The one place that builds tarpc transports: TCP with `TCP_NODELAY`,
//! length-delimited bincode frames, and a frame limit large enough for
//! snapshot chunks and batched submits.

use std::future::Future;
use std::io;
use std::time::Duration;

use futures::{Stream, StreamExt};
use serde::{de::DeserializeOwned, Serialize};
use tarpc::serde_transport::Transport;
use tarpc::tokio_serde::formats::Bincode;
use tarpc::tokio_util::codec::LengthDelimitedCodec;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::auth::{self, Credentials};
use crate::tls::{self, Tls};

/// Largest frame accepted on any port. A malformed or hostile length prefix
/// above it closes the connection instead of allocating.
pub const MAX_FRAME_BYTES: usize = 64 * 1024 * 1024;

/// Most connections one port serves at once; further ones are closed at once.
pub const MAX_CONNECTIONS: usize = 1024;
/// Most requests in flight on one connection; further ones are answered
/// with an error until some finish.
pub const MAX_IN_FLIGHT_PER_CONNECTION: usize = 1024;

/// A byte stream: plain TCP, or TLS over TCP.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// A tarpc transport over TCP (or TLS) with bincode frames.
pub type TcpTransport<In, Out> = Transport<Box<dyn Io>, In, Out, Bincode<In, Out>>;

fn framed<In, Out>(stream: Box<dyn Io>) -> TcpTransport<In, Out>
where
    In: DeserializeOwned,
    Out: Serialize,
{
    let framed =
        LengthDelimitedCodec::builder().max_frame_length(MAX_FRAME_BYTES).new_framed(stream);
    tarpc::serde_transport::new(framed, Bincode::default())
}

/// How long an accepted connection has to complete the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);

/// Yields one transport per connection accepted on `listener` that proves
/// `token` (and, with `members`, comes from a member node; see
/// [`crate::auth`]); refused connections are logged at WARN and
/// closed. An accept error (e.g. out of file descriptors) is retried after a
/// short pause. The listener closes when the stream is dropped.
pub fn incoming<In, Out>(
    listener: TcpListener,
    token: Credentials,
    members: Option<auth::PeerFilter>,
) -> impl Stream<Item = TcpTransport<In, Out>>
where
    In: DeserializeOwned + Send + 'static,
    Out: Serialize + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel::<TcpTransport<In, Out>>(64);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = tx.closed() => return,
                accepted = listener.accept() => accepted,
            };
            let Ok((tcp, peer)) = accepted else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            // Small request/response frames: Nagle's algorithm would hold them back.
            let _ = tcp.set_nodelay(true);
            let (tx, token, members) = (tx.clone(), token.clone(), members.clone());
            tokio::spawn(async move {
                let check = async {
                    let mut stream: Box<dyn Io> = match token.tls().and_then(Tls::acceptor) {
                        Some(acceptor) => {
                            Box::new(acceptor.accept(tcp).await.map_err(|e| format!("tls: {e}"))?)
                        }
                        None => Box::new(tcp),
                    };
                    auth::check(&mut stream, &token, members.as_ref()).await.map(|()| stream)
                };
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, check).await {
                    Ok(Ok(stream)) => _ = tx.send(framed(stream)).await,
                    Ok(Err(reason)) => tracing::warn!(%peer, %reason, "connection refused"),
                    Err(_) => tracing::warn!(%peer, "connection refused: no handshake in time"),
                }
            });
        }
    });
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|t| (t, rx)) })
}

/// Connects to `addr` and proves `token`, giving up after `timeout`. A
/// refused token is an error of kind `PermissionDenied` with the node's reason.
pub async fn connect<In, Out>(
    addr: &str,
    timeout: Duration,
    token: &Credentials,
) -> io::Result<TcpTransport<In, Out>>
where
    In: DeserializeOwned,
    Out: Serialize,
{
    connect_as(addr, timeout, token, 0).await
}

/// Like [`connect`], as master `node` connecting to a peer port.
pub async fn connect_as<In, Out>(
    addr: &str,
    timeout: Duration,
    token: &Credentials,
    node: u64,
) -> io::Result<TcpTransport<In, Out>>
where
    In: DeserializeOwned,
    Out: Serialize,
{
    let setup = async {
        let tcp = TcpStream::connect(addr).await?;
        let _ = tcp.set_nodelay(true);
        let mut stream: Box<dyn Io> = match token.tls() {
            Some(tls) => {
                let name = tls::server_name(addr).map_err(io::Error::other)?;
                let stream = tls.connector().connect(name, tcp).await.map_err(|e| {
                    io::Error::new(io::ErrorKind::PermissionDenied, format!("tls with {addr}: {e}"))
                })?;
                Box::new(stream)
            }
            None => Box::new(tcp),
        };
        auth::offer(&mut stream, token, node).await?;
        Ok(framed(stream))
    };
    match tokio::time::timeout(timeout, setup).await {
        Ok(result) => result,
        Err(_) => {
            Err(io::Error::new(io::ErrorKind::TimedOut, format!("connect to {addr} timed out")))
        }
    }
}

/// Runs `serve_connection` on its own task for every connection `incoming`
/// yields, until `shutdown` fires; then open connections are dropped too.
pub fn spawn_accept_loop<T, F, Fut>(
    incoming: impl Stream<Item = T> + Send + 'static,
    shutdown: CancellationToken,
    serve_connection: F,
) -> JoinHandle<()>
where
    T: Send + 'static,
    F: Fn(T) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    tokio::spawn(async move {
        let mut incoming = std::pin::pin!(incoming);
        loop {
            let conn = tokio::select! {
                _ = shutdown.cancelled() => break,
                conn = incoming.next() => conn,
            };
            let Some(t) = conn else { break };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                tracing::warn!(limit = MAX_CONNECTIONS, "connection refused: too many connections");
                continue; // dropped: closed at once
            };
            let (conn, stop) = (serve_connection(t), shutdown.clone());
            tokio::spawn(async move {
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = conn => {}
                }
                drop(slot);
            });
        }
    })
}

/// A free `127.0.0.1:PORT` for a process that will bind it later (the
/// bench's and the tests' spawned masters). The port is picked below the
/// kernel's ephemeral range (32768 and up on Linux), so that no outgoing
/// connection takes it between this check and the bind. A port is handed out
/// at most once per process.
pub fn free_loopback_addr() -> io::Result<String> {
    use rand::Rng;
    static HANDED_OUT: parking_lot::Mutex<std::collections::BTreeSet<u16>> =
        parking_lot::const_mutex(std::collections::BTreeSet::new());
    for _ in 0..1000 {
        let port: u16 = rand::thread_rng().gen_range(20_000..32_000);
        if !HANDED_OUT.lock().insert(port) {
            continue;
        }
        if let Ok(listener) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            return Ok(listener.local_addr()?.to_string());
        }
    }
    Err(io::Error::new(io::ErrorKind::AddrInUse, "no free port found in 20000..32000"))
}
