//! Push worker registration: the leader checks that the address answers
//! as the worker before it proposes the registration.

use super::*;

impl Api {
    pub(super) async fn register_push(
        &self,
        worker: WorkerId,
        addr: String,
        capacity: u32,
    ) -> Result<u64, WireError> {
        Self::check_worker(&worker)?;
        if !self.is_leader() {
            return Err(self.not_leader());
        }
        if addr.parse::<std::net::SocketAddr>().is_err() {
            return Err(WireError::Invalid(format!("{addr:?} is not an IP:port address")));
        }
        if capacity == 0 || capacity > MAX_TASKS_PER_REQUEST {
            return Err(WireError::Invalid(format!(
                "capacity {capacity}; use 1 to {MAX_TASKS_PER_REQUEST}"
            )));
        }
        match dispatch::ping(&addr, &self.0.token).await {
            Ok((who, _)) if who == worker => {}
            Ok((who, _)) => {
                return Err(WireError::Invalid(format!(
                    "{addr} answers as worker {who}, not {worker}"
                )))
            }
            Err(e) => {
                return Err(WireError::Invalid(format!(
                    "cannot reach push worker {worker} at {addr}: {e}"
                )))
            }
        }
        let cmd = Command::Register {
            worker: worker.clone(),
            addr,
            capacity,
            ttl_ms: REGISTRATION_TTL_MS,
            now_ms: now_ms(),
        };
        match self.propose(cmd).await? {
            Response::Outcome(Outcome::Accepted) => Ok(RENEW_INTERVAL_MS),
            Response::Outcome(_) => Err(WireError::Invalid(format!(
                "worker id {worker} is registered from another address that is still live; give this worker another --id"
            ))),
            other => Err(unexpected(other)),
        }
    }

    pub(super) async fn deregister_push(&self, worker: WorkerId) -> Result<(), WireError> {
        match self.propose(Command::Deregister { worker, now_ms: now_ms() }).await? {
            Response::Outcome(_) => Ok(()),
            other => Err(unexpected(other)),
        }
    }
}
