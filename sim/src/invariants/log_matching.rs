//! Log matching: if two logs contain an entry with the same index and term, the logs are
//! identical in all entries up through that index. Each Raft group has its own log on every
//! node; only logs of the same group are compared.
//!
//! Observed from snapshots of each node's Raft log (index, term, digest), taken at intervals
//! and when a node is about to crash. The property holds across time too (an (index, term)
//! pair names one entry for ever, and the logs that hold it share its prefix), so every pair
//! of snapshots is compared, whenever each was taken.

use std::collections::BTreeMap;

/// One node's log of one group at one moment: (index, term, digest) in index order.
#[derive(Clone, Debug)]
pub struct LogSnapshot {
    pub node: u64,
    pub group: u64,
    /// Simulated milliseconds when it was taken.
    pub at_ms: u64,
    pub entries: Vec<(u64, u64, u64)>,
}

/// The snapshots taken.
#[derive(Debug, Default)]
pub struct Logs {
    snapshots: Vec<LogSnapshot>,
}

impl Logs {
    pub fn observe(&mut self, snapshot: LogSnapshot) {
        self.snapshots.push(snapshot);
    }

    /// How many snapshots were taken.
    pub fn len(&self) -> usize {
        self.snapshots.len()
    }

    /// The highest first index of any log seen (above 2: logs were compacted).
    pub fn highest_first_index(&self) -> u64 {
        self.snapshots
            .iter()
            .filter_map(|s| s.entries.first().map(|e| e.0))
            .max()
            .unwrap_or(0)
    }

    /// Prints each snapshot's node, time and index range (for debugging a seed).
    pub fn describe(&self) {
        for s in &self.snapshots {
            eprintln!(
                "log n{} group {} at {} ms: {:?}..{:?}",
                s.node,
                s.group,
                s.at_ms,
                s.entries.first().map(|e| e.0),
                s.entries.last().map(|e| e.0)
            );
        }
    }

    pub fn is_empty(&self) -> bool {
        self.snapshots.is_empty()
    }

    pub fn check(&self) -> Result<(), String> {
        // An (index, term) names one entry of a group.
        let mut named: BTreeMap<(u64, u64, u64), (u64, u64)> = BTreeMap::new();
        for s in &self.snapshots {
            for &(index, term, digest) in &s.entries {
                match named.get(&(s.group, index, term)) {
                    Some(&(d, node)) if d != digest => {
                        return Err(format!(
                            "log matching: group {} entry ({index}, term {term}) differs \
                             between node {node} and node {} (at {} ms)",
                            s.group, s.node, s.at_ms
                        ));
                    }
                    Some(_) => {}
                    None => {
                        named.insert((s.group, index, term), (digest, s.node));
                    }
                }
            }
        }
        // Logs that share an (index, term) share everything before it.
        for (i, a) in self.snapshots.iter().enumerate() {
            for b in self.snapshots[i + 1..]
                .iter()
                .filter(|b| b.group == a.group)
            {
                compare(a, b)?;
            }
        }
        Ok(())
    }
}

/// Checks that `a` and `b` are identical up to the highest index where their terms agree.
fn compare(a: &LogSnapshot, b: &LogSnapshot) -> Result<(), String> {
    let bs: BTreeMap<u64, (u64, u64)> = b.entries.iter().map(|&(i, t, d)| (i, (t, d))).collect();
    let last_match = a
        .entries
        .iter()
        .rev()
        .find(|(i, t, _)| bs.get(i).is_some_and(|(bt, _)| bt == t))
        .map(|(i, _, _)| *i);
    let Some(upto) = last_match else {
        return Ok(());
    };
    for &(index, term, digest) in a.entries.iter().take_while(|(i, _, _)| *i <= upto) {
        if let Some(&(bt, bd)) = bs.get(&index)
            && (bt, bd) != (term, digest)
        {
            return Err(format!(
                "log matching: group {}: node {} (at {} ms) and node {} (at {} ms) agree at \
                 index {upto} but differ at {index}: term {term} vs {bt}",
                a.group, a.node, a.at_ms, b.node, b.at_ms
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(node: u64, entries: &[(u64, u64, u64)]) -> LogSnapshot {
        LogSnapshot {
            node,
            group: 0,
            at_ms: 0,
            entries: entries.to_vec(),
        }
    }

    #[test]
    fn diverging_suffixes_pass_a_diverging_prefix_fails() {
        let mut logs = Logs::default();
        logs.observe(snap(1, &[(1, 1, 10), (2, 1, 11), (3, 2, 12)]));
        // Node 2 has an uncommitted entry of term 3 at index 3: allowed.
        logs.observe(snap(2, &[(1, 1, 10), (2, 1, 11), (3, 3, 13)]));
        assert!(logs.check().is_ok());
        // Node 3 agrees at index 3 (term 2) but has a different term at index 2.
        logs.observe(snap(3, &[(1, 1, 10), (2, 2, 14), (3, 2, 12)]));
        assert!(logs.check().is_err());
    }

    #[test]
    fn logs_of_different_groups_are_not_compared() {
        let mut logs = Logs::default();
        logs.observe(snap(1, &[(1, 1, 10), (2, 1, 11)]));
        let mut other = snap(2, &[(1, 1, 20), (2, 1, 21)]);
        other.group = 1;
        logs.observe(other);
        assert!(logs.check().is_ok());
        logs.observe(snap(3, &[(1, 1, 20)]));
        assert!(logs.check().is_err());
    }

    #[test]
    fn one_index_and_term_with_two_entries_fails() {
        let mut logs = Logs::default();
        logs.observe(snap(1, &[(1, 1, 10)]));
        logs.observe(snap(2, &[(1, 1, 99)]));
        assert!(logs.check().is_err());
    }
}
