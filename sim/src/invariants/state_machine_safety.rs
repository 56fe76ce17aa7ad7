//! State machine safety: if a node has applied an entry at an index, no node ever applies a
//! different entry at that index.
//!
//! Observed at the state machine: every applied entry's (index, term, digest of its data), on
//! every node, across restarts (a node that lost its unsynced applied state re-applies from
//! the log and must apply the same entries again).

use std::collections::BTreeMap;

/// The first entry applied at each index, and by whom.
#[derive(Debug, Default)]
pub struct AppliedEntries {
    by_index: BTreeMap<u64, (u64, u64, u64)>,
    violations: Vec<String>,
    /// Entries applied, over all nodes.
    pub count: u64,
}

impl AppliedEntries {
    /// `node` applied (index, term, digest).
    pub fn observe(&mut self, node: u64, index: u64, term: u64, digest: u64) {
        self.count += 1;
        match self.by_index.get(&index) {
            None => {
                self.by_index.insert(index, (term, digest, node));
            }
            Some(&(t, d, first)) if (t, d) != (term, digest) => {
                if self.violations.len() < 10 {
                    self.violations.push(format!(
                        "state machine safety: index {index}: node {first} applied term {t} \
                         digest {d:x}, node {node} applied term {term} digest {digest:x}"
                    ));
                }
            }
            Some(_) => {}
        }
    }

    /// The highest index applied anywhere.
    pub fn highest(&self) -> u64 {
        self.by_index.keys().next_back().copied().unwrap_or(0)
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
        a.observe(1, 5, 2, 0xab);
        a.observe(2, 5, 2, 0xab);
        a.observe(1, 5, 2, 0xab);
        assert!(a.check().is_ok());
        a.observe(3, 5, 3, 0xab);
        assert!(a.check().is_err());
    }
}
