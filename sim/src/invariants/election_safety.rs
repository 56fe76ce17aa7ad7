//! Election safety: at most one leader can be elected in a given term.
//!
//! Observed from every node's own status after each of its steps: a node that reports itself
//! leader in term `t` was elected in `t`.

use std::collections::{BTreeMap, BTreeSet};

/// Every (term, leader) seen.
#[derive(Debug, Default)]
pub struct Elections {
    leaders: BTreeMap<u64, BTreeSet<u64>>,
}

impl Elections {
    /// `node` says it leads `term`. Returns true when this is news (for the trace).
    pub fn observe(&mut self, term: u64, node: u64) -> bool {
        self.leaders.entry(term).or_default().insert(node)
    }

    /// How many terms had a leader.
    pub fn terms_with_leader(&self) -> usize {
        self.leaders.len()
    }

    /// The first term with two leaders, if any.
    pub fn check(&self) -> Result<(), String> {
        for (term, leaders) in &self.leaders {
            if leaders.len() > 1 {
                return Err(format!(
                    "election safety: term {term} had leaders {leaders:?}"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_leader_per_term_passes_and_two_fail() {
        let mut e = Elections::default();
        assert!(e.observe(1, 1));
        assert!(!e.observe(1, 1));
        e.observe(2, 2);
        assert!(e.check().is_ok());
        e.observe(2, 3);
        let err = e.check().expect_err("two leaders in term 2");
        assert!(err.contains("term 2"), "{err}");
    }
}
