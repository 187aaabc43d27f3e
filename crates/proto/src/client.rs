//! The client service on `client_addr`: what workers and the CLI call.
//!
//! Only the leader answers; other nodes answer [`WireError::NotLeader`]. Every
//! call that changes the table goes through Raft and is answered only after
//! it is committed and applied.

use serde::{Deserialize, Serialize};
use taskraft_core::{
    Counts, Lease, NewTask, Outcome, QueueChange, QueueStatus, Status, Submitted, Task, TaskId,
    WorkerId,
};

use crate::error::WireError;
use crate::raft::{NodeId, NodeInfo};

/// Longest long-poll a `request` may ask for.
pub const MAX_WAIT_MS: u64 = 60_000;
/// Longest delay a task may be scheduled by (a submit's delay or time, a retry backoff): 366 days.
pub const MAX_DELAY_MS: u64 = 366 * 24 * 60 * 60 * 1000;
/// Most tasks one `request` may lease.
pub const MAX_TASKS_PER_REQUEST: u32 = 256;
/// Most tasks one `submit` may carry.
pub const MAX_TASKS_PER_SUBMIT: usize = 10_000;
/// Longest worker id accepted.
pub const MAX_WORKER_ID_BYTES: usize = 128;
/// Most tasks one `tasks` page holds.
pub const MAX_PAGE_TASKS: u32 = 1000;
/// A `tasks` page stops adding tasks once their payloads and results reach this size.
pub const MAX_PAGE_BYTES: usize = 8 << 20;
/// Most rows one `tasks` call examines (with a status filter that matches few).
pub const MAX_PAGE_SCAN: usize = 100_000;

/// A learner is promoted to voter only when it lags the leader by at most this many entries.
pub const MAX_PROMOTE_LAG: u64 = 500;

/// Largest chunk one `backup_read` returns.
pub const MAX_BACKUP_CHUNK: u32 = 4 << 20;

/// A backup staged on the leader, ready to be read in chunks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupInfo {
    /// The session to read it with.
    pub id: u64,
    /// Its size.
    pub bytes: u64,
    /// CRC-32 of the whole file but its last four bytes (which hold it).
    pub crc32: u32,
    /// The log index the table reflects.
    pub last_applied: Option<u64>,
    /// Tasks by status.
    pub counts: Counts,
    /// The table's digest.
    pub digest: u64,
}

/// The answer to `tasks`: one page of a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskPage {
    /// Matching tasks, in id order.
    pub tasks: Vec<Task>,
    /// Pass as `after` for the next page; `None` once the listing reached the end.
    pub next_after: Option<TaskId>,
}

/// The answer to `request`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Assignment {
    /// Tasks leased to the caller; each must be completed, failed or extended
    /// within `lease_timeout_ms` of the answer.
    Leased { tasks: Vec<LeasedTask>, lease_timeout_ms: u64 },
    /// Nothing idle now, but tasks are in progress (they may come back).
    NoTask,
    /// Nothing idle and nothing in progress: the origin's `NoMoreTasks`.
    Drained,
}

/// One leased task, as a worker needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeasedTask {
    /// The fencing token to complete, fail or extend with.
    pub lease: Lease,
    /// The payload.
    pub data: Vec<u8>,
}

/// One master as `status` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberStatus {
    /// Node id.
    pub id: NodeId,
    /// Client address.
    pub client_addr: String,
    /// Peer (Raft) address.
    pub peer_addr: String,
    /// `leader`, `follower`, `learner` or `unreachable`.
    pub role: String,
    /// Whether it votes (in either half of a joint membership during a change).
    pub voter: bool,
    /// Highest log index known to be on this node (as the leader sees it).
    pub last_applied: Option<u64>,
    /// Entries the leader has that this node is not known to hold.
    pub lag: Option<u64>,
}

/// The answer to `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// `cluster.name`.
    pub cluster: String,
    /// The leader's term.
    pub term: u64,
    /// The leader (the node that answered).
    pub leader: Option<NodeId>,
    /// Every member and learner: the live membership, not the config file.
    pub members: Vec<MemberStatus>,
    /// Whether a membership change is under way (the joint configuration is in force).
    pub changing: bool,
    /// Tasks by status.
    pub counts: Counts,
    /// Last log index on the leader.
    pub last_log_index: Option<u64>,
    /// Last applied index on the leader.
    pub last_applied: Option<u64>,
    /// Push workers, as the leader's dispatcher sees them.
    pub workers: Vec<PushWorkerStatus>,
    /// Every queue with tasks or limits: counts and limits.
    pub queues: Vec<QueueStatus>,
}

/// One push worker in `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushWorkerStatus {
    /// Its id.
    pub id: WorkerId,
    /// Where it serves `DoTask`.
    pub addr: String,
    /// Whether the leader currently sends it tasks.
    pub healthy: bool,
    /// Tasks dispatched to it and not yet answered.
    pub in_flight: u32,
    /// Tasks it completed under this leader.
    pub completed: u64,
    /// Tasks it may hold at once.
    pub capacity: u32,
}

/// What one node holds, as that node sees it (not linearizable).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeReport {
    /// The answering node.
    pub id: NodeId,
    /// `leader`, `follower`, `candidate`, `learner` or `shutdown`.
    pub role: String,
    /// Its current term.
    pub term: u64,
    /// The leader it follows, if any.
    pub leader: Option<NodeId>,
    /// Its last applied log index.
    pub last_applied: Option<u64>,
    /// Digest of its applied table: equal on replicas that hold the same table.
    pub digest: u64,
    /// Its tasks by status.
    pub counts: Counts,
    /// Resident memory of its process.
    pub rss_bytes: u64,
    /// Bytes of its data dir (sled's files and the snapshot).
    pub data_dir_bytes: u64,
    /// Bytes of its current snapshot file.
    pub snapshot_bytes: u64,
}

/// Calls answered by the leader on `client_addr` (except `node_report`).
#[tarpc::service]
pub trait ClientService {
    /// Adds tasks (idempotent by key). Ids come back in order.
    async fn submit(tasks: Vec<NewTask>) -> Result<Vec<Submitted>, WireError>;
    /// Leases up to `max` tasks to `worker` from `queues` (in that order of
    /// preference; empty or `*`: any), waiting up to `wait_ms` for one.
    async fn request(
        worker: WorkerId,
        max: u32,
        wait_ms: u64,
        queues: Vec<String>,
    ) -> Result<Assignment, WireError>;
    /// Records a lease's result.
    async fn complete(
        lease: Lease,
        worker: WorkerId,
        result: Vec<u8>,
    ) -> Result<Outcome, WireError>;
    /// Records the results of up to 256 of `worker`'s leases and, in the
    /// same Raft entry, leases up to `max` idle tasks to it: one round trip
    /// and one commit for a busy worker, however many tasks it held. Each
    /// result gets its own outcome, as with `complete`. Never waits: when
    /// nothing is idle (or `max` is 0) the assignment is `NoTask`.
    async fn complete_and_request(
        worker: WorkerId,
        results: Vec<(Lease, Vec<u8>)>,
        max: u32,
        queues: Vec<String>,
    ) -> Result<(Vec<Outcome>, Assignment), WireError>;
    /// Changes a queue's limits (online, replicated).
    async fn set_queue(queue: String, change: QueueChange) -> Result<(), WireError>;
    /// Reports a lease's failure.
    async fn fail(lease: Lease, worker: WorkerId, error: String) -> Result<Outcome, WireError>;
    /// Restarts a lease's clock.
    async fn extend(lease: Lease, worker: WorkerId) -> Result<Outcome, WireError>;
    /// Members, leader, term and counts.
    async fn status() -> Result<ClusterStatus, WireError>;
    /// One page of tasks, optionally only those in `status`, in id order
    /// after `after`, at most `limit` (1 to [`MAX_PAGE_TASKS`]); a page is
    /// also cut at [`MAX_PAGE_BYTES`] of payloads and [`MAX_PAGE_SCAN`] rows examined.
    async fn tasks(
        status: Option<Status>,
        after: Option<TaskId>,
        limit: u32,
    ) -> Result<TaskPage, WireError>;
    /// One task.
    async fn task(id: TaskId) -> Result<Task, WireError>;
    /// Cancels up to 10,000 unfinished tasks: idle or scheduled ones end
    /// `cancelled` at once; an in-progress one is marked and ends
    /// `cancelled` at its worker's next report. One outcome per id:
    /// `Accepted`, `Duplicate` (already being cancelled), `Stale` (already
    /// finished) or `NotFound`.
    async fn cancel(ids: Vec<TaskId>) -> Result<Vec<Outcome>, WireError>;
    /// Cancels the task with idempotency key `key`, or up to 10,000 tasks of
    /// `queue` not yet finished nor being cancelled (call again while it
    /// returns that many): exactly one of the two. The ids and outcomes.
    async fn cancel_where(
        key: Option<String>,
        queue: Option<String>,
    ) -> Result<Vec<(TaskId, Outcome)>, WireError>;
    /// Gives up to 10,000 dead or cancelled tasks a fresh budget of
    /// `max_attempts` attempts (0: the cluster's): they are idle again. One
    /// outcome per id: `Accepted`, `Stale` (not dead nor cancelled) or `NotFound`.
    async fn retry(ids: Vec<TaskId>, max_attempts: u32) -> Result<Vec<Outcome>, WireError>;
    /// Stages a consistent backup of the table (confirmed with a quorum) on
    /// the leader; read it with `backup_read`.
    async fn backup_open() -> Result<BackupInfo, WireError>;
    /// Up to `len` bytes (at most [`MAX_BACKUP_CHUNK`]) of a staged backup
    /// from `offset`; the session ends after its last byte is read, or after
    /// a minute without reads.
    async fn backup_read(id: u64, offset: u64, len: u32) -> Result<Vec<u8>, WireError>;
    /// The answering node's own view; any node answers.
    async fn node_report() -> NodeReport;
    /// Registers (or renews) a push worker serving at `addr`; returns how
    /// often (ms) to renew. The leader first checks that `addr` answers as `worker`.
    async fn register(worker: WorkerId, addr: String, capacity: u32) -> Result<u64, WireError>;
    /// Removes a push worker's registration.
    async fn deregister(worker: WorkerId) -> Result<(), WireError>;
    /// Adds master `id`, reached at `node`, as a learner: the leader starts
    /// replicating to it (a snapshot if it is far behind). Idempotent; a
    /// voter stays a voter.
    async fn add_learner(id: NodeId, node: NodeInfo) -> Result<(), WireError>;
    /// Makes learner `id` a voter (joint consensus). Refused while it lags
    /// behind or when the change could not reach a quorum. Idempotent.
    async fn promote(id: NodeId) -> Result<(), WireError>;
    /// Removes master `id` (voter or learner) from the membership. Removing
    /// the leader: it commits the change, steps down and has the remaining
    /// voters elect at once. Refused when the change could not reach a
    /// quorum or would leave no voter. Removing a non-member does nothing.
    async fn remove_member(id: NodeId) -> Result<(), WireError>;
}
