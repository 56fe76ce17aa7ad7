//! Where [`GroupStorage::snapshot`](raft::Storage::snapshot) gets a snapshot
//! from: the state machine, which lives outside this crate.

use raft::eraftpb::Snapshot;

/// Produces a snapshot of a group's state machine when raft needs one to send
/// to a follower that is too far behind.
///
/// The log store holds no state-machine data, so
/// [`GroupStorage`](crate::GroupStorage) asks a provider. The provider returns
/// the whole [`Snapshot`]: its `data` and its metadata — the applied `index`,
/// the `term` of that entry and the `conf_state` as of that entry — taken
/// from one consistent view of the state machine (which records them in the
/// same transaction as the data).
///
/// Contract:
/// - It MUST NOT block for long: it runs inside raft's step. If a snapshot is
///   not ready (being built, or the state machine is behind `request_index`),
///   return `None`; raft retries later. Errors are the provider's to log; they
///   also mean `None`, because raft-rs aborts on any other storage error.
/// - A returned snapshot's index MUST be `>= request_index` and non-zero; the
///   storage turns anything else into "temporarily unavailable".
///
/// Closures `Fn(group, request_index, to) -> Option<Snapshot>` implement it.
pub trait SnapshotProvider: Send + Sync {
    /// A snapshot of `group` at an index `>= request_index`, for peer `to`.
    fn snapshot(&self, group: u64, request_index: u64, to: u64) -> Option<Snapshot>;
}

impl<F> SnapshotProvider for F
where
    F: Fn(u64, u64, u64) -> Option<Snapshot> + Send + Sync,
{
    fn snapshot(&self, group: u64, request_index: u64, to: u64) -> Option<Snapshot> {
        self(group, request_index, to)
    }
}
