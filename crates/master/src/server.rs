//! The accept loops of the peer and client ports.
//!
//! Each accepted connection becomes a tarpc channel served on its own task;
//! each request on it runs on its own task too, so a slow request (a long
//! poll) never blocks the connection. The loops stop when `shutdown` fires;
//! connections already open are dropped then too, so a stopped node
//! answers nothing.

use std::future::Future;

use futures::{Stream, StreamExt};
use tarpc::server::{BaseChannel, Channel};
use taskraft_proto::client::{ClientService, ClientServiceRequest, ClientServiceResponse};
use taskraft_proto::peer::{PeerService, PeerServiceRequest, PeerServiceResponse};
use taskraft_proto::transport;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::api::Api;
use crate::peer::PeerServer;

/// Serves the peer service on `listener`.
pub fn serve_peers(
    listener: TcpListener,
    server: PeerServer,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let incoming = transport::incoming::<
        tarpc::ClientMessage<PeerServiceRequest>,
        tarpc::Response<PeerServiceResponse>,
    >(listener);
    spawn_accept_loop(incoming, shutdown, move |t| {
        BaseChannel::with_defaults(t).execute(server.clone().serve()).for_each(|request| async {
            tokio::spawn(request);
        })
    })
}

/// Serves the client service on `listener`.
pub fn serve_clients(
    listener: TcpListener,
    api: Api,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let incoming = transport::incoming::<
        tarpc::ClientMessage<ClientServiceRequest>,
        tarpc::Response<ClientServiceResponse>,
    >(listener);
    spawn_accept_loop(incoming, shutdown, move |t| {
        BaseChannel::with_defaults(t).execute(api.clone().serve()).for_each(|request| async {
            tokio::spawn(request);
        })
    })
}

fn spawn_accept_loop<T, F, Fut>(
    incoming: impl Stream<Item = T> + Send + 'static,
    shutdown: CancellationToken,
    serve_connection: F,
) -> JoinHandle<()>
where
    T: Send + 'static,
    F: Fn(T) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        let mut incoming = std::pin::pin!(incoming);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                conn = incoming.next() => match conn {
                    Some(t) => {
                        let (conn, stop) = (serve_connection(t), shutdown.clone());
                        tokio::spawn(async move {
                            tokio::select! {
                                _ = stop.cancelled() => {}
                                _ = conn => {}
                            }
                        });
                    }
                    None => break,
                },
            }
        }
        debug!("accept loop stopped");
    })
}
