//! What the log store keeps in raft-engine for each Raft group, and how.
//!
//! raft-engine stores, per *region* (here: one Raft group id, a `u64`), a log of
//! entries indexed by a `u64` and a small key-value map. Entries are raft-rs
//! [`Entry`] messages; the key-value map holds the group's metadata under the
//! fixed keys below. Keys must not start with `__` (raft-engine reserves that
//! prefix).

use raft::eraftpb::Entry;
use raft_engine::MessageExt;

use crate::error::LogStoreError;

/// Key of the group's [`raft::eraftpb::HardState`] (term, vote, commit), protobuf-encoded.
pub(crate) const HARD_STATE_KEY: &[u8] = b"raft.hard_state";
/// Key of the group's [`raft::eraftpb::ConfState`] (voters, learners), protobuf-encoded.
pub(crate) const CONF_STATE_KEY: &[u8] = b"raft.conf_state";
/// Key of the metadata of the last snapshot applied to the group
/// ([`raft::eraftpb::SnapshotMetadata`]), protobuf-encoded.
pub(crate) const SNAPSHOT_META_KEY: &[u8] = b"raft.snapshot_meta";
/// Key of how many times a node has started the group, 8 bytes big-endian (see
/// [`LogStore::next_boot`](crate::LogStore::next_boot)).
pub(crate) const BOOTS_KEY: &[u8] = b"node.boots";
/// Key of the group's [`TruncatedState`], 16 bytes.
pub(crate) const TRUNCATED_KEY: &[u8] = b"raft.truncated";

/// Tells raft-engine how to find the index of a raft-rs log entry.
///
/// Pass it as the type parameter of raft-engine's entry methods, e.g.
/// `engine.get_entry::<EntryExt>(group, index)`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EntryExt;

impl MessageExt for EntryExt {
    type Entry = Entry;

    fn index(entry: &Entry) -> u64 {
        entry.index
    }
}

/// The last entry dropped from a group's log, by compaction or by a snapshot.
///
/// raft-rs asks for the term of `first_index - 1` to match logs, so the term of
/// the last discarded entry must outlive the entry. A group that never
/// compacted is truncated at index 0, term 0, which makes its first index 1.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TruncatedState {
    /// Index of the last discarded entry; the first entry still in the log is `index + 1`.
    pub(crate) index: u64,
    /// Term of the entry at `index`.
    pub(crate) term: u64,
}

impl TruncatedState {
    /// Encodes as index then term, each big-endian.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16);
        out.extend_from_slice(&self.index.to_be_bytes());
        out.extend_from_slice(&self.term.to_be_bytes());
        out
    }

    /// Decodes what [`TruncatedState::encode`] wrote.
    pub(crate) fn decode(group: u64, bytes: &[u8]) -> Result<Self, LogStoreError> {
        let Ok(bytes) = <[u8; 16]>::try_from(bytes) else {
            return Err(LogStoreError::CorruptValue {
                group,
                key: "raft.truncated",
                reason: format!("expected 16 bytes, found {}", bytes.len()),
            });
        };
        let (index, term) = bytes.split_at(8);
        let word = |half: &[u8]| {
            let mut word = [0; 8];
            word.copy_from_slice(half);
            u64::from_be_bytes(word)
        };
        Ok(Self {
            index: word(index),
            term: word(term),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncated_state_round_trips() {
        let state = TruncatedState {
            index: 42,
            term: u64::MAX,
        };
        let decoded = TruncatedState::decode(7, &state.encode()).expect("decodes");
        assert_eq!(decoded, state);
    }

    #[test]
    fn truncated_state_rejects_wrong_length() {
        for len in [0, 8, 15, 17] {
            let err = TruncatedState::decode(7, &vec![0; len]).expect_err("wrong length");
            assert!(matches!(err, LogStoreError::CorruptValue { group: 7, .. }));
        }
    }

    #[test]
    fn keys_avoid_the_prefix_raft_engine_reserves() {
        for key in [
            HARD_STATE_KEY,
            CONF_STATE_KEY,
            SNAPSHOT_META_KEY,
            TRUNCATED_KEY,
        ] {
            assert!(!key.starts_with(b"__"));
        }
    }
}
