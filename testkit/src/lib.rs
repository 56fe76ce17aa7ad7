//! The one harness of the tests and the benchmark: real processes and the means to drive and
//! observe them.
//!
//! - [`Cluster`]: voters (`mango-voter`, or a real etcd with the same flags), learners and
//!   `mango-proxy`; start, kill, stop (SIGTERM), restart, join; in network namespaces
//!   ([`netns::Netns`]) for partitions; etcdctl and status helpers; killed on drop.
//! - [`net::Host`]: every process gets a loopback address of its own and listens on fixed
//!   ports there, so no port is chosen, released and raced for (see [`net`]).
//! - [`wait_until`] / [`wait_until_async`]: poll observable state (a leader, a value, a
//!   metric, a log line, an exit) instead of sleeping; the panic names what was awaited.
//! - [`etcdctl`](mod@etcdctl): etcd's CLI against any endpoints; [`kv`]: raw KV calls with
//!   mango's consistency metadata; [`metrics`]: a metrics page as numbers.
//! - [`proc::Proc`]: a child process killed by pid on every way out (the benchmark's
//!   signal and panic handlers too).
//! - [`layers`]: the configuration-layering contract every binary keeps.
//! - [`tls`]: a deployment with TLS on every channel (a development CA and a foreign one).
//!
//! The workspace's binaries are found in the target directory of the running test (the
//! workspace's test command builds them all), or in `MANGO_BIN_DIR`. A normal library, so
//! the benchmark (`mango-bench`) uses it too; its dependencies stay few.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod bins;
pub mod cluster;
pub mod etcdctl;
pub mod kv;
pub mod layers;
pub mod metrics;
pub mod net;
pub mod netns;
pub mod proc;
pub mod tls;
pub mod wait;

pub use bins::{bin_dir, learner_bin, proxy_bin, voter_bin};
pub use cluster::{Cluster, Member, System};
pub use etcdctl::{etcdctl, etcdctl_ok};
pub use kv::{get, kv, put, wait_value};
pub use net::Host;
pub use netns::Netns;
pub use wait::{wait_until, wait_until_async};
