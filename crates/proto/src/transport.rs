//! The one place that builds tarpc transports: TCP, bincode, and a frame
//! limit large enough for snapshot chunks and batched submits.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use futures::{Stream, StreamExt};
use serde::{de::DeserializeOwned, Serialize};
use tarpc::serde_transport::Transport;
use tarpc::tokio_serde::formats::Bincode;
use tokio::net::TcpStream;

/// Largest frame accepted on any port. A malformed or hostile length prefix
/// above it closes the connection instead of allocating.
pub const MAX_FRAME_BYTES: usize = 64 * 1024 * 1024;

/// A tarpc transport over TCP with bincode frames.
pub type TcpTransport<In, Out> = Transport<TcpStream, In, Out, Bincode<In, Out>>;

/// Binds `addr` and yields one transport per accepted connection. Returns the
/// bound address too (useful with port 0).
pub async fn listen<In, Out>(
    addr: SocketAddr,
) -> io::Result<(SocketAddr, impl Stream<Item = TcpTransport<In, Out>>)>
where
    In: DeserializeOwned,
    Out: Serialize,
{
    let mut incoming = tarpc::serde_transport::tcp::listen(addr, Bincode::default).await?;
    incoming.config_mut().max_frame_length(MAX_FRAME_BYTES);
    let local = incoming.local_addr();
    Ok((local, incoming.filter_map(|conn| async move { conn.ok() })))
}

/// Connects to `addr`, giving up after `timeout`.
pub async fn connect<In, Out>(addr: &str, timeout: Duration) -> io::Result<TcpTransport<In, Out>>
where
    In: DeserializeOwned,
    Out: Serialize,
{
    let mut connect = tarpc::serde_transport::tcp::connect(addr, Bincode::default);
    connect.config_mut().max_frame_length(MAX_FRAME_BYTES);
    match tokio::time::timeout(timeout, connect).await {
        Ok(result) => result,
        Err(_) => {
            Err(io::Error::new(io::ErrorKind::TimedOut, format!("connect to {addr} timed out")))
        }
    }
}
