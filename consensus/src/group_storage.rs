//! One group's view of the log store, as raft-rs's [`Storage`].

use std::fmt;
use std::sync::Arc;

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, NO_LIMIT, RaftState, Storage, StorageError};

use crate::error::LogStoreError;
use crate::shared::Shared;
use crate::snapshot_provider::SnapshotProvider;

/// raft-rs's [`Storage`] for one Raft group of a [`LogStore`](crate::LogStore).
///
/// A cheap-to-clone handle (the shared engine, the group id and an optional
/// snapshot provider). It only reads: a Ready's changes are persisted with a
/// [`WriteBatch`](crate::WriteBatch) and [`LogStore::write`](crate::LogStore::write),
/// and are visible here once that returns.
///
/// Without a provider, [`Storage::snapshot`] answers
/// `SnapshotTemporarilyUnavailable`, so raft keeps retrying and a follower
/// whose next entry was compacted cannot catch up; voters MUST set one with
/// [`GroupStorage::with_snapshot_provider`].
#[derive(Clone)]
pub struct GroupStorage {
    /// The engine and the state all handles share.
    shared: Arc<Shared>,
    /// The Raft group (raft-engine region) this handle reads.
    group: u64,
    /// Produces state-machine snapshots for [`Storage::snapshot`].
    provider: Option<Arc<dyn SnapshotProvider>>,
}

impl fmt::Debug for GroupStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupStorage")
            .field("group", &self.group)
            .field("has_snapshot_provider", &self.provider.is_some())
            .finish()
    }
}

impl GroupStorage {
    pub(crate) fn new(shared: Arc<Shared>, group: u64) -> Self {
        Self {
            shared,
            group,
            provider: None,
        }
    }

    /// This handle, answering [`Storage::snapshot`] from `provider`.
    pub fn with_snapshot_provider(mut self, provider: Arc<dyn SnapshotProvider>) -> Self {
        self.provider = Some(provider);
        self
    }

    /// The Raft group this handle reads.
    pub fn group(&self) -> u64 {
        self.group
    }

    /// The group's hard state; default if never written.
    pub fn hard_state(&self) -> Result<HardState, LogStoreError> {
        self.shared.hard_state(self.group)
    }

    /// The group's conf state; default if never written.
    pub fn conf_state(&self) -> Result<ConfState, LogStoreError> {
        self.shared.conf_state(self.group)
    }

    /// Metadata of the last snapshot applied to the group, if any.
    pub fn snapshot_metadata(&self) -> Result<Option<SnapshotMetadata>, LogStoreError> {
        self.shared.snapshot_metadata(self.group)
    }

    /// Index of the first entry in the log: the last discarded index plus one
    /// (1 for a group that never discarded any).
    pub fn first_index(&self) -> Result<u64, LogStoreError> {
        Ok(self.shared.truncated(self.group)?.index + 1)
    }

    /// Index of the last entry in the log; `first_index - 1` when it is empty.
    pub fn last_index(&self) -> Result<u64, LogStoreError> {
        if let Some((_, last)) = self.shared.pending().bounds(self.group) {
            return Ok(last);
        }
        let truncated = self.shared.truncated(self.group)?;
        Ok(self.shared.last_index(self.group, &truncated))
    }

    /// Term of the entry at `index`, for `index` in `[first_index - 1, last_index]`.
    pub fn term(&self, index: u64) -> Result<u64, LogStoreError> {
        {
            let pending = self.shared.pending();
            if let Some((first, last)) = pending.bounds(self.group)
                && index >= first
            {
                return match pending.get(self.group, index) {
                    Some(entry) => Ok(entry.term),
                    None => Err(LogStoreError::Unavailable {
                        group: self.group,
                        index,
                        last_index: last,
                    }),
                };
            }
        }
        self.shared.term(self.group, index)
    }

    /// Entries `[low, high)`, limited as [`Storage::entries`] describes;
    /// `None` means no size limit.
    pub fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: Option<u64>,
    ) -> Result<Vec<Entry>, LogStoreError> {
        // Held across the engine read so that a write landing meanwhile cannot release
        // entries between the two halves (the engine has them by then anyway).
        let pending = self.shared.pending();
        let Some((first, last)) = pending.bounds(self.group) else {
            return self.shared.entries(self.group, low, high, max_size);
        };
        if low > high {
            return Err(LogStoreError::InvalidRange {
                group: self.group,
                low,
                high,
            });
        }
        if high > last + 1 {
            return Err(LogStoreError::Unavailable {
                group: self.group,
                index: high - 1,
                last_index: last,
            });
        }
        let mut entries = Vec::new();
        if low < first {
            let engine_high = high.min(first);
            entries = self
                .shared
                .entries(self.group, low, engine_high, max_size)?;
            if (entries.len() as u64) < engine_high - low {
                // Cut by `max_size` already.
                return Ok(entries);
            }
        }
        if high > first {
            entries.extend(pending.range(self.group, low.max(first), high));
        }
        raft::util::limit_size(&mut entries, max_size);
        Ok(entries)
    }
}

impl Storage for GroupStorage {
    /// The persisted hard state and conf state (defaults for a new group).
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(self.hard_state()?, self.conf_state()?))
    }

    /// Entries `[low, high)`; at least one if the range is not empty, then as
    /// many as fit in `max_size` bytes (raft's `limit_size`). `Compacted` if
    /// `low < first_index`, `Unavailable` if `high > last_index + 1`. Entries
    /// are read synchronously, so `context` is not used.
    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let max_size = max_size.into().filter(|&max| max != NO_LIMIT);
        Ok(GroupStorage::entries(self, low, high, max_size)?)
    }

    /// `Compacted` below `first_index - 1`, `Unavailable` above `last_index`.
    fn term(&self, idx: u64) -> raft::Result<u64> {
        Ok(GroupStorage::term(self, idx)?)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(GroupStorage::first_index(self)?)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(GroupStorage::last_index(self)?)
    }

    /// Asks the snapshot provider; `SnapshotTemporarilyUnavailable` if there is
    /// none, it has nothing yet, or its snapshot is older than `request_index`.
    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        let unavailable = raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable);
        let Some(provider) = &self.provider else {
            return Err(unavailable);
        };
        let Some(snapshot) = provider.snapshot(self.group, request_index, to) else {
            return Err(unavailable);
        };
        let index = snapshot.get_metadata().index;
        if index == 0 || index < request_index {
            tracing::warn!(
                group = self.group,
                index,
                request_index,
                "snapshot provider returned a snapshot older than requested"
            );
            return Err(unavailable);
        }
        Ok(snapshot)
    }
}

#[cfg(test)]
mod tests;
