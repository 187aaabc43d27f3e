//! The accept loops of the peer and client ports.
//!
//! Each accepted connection becomes a tarpc channel served on its own task;
//! each request on it runs on its own task too, so a slow request (a long
//! poll) never blocks the connection. The loops stop when `shutdown` fires;
//! connections already open are dropped then too, so a stopped node
//! answers nothing.

use futures::StreamExt;
use tarpc::server::{BaseChannel, Channel};
use taskraft_proto::auth::{Credentials, PeerFilter};
use taskraft_proto::client::{ClientService, ClientServiceRequest, ClientServiceResponse};
use taskraft_proto::peer::{PeerService, PeerServiceRequest, PeerServiceResponse};
use taskraft_proto::transport;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::api::Api;
use crate::peer::PeerServer;

/// Serves the peer service on `listener` to the nodes `members` accepts.
/// When a connection ends (not at shutdown), the server's leader watch
/// checks whether the leader is gone.
pub fn serve_peers(
    listener: TcpListener,
    server: PeerServer,
    token: Credentials,
    members: PeerFilter,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let incoming = transport::incoming::<
        tarpc::ClientMessage<PeerServiceRequest>,
        tarpc::Response<PeerServiceResponse>,
    >(listener, token, Some(members));
    transport::spawn_accept_loop(incoming, shutdown, move |t| {
        let served = BaseChannel::with_defaults(t)
            .max_concurrent_requests(transport::MAX_IN_FLIGHT_PER_CONNECTION)
            .execute(server.clone().serve())
            .for_each(|request| async {
                tokio::spawn(request);
            });
        let server = server.clone();
        async move {
            served.await;
            server.connection_closed();
        }
    })
}

/// Serves the client service on `listener`.
pub fn serve_clients(
    listener: TcpListener,
    api: Api,
    token: Credentials,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let incoming = transport::incoming::<
        tarpc::ClientMessage<ClientServiceRequest>,
        tarpc::Response<ClientServiceResponse>,
    >(listener, token, None);
    transport::spawn_accept_loop(incoming, shutdown, move |t| {
        BaseChannel::with_defaults(t)
            .max_concurrent_requests(transport::MAX_IN_FLIGHT_PER_CONNECTION)
            .execute(api.clone().serve())
            .for_each(|request| async {
                tokio::spawn(request);
            })
    })
}
