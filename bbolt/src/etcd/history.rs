//! Views of the key history: what a range over all keys returns at a revision.

use std::collections::BTreeMap;

use mango_proto::mvccpb::KeyValue;

use super::EtcdSnapshot;

impl EtcdSnapshot {
    /// Every live key at main revision `rev`, in key order, as `Range` over all keys at
    /// that revision would return them. Meaningful for `rev` at or above the finished
    /// compaction (below it the history is incomplete, and etcd refuses the read).
    pub fn kvs_at(&self, rev: i64) -> Vec<KeyValue> {
        let mut live: BTreeMap<&[u8], Option<&KeyValue>> = BTreeMap::new();
        for r in self.revisions.iter().take_while(|r| r.revision.main <= rev) {
            live.insert(&r.kv.key, (!r.tombstone).then_some(&r.kv));
        }
        live.into_values().flatten().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::{KeyRevision, Revision};
    use super::*;

    fn put(main: i64, key: &str, version: i64) -> KeyRevision {
        KeyRevision {
            revision: Revision { main, sub: 0 },
            tombstone: false,
            kv: KeyValue {
                key: key.into(),
                mod_revision: main,
                version,
                ..Default::default()
            },
        }
    }

    #[test]
    fn tombstones_hide_keys_until_put_again() {
        let mut del = put(3, "a", 0);
        del.tombstone = true;
        let snap = EtcdSnapshot {
            revisions: vec![put(2, "a", 1), put(2, "b", 1), del, put(4, "a", 1)],
            ..Default::default()
        };
        let keys =
            |rev| -> Vec<Vec<u8>> { snap.kvs_at(rev).into_iter().map(|kv| kv.key).collect() };
        assert_eq!(keys(2), [b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(keys(3), [b"b".to_vec()]);
        assert_eq!(keys(4), [b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(snap.current_revision(), 4);
    }
}
