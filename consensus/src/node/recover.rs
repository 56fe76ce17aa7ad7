//! Reconciling a group's log with its state machine when a node starts.

use super::{GroupId, RaftError};
use crate::{LogStore, WriteBatch};

/// Raises `group`'s persisted commit index to what the state machine has applied, if the
/// log's is behind it.
///
/// The state machine's batches become durable when the log is compacted, while the commit
/// index travels in writes that are not synced (raft-rs may lose it and learn it again from
/// the leader). After a power loss the commit index can therefore be below the applied
/// index, and raft-rs refuses to start ("applied is out of range"). An applied entry was
/// committed, so raising the commit index to it only restores a fact. Applied entries were
/// in the local log, synced, before they were applied; a log that ends before the applied
/// index is refused rather than made up. (Found by the simulator's power losses, seed 614.)
pub(super) fn commit_up_to_applied(
    log: &LogStore,
    group: GroupId,
    applied: u64,
) -> Result<(), RaftError> {
    let err = |e: crate::LogStoreError| RaftError::Raft(format!("group {group}: {e}"));
    let commit = log.hard_state(group).map_err(err)?.get_commit();
    if applied <= commit {
        return Ok(());
    }
    let last = log
        .group_storage(group)
        .last_index()
        .map_err(|e| RaftError::Raft(format!("group {group}: {e}")))?;
    if applied > last {
        return Err(RaftError::Raft(format!(
            "group {group}: the state machine has applied index {applied} but the Raft log \
             ends at {last}"
        )));
    }
    let mut batch = WriteBatch::new();
    batch.set_commit(group, applied);
    log.write(batch, true).map_err(err)?;
    Ok(())
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
        commit_up_to_applied(&log, 0, 8).expect("raise");
        assert_eq!(log.hard_state(0).expect("hs").get_commit(), 8);
        // Never lowered.
        commit_up_to_applied(&log, 0, 3).expect("no-op");
        assert_eq!(log.hard_state(0).expect("hs").get_commit(), 8);
    }

    #[test]
    fn a_log_shorter_than_the_applied_index_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = log_with(dir.path(), 5, 5);
        let e = commit_up_to_applied(&log, 0, 9).expect_err("refused");
        assert!(e.to_string().contains("ends at 5"), "{e}");
        assert_eq!(log.hard_state(0).expect("hs").get_commit(), 5);
    }
}
