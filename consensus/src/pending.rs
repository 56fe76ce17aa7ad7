//! Entries handed to a writer but not yet written: what [`GroupStorage`](crate::GroupStorage)
//! serves above the engine's log until the write lands.
//!
//! raft-rs's `advance_append_async` forgets a Ready's entries (they leave its in-memory
//! "unstable" log) and reads them back through `Storage` from then on, while the write that
//! makes them durable may still be queued behind an fsync. So a Ready's entries are recorded
//! here, under the ticket of the write that carries them, before the Ready is advanced, and
//! dropped once that write has returned.
//!
//! Per group the pending entries are consecutive. They shadow the engine from their first
//! index up: a later append that overwrites entries (a follower resolving a conflict) replaces
//! pending entries at and above its first index, and once every write up to it has landed
//! the engine holds exactly what was shadowed.

use std::collections::{HashMap, VecDeque};

use raft::eraftpb::Entry;

/// Pending entries of every group.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    groups: HashMap<u64, VecDeque<(u64, Entry)>>,
}

impl Pending {
    /// Records `entries` (consecutive) of `group`, to be written by the write with `ticket`
    /// (tickets grow with every write). Pending entries at or above the first new index are
    /// replaced.
    pub(crate) fn append(&mut self, group: u64, entries: &[Entry], ticket: u64) {
        let Some(first) = entries.first().map(|e| e.index) else {
            return;
        };
        let queue = self.groups.entry(group).or_default();
        while queue.back().is_some_and(|(_, e)| e.index >= first) {
            queue.pop_back();
        }
        if queue.back().is_some_and(|(_, e)| e.index + 1 != first) {
            // Not contiguous with what is pending: the engine's log is below `first` (raft
            // never appends past its last index), so nothing pending is readable any more.
            queue.clear();
        }
        queue.extend(entries.iter().map(|e| (ticket, e.clone())));
    }

    /// Forgets every pending entry whose write (`ticket` or an earlier one) has landed.
    pub(crate) fn release(&mut self, ticket: u64) {
        self.groups.retain(|_, queue| {
            while queue.front().is_some_and(|(t, _)| *t <= ticket) {
                queue.pop_front();
            }
            !queue.is_empty()
        });
    }

    /// Forgets `group`'s pending entries (its log was replaced by a snapshot).
    pub(crate) fn clear(&mut self, group: u64) {
        self.groups.remove(&group);
    }

    /// First and last pending index of `group`, if any.
    pub(crate) fn bounds(&self, group: u64) -> Option<(u64, u64)> {
        let queue = self.groups.get(&group)?;
        Some((queue.front()?.1.index, queue.back()?.1.index))
    }

    /// The pending entry of `group` at `index`.
    pub(crate) fn get(&self, group: u64, index: u64) -> Option<&Entry> {
        let queue = self.groups.get(&group)?;
        let first = queue.front()?.1.index;
        let offset = usize::try_from(index.checked_sub(first)?).ok()?;
        queue.get(offset).map(|(_, e)| e)
    }

    /// Pending entries of `group` in `[low, high)`, clipped to what is pending.
    pub(crate) fn range(&self, group: u64, low: u64, high: u64) -> Vec<Entry> {
        let Some(queue) = self.groups.get(&group) else {
            return Vec::new();
        };
        queue
            .iter()
            .filter(|(_, e)| e.index >= low && e.index < high)
            .map(|(_, e)| e.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(range: std::ops::RangeInclusive<u64>, term: u64) -> Vec<Entry> {
        range
            .map(|index| Entry {
                index,
                term,
                ..Default::default()
            })
            .collect()
    }

    #[test]
    fn appends_replace_from_their_first_index_and_writes_release_in_order() {
        let mut p = Pending::default();
        p.append(1, &entries(5..=10, 1), 1);
        assert_eq!(p.bounds(1), Some((5, 10)));
        // A conflicting append at 8 with a newer term replaces 8..=10.
        p.append(1, &entries(8..=9, 2), 2);
        assert_eq!(p.bounds(1), Some((5, 9)));
        assert_eq!(p.get(1, 7).map(|e| e.term), Some(1));
        assert_eq!(p.get(1, 8).map(|e| e.term), Some(2));
        assert_eq!(p.get(1, 10), None);
        // Write 1 landed: 5..=7 are in the engine now; 8..=9 still shadow it.
        p.release(1);
        assert_eq!(p.bounds(1), Some((8, 9)));
        let got: Vec<u64> = p.range(1, 0, 100).iter().map(|e| e.index).collect();
        assert_eq!(got, vec![8, 9]);
        p.release(2);
        assert_eq!(p.bounds(1), None);
    }

    #[test]
    fn an_append_below_everything_pending_replaces_it_all() {
        let mut p = Pending::default();
        p.append(3, &entries(5..=6, 1), 1);
        p.append(3, &entries(2..=3, 2), 2);
        assert_eq!(p.bounds(3), Some((2, 3)));
        p.release(1);
        assert_eq!(p.bounds(3), Some((2, 3)));
        p.clear(3);
        assert_eq!(p.bounds(3), None);
        assert!(p.range(3, 0, 10).is_empty());
    }

    #[test]
    fn groups_are_independent() {
        let mut p = Pending::default();
        p.append(1, &entries(1..=2, 1), 1);
        p.append(2, &entries(7..=7, 1), 2);
        p.release(1);
        assert_eq!(p.bounds(1), None);
        assert_eq!(p.bounds(2), Some((7, 7)));
    }
}
