//! Election safety: at most one leader can be elected in a given term (of one Raft group;
//! each group elects on its own).
//!
//! Observed from every node's own status after each of its steps: a node that reports itself
//! leader of a group in term `t` was elected in `t`.

use std::collections::{BTreeMap, BTreeSet};

/// Every (group, term) and its leaders seen.
#[derive(Debug, Default)]
pub struct Elections {
    leaders: BTreeMap<(u64, u64), BTreeSet<u64>>,
}

impl Elections {
    /// `node` says it leads `group` in `term`. Returns true when this is news (for the trace).
    pub fn observe(&mut self, group: u64, term: u64, node: u64) -> bool {
        self.leaders.entry((group, term)).or_default().insert(node)
    }

    /// How many groups had a leader at some time.
    pub fn groups_with_leader(&self) -> usize {
        let groups: BTreeSet<u64> = self.leaders.keys().map(|(g, _)| *g).collect();
        groups.len()
    }

    /// How many terms had a leader (over all groups).
    pub fn terms_with_leader(&self) -> usize {
        self.leaders.len()
    }

    /// The first term with two leaders, if any.
    pub fn check(&self) -> Result<(), String> {
        for ((group, term), leaders) in &self.leaders {
            if leaders.len() > 1 {
                return Err(format!(
                    "election safety: group {group} term {term} had leaders {leaders:?}"
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
        assert!(e.observe(0, 1, 1));
        assert!(!e.observe(0, 1, 1));
        e.observe(0, 2, 2);
        // Another group's leader in the same term is another election.
        e.observe(1, 2, 3);
        assert!(e.check().is_ok());
        e.observe(0, 2, 3);
        let err = e.check().expect_err("two leaders in term 2");
        assert!(err.contains("group 0 term 2"), "{err}");
    }
}
