//! What watches read: the events of a revision window, in revision order, from the revision
//! log (`Revs`), and the previous version of a key (from `History`) for `prev_kv`.
//!
//! An event is one change of the log as etcd builds it: a PUT carries the whole new key-value;
//! a DELETE carries only the key and the revision of the deletion (`mod_revision`). Batches are
//! bounded and always end on a revision boundary, so every revision's events travel together
//! (etcd's atomicity guarantee for watches).

use std::ops::ControlFlow;

use mango_proto::mvccpb::event::EventType;
use mango_proto::mvccpb::{Event, KeyValue};

use crate::backend::{BackendError, ReadTables, Table};
use crate::encoding::{Revision, encode_key, history_key, split_history_key};
use crate::error::StoreError;
use crate::mvcc::{KIND_DELETE, KIND_PUT, decode_rev_record, load_rev};
use crate::store::ReadView;

/// The keys a watch covers, with etcd's conventions for `key` and `range_end`: an empty end
/// is the single key, `"\0"` is every key from `key` on, anything else is `[key, end)`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct KeyRange {
    /// The first key (the only one when `range_end` is empty).
    pub key: Vec<u8>,
    /// The end of the range, exclusive; empty for a single key, `"\0"` for no end.
    pub range_end: Vec<u8>,
}

impl KeyRange {
    /// The range of `key` and `range_end` as a request gives them.
    pub fn new(key: impl Into<Vec<u8>>, range_end: impl Into<Vec<u8>>) -> Self {
        Self {
            key: key.into(),
            range_end: range_end.into(),
        }
    }

    /// Whether the range is one key.
    pub fn is_single(&self) -> bool {
        self.range_end.is_empty()
    }

    /// Whether `k` is in the range.
    pub fn contains(&self, k: &[u8]) -> bool {
        match self.range_end.as_slice() {
            [] => k == self.key.as_slice(),
            [0] => k >= self.key.as_slice(),
            end => k >= self.key.as_slice() && k < end,
        }
    }
}

/// Bounds on one [`ReadView::events`] call. A batch holds at least one whole revision
/// (whatever its size), then stops at the first revision boundary past either bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventLimits {
    /// Changes read from the log (matching the range or not): bounds the work of one call.
    pub max_scanned: usize,
    /// Encoded bytes of the events collected: bounds the memory of one batch.
    pub max_bytes: usize,
}

impl Default for EventLimits {
    fn default() -> Self {
        Self {
            max_scanned: 1000,
            max_bytes: 1 << 20,
        }
    }
}

/// The events of the revisions `(after, through]` that matched, in revision order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EventBatch {
    /// The events, ordered by revision and, within a revision, in the order the changes were
    /// made. `prev_kv` is never set here (see [`ReadView::prev_kv`]).
    pub events: Vec<Event>,
    /// Every revision up to and including this one has been read: the next batch starts
    /// after it. Equal to the call's `until` when the window was read to its end.
    pub through: i64,
}

/// An event of the log: `kind` from the record, the key-value as stored.
fn event(kind: u8, kv: KeyValue) -> Event {
    let r#type = if kind == KIND_DELETE {
        EventType::Delete
    } else {
        EventType::Put
    };
    Event {
        r#type: r#type as i32,
        kv: Some(kv),
        prev_kv: None,
    }
}

impl<S: ReadTables> ReadView<S> {
    /// The events of revisions `(after, until]` (`until` capped at the view's revision) whose
    /// key is in `range` (every key when `None`), in revision order, at most about `limits`
    /// of them: read from `through + 1` on for the rest.
    ///
    /// Fails with [`StoreError::Compacted`] when the first revision wanted, `after + 1`, is
    /// below the compacted revision (a watch starting there is cancelled by etcd).
    pub fn events(
        &self,
        after: i64,
        until: i64,
        range: Option<&KeyRange>,
        limits: EventLimits,
    ) -> Result<EventBatch, StoreError> {
        let state = self.state();
        if after.saturating_add(1) < state.compact_revision {
            return Err(StoreError::Compacted);
        }
        let until = until.min(state.revision);
        if until <= after {
            return Ok(EventBatch {
                events: Vec::new(),
                through: after,
            });
        }
        let start = Revision::new(after.saturating_add(1), i64::MIN).encode();
        let end = Revision::new(until.saturating_add(1), i64::MIN).encode();
        let mut batch = EventBatch {
            events: Vec::new(),
            through: until,
        };
        let (mut scanned, mut bytes) = (0usize, 0usize);
        let mut current = None;
        let mut failure: Option<BackendError> = None;
        self.snapshot()
            .scan(Table::Revs, &start, Some(&end), false, &mut |k, v| {
                let Some(rev) = Revision::decode(k) else {
                    failure = Some(BackendError::Corrupt {
                        table: Table::Revs,
                        what: format!("revision key {k:?}"),
                    });
                    return ControlFlow::Break(());
                };
                if current != Some(rev.main) {
                    if let Some(done) = current
                        && (scanned >= limits.max_scanned || bytes >= limits.max_bytes)
                    {
                        batch.through = done;
                        return ControlFlow::Break(());
                    }
                    current = Some(rev.main);
                }
                scanned += 1;
                match decode_rev_record(v) {
                    Ok((kind, kv)) => {
                        if range.is_none_or(|r| r.contains(&kv.key)) {
                            bytes += prost::Message::encoded_len(&kv);
                            batch.events.push(event(kind, kv));
                        }
                        ControlFlow::Continue(())
                    }
                    Err(e) => {
                        failure = Some(e);
                        ControlFlow::Break(())
                    }
                }
            })?;
        match failure {
            Some(e) => Err(e.into()),
            None => Ok(batch),
        }
    }

    /// The version of `key` just before `revision` (etcd's `prev_kv` of an event at
    /// `revision`): `None` when the key did not exist then, or when that revision has been
    /// compacted (etcd answers a compacted read with no previous value, too).
    pub fn prev_kv(&self, key: &[u8], revision: i64) -> Result<Option<KeyValue>, StoreError> {
        let state = self.state();
        if revision.saturating_sub(1) < state.compact_revision {
            return Ok(None);
        }
        let mut start = Vec::with_capacity(key.len() + 2);
        encode_key(key, &mut start);
        // Only `key`'s versions lie in [start, end): escaped keys are prefix-free.
        let end = history_key(key, Revision::new(revision, i64::MIN));
        let mut newest = None;
        self.snapshot()
            .scan(Table::History, &start, Some(&end), true, &mut |k, v| {
                newest = split_history_key(k).map(|(_, rev)| (rev, v.first().copied()));
                ControlFlow::Break(())
            })?;
        match newest {
            Some((rev, Some(KIND_PUT))) => Ok(Some(load_rev(self.snapshot(), rev)?.1)),
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use mango_proto::etcdserverpb::{DeleteRangeRequest, PutRequest, RequestOp, TxnRequest};
    use mango_proto::mangopb::RaftRequest;
    use mango_proto::mangopb::raft_request::Request;
    use prost::Message;

    use super::*;
    use crate::{ApplyEntry, Store};

    fn put(key: &str, value: &str) -> Request {
        Request::Put(PutRequest {
            key: key.into(),
            value: value.into(),
            ..Default::default()
        })
    }

    fn del(key: &str, end: &str) -> Request {
        Request::DeleteRange(DeleteRangeRequest {
            key: key.into(),
            range_end: end.into(),
            ..Default::default()
        })
    }

    fn apply(store: &Store, requests: Vec<Request>) {
        let mut index = store.read(0).unwrap().state().applied_index;
        let data: Vec<Vec<u8>> = requests
            .into_iter()
            .map(|request| {
                RaftRequest {
                    id: 0,
                    auth: None,
                    request: Some(request),
                }
                .encode_to_vec()
            })
            .collect();
        let entries: Vec<ApplyEntry<'_>> = data
            .iter()
            .map(|data| {
                index += 1;
                ApplyEntry {
                    index,
                    term: 1,
                    data,
                }
            })
            .collect();
        for applied in store.apply(0, &entries).unwrap() {
            applied.result.unwrap();
        }
    }

    /// `(type, key, mod_revision)` of each event.
    fn shape(batch: &EventBatch) -> Vec<(i32, String, i64)> {
        batch
            .events
            .iter()
            .map(|e| {
                let kv = e.kv.as_ref().unwrap();
                (
                    e.r#type,
                    String::from_utf8_lossy(&kv.key).into_owned(),
                    kv.mod_revision,
                )
            })
            .collect()
    }

    const PUT: i32 = EventType::Put as i32;
    const DEL: i32 = EventType::Delete as i32;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_path(dir.path().join("db"), Default::default()).unwrap();
        // 2: a, 3: b, 4: a again, 5: delete a and b, 6: txn putting c and d.
        let txn = TxnRequest {
            success: ["c", "d"]
                .iter()
                .map(|k| RequestOp {
                    request: Some(mango_proto::etcdserverpb::request_op::Request::RequestPut(
                        PutRequest {
                            key: (*k).into(),
                            value: b"t".to_vec(),
                            ..Default::default()
                        },
                    )),
                })
                .collect(),
            ..Default::default()
        };
        apply(
            &store,
            vec![
                put("a", "1"),
                put("b", "2"),
                put("a", "3"),
                del("a", "c"),
                Request::Txn(txn),
            ],
        );
        (dir, store)
    }

    #[test]
    fn events_come_in_revision_order_as_etcd_builds_them() {
        let (_dir, store) = store();
        let view = store.read(0).unwrap();
        let all = view.events(1, 100, None, EventLimits::default()).unwrap();
        assert_eq!(all.through, 6);
        assert_eq!(
            shape(&all),
            [
                (PUT, "a".into(), 2),
                (PUT, "b".into(), 3),
                (PUT, "a".into(), 4),
                (DEL, "a".into(), 5),
                (DEL, "b".into(), 5),
                (PUT, "c".into(), 6),
                (PUT, "d".into(), 6),
            ]
        );
        // A put carries the whole key-value; a delete only the key and its revision.
        let put_a = all.events[2].kv.as_ref().unwrap();
        assert_eq!(
            (put_a.value.as_slice(), put_a.version, put_a.create_revision),
            (&b"3"[..], 2, 2)
        );
        let del_a = all.events[3].kv.as_ref().unwrap();
        assert_eq!(
            del_a,
            &KeyValue {
                key: b"a".to_vec(),
                mod_revision: 5,
                ..Default::default()
            }
        );
        let only_a = view
            .events(2, 5, Some(&KeyRange::new("a", "")), EventLimits::default())
            .unwrap();
        assert_eq!(shape(&only_a), [(PUT, "a".into(), 4), (DEL, "a".into(), 5)]);
        assert_eq!(only_a.through, 5);
        let from_b = view
            .events(
                1,
                6,
                Some(&KeyRange::new("b", "\0")),
                EventLimits::default(),
            )
            .unwrap();
        assert_eq!(from_b.events.len(), 4);
        let nothing = view.events(6, 6, None, EventLimits::default()).unwrap();
        assert_eq!((nothing.events.len(), nothing.through), (0, 6));
    }

    #[test]
    fn batches_are_bounded_and_end_on_a_revision_boundary() {
        let (_dir, store) = store();
        let view = store.read(0).unwrap();
        let limits = EventLimits {
            max_scanned: 4,
            max_bytes: usize::MAX,
        };
        // Revisions 2, 3, 4 make 3 changes; revision 5 has 2, and is not split.
        let first = view.events(1, 6, None, limits).unwrap();
        assert_eq!(first.through, 5);
        assert_eq!(first.events.len(), 5);
        let second = view.events(first.through, 6, None, limits).unwrap();
        assert_eq!((second.through, second.events.len()), (6, 2));
        // One revision always fits, however small the limits.
        let tiny = EventLimits {
            max_scanned: 0,
            max_bytes: 0,
        };
        let one = view.events(4, 6, None, tiny).unwrap();
        assert_eq!((one.through, shape(&one).len()), (5, 2));
    }

    #[test]
    fn prev_kv_is_the_version_before_the_event() {
        let (_dir, store) = store();
        let view = store.read(0).unwrap();
        assert_eq!(view.prev_kv(b"a", 2).unwrap(), None);
        let prev = view.prev_kv(b"a", 4).unwrap().unwrap();
        assert_eq!((prev.value.as_slice(), prev.mod_revision), (&b"1"[..], 2));
        let prev = view.prev_kv(b"a", 5).unwrap().unwrap();
        assert_eq!((prev.value.as_slice(), prev.mod_revision), (&b"3"[..], 4));
        // After a delete the key did not exist: no previous value for a re-create.
        apply(&store, vec![put("a", "again")]);
        let view = store.read(0).unwrap();
        assert_eq!(view.prev_kv(b"a", 7).unwrap(), None);
        // Keys sharing a prefix do not leak into each other.
        apply(&store, vec![put("a\0", "x"), put("ab", "y")]);
        let view = store.read(0).unwrap();
        assert_eq!(view.prev_kv(b"a\0", 8).unwrap(), None);
        assert_eq!(view.prev_kv(b"ab", 9).unwrap(), None);
    }

    #[test]
    fn a_window_below_the_compacted_revision_is_refused() {
        let (_dir, store) = store();
        apply(
            &store,
            vec![Request::Compaction(
                mango_proto::etcdserverpb::CompactionRequest {
                    revision: 4,
                    physical: false,
                },
            )],
        );
        store.compact_all(0).unwrap();
        let view = store.read(0).unwrap();
        assert!(matches!(
            view.events(2, 6, None, EventLimits::default()),
            Err(StoreError::Compacted)
        ));
        // Starting at the compacted revision itself is allowed (etcd's rule).
        let from = view.events(3, 6, None, EventLimits::default()).unwrap();
        assert_eq!(from.events[0].kv.as_ref().unwrap().mod_revision, 4);
        // A previous value below the compacted revision is not given.
        assert_eq!(view.prev_kv(b"a", 4).unwrap(), None);
        assert!(view.prev_kv(b"a", 5).unwrap().is_some());
    }

    #[test]
    fn key_ranges_follow_etcd_conventions() {
        let single = KeyRange::new("a", "");
        assert!(single.is_single() && single.contains(b"a") && !single.contains(b"ab"));
        let from = KeyRange::new("b", "\0");
        assert!(from.contains(b"b") && from.contains(b"zzz") && !from.contains(b"a"));
        let between = KeyRange::new("b", "d");
        assert!(between.contains(b"c") && !between.contains(b"d") && !between.contains(b"a"));
    }
}
