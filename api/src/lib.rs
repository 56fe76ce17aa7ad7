//! etcd's v3 gRPC services (KV, Maintenance, Cluster, Lease, Auth, Watch, Lock, Election, and
//! the gRPC health service) over an
//! [`EtcdNode`], the handle that voters and learners each implement.
//!
//! The layering is etcd's `v3rpc`: a service validates the request with the store's checks,
//! bounds its size, then reads from a view or proposes through the node, fills the response
//! header and maps every failure to etcd's gRPC code and message ([`error`]).
//!
//! Entry points: [`serve`] (a listener, a node, a config, a shutdown future), or [`routes`] /
//! [`router`] to mount the services on a server of your own.
//!
//! Architecture invariant: this crate talks to consensus only through [`EtcdNode`]; it knows
//! nothing of raft-rs, the Raft log or the transport.

pub mod auth;
mod cluster;
mod concurrency;
mod election;
pub mod error;
mod kv;
mod lease;
mod limits;
mod lock;
mod maintenance;
mod node;
mod read_batch;
mod server;
mod watch;

pub use auth::{AuthConfig, AuthService, Caller};
pub use cluster::ClusterService;
pub use election::ElectionService;
pub use kv::KvService;
pub use lease::LeaseService;
pub use limits::{
    ApiConfig, DEFAULT_MAX_REQUEST_BYTES, DEFAULT_WATCH_PROGRESS_INTERVAL, GRPC_OVERHEAD_BYTES,
    check_request_size, raft_request_len,
};
pub use lock::LockService;
pub use maintenance::{
    ETCD_VERSION, MAX_SNAPSHOT_STREAMS, MaintenanceService, SNAPSHOT_CHUNK_BYTES,
};
pub use mango_rpctypes::{CONSISTENCY_HEADER, Consistency};
pub use node::{EtcdNode, NodeError, NodeStatus};
pub use read_batch::{FetchIndex, ReadIndexBatcher};
pub use server::{router, routes, serve};
pub use watch::WatchService;
