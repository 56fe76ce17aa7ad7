//! Linearizable client history: the puts and linearizable gets the clients made, checked key
//! by key (linearizability is compositional) with mango-checker's Wing & Gong search. A put
//! whose answer never came is kept with an unknown outcome (it may take effect at any time
//! after its call, or never); a get whose answer never came says nothing and is left out.

use std::collections::BTreeMap;

use mango_checker::{Operation, bound_unknown_writes, check_register};

/// Every operation, by key.
#[derive(Debug, Default)]
pub struct History {
    by_key: BTreeMap<Vec<u8>, Vec<Operation>>,
}

impl History {
    pub fn record(&mut self, key: &[u8], op: Operation) {
        self.by_key.entry(key.to_vec()).or_default().push(op);
    }

    /// (operations, of which completed ok).
    pub fn counts(&self) -> (usize, usize) {
        let all = self.by_key.values().map(Vec::len).sum();
        let ok = self
            .by_key
            .values()
            .flatten()
            .filter(|o| o.ret.is_some())
            .count();
        (all, ok)
    }

    pub fn check(&self) -> Result<(), String> {
        for (key, ops) in &self.by_key {
            let ops = bound_unknown_writes(ops);
            if let Err(e) = check_register(&ops, &None) {
                return Err(format!(
                    "linearizability: key {:?}: {}",
                    String::from_utf8_lossy(key),
                    e.explain(&ops)
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mango_checker::Op;

    fn op(call: u64, ret: Option<u64>, op: Op) -> Operation {
        Operation {
            client: 0,
            call,
            ret,
            op,
        }
    }

    #[test]
    fn a_stale_read_is_caught() {
        let mut h = History::default();
        h.record(b"k", op(0, Some(1), Op::Write(Some(b"a".to_vec()))));
        h.record(b"k", op(2, Some(3), Op::Write(Some(b"b".to_vec()))));
        h.record(b"k", op(4, Some(5), Op::Read(Some(b"b".to_vec()))));
        assert!(h.check().is_ok());
        h.record(b"k", op(6, Some(7), Op::Read(Some(b"a".to_vec()))));
        assert!(h.check().is_err());
    }

    #[test]
    fn unknown_writes_count_only_when_read() {
        let mut h = History::default();
        h.record(b"k", op(0, Some(1), Op::Write(Some(b"a".to_vec()))));
        // Unknown and never read: dropped, whatever it was.
        h.record(b"k", op(2, None, Op::Write(Some(b"x".to_vec()))));
        h.record(b"k", op(4, Some(5), Op::Read(Some(b"a".to_vec()))));
        assert!(h.check().is_ok());
        // Unknown and read later: it took effect, so reading the older value after that
        // read is stale.
        h.record(b"k", op(6, None, Op::Write(Some(b"y".to_vec()))));
        h.record(b"k", op(8, Some(9), Op::Read(Some(b"y".to_vec()))));
        assert!(h.check().is_ok());
        h.record(b"k", op(10, Some(11), Op::Read(Some(b"a".to_vec()))));
        assert!(h.check().is_err());
    }
}
