//! `mango-proxy`: accepts etcd's v3 gRPC API and routes each request by its consistency level.
//!
//! - Writes, Txns with writes, linearizable Ranges, Compact, leases, membership, maintenance,
//!   lock and election go to the Raft leader, found by asking the voters' Maintenance.Status
//!   (every health-check interval, after a failure, and when a response shows a newer Raft
//!   term): no double hop through a follower. With no leader known, any voter is used (a
//!   follower forwards proposals and runs ReadIndex itself).
//! - Stale (`serializable`), bounded and learner-linearizable reads, and watches, go to the
//!   learners, the less loaded of two picked at random (power of two choices over requests in
//!   flight), skipping upstreams ejected by failed health checks or transport errors. With no
//!   learner available they go to the voters.
//! - The level is the gRPC metadata `mango-consistency` (passed through to the upstream), else
//!   etcd's `serializable` flag ([`mango_rpctypes::Consistency`]).
//! - Forwarding is a tower service stack (load shedding, concurrency limits, timeout,
//!   retries, latency histograms, routing): see [`stack`]; the routing state: [`route`].
//! - Identical watches from many clients share one upstream watch: see [`watch`]. Counters
//!   (`--listen-metrics-addr`): see [`metrics`].
//!
//! Entry points: [`server::run`] (flags → listening server) and [`server::serve`] (a bound
//! listener, for tests). Architecture invariant: the proxy holds no data and no domain logic;
//! it only forwards etcd's messages unchanged, so it knows nothing of the store or Raft.

pub mod cache;
pub mod config;
pub mod kv;
pub mod metrics;
pub mod route;
pub mod server;
pub mod services;
pub mod stack;
pub mod upstream;
pub mod watch;
