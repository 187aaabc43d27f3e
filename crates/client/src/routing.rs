//! Where a client's next call goes: the last leader, else the live
//! members it learned, else its seeds; and the connections it keeps.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tarpc::context;
use taskraft_proto::client::{ClientServiceClient, ClusterStatus};
use taskraft_proto::transport;
use tracing::debug;

use crate::Client;

/// How often a client re-reads the live membership while its leader stays.
pub const MEMBERS_REFRESH: Duration = Duration::from_secs(30);

pub(crate) struct State {
    pub(crate) leader: Option<String>,
    pub(crate) next_seed: usize,
    pub(crate) conns: HashMap<String, ClientServiceClient>,
    /// The client addresses of the live membership, as last read.
    pub(crate) members: Vec<String>,
    /// When the membership was last read.
    pub(crate) refreshed: Option<Instant>,
}

impl State {
    /// Where to look for the leader: the live members, then the seeds.
    pub(crate) fn candidates(&self, seeds: &[String]) -> Vec<String> {
        let mut all = self.members.clone();
        all.extend(seeds.iter().filter(|s| !self.members.contains(s)).cloned());
        all
    }
}

impl Client {
    /// The client addresses of the live membership, as last read (empty before the first read).
    pub fn members(&self) -> Vec<String> {
        self.state.lock().members.clone()
    }

    pub(crate) fn target(&self) -> Option<String> {
        let mut s = self.state.lock();
        if let Some(l) = &s.leader {
            return Some(l.clone());
        }
        let candidates = s.candidates(&self.seeds);
        let seed = candidates.get(s.next_seed % candidates.len().max(1))?.clone();
        s.next_seed += 1;
        Some(seed)
    }

    /// Records that `addr` answered as the leader; says whether the
    /// membership should be read again (a new leader, or a stale list).
    pub(crate) fn answered(&self, addr: String) -> bool {
        let mut s = self.state.lock();
        let stale = s.refreshed.is_none_or(|at| at.elapsed() >= MEMBERS_REFRESH);
        let new_leader = s.leader.as_deref() != Some(&addr);
        s.leader = Some(addr);
        if stale || new_leader {
            s.refreshed = Some(Instant::now());
        }
        stale || new_leader
    }

    /// Takes the live membership of `status` as the list to try first.
    pub(crate) fn learn(&self, status: &ClusterStatus) {
        let members: Vec<String> = status.members.iter().map(|m| m.client_addr.clone()).collect();
        if members.is_empty() {
            return;
        }
        let mut s = self.state.lock();
        if s.members != members {
            debug!(?members, "learned the live membership");
            s.members = members;
        }
        s.refreshed = Some(Instant::now());
    }

    /// Reads the live membership from the leader at `conn` (one attempt).
    pub(crate) async fn refresh_members(&self, conn: &ClientServiceClient) {
        let mut ctx = context::current();
        ctx.deadline = Instant::now() + self.options.call_timeout;
        if let Ok(Ok(status)) = conn.status(ctx).await {
            self.learn(&status);
        }
    }

    pub(crate) async fn connection(&self, addr: &str) -> std::io::Result<ClientServiceClient> {
        if let Some(c) = self.state.lock().conns.get(addr) {
            return Ok(c.clone());
        }
        let dial = self.options.routes.get(addr).map_or(addr, String::as_str);
        let t = transport::connect(dial, self.options.call_timeout, &self.options.token).await?;
        let c = ClientServiceClient::new(tarpc::client::Config::default(), t).spawn();
        self.state.lock().conns.insert(addr.to_owned(), c.clone());
        Ok(c)
    }

    pub(crate) fn forget(&self, addr: &str, drop_conn: bool) {
        let mut s = self.state.lock();
        if s.leader.as_deref() == Some(addr) {
            s.leader = None;
        }
        if drop_conn {
            s.conns.remove(addr);
        }
    }
}
