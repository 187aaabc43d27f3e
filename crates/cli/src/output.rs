//! Printing: task objects and status as text; their JSON shapes live in
//! [`taskraft_proto::json`] (the HTTP API answers the same shapes).

use taskraft_core::Task;
use taskraft_proto::client::ClusterStatus;
pub use taskraft_proto::json::{members_json, status_json, task_json};

/// One line per member.
pub fn member_lines(s: &ClusterStatus) -> String {
    let mut out = String::new();
    for m in &s.members {
        let applied = m.last_applied.map_or("-".to_string(), |i| i.to_string());
        let lag = m.lag.map_or("-".to_string(), |i| i.to_string());
        let kind = if m.voter { "voter" } else { "learner" };
        out += &format!(
            "  node {:<3} {:<12} {:<8} client {:<21} peer {:<21} log {:<8} lag {}\n",
            m.id, m.role, kind, m.client_addr, m.peer_addr, applied, lag
        );
    }
    out
}

/// `status` as text.
pub fn status_text(s: &ClusterStatus) -> String {
    let mut out = format!("cluster {}  term {}", s.cluster, s.term);
    if let Some(m) = s.members.iter().find(|m| Some(m.id) == s.leader) {
        out += &format!("  leader node {} ({})", m.id, m.client_addr);
    }
    out.push('\n');
    out += &member_lines(s);
    for w in &s.workers {
        let health = if w.healthy { "healthy" } else { "unhealthy" };
        out += &format!(
            "  push worker {:<8} {:<21} {:<9} in flight {}/{}  completed {}\n",
            w.id.0, w.addr, health, w.in_flight, w.capacity, w.completed
        );
    }
    let c = s.counts;
    out += &format!(
        "tasks: {} idle, {} in progress, {} completed, {} dead",
        c.idle, c.in_progress, c.completed, c.dead
    );
    if c.scheduled > 0 {
        out += &format!(", {} scheduled", c.scheduled);
    }
    if c.cancelled > 0 {
        out += &format!(", {} cancelled", c.cancelled);
    }
    // Queues, once there is more than the default one (or limits).
    let plain = |q: &taskraft_core::QueueStatus| {
        q.name == taskraft_core::DEFAULT_QUEUE && q.settings == Default::default()
    };
    if !s.queues.iter().all(plain) {
        out.push('\n');
        out += crate::cmd::queue_lines(&s.queues).trim_end();
    }
    out
}

/// One line per task.
pub fn task_line(t: &Task) -> String {
    let show = |b: &[u8]| String::from_utf8_lossy(b).replace('\n', "\\n");
    let result = t.result.as_deref().map(show).unwrap_or_default();
    let error = t.error.as_deref().map(|e| format!("  error: {e}")).unwrap_or_default();
    let worker = t.worker.as_ref().map_or("-", |w| w.0.as_str());
    // The queue only when it is not the default, so most lines stay short.
    let queue = match t.queue.as_str() {
        taskraft_core::DEFAULT_QUEUE => String::new(),
        q => format!("  queue {q}"),
    };
    format!(
        "{:>6}  {:<11}{queue} attempt {}  worker {:<8} {:?} -> {:?}{}",
        t.id.0,
        t.status.as_str(),
        t.attempt.0,
        worker,
        show(&t.data),
        result,
        error
    )
}
