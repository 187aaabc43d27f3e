//! The push worker: a `DoTask` server, registered with the cluster.
//!
//! [`serve`] answers `DoTask` with the handler (at most `capacity` at once)
//! and keeps its registration alive: it registers on start and renews every
//! interval the leader asks for, following leader changes through the
//! client library. On `stop` it deregisters and closes its port.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use tarpc::context::Context;
use tarpc::server::{BaseChannel, Channel};
use taskraft_client::{Client, ClientError};
use taskraft_core::{Lease, WorkerId};
use taskraft_proto::auth::Credentials;
use taskraft_proto::push::{WorkerService, WorkerServiceRequest, WorkerServiceResponse};
use taskraft_proto::transport;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::handler::Handler;

/// A push worker's `DoTask` service.
#[derive(Clone)]
struct PushService {
    id: WorkerId,
    handler: Handler,
    permits: Arc<Semaphore>,
    /// The leases being processed, each with the token that stops it.
    running: Arc<Mutex<BTreeMap<Lease, CancellationToken>>>,
}

impl PushService {
    fn running(&self) -> std::sync::MutexGuard<'_, BTreeMap<Lease, CancellationToken>> {
        // Never held across an await; a poisoned map is still a valid map.
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl WorkerService for PushService {
    async fn do_task(self, _: Context, lease: Lease, data: Vec<u8>) -> Result<Vec<u8>, String> {
        let _permit = self.permits.acquire().await.map_err(|e| e.to_string())?;
        info!(worker = %self.id, %lease, "processing (push)");
        let stop = CancellationToken::new();
        self.running().insert(lease, stop.clone());
        let result = tokio::select! {
            r = (self.handler)(lease.task, data) => r,
            // Dropping the handler stops it (an --exec command gets SIGTERM).
            _ = stop.cancelled() => {
                info!(worker = %self.id, %lease, "task cancelled; handler stopped");
                Err("cancelled".to_string())
            }
        };
        self.running().remove(&lease);
        result
    }

    async fn ping(self, _: Context) -> WorkerId {
        self.id
    }

    async fn cancel(self, _: Context, lease: Lease) -> bool {
        match self.running().get(&lease) {
            Some(stop) => {
                stop.cancel();
                true
            }
            None => false,
        }
    }
}

/// Who a push worker is and how the cluster reaches it.
#[derive(Debug, Clone)]
pub struct PushIdentity {
    /// The worker's id.
    pub id: WorkerId,
    /// The address the leader calls.
    pub advertise: String,
    /// Tasks processed at once.
    pub capacity: u32,
    /// The cluster token the leader must prove.
    pub token: Credentials,
}

/// Serves `DoTask` on `listener` as `me` until `stop` fires. Fails if the
/// cluster refuses the registration.
pub async fn serve(
    listener: TcpListener,
    me: PushIdentity,
    handler: Handler,
    client: Arc<Client>,
    stop: CancellationToken,
) -> Result<(), ClientError> {
    let PushIdentity { id, advertise, capacity, token } = me;
    let service = PushService {
        id: id.clone(),
        handler,
        permits: Arc::new(Semaphore::new(capacity as usize)),
        running: Arc::default(),
    };
    let incoming = transport::incoming::<
        tarpc::ClientMessage<WorkerServiceRequest>,
        tarpc::Response<WorkerServiceResponse>,
    >(listener, token, None);
    let server = transport::spawn_accept_loop(incoming, stop.clone(), move |t| {
        BaseChannel::with_defaults(t)
            .max_concurrent_requests(transport::MAX_IN_FLIGHT_PER_CONNECTION)
            .execute(service.clone().serve())
            .for_each(|request| async {
                tokio::spawn(request);
            })
    });
    let mut renew_every = client.register(&id, &advertise, capacity).await?;
    info!(worker = %id, addr = %advertise, capacity, "push worker registered");
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(Duration::from_millis(renew_every)) => {}
        }
        match client.register(&id, &advertise, capacity).await {
            Ok(every) => renew_every = every,
            Err(e) => warn!(worker = %id, error = %e, "could not renew the registration"),
        }
    }
    if let Err(e) = client.deregister(&id).await {
        warn!(worker = %id, error = %e, "could not deregister");
    }
    let _ = server.await;
    Ok(())
}
