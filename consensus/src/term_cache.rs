//! Terms of recent log entries, kept in memory so `term(idx)` does not read an
//! entry back from disk.
//!
//! raft-rs asks for the term of the last entry (and of `prev_log_index`) on
//! nearly every message it handles; raft-engine keeps only the file location
//! of an entry in memory, so answering from raft-engine costs a file read and
//! the decoding of the whole entry. Terms change rarely, so the terms of a
//! contiguous index range compress into a few runs.
//!
//! Invariant: every index the cache answers for holds, in raft-engine, an entry
//! with that term, or held one at a moment the reader could have observed. The
//! writer upholds it by dropping the affected range *before* a write that may
//! change it ([`TermCache::truncate_from`], [`TermCache::clear`]) and refilling
//! it after the write succeeded ([`TermCache::append`]).

use raft::eraftpb::Entry;

/// The terms of the index range `[start, end)`, as runs of equal terms.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TermCache {
    /// `(first index of the run, term)`, sorted by index, adjacent runs differ in term.
    runs: Vec<(u64, u64)>,
    /// One past the last cached index; meaningless while `runs` is empty.
    end: u64,
}

impl TermCache {
    /// A cache holding only the term of `index`.
    pub(crate) fn single(index: u64, term: u64) -> Self {
        Self {
            runs: vec![(index, term)],
            end: index.saturating_add(1),
        }
    }

    /// The term of `index`, if cached.
    pub(crate) fn get(&self, index: u64) -> Option<u64> {
        let start = self.runs.first()?.0;
        if index < start || index >= self.end {
            return None;
        }
        let after = self.runs.partition_point(|&(first, _)| first <= index);
        after.checked_sub(1).map(|i| self.runs[i].1)
    }

    /// Forgets every index `>= index`.
    pub(crate) fn truncate_from(&mut self, index: u64) {
        let keep = self.runs.partition_point(|&(first, _)| first < index);
        self.runs.truncate(keep);
        if self.runs.is_empty() {
            self.end = 0;
        } else {
            self.end = self.end.min(index);
        }
    }

    /// Forgets every index `< index`.
    pub(crate) fn trim_below(&mut self, index: u64) {
        if index >= self.end {
            self.clear();
            return;
        }
        // Runs that end at or below `index` go; the run containing `index` starts there.
        let containing = self
            .runs
            .partition_point(|&(first, _)| first <= index)
            .saturating_sub(1);
        self.runs.drain(..containing);
        if let Some(first) = self.runs.first_mut() {
            first.0 = first.0.max(index);
        }
    }

    /// Forgets everything.
    pub(crate) fn clear(&mut self) {
        self.runs.clear();
        self.end = 0;
    }

    /// Records the terms of `entries` (consecutive indexes), which replace any
    /// cached index `>=` the first of them. If they do not continue or overlap
    /// the cached range, the cache restarts at them.
    pub(crate) fn append(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else {
            return;
        };
        let contiguous = match self.runs.first() {
            Some(&(start, _)) => first.index >= start && first.index <= self.end,
            None => false,
        };
        if contiguous {
            self.truncate_from(first.index);
        } else {
            self.clear();
        }
        for entry in entries {
            if self.runs.last().map(|&(_, term)| term) != Some(entry.term) {
                self.runs.push((entry.index, entry.term));
            }
            self.end = entry.index.saturating_add(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(first: u64, terms: &[u64]) -> Vec<Entry> {
        terms
            .iter()
            .zip(first..)
            .map(|(&term, index)| Entry {
                index,
                term,
                ..Default::default()
            })
            .collect()
    }

    #[test]
    fn answers_only_inside_the_cached_range() {
        let mut cache = TermCache::default();
        assert_eq!(cache.get(1), None);
        cache.append(&entries(5, &[1, 1, 2, 2, 3]));
        assert_eq!(cache.get(4), None);
        assert_eq!(
            (5..=9).map(|i| cache.get(i)).collect::<Vec<_>>(),
            [Some(1), Some(1), Some(2), Some(2), Some(3)]
        );
        assert_eq!(cache.get(10), None);
        assert_eq!(cache.runs.len(), 3, "equal terms share a run");
    }

    #[test]
    fn overwriting_append_replaces_the_suffix() {
        let mut cache = TermCache::default();
        cache.append(&entries(1, &[1, 1, 1, 1]));
        cache.append(&entries(3, &[2]));
        assert_eq!(cache.get(2), Some(1));
        assert_eq!(cache.get(3), Some(2));
        assert_eq!(cache.get(4), None, "the old entry 4 was replaced");
    }

    #[test]
    fn append_after_a_gap_restarts_the_cache() {
        let mut cache = TermCache::default();
        cache.append(&entries(1, &[1, 1]));
        cache.append(&entries(10, &[4]));
        assert_eq!(cache.get(1), None);
        assert_eq!(cache.get(10), Some(4));
        cache.append(&entries(5, &[5]));
        assert_eq!(cache.get(10), None, "an append below the cache restarts it");
        assert_eq!(cache.get(5), Some(5));
    }

    #[test]
    fn truncate_and_trim() {
        let mut cache = TermCache::default();
        cache.append(&entries(1, &[1, 1, 2, 2, 3, 3]));
        cache.truncate_from(6);
        assert_eq!(cache.get(5), Some(3));
        assert_eq!(cache.get(6), None);
        cache.trim_below(4);
        assert_eq!(cache.get(3), None);
        assert_eq!(cache.get(4), Some(2));
        assert_eq!(cache.get(5), Some(3));
        cache.trim_below(6);
        assert_eq!(cache, TermCache::default());
        cache.append(&entries(7, &[3]));
        cache.truncate_from(7);
        assert_eq!(cache, TermCache::default());
    }

    #[test]
    fn single_holds_one_index() {
        let cache = TermCache::single(8, 2);
        assert_eq!(cache.get(7), None);
        assert_eq!(cache.get(8), Some(2));
        assert_eq!(cache.get(9), None);
    }
}
