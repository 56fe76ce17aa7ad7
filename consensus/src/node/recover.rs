//! Reconciling a group's log with its state machine when a node starts.

use super::{GroupId, RaftError};
use crate::{LogStore, WriteBatch};

/// Reconciles `group`'s log with the state machine's `applied` index and returns the applied
/// index to give raft-rs (which must not exceed the log's commit index).
///
/// The state machine's batches become durable when the log is compacted, while the commit
/// index travels in writes that are not synced (raft-rs may lose it and learn it again from
/// the leader). After a power loss the commit index can therefore be below the applied
/// index, and raft-rs refuses to start ("applied is out of range"). An applied entry was
/// committed, and applied entries were in the local log, synced, before they were applied,
/// so the commit index is raised to the applied index: it only restores a fact. (Found by
/// the simulator's power losses, seed 614.)
///
/// A state machine ahead of the whole log is one that installed a snapshot whose log write
/// never landed (a crash between the two; the state machine goes first so that it is never
/// behind the log's first index). The log's entries above its commit index may then be stale
/// ones, so nothing is raised: raft-rs starts from the log's commit index, and the entries
/// it delivers again up to the snapshot are ones the state machine already holds (it skips
/// indexes it has applied).
pub(super) fn commit_up_to_applied(
    log: &LogStore,
    group: GroupId,
    applied: u64,
) -> Result<u64, RaftError> {
    let err = |e: crate::LogStoreError| RaftError::Raft(format!("group {group}: {e}"));
    let commit = log.hard_state(group).map_err(err)?.get_commit();
    if applied <= commit {
        return Ok(applied);
    }
    let last = log
        .group_storage(group)
        .last_index()
        .map_err(|e| RaftError::Raft(format!("group {group}: {e}")))?;
    if applied > last {
        return Ok(commit);
    }
    let mut batch = WriteBatch::new();
    batch.set_commit(group, applied);
    log.write(batch, true).map_err(err)?;
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LogStoreConfig;
    use raft::eraftpb::{Entry, HardState};

    fn log_with(dir: &std::path::Path, last: u64, commit: u64) -> LogStore {
        let log = LogStore::open(LogStoreConfig::new(dir)).expect("open");
        let mut batch = WriteBatch::new();
        batch.append(
            0,
            (1..=last)
                .map(|index| Entry {
                    index,
                    term: 1,
                    ..Default::default()
                })
                .collect(),
        );
        batch.set_hard_state(
            0,
            HardState {
                term: 1,
                vote: 1,
                commit,
                ..Default::default()
            },
        );
        log.write(batch, true).expect("write");
        log
    }

    #[test]
    fn a_commit_index_behind_the_applied_one_is_raised_to_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = log_with(dir.path(), 10, 6);
        assert_eq!(commit_up_to_applied(&log, 0, 8).expect("raise"), 8);
        assert_eq!(log.hard_state(0).expect("hs").get_commit(), 8);
        // Never lowered.
        assert_eq!(commit_up_to_applied(&log, 0, 3).expect("no-op"), 3);
        assert_eq!(log.hard_state(0).expect("hs").get_commit(), 8);
    }

    #[test]
    fn a_state_machine_ahead_of_the_whole_log_starts_raft_from_the_log_commit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = log_with(dir.path(), 5, 3);
        assert_eq!(commit_up_to_applied(&log, 0, 9).expect("start"), 3);
        // Entries 4 and 5 may be stale: the commit index is left alone.
        assert_eq!(log.hard_state(0).expect("hs").get_commit(), 3);
    }
}
