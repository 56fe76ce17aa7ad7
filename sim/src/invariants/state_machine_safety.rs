//! State machine safety: if a node has applied an entry at an index, no node ever applies a
//! different entry at that index (of the same Raft group).
//!
//! Observed at the state machine: every applied entry's (index, term, digest of its data), on
//! every node, across restarts (a node that lost its unsynced applied state re-applies from
//! the log and must apply the same entries again).

use std::collections::BTreeMap;

/// The first entry applied at each (group, index), and by whom.
#[derive(Debug, Default)]
pub struct AppliedEntries {
    by_index: BTreeMap<(u64, u64), (u64, u64, u64)>,
    violations: Vec<String>,
    /// Entries applied, over all nodes.
    pub count: u64,
}

impl AppliedEntries {
    /// `node` applied (index, term, digest) in `group`.
    pub fn observe(&mut self, group: u64, node: u64, index: u64, term: u64, digest: u64) {
        self.count += 1;
        match self.by_index.get(&(group, index)) {
            None => {
                self.by_index.insert((group, index), (term, digest, node));
            }
            Some(&(t, d, first)) if (t, d) != (term, digest) => {
                if self.violations.len() < 10 {
                    self.violations.push(format!(
                        "state machine safety: group {group} index {index}: node {first} \
                         applied term {t} digest {d:x}, node {node} applied term {term} \
                         digest {digest:x}"
                    ));
                }
            }
            Some(_) => {}
        }
    }

    /// The highest index applied anywhere (in any group).
    pub fn highest(&self) -> u64 {
        self.by_index.keys().map(|(_, i)| *i).max().unwrap_or(0)
    }

    pub fn check(&self) -> Result<(), String> {
        match self.violations.first() {
            Some(v) => Err(v.clone()),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_entry_twice_passes_a_different_one_fails() {
        let mut a = AppliedEntries::default();
        a.observe(0, 1, 5, 2, 0xab);
        a.observe(0, 2, 5, 2, 0xab);
        a.observe(0, 1, 5, 2, 0xab);
        // Another group's entry at the same index is another entry.
        a.observe(1, 1, 5, 4, 0xcd);
        assert!(a.check().is_ok());
        a.observe(0, 3, 5, 3, 0xab);
        assert!(a.check().is_err());
    }
}
