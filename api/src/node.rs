//! What the etcd services need from the node they run on. Voters implement it over Raft;
//! learners will implement it over the log stream. The services only validate, call the node
//! and map errors (etcd's `v3rpc` layering).

use mango_rpctypes as rpc;
use std::future::Future;
use std::sync::Arc;

use mango_proto::etcdserverpb::{
    AlarmMember, AlarmRequest, LeaseGrantResponse, Member, ResponseHeader,
};
use mango_proto::mangopb::raft_request::Request;
use mango_store::backend::redb::RedbSnapshot;
use mango_store::{ReadView, Response, SnapshotReader, StoreError};

/// A failure of the node rather than of the request. Each maps to etcd's gRPC code and text
/// (defined once in `mango_rpctypes`).
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The store refused the request (etcd's own error text and code).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No leader is known (`Unavailable`, "etcdserver: no leader").
    #[error("{}", rpc::NO_LEADER)]
    NoLeader,
    /// The request did not complete in time (`Unavailable`, "etcdserver: request timed out").
    #[error("{}", rpc::TIMEOUT)]
    Timeout,
    /// Leadership changed while the request waited (`Unavailable`, "etcdserver: leader changed").
    #[error("{}", rpc::LEADER_CHANGED)]
    LeaderChanged,
    /// A bounded-staleness read cannot be served within its bound (`Unavailable`, so a client
    /// or proxy tries another member), with what this member knows.
    #[error("mango: {0}")]
    TooStale(String),
    /// The node is stopping (`Unavailable`, "etcdserver: server stopped").
    #[error("{}", rpc::STOPPED)]
    Stopped,
    /// The node has too many proposals in flight, or applies too far behind what is committed
    /// (`ResourceExhausted`, "etcdserver: too many requests"; etcd refuses when the committed
    /// index runs more than 5000 entries ahead of the applied index).
    #[error("{}", rpc::TOO_MANY_REQUESTS)]
    TooManyRequests,
    /// The space quota is exceeded (`ResourceExhausted`, "etcdserver: mvcc: database space exceeded").
    #[error("{}", rpc::NO_SPACE)]
    NoSpace,
    /// No such member (`NotFound`, "etcdserver: member not found").
    #[error("{}", rpc::MEMBER_NOT_FOUND)]
    MemberNotFound,
    /// A member with these peer URLs exists (`FailedPrecondition`, "etcdserver: Peer URLs already exists").
    #[error("{}", rpc::PEER_URL_EXIST)]
    PeerUrlExists,
    /// Promote of a member that is not a learner (`FailedPrecondition`,
    /// "etcdserver: can only promote a learner member").
    #[error("{}", rpc::MEMBER_NOT_LEARNER)]
    NotLearner,
    /// A learner cannot be promoted before it caught up (`FailedPrecondition`,
    /// "etcdserver: can only promote a learner member which is in sync with leader").
    #[error("{}", rpc::LEARNER_NOT_READY)]
    LearnerNotReady,
    /// Move-leader target is not a voter (`FailedPrecondition`, "etcdserver: bad leader transferee").
    #[error("{}", rpc::BAD_LEADER_TRANSFEREE)]
    BadLeaderTransferee,
    /// This node is not the leader where only the leader may act (`FailedPrecondition`,
    /// "etcdserver: not leader").
    #[error("{}", rpc::NOT_LEADER)]
    NotLeader,
    /// Any other of etcd's errors, as etcd answers it.
    #[error("{0}")]
    Etcd(rpc::EtcdError),
    /// A request forwarded to another member failed there: answered as that member answered
    /// (same gRPC code and message).
    #[error("{}", .0.message())]
    Forwarded(tonic::Status),
    /// What this node depends on upstream (a learner's log-stream source, the leader it
    /// forwards to) is unreachable or has no leader right now: `Unavailable`, so a client or
    /// the proxy retries elsewhere.
    #[error("{0}")]
    Unavailable(String),
    /// A bug or an unexpected internal state (`Internal`), with a message.
    #[error("{0}")]
    Other(String),
}

impl NodeError {
    /// The etcd error this is, when it is one of etcd's fixed ones.
    pub fn etcd(&self) -> Option<rpc::EtcdError> {
        Some(match self {
            NodeError::NoLeader => rpc::NO_LEADER,
            NodeError::Timeout => rpc::TIMEOUT,
            NodeError::LeaderChanged => rpc::LEADER_CHANGED,
            NodeError::Stopped => rpc::STOPPED,
            NodeError::TooManyRequests => rpc::TOO_MANY_REQUESTS,
            NodeError::NoSpace => rpc::NO_SPACE,
            NodeError::MemberNotFound => rpc::MEMBER_NOT_FOUND,
            NodeError::PeerUrlExists => rpc::PEER_URL_EXIST,
            NodeError::NotLearner => rpc::MEMBER_NOT_LEARNER,
            NodeError::LearnerNotReady => rpc::LEARNER_NOT_READY,
            NodeError::BadLeaderTransferee => rpc::BAD_LEADER_TRANSFEREE,
            NodeError::NotLeader => rpc::NOT_LEADER,
            NodeError::Etcd(e) => *e,
            NodeError::Store(_)
            | NodeError::TooStale(_)
            | NodeError::Forwarded(_)
            | NodeError::Unavailable(_)
            | NodeError::Other(_) => return None,
        })
    }
}

/// What Maintenance.Status reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeStatus {
    /// The leader this node believes in (0: none).
    pub leader: u64,
    /// Raft commit index.
    pub raft_index: u64,
    /// Raft term.
    pub raft_term: u64,
    /// Raft applied index.
    pub raft_applied_index: u64,
    /// Backend file size in bytes.
    pub db_size: i64,
    /// Backend bytes in use.
    pub db_size_in_use: i64,
    /// Whether this member is a Raft learner.
    pub is_learner: bool,
    /// Alarm and health errors.
    pub errors: Vec<String>,
    /// A learner's lag: how long ago its data was last known current (None on voters).
    /// Maintenance.Status sends it as response metadata `mango-lag-ms`, with
    /// `mango-lag-entries` (raft_index - raft_applied_index).
    pub lag: Option<std::time::Duration>,
}

/// The node the etcd services run on (Raft group 0: the whole key space).
pub trait EtcdNode: Send + Sync + 'static {
    /// A response header as etcd fills it: cluster id, this member's id, the Raft term, and
    /// `revision`.
    fn header(&self, revision: i64) -> ResponseHeader;

    /// The latest applied read view (serializable reads).
    fn read_view(&self) -> Result<Arc<ReadView<RedbSnapshot>>, NodeError>;

    /// Waits until this node has applied everything committed when the call began (ReadIndex,
    /// batched), then returns the view to read (linearizable reads).
    fn linearizable_view(
        &self,
    ) -> impl Future<Output = Result<Arc<ReadView<RedbSnapshot>>, NodeError>> + Send;

    /// A view whose data was known to be current at most `max_age` ago (waiting briefly for
    /// apply to reach what is committed), or `NodeError::TooStale` when this member cannot
    /// tell that (it lost contact with the leader, or lags too far).
    fn bounded_view(
        &self,
        max_age: std::time::Duration,
    ) -> impl Future<Output = Result<Arc<ReadView<RedbSnapshot>>, NodeError>> + Send;

    /// The revision of the latest applied view, updated after every applied batch (and
    /// snapshot install) once its view is published: what wakes the watch hub. It MUST never
    /// announce a revision that [`EtcdNode::read_view`] does not yet serve.
    fn revision_updates(&self) -> tokio::sync::watch::Receiver<i64>;

    /// Replicates a write (Put, DeleteRange, writing Txn, Compaction) through Raft and returns
    /// what the apply answered. Forwarding to the leader is the node's business.
    fn propose(&self, request: Request)
    -> impl Future<Output = Result<Response, NodeError>> + Send;

    /// Waits until physical compaction has caught up with the compacted revision
    /// (CompactionRequest.physical).
    fn wait_compacted(&self) -> impl Future<Output = Result<(), NodeError>> + Send;

    /// The cluster's members as etcd lists them.
    fn members(&self) -> Vec<Member>;

    /// Adds a member (a voter, or a Raft learner); returns it.
    fn member_add(
        &self,
        peer_urls: Vec<String>,
        is_learner: bool,
    ) -> impl Future<Output = Result<Member, NodeError>> + Send;

    /// Removes a member.
    fn member_remove(&self, id: u64) -> impl Future<Output = Result<(), NodeError>> + Send;

    /// Changes a member's peer URLs.
    fn member_update(
        &self,
        id: u64,
        peer_urls: Vec<String>,
    ) -> impl Future<Output = Result<(), NodeError>> + Send;

    /// Promotes a Raft learner to voter.
    fn member_promote(&self, id: u64) -> impl Future<Output = Result<(), NodeError>> + Send;

    /// Status of this node.
    fn status(&self) -> NodeStatus;

    /// Rewrites the backend file to give free space back.
    fn defragment(&self) -> impl Future<Output = Result<(), NodeError>> + Send;

    /// Transfers leadership to `target` (only the leader may).
    fn move_leader(&self, target: u64) -> impl Future<Output = Result<(), NodeError>> + Send;

    /// Active alarms.
    fn alarms(&self) -> Vec<AlarmMember>;

    /// A snapshot of the whole state for Maintenance.Snapshot, streamed in chunks.
    fn snapshot(&self) -> Result<SnapshotReader<RedbSnapshot>, NodeError>;

    /// Raises or clears an alarm through Raft (etcd's `AlarmRequest` ACTIVATE and
    /// DEACTIVATE; `alarm disarm` is a DEACTIVATE).
    fn change_alarm(
        &self,
        request: AlarmRequest,
    ) -> impl Future<Output = Result<(), NodeError>> + Send;

    /// Grants a lease through Raft. `id` 0 lets the node choose one (positive, unique); a TTL
    /// below the cluster's minimum is raised to it, as etcd's lessor does.
    fn lease_grant(
        &self,
        id: i64,
        ttl: i64,
    ) -> impl Future<Output = Result<LeaseGrantResponse, NodeError>> + Send;

    /// A keep-alive of lease `id`, answered by the leader's lessor (forwarded there when this
    /// node is not the leader): the TTL it now has. A lease that does not exist or already
    /// expired answers `NodeError::Store(StoreError::LeaseNotFound)`.
    fn lease_renew(&self, id: i64) -> impl Future<Output = Result<i64, NodeError>> + Send;

    /// Seconds left of lease `id` by the leader's lessor (forwarded as `lease_renew` is);
    /// `LeaseNotFound` as for `lease_renew`.
    fn lease_remaining(&self, id: i64) -> impl Future<Output = Result<i64, NodeError>> + Send;
}
