//! The Raft node: every group of this node driven by one thread running raft-rs's Ready loop,
//! and the async [`RaftHandle`] the rest of the server talks to.
//!
//! One loop iteration: take commands (proposals, read requests, peer messages, persist
//! reports) until the queue is empty or a batch is full, tick on time, then for every group
//! with a Ready: send the messages that need no persistence, hand committed entries to the
//! apply thread, stage new entries and collect them with hard states into ONE
//! [`WriteBatch`](crate::WriteBatch) for all groups, queue it for the persist thread and
//! advance asynchronously. The Raft thread never waits for the disk: the persist thread
//! merges everything queued into one raft-engine write (one fsync), then reports back, and
//! only then are the Readies' persisted messages sent (a follower acknowledges entries only
//! once they are durable). Many client requests thus share one append and one fsync
//! (proposal batching), and the leader keeps up to `max_inflight_msgs` appends in flight per
//! follower (pipelining). Installing a snapshot, and writing a configuration change's conf
//! state, are the two places the Raft thread still waits for a write: both are rare.

mod apply;
mod exec;
mod handle;
mod persist;
mod recover;
mod repair;
mod runtime;
mod stepped;

use std::sync::Arc;
use std::time::Duration;

use raft::eraftpb::{Entry, Message, Snapshot};

pub use handle::{GroupStatus, PeerProgress, RaftHandle};
pub use persist::PersistHook;

pub use runtime::{GroupBootstrap, RaftThread, start};
pub use stepped::{SteppedNode, start_stepped};

/// A Raft group id.
pub type GroupId = u64;

/// How the node runs Raft.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// This node's Raft id (etcd's member id).
    pub id: u64,
    /// One Raft tick (etcd's `--heartbeat-interval`).
    pub tick: Duration,
    /// Ticks without a heartbeat before an election (`--election-timeout` / tick).
    pub election_ticks: usize,
    /// Ticks between heartbeats.
    pub heartbeat_ticks: usize,
    /// Appends in flight per follower.
    pub max_inflight_msgs: usize,
    /// Largest append message in bytes.
    pub max_size_per_msg: u64,
    /// Commands taken per loop iteration before the Ready pass.
    pub max_batch: usize,
    /// Fault injection for tests: runs before every write of the log (None in production).
    pub persist_hook: Option<PersistHook>,
    /// The Raft thread waits for each pass's write, as before the persist thread existed:
    /// only for comparison benchmarks.
    pub wait_for_persist: bool,
    /// Where randomized election timeouts come from (None: raft-rs's own thread RNG). A
    /// deterministic simulation sets it to draw from its seed.
    pub election_timeouts: Option<ElectionTimeouts>,
    /// Told what the node does, for metrics (None: nobody listens).
    pub observer: Option<Observer>,
}

/// What the node reports as it runs, for metrics: the consensus crate measures, the binary
/// decides how to publish. Calls come from the Raft and persist threads: they MUST be cheap
/// and MUST NOT block.
pub trait NodeObserver: Send + Sync + 'static {
    /// A write of the log that was made durable (one fsync) took `took`.
    fn log_synced(&self, took: Duration);
    /// `group` learned of a new leader (`leader` is never 0).
    fn leader_changed(&self, group: GroupId, leader: u64);
}

/// A shared [`NodeObserver`].
#[derive(Clone)]
pub struct Observer(pub Arc<dyn NodeObserver>);

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Observer")
    }
}

/// A source of election timeouts: given raft's range `[min, max)` in ticks, a value in it.
/// Values outside the range are ignored (raft-rs keeps its own draw).
#[derive(Clone)]
pub struct ElectionTimeouts(pub Arc<dyn Fn(usize, usize) -> usize + Send + Sync>);

impl std::fmt::Debug for ElectionTimeouts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ElectionTimeouts")
    }
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            id: 1,
            tick: Duration::from_millis(100),
            election_ticks: 10,
            heartbeat_ticks: 1,
            max_inflight_msgs: 256,
            max_size_per_msg: 1 << 20,
            max_batch: 4096,
            persist_hook: None,
            wait_for_persist: false,
            election_timeouts: None,
            observer: None,
        }
    }
}

/// Why a request to the node failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RaftError {
    /// No leader is known, so nothing can be proposed or read linearizably.
    #[error("no leader")]
    NoLeader,
    /// Raft dropped the proposal (leadership transfer in progress, or similar).
    #[error("proposal dropped")]
    Dropped,
    /// Leadership changed while a read waited for its index.
    #[error("leader changed")]
    LeaderChanged,
    /// The node stopped.
    #[error("stopped")]
    Stopped,
    /// The group does not exist on this node.
    #[error("unknown group {0}")]
    UnknownGroup(GroupId),
    /// Raft refused the request.
    #[error("raft: {0}")]
    Raft(String),
}

/// The replicated state machine the node applies committed entries to.
pub trait StateMachine: Send + 'static {
    /// What applying one entry answers; handed to the proposer's waiter.
    type Output: Send + 'static;

    /// The last index applied to `group` (Raft resumes after it on restart).
    fn applied_index(&self, group: GroupId) -> u64;

    /// Applies committed entries of `group` in index order (normal entries and configuration
    /// changes alike: the node has already made the latter take effect in Raft). MUST return
    /// exactly one output per entry. An `Err` is fatal: the node stops.
    fn apply(&mut self, group: GroupId, entries: &[Entry]) -> Result<Vec<Self::Output>, String>;

    /// Replaces `group`'s state with the snapshot Raft delivered (its data was staged by the
    /// transport, see [`Transport`]). An `Err` is fatal.
    fn restore(&mut self, group: GroupId, snapshot: &Snapshot) -> Result<(), String>;
}

/// Sends Raft messages to peers. MUST NOT block: queue, and drop (raft retries) when full.
pub trait Transport: Send + 'static {
    /// Sends `msgs` of `group`, in order.
    fn send(&mut self, group: GroupId, msgs: Vec<Message>);
}
