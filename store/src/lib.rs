//! The state machine of mango: etcd's MVCC key-value semantics on a transactional [`Backend`].
//!
//! It owns revisions, the key index, range at a revision, txn, compaction with physical
//! removal, the replicated lease state, etcd's auth (users, roles, permissions; see
//! [`auth`]), whole-state snapshots, and [`Store::apply`], the one deterministic apply used
//! by voters and learners alike.
//!
//! Architecture invariant: this crate knows nothing of Raft, gRPC or the network. A Raft entry
//! reaches it as `(index, term, bytes)`; errors leave it as [`StoreError`] values that carry
//! etcd's message and a gRPC-style [`ErrorCode`] for the API layer to map.

pub mod auth;
pub mod backend;
pub mod encoding;
mod error;

pub use backend::{Backend, BackendError, GroupId, Table};
pub use error::{ErrorCode, StoreError};
mod apply;
mod compact;
mod etcd_file;
mod hash;
mod kv;
mod lease;
mod members;
mod mvcc;
mod snapshot;
mod store;
mod txn;
mod watch;

pub use apply::{Applied, ApplyEntry, Response};
pub use compact::CompactStep;
pub use etcd_file::ImportError;
pub use hash::HashKv;
pub use kv::{validate_delete, validate_put, validate_range};
pub use lease::{LeaseInfo, MAX_LEASE_TTL};
pub use mango_bbolt;
pub use mvcc::{GroupState, RangeResult};
pub use snapshot::{SnapshotError, SnapshotReader, verify_snapshot};
pub use store::{ReadView, Store, StoreOptions};
pub use txn::{MAX_TXN_OPS, is_txn_read_only, validate_txn};
pub use watch::{EventBatch, EventLimits, KeyRange};
