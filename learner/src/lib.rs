//! `mango-learner` as a library: a read tier fed by the committed-log stream. The learner
//! applies the entries voters commit with the store's one `apply`, serves etcd's reads and
//! watches from its own store (stale, bounded-staleness or linearizable by read index), and
//! forwards writes to the voters. It is not a Raft member: adding learners never loads the
//! quorum.

pub mod config;
pub mod forward;
pub mod log;
pub mod metrics;
pub mod node;
pub mod server;
