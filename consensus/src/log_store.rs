//! The node's Raft log store: one raft-engine instance for every group.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use raft::eraftpb::{ConfState, Entry, HardState, SnapshotMetadata};
use raft_engine::{Command, Engine, LogBatch};

use crate::disk::LogFs;

use crate::config::LogStoreConfig;
use crate::error::LogStoreError;
use crate::group_storage::GroupStorage;
use crate::layout::{BOOTS_KEY, TRUNCATED_KEY, TruncatedState};
use crate::shared::Shared;
use crate::staging::stage;
use crate::write_batch::{Op, WriteBatch};

/// The Raft logs of all groups on a node, in one raft-engine instance.
///
/// A cheap-to-clone handle: clones share the engine, which closes when the
/// last `LogStore` or [`GroupStorage`] drops. Writes
/// ([`LogStore::write`], [`LogStore::compact`]) are serialised inside the
/// store; reads go straight to raft-engine's in-memory index.
#[derive(Clone)]
pub struct LogStore {
    /// The engine and the state its handles share.
    shared: Arc<Shared>,
    /// Where the engine lives, for messages and reopening.
    dir: PathBuf,
}

impl fmt::Debug for LogStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogStore").field("dir", &self.dir).finish()
    }
}

impl LogStore {
    /// Opens (creating if needed) the log store in `config.dir`, recovering
    /// every group's hard state, conf state, entries and first index.
    pub fn open(config: LogStoreConfig) -> Result<Self, LogStoreError> {
        let fs = Arc::new(LogFs::new(config.disk_faults.clone()));
        let engine = Engine::open_with_file_system(config.engine_config()?, fs)?;
        Ok(Self {
            shared: Arc::new(Shared::new(engine)?),
            dir: config.dir,
        })
    }

    /// The directory the store lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every group with anything stored, ascending.
    pub fn groups(&self) -> Vec<u64> {
        let mut groups = self.shared.engine.raft_groups();
        groups.sort_unstable();
        groups
    }

    /// A [`raft::Storage`] for `group`, without a snapshot provider.
    pub fn group_storage(&self, group: u64) -> GroupStorage {
        GroupStorage::new(self.shared.clone(), group)
    }

    /// Persists every operation of `batch` in one raft-engine write, fsyncing
    /// it first if `sync` (pass [`raft::Ready::must_sync`], or `true`). Returns
    /// the bytes written.
    ///
    /// All or nothing: each operation is checked against the log as the
    /// preceding operations leave it, and if any fails — an append that leaves
    /// a gap, overwrites compacted entries or is not consecutive, an
    /// out-of-date snapshot, or a hard state whose commit index ends up
    /// outside `[truncated index, last index]` — the error is returned and
    /// nothing is written. An empty batch writes and syncs nothing.
    ///
    /// A failed fsync makes raft-engine panic; storage I/O failure is fatal.
    pub fn write(&self, batch: WriteBatch, sync: bool) -> Result<usize, LogStoreError> {
        if batch.is_empty() {
            return Ok(0);
        }
        let _writer = self.shared.lock_writes();
        let mut engine_batch = stage(&self.shared, batch.ops())?;
        // Forget cached terms the write may change before the engine changes them.
        for (group, op) in batch.ops() {
            match op {
                Op::Append(entries) => {
                    if let Some(first) = entries.first() {
                        self.shared
                            .update_terms(*group, |terms| terms.truncate_from(first.index));
                    }
                }
                Op::Snapshot(_) => self.shared.update_terms(*group, |terms| terms.clear()),
                Op::HardState(_) | Op::Commit(_) | Op::ConfState(_) => {}
            }
        }
        let written = self.shared.engine.write(&mut engine_batch, sync)?;
        for (group, op) in batch.ops() {
            match op {
                Op::Append(entries) => self
                    .shared
                    .update_terms(*group, |terms| terms.append(entries)),
                Op::Snapshot(_) => {
                    self.shared.update_terms(*group, |terms| terms.clear());
                    self.shared.pending().clear(*group);
                }
                Op::HardState(_) | Op::Commit(_) | Op::ConfState(_) => {}
            }
        }
        Ok(written)
    }

    /// Makes `entries` of `group` readable through [`GroupStorage`] now, ahead of the write
    /// that will carry them ([`LogStore::write_pending`] with the same `ticket`; tickets
    /// grow by write). Entries already pending at or above the first new index are replaced,
    /// as an append replaces them in the log. Call before raft-rs's `advance_append_async`.
    pub fn stage_pending(&self, group: u64, entries: &[Entry], ticket: u64) {
        self.shared.pending().append(group, entries, ticket);
    }

    /// [`LogStore::write`], then forgets the pending entries of this write and of every
    /// earlier ticket: from now on [`GroupStorage`] reads them from the engine. On error
    /// they stay pending (the caller stops: the log cannot be persisted).
    pub fn write_pending(
        &self,
        batch: WriteBatch,
        sync: bool,
        ticket: u64,
    ) -> Result<usize, LogStoreError> {
        let written = self.write(batch, sync)?;
        self.shared.pending().release(ticket);
        Ok(written)
    }

    /// Discards `group`'s entries below `index`; the term of `index - 1` stays
    /// answerable and the first index becomes `index`. Written with fsync.
    ///
    /// Does nothing if `index` is at or below the first index. Refused if
    /// `index > last_index + 1`, or if `index - 1` is above the persisted
    /// commit index (raft-rs could not restart from that log). The caller MUST
    /// only compact entries its state machine has applied durably.
    ///
    /// While a Raft loop runs the group, compaction stops after the last entry that loop
    /// has seen applied ([`LogStore::note_raft_applied`]): the state machine may be a few
    /// entries ahead of raft-rs's applied index, and raft-rs reads the entries after that
    /// index (when it campaigns, for one). Found by the simulator: a node compacted past
    /// raft-rs's applied index and panicked when it next campaigned.
    pub fn compact(&self, group: u64, index: u64) -> Result<(), LogStoreError> {
        let _writer = self.shared.lock_writes();
        let index = match self.raft_applied(group) {
            Some(applied) => index.min(applied + 1),
            None => index,
        };
        let truncated = self.shared.truncated(group)?;
        if index <= truncated.index + 1 {
            return Ok(());
        }
        let last_index = self.shared.last_index(group, &truncated);
        if index > last_index + 1 {
            return Err(LogStoreError::CompactBeyondLog {
                group,
                index,
                last_index,
            });
        }
        let commit = self.shared.hard_state(group)?.commit;
        if index - 1 > commit {
            return Err(LogStoreError::CompactUncommitted {
                group,
                index,
                commit,
            });
        }
        let new_truncated = TruncatedState {
            index: index - 1,
            term: self.shared.term(group, index - 1)?,
        };
        let mut batch = LogBatch::default();
        batch.add_command(group, Command::Compact { index });
        batch.put(group, TRUNCATED_KEY.to_vec(), new_truncated.encode())?;
        self.shared.engine.write(&mut batch, true)?;
        self.shared
            .update_terms(group, |terms| terms.trim_below(index));
        Ok(())
    }

    /// The Raft loop running `group` has applied it up to `index` (see
    /// [`LogStore::compact`]).
    pub(crate) fn note_raft_applied(&self, group: u64, index: u64) {
        if let Ok(mut m) = self.shared.raft_applied.lock() {
            let e = m.entry(group).or_insert(index);
            *e = (*e).max(index);
        }
    }

    fn raft_applied(&self, group: u64) -> Option<u64> {
        self.shared
            .raft_applied
            .lock()
            .ok()
            .and_then(|m| m.get(&group).copied())
    }

    /// Counts one more start of `group` on this node, durably, and returns the new count
    /// (1 on the first start). The Raft loop numbers its proposals and reads from it, so a
    /// proposal of an earlier run that commits after a restart can never be taken for one
    /// of this run's.
    pub fn next_boot(&self, group: u64) -> Result<u64, LogStoreError> {
        let _writer = self.shared.lock_writes();
        let boots = self
            .shared
            .engine
            .get(group, BOOTS_KEY)
            .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
            .map(u64::from_be_bytes)
            .unwrap_or(0)
            + 1;
        let mut batch = LogBatch::default();
        batch.put(group, BOOTS_KEY.to_vec(), boots.to_be_bytes().to_vec())?;
        self.shared.engine.write(&mut batch, true)?;
        Ok(boots)
    }

    /// Lets raft-engine purge log files whose entries are all compacted,
    /// rewriting a few live entries out of old files if needed. Returns the
    /// groups holding too many entries in the oldest files: the caller SHOULD
    /// compact them (after their state machine catches up, or by snapshot),
    /// or raft-engine eventually rewrites them itself.
    pub fn purge_expired_files(&self) -> Result<Vec<u64>, LogStoreError> {
        let mut groups = self.shared.engine.purge_expired_files()?;
        groups.sort_unstable();
        Ok(groups)
    }

    /// Bytes of log files in use.
    pub fn used_bytes(&self) -> usize {
        self.shared.engine.get_used_size()
    }

    /// `group`'s hard state; default if never written.
    pub fn hard_state(&self, group: u64) -> Result<HardState, LogStoreError> {
        self.shared.hard_state(group)
    }

    /// `group`'s conf state; default if never written.
    pub fn conf_state(&self, group: u64) -> Result<ConfState, LogStoreError> {
        self.shared.conf_state(group)
    }

    /// Metadata of the last snapshot applied to `group`, if any.
    pub fn snapshot_metadata(&self, group: u64) -> Result<Option<SnapshotMetadata>, LogStoreError> {
        self.shared.snapshot_metadata(group)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_can_move_to_and_be_shared_by_other_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<LogStore>();
        send_sync::<GroupStorage>();
        send_sync::<WriteBatch>();
        send_sync::<LogStoreError>();
    }
}
