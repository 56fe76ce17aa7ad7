//! Store convergence: at every revision, every node's store holds the same key-value history
//! (etcd's HashKV of the versions at or below it). State machine safety says the nodes applied
//! the same entries; this says applying them built the same state, through restarts (a store
//! that lost unsynced batches replays them) and snapshots (a store replaced whole).

use std::collections::BTreeMap;

/// The first hash seen at each (group, revision), and whose.
#[derive(Debug, Default)]
pub struct StoreHashes {
    by_revision: BTreeMap<(u64, i64), (u32, u64)>,
    violations: Vec<String>,
    /// Hashes compared (all but the first at each revision).
    pub compared: u64,
}

impl StoreHashes {
    /// `node`'s store of `group` hashes `hash` at `revision`.
    pub fn observe(&mut self, group: u64, node: u64, revision: i64, hash: u32) {
        match self.by_revision.get(&(group, revision)) {
            None => {
                self.by_revision.insert((group, revision), (hash, node));
            }
            Some(&(h, first)) => {
                self.compared += 1;
                if h != hash && self.violations.len() < 10 {
                    self.violations.push(format!(
                        "store convergence: group {group} at revision {revision} node \
                         {first} hashes {h:08x}, node {node} {hash:08x}"
                    ));
                }
            }
        }
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
    fn equal_hashes_pass_a_different_one_fails() {
        let mut s = StoreHashes::default();
        s.observe(0, 1, 25, 0xabcd);
        s.observe(0, 2, 25, 0xabcd);
        s.observe(0, 1, 50, 0x1234);
        // Another group's store at the same revision holds other keys.
        s.observe(1, 1, 50, 0x5678);
        assert!(s.check().is_ok());
        assert_eq!(s.compared, 1);
        s.observe(0, 3, 50, 0x9999);
        assert!(s.check().is_err());
    }
}
