//! The log store's error type, and how it maps onto raft-rs's.

use std::path::PathBuf;

use raft::StorageError;

/// Why a log store operation failed.
///
/// Reads and writes that break raft's log contract (a gap, overwriting a
/// compacted entry, an out-of-date snapshot) are refused with a variant naming
/// the group and the indexes involved; nothing is written in that case.
/// [`LogStoreError::Engine`] is an I/O or corruption failure of raft-engine
/// itself and should be treated as fatal by the node.
#[derive(Debug, thiserror::Error)]
pub enum LogStoreError {
    /// raft-engine takes its directory as a UTF-8 string.
    #[error("log store directory {0:?} is not valid UTF-8")]
    NonUtf8Path(PathBuf),

    /// raft-engine failed (I/O, corruption, a batch over its size limit).
    #[error("raft-engine: {0}")]
    Engine(#[from] raft_engine::Error),

    /// A stored protobuf value could not be encoded or decoded.
    #[error("protobuf: {0}")]
    Codec(#[from] protobuf::ProtobufError),

    /// A stored value has the wrong shape.
    #[error("group {group}: value under key {key} is corrupt: {reason}")]
    CorruptValue {
        /// Raft group id.
        group: u64,
        /// The key whose value is corrupt.
        key: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    /// The entry was discarded by compaction or a snapshot.
    #[error("group {group}: index {index} is compacted (first index is {first_index})")]
    Compacted {
        /// Raft group id.
        group: u64,
        /// The index asked for.
        index: u64,
        /// The group's first index.
        first_index: u64,
    },

    /// The entry is beyond the last index of the log.
    #[error("group {group}: index {index} is beyond the last index {last_index}")]
    Unavailable {
        /// Raft group id.
        group: u64,
        /// The index asked for.
        index: u64,
        /// The group's last index.
        last_index: u64,
    },

    /// A read range with `low > high`.
    #[error("group {group}: invalid range [{low}, {high})")]
    InvalidRange {
        /// Raft group id.
        group: u64,
        /// Start of the range.
        low: u64,
        /// End of the range (exclusive).
        high: u64,
    },

    /// Entries to append do not have consecutive indexes.
    #[error("group {group}: entries to append are not consecutive at index {index}")]
    NonContiguousEntries {
        /// Raft group id.
        group: u64,
        /// The first index that does not follow its predecessor.
        index: u64,
    },

    /// Appending would leave a hole after the last entry.
    #[error("group {group}: appending at index {index} leaves a gap after last index {last_index}")]
    LogGap {
        /// Raft group id.
        group: u64,
        /// Index of the first entry to append.
        index: u64,
        /// The group's last index.
        last_index: u64,
    },

    /// Appending would overwrite entries that were compacted away.
    #[error(
        "group {group}: appending at index {index} overwrites compacted entries (first index is {first_index})"
    )]
    OverwriteCompacted {
        /// Raft group id.
        group: u64,
        /// Index of the first entry to append.
        index: u64,
        /// The group's first index.
        first_index: u64,
    },

    /// The snapshot is older than what the log already discarded, or than the
    /// persisted commit index (raft never rolls committed entries back).
    #[error(
        "group {group}: snapshot at index {index} is out of date (first index {first_index}, commit {commit})"
    )]
    SnapshotOutOfDate {
        /// Raft group id.
        group: u64,
        /// The snapshot's index.
        index: u64,
        /// The group's first index.
        first_index: u64,
        /// The group's persisted commit index.
        commit: u64,
    },

    /// Compaction asked to drop entries that do not exist yet.
    #[error("group {group}: cannot compact to {index}, past last index {last_index} + 1")]
    CompactBeyondLog {
        /// Raft group id.
        group: u64,
        /// The requested compact index.
        index: u64,
        /// The group's last index.
        last_index: u64,
    },

    /// Compaction asked to drop entries above the persisted commit index; raft-rs
    /// refuses to restart from such a log ("hs.commit is out of range").
    #[error("group {group}: cannot compact to {index}, the persisted commit index is {commit}")]
    CompactUncommitted {
        /// Raft group id.
        group: u64,
        /// The requested compact index.
        index: u64,
        /// The persisted commit index.
        commit: u64,
    },

    /// A hard state whose commit index lies outside the log; raft-rs refuses to
    /// restart from it.
    #[error(
        "group {group}: commit index {commit} is outside the log [{truncated_index}, {last_index}]"
    )]
    CommitOutOfRange {
        /// Raft group id.
        group: u64,
        /// The commit index of the hard state being written.
        commit: u64,
        /// Index of the last discarded entry.
        truncated_index: u64,
        /// The group's last index after the batch.
        last_index: u64,
    },
}

impl From<LogStoreError> for raft::Error {
    /// Maps the variants raft-rs understands onto its own storage errors, so
    /// that raft can react (e.g. send a snapshot on `Compacted`); every other
    /// failure becomes `StorageError::Other`.
    fn from(err: LogStoreError) -> Self {
        let storage = match err {
            LogStoreError::Compacted { .. } => StorageError::Compacted,
            LogStoreError::Unavailable { .. } => StorageError::Unavailable,
            LogStoreError::SnapshotOutOfDate { .. } => StorageError::SnapshotOutOfDate,
            other => StorageError::Other(Box::new(other)),
        };
        raft::Error::Store(storage)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_to_the_raft_errors_raft_reacts_to() {
        let compacted = LogStoreError::Compacted {
            group: 1,
            index: 2,
            first_index: 3,
        };
        assert_eq!(
            raft::Error::from(compacted),
            raft::Error::Store(StorageError::Compacted)
        );
        let unavailable = LogStoreError::Unavailable {
            group: 1,
            index: 9,
            last_index: 3,
        };
        assert_eq!(
            raft::Error::from(unavailable),
            raft::Error::Store(StorageError::Unavailable)
        );
        let out_of_date = LogStoreError::SnapshotOutOfDate {
            group: 1,
            index: 2,
            first_index: 3,
            commit: 0,
        };
        assert_eq!(
            raft::Error::from(out_of_date),
            raft::Error::Store(StorageError::SnapshotOutOfDate)
        );
        let gap = LogStoreError::LogGap {
            group: 1,
            index: 9,
            last_index: 3,
        };
        let raft::Error::Store(StorageError::Other(inner)) = raft::Error::from(gap) else {
            panic!("a gap is not one of raft's own storage errors");
        };
        assert!(inner.to_string().contains("gap"));
    }
}
