//! etcd 3.4's layout of its bbolt file, as typed records.
//!
//! | bucket | key | value |
//! |---|---|---|
//! | `key` | revision: 8-byte BE main, `_`, 8-byte BE sub, plus `t` for a tombstone | `mvccpb.KeyValue` (a tombstone's has only the key) |
//! | `meta` | `consistent_index`, `scheduledCompactRev`, `finishedCompactRev` | 8 bytes BE; revision bytes; revision bytes |
//! | `lease` | lease id, 8 bytes BE | `leasepb.Lease` |
//! | `members` | member id in hex | Go's JSON of the member |
//! | `members_removed` | member id in hex | `removed` |
//! | `cluster` | `clusterVersion` | e.g. `3.4.0` |
//! | `alarm` | `etcdserverpb.AlarmMember` | empty |
//! | `auth` | `authEnabled`, `authRevision` | one byte 0/1; 8 bytes BE |
//! | `authUsers` / `authRoles` | the name | `authpb.User` / `authpb.Role` |
//!
//! Checked against etcd v3.4.23's `mvcc/kvstore.go`, `mvcc/revision.go`, `lease/lessor.go`,
//! `etcdserver/api/membership/store.go`, `etcdserver/api/v3alarm/alarms.go` and
//! `auth/store.go`. Keys and buckets this table does not name are kept in
//! [`EtcdSnapshot::other`], so a file read and written back loses nothing.

mod decode;
mod encode;
mod history;
mod records;
mod status;

pub use decode::key_revisions;
pub use records::{KeyRevision, Lease, Member, REVISION_LEN, Revision, TOMBSTONE_MARK};
pub use status::{SnapshotStatus, status};

use mango_proto::authpb::{Role, User};
use mango_proto::etcdserverpb::AlarmMember;

use crate::sha::HashCheck;
use crate::{ReadError, WriteError};

/// The `key` bucket: every revision of every key.
pub const KEY: &str = "key";
/// The `meta` bucket: applied index and compaction.
pub const META: &str = "meta";
/// The `lease` bucket.
pub const LEASE: &str = "lease";
/// The `members` bucket.
pub const MEMBERS: &str = "members";
/// The `members_removed` bucket.
pub const MEMBERS_REMOVED: &str = "members_removed";
/// The `cluster` bucket.
pub const CLUSTER: &str = "cluster";
/// The `alarm` bucket.
pub const ALARM: &str = "alarm";
/// The `auth` bucket.
pub const AUTH: &str = "auth";
/// The `authUsers` bucket.
pub const AUTH_USERS: &str = "authUsers";
/// The `authRoles` bucket.
pub const AUTH_ROLES: &str = "authRoles";
/// Every bucket etcd 3.4 creates, in the order bbolt keeps them (byte order).
pub const BUCKETS: [&str; 10] = [
    ALARM,
    AUTH,
    AUTH_ROLES,
    AUTH_USERS,
    CLUSTER,
    KEY,
    LEASE,
    MEMBERS,
    MEMBERS_REMOVED,
    META,
];

/// `meta` bucket keys.
pub const CONSISTENT_INDEX: &str = "consistent_index";
/// The compaction etcd has scheduled (it resumes it on start if not finished).
pub const SCHEDULED_COMPACT_REV: &str = "scheduledCompactRev";
/// The compaction etcd has finished: revisions below it are gone.
pub const FINISHED_COMPACT_REV: &str = "finishedCompactRev";
/// `cluster` bucket key.
pub const CLUSTER_VERSION: &str = "clusterVersion";
/// `auth` bucket key: one byte, 1 when auth is on.
pub const AUTH_ENABLED: &str = "authEnabled";
/// `auth` bucket key: the auth store's revision, 8 bytes BE.
pub const AUTH_REVISION: &str = "authRevision";

/// Why a file could not be read or written in etcd's layout.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// The bbolt file itself is malformed.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The bbolt file could not be built.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// The file could not be read or written.
    #[error("etcd snapshot: {0}")]
    Io(#[from] std::io::Error),
    /// The file ends with a SHA-256 that does not match it.
    #[error("etcd snapshot: the trailing sha256 does not match the file")]
    HashMismatch,
    /// A bucket etcd always has is missing: not an etcd snapshot.
    #[error("etcd snapshot: no {0:?} bucket (not an etcd database)")]
    MissingBucket(&'static str),
    /// A top-level key is not a bucket.
    #[error("etcd snapshot: top-level key {0:?} is not a bucket")]
    NotABucket(Vec<u8>),
    /// A key that is a nested bucket where etcd keeps plain values.
    #[error("etcd snapshot: nested bucket {key:?} in {bucket:?}")]
    NestedBucket {
        /// The bucket holding it.
        bucket: String,
        /// The key.
        key: Vec<u8>,
    },
    /// A key that does not have the form its bucket requires.
    #[error("etcd snapshot: bad key {key:?} in {bucket:?}: {reason}")]
    BadKey {
        /// The bucket.
        bucket: &'static str,
        /// The key.
        key: Vec<u8>,
        /// What is wrong.
        reason: &'static str,
    },
    /// A value that does not have the form its key requires.
    #[error("etcd snapshot: bad value of {key:?} in {bucket:?}: {reason}")]
    BadValue {
        /// The bucket.
        bucket: &'static str,
        /// The key.
        key: Vec<u8>,
        /// What is wrong.
        reason: String,
    },
    /// Two entries for the same revision (given to the writer).
    #[error("etcd snapshot: revision {0:?} appears twice")]
    DuplicateRevision(Revision),
}

/// etcd's auth state: the `auth`, `authUsers` and `authRoles` buckets.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Auth {
    /// Whether authentication is on (`authEnabled` = 1). Written only when on: an absent
    /// key and 0 both mean off to etcd.
    pub enabled: bool,
    /// The auth store's revision (`authRevision`), bumped by every auth change; etcd writes 1
    /// when it creates the store.
    pub revision: Option<u64>,
    /// Users, in name order.
    pub users: Vec<User>,
    /// Roles, in name order.
    pub roles: Vec<Role>,
}

/// The compaction state in the `meta` bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Compaction {
    /// The last compaction scheduled (etcd finishes it on start if `finished` is lower).
    pub scheduled: Option<i64>,
    /// The last compaction finished: revisions below it are gone, reads there fail.
    pub finished: Option<i64>,
}

/// A key, value and bucket etcd 3.4's layout does not name, kept verbatim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtherEntry {
    /// The top-level bucket.
    pub bucket: Vec<u8>,
    /// The key.
    pub key: Vec<u8>,
    /// The value.
    pub value: Vec<u8>,
}

/// Everything an etcd 3.4 snapshot holds, typed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EtcdSnapshot {
    /// Every entry of the `key` bucket in revision order: puts and tombstones, the whole
    /// history the file still has (a compaction removes what it makes unreachable).
    pub revisions: Vec<KeyRevision>,
    /// Leases in id order.
    pub leases: Vec<Lease>,
    /// The Raft index the data reflects (`consistent_index`).
    pub consistent_index: Option<u64>,
    /// Compaction revisions.
    pub compaction: Compaction,
    /// Members of the cluster that wrote it.
    pub members: Vec<Member>,
    /// Ids of members removed from it.
    pub removed_members: Vec<u64>,
    /// The cluster version (`clusterVersion`), e.g. `3.4.0`.
    pub cluster_version: Option<String>,
    /// Raised alarms (NOSPACE, CORRUPT).
    pub alarms: Vec<AlarmMember>,
    /// Users, roles and whether auth is on.
    pub auth: Auth,
    /// Keys and buckets the layout above does not name (etcd 3.5 adds some), kept verbatim.
    pub other: Vec<OtherEntry>,
}

impl EtcdSnapshot {
    /// Reads the snapshot file at `path`. A trailing SHA-256 must match; a file without one
    /// (a data directory's `db`) is accepted.
    pub fn read(path: impl AsRef<std::path::Path>) -> Result<Self, EtcdError> {
        let (snapshot, _) = Self::from_file_bytes(std::fs::read(path)?)?;
        Ok(snapshot)
    }

    /// Reads a snapshot from the bytes of a file, and says whether it carried a hash.
    pub fn from_file_bytes(bytes: Vec<u8>) -> Result<(Self, HashCheck), EtcdError> {
        let (_, check) = crate::sha::check_sha256(&bytes);
        if check == HashCheck::Mismatch {
            return Err(EtcdError::HashMismatch);
        }
        let db = crate::Db::from_bytes(bytes)?;
        Ok((Self::from_db(&db)?, check))
    }

    /// The main revision the store would restore to: the last revision in the `key`
    /// bucket, or the finished compaction if that is later (as etcd's restore decides).
    pub fn current_revision(&self) -> i64 {
        let last = self.revisions.last().map_or(0, |r| r.revision.main);
        last.max(self.compaction.finished.unwrap_or(0))
    }

    /// Writes the snapshot to `path` in etcd 3.4's layout, with etcd's trailing SHA-256
    /// when `with_sha256` is set.
    pub fn write(
        &self,
        path: impl AsRef<std::path::Path>,
        with_sha256: bool,
    ) -> Result<(), EtcdError> {
        let builder = self.to_db_builder()?;
        crate::write_db_file(path, &builder, &crate::WriteOptions::default(), with_sha256)?;
        Ok(())
    }

    /// The bytes of the file [`EtcdSnapshot::write`] writes.
    pub fn to_bytes(&self, with_sha256: bool) -> Result<Vec<u8>, EtcdError> {
        let mut bytes = crate::write_db(&self.to_db_builder()?, &crate::WriteOptions::default())?;
        if with_sha256 {
            crate::sha::append_sha256(&mut bytes);
        }
        Ok(bytes)
    }
}
