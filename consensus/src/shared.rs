//! The state every handle on a node's log store shares, and the read paths
//! over it.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock};

use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, SnapshotMetadata};
use raft_engine::Engine;

use crate::disk::LogFs;

use crate::error::LogStoreError;
use crate::layout::{
    CONF_STATE_KEY, EntryExt, HARD_STATE_KEY, SNAPSHOT_META_KEY, TRUNCATED_KEY, TruncatedState,
};
use crate::pending::Pending;
use crate::term_cache::TermCache;

/// How many entry locations to ask raft-engine for at once: it allocates room
/// for the whole requested range before applying `max_size`.
const FETCH_CHUNK: u64 = 256;

/// Owned by [`LogStore`](crate::LogStore) and every
/// [`GroupStorage`](crate::GroupStorage) through an `Arc`; the engine closes
/// when the last handle drops.
pub(crate) struct Shared {
    /// The one raft-engine instance holding every group's log.
    pub(crate) engine: Engine<LogFs>,
    /// Serialises writers, so that a batch is checked against the log it is
    /// applied to (raft-engine panics on an append it cannot place).
    write_lock: Mutex<()>,
    /// Per-group terms of recent entries, so `term()` avoids disk reads.
    terms: RwLock<HashMap<u64, TermCache>>,
    /// Entries handed to a writer and not yet written, readable through `GroupStorage`.
    pending: Mutex<Pending>,
    /// How far the Raft loop running a group has applied it (raft-rs's own applied index,
    /// which trails the state machine's by the reports in flight). Compaction never passes
    /// it: raft-rs reads the entries after it (e.g. when it campaigns).
    pub(crate) raft_applied: Mutex<HashMap<u64, u64>>,
}

impl Shared {
    /// Wraps an opened engine, caching the term of every group's last entry.
    pub(crate) fn new(engine: Engine<LogFs>) -> Result<Self, LogStoreError> {
        let mut terms = HashMap::new();
        for group in engine.raft_groups() {
            if let Some(last) = engine.last_index(group)
                && let Some(entry) = engine.get_entry::<EntryExt>(group, last)?
            {
                terms.insert(group, TermCache::single(last, entry.term));
            }
        }
        Ok(Self {
            engine,
            write_lock: Mutex::new(()),
            terms: RwLock::new(terms),
            pending: Mutex::new(Pending::default()),
            raft_applied: Mutex::new(HashMap::new()),
        })
    }

    /// Held by every write; a poisoned lock guards nothing inconsistent (the
    /// engine applies a batch entirely or not at all), so it is taken anyway.
    pub(crate) fn lock_writes(&self) -> MutexGuard<'_, ()> {
        self.write_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The pending entries; a poisoned lock is taken anyway (every change to them is one
    /// call that cannot panic half-way through in a way that breaks their order).
    pub(crate) fn pending(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on `group`'s term cache.
    pub(crate) fn update_terms(&self, group: u64, f: impl FnOnce(&mut TermCache)) {
        let mut terms = self.terms.write().unwrap_or_else(PoisonError::into_inner);
        f(terms.entry(group).or_default());
    }

    /// The cached term of `index` in `group`.
    fn cached_term(&self, group: u64, index: u64) -> Option<u64> {
        let terms = self.terms.read().unwrap_or_else(PoisonError::into_inner);
        terms.get(&group)?.get(index)
    }

    /// The last entry `group` discarded (index 0, term 0 if none).
    pub(crate) fn truncated(&self, group: u64) -> Result<TruncatedState, LogStoreError> {
        match self.engine.get(group, TRUNCATED_KEY) {
            Some(bytes) => TruncatedState::decode(group, &bytes),
            None => Ok(TruncatedState::default()),
        }
    }

    /// The index of `group`'s last entry, or the truncated index if the log is empty.
    pub(crate) fn last_index(&self, group: u64, truncated: &TruncatedState) -> u64 {
        self.engine
            .last_index(group)
            .map_or(truncated.index, |last| last.max(truncated.index))
    }

    /// `group`'s hard state, default if never written.
    pub(crate) fn hard_state(&self, group: u64) -> Result<HardState, LogStoreError> {
        Ok(self
            .engine
            .get_message::<HardState>(group, HARD_STATE_KEY)?
            .unwrap_or_default())
    }

    /// `group`'s conf state, default if never written.
    pub(crate) fn conf_state(&self, group: u64) -> Result<ConfState, LogStoreError> {
        Ok(self
            .engine
            .get_message::<ConfState>(group, CONF_STATE_KEY)?
            .unwrap_or_default())
    }

    /// Metadata of the last snapshot applied to `group`, if any.
    pub(crate) fn snapshot_metadata(
        &self,
        group: u64,
    ) -> Result<Option<SnapshotMetadata>, LogStoreError> {
        Ok(self
            .engine
            .get_message::<SnapshotMetadata>(group, SNAPSHOT_META_KEY)?)
    }

    /// The term of the entry at `index`, answerable for `[first_index - 1, last_index]`.
    pub(crate) fn term(&self, group: u64, index: u64) -> Result<u64, LogStoreError> {
        let truncated = self.truncated(group)?;
        if index == truncated.index {
            return Ok(truncated.term);
        }
        let first_index = truncated.index + 1;
        if index < truncated.index {
            return Err(LogStoreError::Compacted {
                group,
                index,
                first_index,
            });
        }
        let last_index = self.last_index(group, &truncated);
        if index > last_index {
            return Err(LogStoreError::Unavailable {
                group,
                index,
                last_index,
            });
        }
        if let Some(term) = self.cached_term(group, index) {
            return Ok(term);
        }
        match self.engine.get_entry::<EntryExt>(group, index)? {
            Some(entry) => Ok(entry.term),
            // Compacted or overwritten by a writer since the checks above.
            None => Err(self.missing(group, index)),
        }
    }

    /// Entries `[low, high)` of `group`, cut after the first entry whose
    /// inclusion makes their encoded size exceed `max_size` (raft-rs's
    /// `limit_size`: at least one entry is returned).
    pub(crate) fn entries(
        &self,
        group: u64,
        low: u64,
        high: u64,
        max_size: Option<u64>,
    ) -> Result<Vec<Entry>, LogStoreError> {
        if low > high {
            return Err(LogStoreError::InvalidRange { group, low, high });
        }
        let truncated = self.truncated(group)?;
        let first_index = truncated.index + 1;
        if low < first_index {
            return Err(LogStoreError::Compacted {
                group,
                index: low,
                first_index,
            });
        }
        let last_index = self.last_index(group, &truncated);
        if high > last_index + 1 {
            return Err(LogStoreError::Unavailable {
                group,
                index: high - 1,
                last_index,
            });
        }
        let mut entries = Vec::new();
        let mut size: u64 = 0;
        let mut next = low;
        while next < high {
            let chunk_end = high.min(next.saturating_add(FETCH_CHUNK));
            // raft-engine returns at least one entry however small the budget.
            let budget =
                max_size.map(|max| usize::try_from(max.saturating_sub(size)).unwrap_or(usize::MAX));
            let before = entries.len();
            let fetched = self
                .engine
                .fetch_entries_to::<EntryExt>(group, next, chunk_end, budget, &mut entries)
                .map_err(|err| self.engine_read_error(group, next, err))?;
            if fetched == 0 {
                return Err(self.missing(group, next));
            }
            size = entries[before..].iter().fold(size, |acc, e| {
                acc.saturating_add(u64::from(e.compute_size()))
            });
            next += fetched as u64;
            if max_size.is_some_and(|max| size >= max) || next < chunk_end {
                break;
            }
        }
        raft::util::limit_size(&mut entries, max_size);
        Ok(entries)
    }

    /// Maps raft-engine's "not there" read errors onto ours.
    fn engine_read_error(&self, group: u64, index: u64, err: raft_engine::Error) -> LogStoreError {
        match err {
            raft_engine::Error::EntryCompacted | raft_engine::Error::EntryNotFound => {
                self.missing(group, index)
            }
            other => LogStoreError::Engine(other),
        }
    }

    /// The error for an entry that passed the bounds checks but was not found:
    /// a writer compacted or overwrote it in between.
    fn missing(&self, group: u64, index: u64) -> LogStoreError {
        let truncated = match self.truncated(group) {
            Ok(truncated) => truncated,
            Err(err) => return err,
        };
        if index <= truncated.index {
            LogStoreError::Compacted {
                group,
                index,
                first_index: truncated.index + 1,
            }
        } else {
            LogStoreError::Unavailable {
                group,
                index,
                last_index: self.last_index(group, &truncated),
            }
        }
    }
}
