//! Physical compaction: after a Compaction moved the compacted revision to `C`, remove every
//! version that no read at or above `C` can see: for each key, all versions at or below `C`
//! except the newest, and that one too if it is a tombstone (etcd's rule).
//!
//! It runs in small steps, each its own short write transaction, so applies interleave with it
//! and are never blocked for long. A step scans the next window of the revision log (revisions
//! in `[compacted_through, C]`), and compacts each key it meets; a key with no version in the
//! window had its newest version at or below `C` handled by an earlier compaction already.

use std::ops::ControlFlow;

use crate::backend::{Backend, BackendError, GroupId, ReadTables, Table, WriteTables};
use crate::encoding::{Revision, encode_key, history_key, split_history_key};
use crate::error::StoreError;
use crate::mvcc::{GroupState, KIND_DELETE, decode_rev_record};
use crate::store::Store;

/// What one step did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CompactStep {
    /// Versions removed.
    pub removed: u64,
    /// Whether work remains for the current compacted revision.
    pub more: bool,
}

impl<B: Backend> Store<B> {
    /// Runs one step of physical compaction of `group`, looking at about `max_revisions`
    /// revisions. Call until `more` is false; each call is one short transaction.
    pub fn compact_step(
        &self,
        group: GroupId,
        max_revisions: usize,
    ) -> Result<CompactStep, BackendError> {
        self.write(group, false, |tables, state| {
            step(tables, state, max_revisions.max(1))
        })
        .map_err(|e| match e {
            StoreError::Backend(b) => b,
            other => BackendError::Engine(other.to_string()),
        })
    }

    /// Runs physical compaction of `group` to the end.
    pub fn compact_all(&self, group: GroupId) -> Result<u64, BackendError> {
        let mut removed = 0;
        loop {
            let s = self.compact_step(group, 1000)?;
            removed += s.removed;
            if !s.more {
                return Ok(removed);
            }
        }
    }
}

fn step(
    tables: &mut dyn WriteTables,
    state: &mut GroupState,
    max: usize,
) -> Result<CompactStep, StoreError> {
    let target = state.compact_revision;
    let from = state.compacted_through.max(0);
    if target < 0 || from > target {
        return Ok(CompactStep::default());
    }
    // Collect the keys of the window's revisions, stopping on a main-revision boundary.
    let mut keys: Vec<Vec<u8>> = Vec::new();
    let mut seen = 0usize;
    let mut next_main = target + 1;
    let mut corrupt = None;
    let start = Revision::new(from, i64::MIN).encode();
    let end = Revision::new(target + 1, i64::MIN).encode();
    let mut last_main = None;
    tables.scan(Table::Revs, &start, Some(&end), false, &mut |k, v| {
        let Some(rev) = Revision::decode(k) else {
            corrupt = Some(format!("revision key {k:?}"));
            return ControlFlow::Break(());
        };
        if seen >= max && last_main != Some(rev.main) {
            next_main = rev.main;
            return ControlFlow::Break(());
        }
        match decode_rev_record(v) {
            Ok((_, kv)) => keys.push(kv.key),
            Err(e) => {
                corrupt = Some(e.to_string());
                return ControlFlow::Break(());
            }
        }
        last_main = Some(rev.main);
        seen += 1;
        ControlFlow::Continue(())
    })?;
    if let Some(what) = corrupt {
        return Err(BackendError::Corrupt {
            table: Table::Revs,
            what,
        }
        .into());
    }
    keys.sort_unstable();
    keys.dedup();
    let mut removed = 0;
    for key in &keys {
        removed += compact_key(tables, key, target)?;
    }
    state.compacted_through = next_main;
    Ok(CompactStep {
        removed,
        more: next_main <= target,
    })
}

/// Removes the versions of `key` that no read at or above `target` can see.
fn compact_key(tables: &mut dyn WriteTables, key: &[u8], target: i64) -> Result<u64, BackendError> {
    let mut start = Vec::with_capacity(key.len() + 2);
    encode_key(key, &mut start);
    let end = history_key(key, Revision::new(target + 1, i64::MIN));
    let mut versions: Vec<(Revision, u8)> = Vec::new();
    tables.scan(Table::History, &start, Some(&end), false, &mut |k, v| {
        if let Some((_, rev)) = split_history_key(k) {
            versions.push((rev, v.first().copied().unwrap_or(0)));
        }
        ControlFlow::Continue(())
    })?;
    let Some(&(newest, kind)) = versions.last() else {
        return Ok(0);
    };
    let mut removed = 0;
    for &(rev, _) in &versions {
        if rev != newest || kind == KIND_DELETE {
            tables.delete(Table::History, &history_key(key, rev))?;
            tables.delete(Table::Revs, &rev.encode())?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Counts versions in the history table.
pub(crate) fn count_versions<R: ReadTables + ?Sized>(tables: &R) -> Result<u64, BackendError> {
    let mut n = 0;
    tables.scan(Table::History, &[], None, false, &mut |_, _| {
        n += 1;
        ControlFlow::Continue(())
    })?;
    Ok(n)
}
