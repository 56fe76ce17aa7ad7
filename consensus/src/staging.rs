//! Checking a [`WriteBatch`](crate::WriteBatch) against the logs it changes and
//! turning it into one raft-engine batch.
//!
//! raft-engine panics when an append leaves a hole or rewrites compacted
//! entries, so every operation is checked here first, under the store's write
//! lock, against the log as the earlier operations of the same batch leave it.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry as MapEntry;

use raft::eraftpb::{Entry, HardState};
use raft_engine::{Command, LogBatch};

use crate::error::LogStoreError;
use crate::layout::{
    CONF_STATE_KEY, EntryExt, HARD_STATE_KEY, SNAPSHOT_META_KEY, TRUNCATED_KEY, TruncatedState,
};
use crate::shared::Shared;
use crate::write_batch::Op;

/// One group's log as the batch staged so far leaves it.
struct GroupView {
    /// Last discarded entry.
    truncated: TruncatedState,
    /// Last index of the log.
    last_index: u64,
    /// The hard state, loaded when an operation needs it.
    hard_state: Option<HardState>,
    /// Whether the batch writes the hard state or moves the truncated index,
    /// so that the commit index must be range-checked at the end.
    check_commit: bool,
}

impl GroupView {
    fn load(shared: &Shared, group: u64) -> Result<Self, LogStoreError> {
        let truncated = shared.truncated(group)?;
        Ok(Self {
            last_index: shared.last_index(group, &truncated),
            truncated,
            hard_state: None,
            check_commit: false,
        })
    }

    fn hard_state(&mut self, shared: &Shared, group: u64) -> Result<&mut HardState, LogStoreError> {
        match &mut self.hard_state {
            Some(hard_state) => Ok(hard_state),
            slot @ None => Ok(slot.insert(shared.hard_state(group)?)),
        }
    }
}

/// Checks `ops` and encodes them into one raft-engine batch. The caller MUST
/// hold the write lock from this call until the batch is written.
pub(crate) fn stage(shared: &Shared, ops: &[(u64, Op)]) -> Result<LogBatch, LogStoreError> {
    let mut batch = LogBatch::with_capacity(ops.len() + 4);
    let mut views: BTreeMap<u64, GroupView> = BTreeMap::new();
    for (group, op) in ops {
        let group = *group;
        let view = match views.entry(group) {
            MapEntry::Occupied(view) => view.into_mut(),
            MapEntry::Vacant(slot) => slot.insert(GroupView::load(shared, group)?),
        };
        match op {
            Op::Append(entries) => stage_append(&mut batch, view, group, entries)?,
            Op::HardState(hard_state) => {
                batch.put_message(group, HARD_STATE_KEY.to_vec(), hard_state)?;
                view.hard_state = Some(hard_state.clone());
                view.check_commit = true;
            }
            Op::Commit(commit) => {
                let hard_state = view.hard_state(shared, group)?;
                hard_state.commit = *commit;
                batch.put_message(group, HARD_STATE_KEY.to_vec(), &*hard_state)?;
                view.check_commit = true;
            }
            Op::ConfState(conf_state) => {
                batch.put_message(group, CONF_STATE_KEY.to_vec(), conf_state)?;
            }
            Op::Snapshot(metadata) => {
                let first_index = view.truncated.index + 1;
                let commit = view.hard_state(shared, group)?.commit;
                if metadata.index < first_index || metadata.index < commit {
                    return Err(LogStoreError::SnapshotOutOfDate {
                        group,
                        index: metadata.index,
                        first_index,
                        commit,
                    });
                }
                // Drop every entry, above the snapshot too: raft-rs forgets its
                // whole log when it restores a snapshot.
                let compact_to = view.last_index.max(metadata.index) + 1;
                batch.add_command(group, Command::Compact { index: compact_to });
                let truncated = TruncatedState {
                    index: metadata.index,
                    term: metadata.term,
                };
                batch.put(group, TRUNCATED_KEY.to_vec(), truncated.encode())?;
                batch.put_message(group, SNAPSHOT_META_KEY.to_vec(), metadata)?;
                batch.put_message(group, CONF_STATE_KEY.to_vec(), metadata.get_conf_state())?;
                let hard_state = view.hard_state(shared, group)?;
                hard_state.term = hard_state.term.max(metadata.term);
                hard_state.commit = metadata.index;
                batch.put_message(group, HARD_STATE_KEY.to_vec(), &*hard_state)?;
                view.truncated = truncated;
                view.last_index = metadata.index;
                view.check_commit = true;
            }
        }
    }
    for (group, view) in &views {
        if let (true, Some(hard_state)) = (view.check_commit, &view.hard_state) {
            check_commit(*group, view, hard_state.commit)?;
        }
    }
    Ok(batch)
}

fn stage_append(
    batch: &mut LogBatch,
    view: &mut GroupView,
    group: u64,
    entries: &[Entry],
) -> Result<(), LogStoreError> {
    let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
        return Ok(());
    };
    if let Some(pair) = entries.windows(2).find(|p| p[1].index != p[0].index + 1) {
        return Err(LogStoreError::NonContiguousEntries {
            group,
            index: pair[1].index,
        });
    }
    let first_index = view.truncated.index + 1;
    if first.index < first_index {
        return Err(LogStoreError::OverwriteCompacted {
            group,
            index: first.index,
            first_index,
        });
    }
    if first.index > view.last_index + 1 {
        return Err(LogStoreError::LogGap {
            group,
            index: first.index,
            last_index: view.last_index,
        });
    }
    batch.add_entries::<EntryExt>(group, entries)?;
    view.last_index = last.index;
    Ok(())
}

/// raft-rs refuses to start from a hard state whose commit index is outside
/// `[truncated index, last index]`.
fn check_commit(group: u64, view: &GroupView, commit: u64) -> Result<(), LogStoreError> {
    if commit < view.truncated.index || commit > view.last_index {
        return Err(LogStoreError::CommitOutOfRange {
            group,
            commit,
            truncated_index: view.truncated.index,
            last_index: view.last_index,
        });
    }
    Ok(())
}
