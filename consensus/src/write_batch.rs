//! The changes one Ready pass makes to the logs of many groups, written together.

use raft::eraftpb::{ConfState, Entry, HardState, SnapshotMetadata};

/// One change to one group's log or metadata.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    /// Append entries, replacing every entry with an index `>=` the first of them.
    Append(Vec<Entry>),
    /// Replace the hard state.
    HardState(HardState),
    /// Replace only the commit index of the hard state.
    Commit(u64),
    /// Replace the conf state.
    ConfState(ConfState),
    /// Discard the whole log and restart it after the snapshot.
    Snapshot(SnapshotMetadata),
}

/// Changes to the logs of any number of Raft groups, persisted by
/// [`LogStore::write`](crate::LogStore::write) in one raft-engine write (one
/// fsync when asked), all or nothing.
///
/// Operations on the same group take effect in the order they were added. A
/// batch only records them: they are checked against the log when written, and
/// if any of them breaks the log's contract (see
/// [`LogStore::write`](crate::LogStore::write)) nothing in the batch is written.
#[derive(Debug, Clone, Default)]
pub struct WriteBatch {
    /// `(group, op)` in the order they were added.
    ops: Vec<(u64, Op)>,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the batch holds no operation.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Appends `entries` (consecutive indexes) to `group`'s log. Every entry
    /// already in the log at an index `>=` the first new one is discarded, as
    /// raft requires when a follower's log conflicts with the leader's.
    ///
    /// The first new index must lie in `[first_index, last_index + 1]`.
    /// Appending no entry does nothing.
    pub fn append(&mut self, group: u64, entries: Vec<Entry>) {
        if !entries.is_empty() {
            self.ops.push((group, Op::Append(entries)));
        }
    }

    /// Replaces `group`'s hard state (term, vote, commit). When the batch is
    /// written, the commit index MUST lie within `[truncated index, last
    /// index]` of the log as the batch leaves it, or raft-rs could not restart.
    pub fn set_hard_state(&mut self, group: u64, hard_state: HardState) {
        self.ops.push((group, Op::HardState(hard_state)));
    }

    /// Replaces only the commit index of `group`'s hard state, e.g. from
    /// [`raft::LightReady::commit_index`]. Same range rule as
    /// [`WriteBatch::set_hard_state`].
    pub fn set_commit(&mut self, group: u64, commit: u64) {
        self.ops.push((group, Op::Commit(commit)));
    }

    /// Replaces `group`'s conf state, e.g. the result of
    /// [`raft::RawNode::apply_conf_change`].
    pub fn set_conf_state(&mut self, group: u64, conf_state: ConfState) {
        self.ops.push((group, Op::ConfState(conf_state)));
    }

    /// Records that `group` installed a snapshot: the whole log is discarded
    /// (entries above the snapshot index too), the first index becomes
    /// `metadata.index + 1` and the last index `metadata.index`, the term of
    /// `metadata.index` stays answerable, the conf state becomes the
    /// snapshot's, the hard state's commit becomes the snapshot index and its
    /// term is raised to the snapshot's if lower. The snapshot's data belongs
    /// to the state machine and is not stored here.
    ///
    /// Refused with `SnapshotOutOfDate` if `metadata.index` is below the
    /// group's first index or its persisted commit index.
    pub fn apply_snapshot(&mut self, group: u64, metadata: SnapshotMetadata) {
        self.ops.push((group, Op::Snapshot(metadata)));
    }

    /// Appends `other`'s operations after this batch's.
    pub(crate) fn extend(&mut self, other: WriteBatch) {
        self.ops.extend(other.ops);
    }

    /// The recorded operations, in order.
    pub(crate) fn ops(&self) -> &[(u64, Op)] {
        &self.ops
    }
}
