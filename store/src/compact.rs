//! Physical compaction: after a Compaction moved the compacted revision to `C`, remove every
//! version that no read at or above `C` can see: for each key, all versions at or below `C`
//! except the newest, and that one too if it is a tombstone (etcd's rule).
//!
//! It runs in small steps, each its own short write transaction, so applies interleave with it
//! and are never blocked for long. A step takes the next window of about N revisions of the
//! revision log (from `compacted_through` up to `C`) and removes the window's versions that are
//! not the newest of their key at or below `C`, plus the one version an earlier compaction
//! kept below the window for each key it meets (now superseded). A key with no version in any
//! window has nothing to remove. Work per step is bounded by the window, whatever the history.

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
    // The window: revisions from `from` on, about `max` of them, ending on a main boundary.
    let mut window: Vec<(Revision, Vec<u8>)> = Vec::new();
    let mut next_main = target + 1;
    let mut corrupt = None;
    let start = Revision::new(from, i64::MIN).encode();
    let end = Revision::new(target + 1, i64::MIN).encode();
    tables.scan(Table::Revs, &start, Some(&end), false, &mut |k, v| {
        let Some(rev) = Revision::decode(k) else {
            corrupt = Some(format!("revision key {k:?}"));
            return ControlFlow::Break(());
        };
        if window.len() >= max && window.last().map(|(r, _)| r.main) != Some(rev.main) {
            next_main = rev.main;
            return ControlFlow::Break(());
        }
        match decode_rev_record(v) {
            Ok((_, kv)) => window.push((rev, kv.key)),
            Err(e) => {
                corrupt = Some(e.to_string());
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    })?;
    if let Some(what) = corrupt {
        return Err(BackendError::Corrupt {
            table: Table::Revs,
            what,
        }
        .into());
    }
    window.sort_unstable_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(&b.0)));
    let mut removed = 0;
    for group in window.chunk_by(|a, b| a.1 == b.1) {
        let key = &group[0].1;
        let revs: Vec<Revision> = group.iter().map(|(r, _)| *r).collect();
        removed += compact_key(tables, key, &revs, from, target)?;
    }
    state.compacted_through = next_main;
    Ok(CompactStep {
        removed,
        more: next_main <= target,
    })
}

/// Removes, of `key`'s versions, those in `window` (its revisions in this step's window) and
/// those below `from` (left by an earlier compaction) that no read at or above `target` can
/// see: all but the newest at or below `target`, and that one too if it is a tombstone.
fn compact_key(
    tables: &mut dyn WriteTables,
    key: &[u8],
    window: &[Revision],
    from: i64,
    target: i64,
) -> Result<u64, BackendError> {
    let mut start = Vec::with_capacity(key.len() + 2);
    encode_key(key, &mut start);
    // The newest version at or below the target.
    let end = history_key(key, Revision::new(target + 1, i64::MIN));
    let mut newest = None;
    tables.scan(Table::History, &start, Some(&end), true, &mut |k, v| {
        if let Some((_, rev)) = split_history_key(k) {
            newest = Some((rev, v.first().copied().unwrap_or(0)));
        }
        ControlFlow::Break(())
    })?;
    let Some((newest, kind)) = newest else {
        return Ok(0);
    };
    // Versions below the window: at most the one an earlier compaction kept.
    let below = history_key(key, Revision::new(from, i64::MIN));
    let mut older = Vec::new();
    tables.scan(Table::History, &start, Some(&below), false, &mut |k, _| {
        if let Some((_, rev)) = split_history_key(k) {
            older.push(rev);
        }
        ControlFlow::Continue(())
    })?;
    let mut removed = 0;
    for &rev in older.iter().chain(window) {
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
