//! The storage engine seam: everything MVCC needs from a key-value engine, and no more.
//!
//! Contracts every implementation MUST keep (checked by `backend::conformance`, which runs
//! against each implementation):
//! - a [`Backend::write`] closure's changes become visible and durable (when `durable`) all
//!   at once when it returns `Ok`, and not at all when it returns `Err` or the process dies;
//! - a [`Backend::read`] view is a consistent snapshot: later writes never show in it, and
//!   holding it never blocks a writer;
//! - tables of different groups are disjoint; scans return keys in byte order.

#[cfg(test)]
mod conformance;
pub mod redb;
pub mod redb_faults;

use std::ops::ControlFlow;

/// A Raft group id: the key space is split into groups, each with its own tables.
pub type GroupId = u64;

/// The tables a group has. Names are stable: they are part of the on-disk format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Table {
    /// Small per-group metadata: applied index, current and compacted revision.
    Meta,
    /// One entry per live key: raw key -> [`crate::encoding::KeyMeta`].
    Live,
    /// One entry per version: escaped key ++ revision -> kind (put or tombstone).
    History,
    /// One entry per change, in revision order: revision -> kind ++ encoded KeyValue.
    Revs,
    /// One entry per granted lease: lease id -> [`crate::encoding::LeaseRecord`].
    Leases,
    /// One entry per live key attached to a lease: lease id ++ raw key -> nothing, so a
    /// revoke finds the lease's keys, in key order, with one range scan.
    LeaseKeys,
    /// etcd's `authUsers` bucket: user name -> encoded `authpb.User` (bcrypt hash, roles).
    AuthUsers,
    /// etcd's `authRoles` bucket: role name -> encoded `authpb.Role` (key permissions).
    AuthRoles,
}

impl Table {
    /// Every table, in the order snapshots carry them.
    ///
    /// The lease state has tables of its own rather than keys under a prefix of `Meta` (as
    /// the member registry has): the lease-to-key index grows with the number of leased keys
    /// (every Kubernetes event lives under a lease), while `Meta` is small state read on every
    /// view. Being here, they travel in snapshots like the rest. The auth users and roles
    /// have tables of their own for the same reason (a keyspace may hold many users), while
    /// the auth flag and revision, two small values, live in `Meta` (see `crate::auth`).
    pub const ALL: [Table; 8] = [
        Table::Meta,
        Table::Live,
        Table::History,
        Table::Revs,
        Table::Leases,
        Table::LeaseKeys,
        Table::AuthUsers,
        Table::AuthRoles,
    ];

    /// A stable one-byte tag (used in snapshots).
    pub fn tag(self) -> u8 {
        match self {
            Table::Meta => 1,
            Table::Live => 2,
            Table::History => 3,
            Table::Revs => 4,
            Table::Leases => 5,
            Table::LeaseKeys => 6,
            Table::AuthUsers => 7,
            Table::AuthRoles => 8,
        }
    }

    /// The table with the given tag.
    pub fn from_tag(tag: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.tag() == tag)
    }

    /// The table's name (without the group prefix).
    pub fn name(self) -> &'static str {
        match self {
            Table::Meta => "meta",
            Table::Live => "live",
            Table::History => "history",
            Table::Revs => "revs",
            Table::Leases => "leases",
            Table::LeaseKeys => "lease_keys",
            Table::AuthUsers => "auth_users",
            Table::AuthRoles => "auth_roles",
        }
    }
}

/// A storage engine failure. These are fatal to the node: the store cannot continue safely.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The engine reported an error.
    #[error("storage engine: {0}")]
    Engine(String),
    /// A stored record did not decode: the data on disk is not what this code wrote.
    #[error("corrupt record in table {table:?}: {what}")]
    Corrupt {
        /// Where the record was.
        table: Table,
        /// What was wrong.
        what: String,
    },
}

/// A scan callback: gets each key and value, breaks to stop the scan.
pub type Visit<'a> = dyn FnMut(&[u8], &[u8]) -> ControlFlow<()> + 'a;

/// Read access to one group's tables.
pub trait ReadTables {
    /// The value stored under `key`.
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, BackendError>;

    /// Calls `visit` with each entry whose key is in `[start, end)` (`end: None` = no upper
    /// bound), in ascending key order, or descending when `reverse`; stops when `visit` breaks.
    fn scan(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        reverse: bool,
        visit: &mut Visit<'_>,
    ) -> Result<(), BackendError>;
}

/// Read and write access to one group's tables inside one write transaction.
pub trait WriteTables: ReadTables {
    /// Stores `value` under `key`, replacing any earlier value.
    fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), BackendError>;
    /// Removes `key` if present.
    fn delete(&mut self, table: Table, key: &[u8]) -> Result<(), BackendError>;
    /// Removes every entry of `table`.
    fn clear(&mut self, table: Table) -> Result<(), BackendError>;
}

/// A transactional, snapshot-isolated key-value engine holding many groups' tables.
pub trait Backend: Send + Sync + 'static {
    /// A consistent read view of one group.
    type Snapshot: ReadTables + Send + Sync + 'static;

    /// A snapshot of `group` as of the last committed write.
    fn read(&self, group: GroupId) -> Result<Self::Snapshot, BackendError>;

    /// Runs `f` in one write transaction on `group`'s tables, committing iff it returns `Ok`;
    /// with `durable` the commit is on disk (fsynced) before this returns.
    fn write<R, E: From<BackendError>>(
        &self,
        group: GroupId,
        durable: bool,
        f: impl FnOnce(&mut dyn WriteTables) -> Result<R, E>,
    ) -> Result<R, E>;

    /// The groups that have tables.
    fn groups(&self) -> Result<Vec<GroupId>, BackendError>;

    /// Bytes the engine's file takes on disk, and bytes of it in use.
    fn size(&self) -> Result<BackendSize, BackendError>;

    /// Bytes the engine's file takes on disk: cheap (no transaction), for hot-path checks.
    fn file_bytes(&self) -> Result<u64, BackendError>;

    /// Rewrites the file to give free space back to the file system (etcd's defragment).
    fn defragment(&self) -> Result<(), BackendError>;
}

/// Space figures of a backend.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackendSize {
    /// Size of the file on disk (etcd's `dbSize`).
    pub file_bytes: u64,
    /// Bytes holding live data (etcd's `dbSizeInUse`).
    pub in_use_bytes: u64,
}
