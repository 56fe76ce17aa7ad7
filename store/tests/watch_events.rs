//! Property test of what watches read: random puts, range deletes and multi-put txns applied to
//! the store and to a model that records etcd's events per revision; reading the log back in
//! chained bounded batches, for any key range, must give exactly the model's events (each
//! batch ending on a revision boundary), and `prev_kv` must be the model's key-value at the
//! revision before.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use common::{apply_one, del, put, temp_store, txn};
use mango_proto::etcdserverpb::request_op::Request as OpReq;
use mango_proto::etcdserverpb::{PutRequest, RequestOp, TxnRequest};
use mango_proto::mvccpb::event::EventType;
use mango_proto::mvccpb::{Event, KeyValue};
use mango_store::{EventLimits, KeyRange};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Put(u8, u8),
    Del(u8, u8),
    Txn(Vec<(u8, u8)>),
}

fn key(k: u8) -> String {
    format!("k{k}")
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..6, 0u8..128).prop_map(|(k, v)| Op::Put(k, v)),
        1 => (0u8..6, 0u8..7).prop_map(|(k, e)| Op::Del(k, e)),
        1 => proptest::collection::btree_map(0u8..6, 0u8..128, 1..4)
            .prop_map(|m| Op::Txn(m.into_iter().collect())),
    ]
}

/// The key space at every revision, and the events that made each revision.
struct Model {
    states: Vec<BTreeMap<String, KeyValue>>,
    events: Vec<Event>,
}

impl Model {
    fn rev(&self) -> i64 {
        self.states.len() as i64
    }

    fn put(state: &mut BTreeMap<String, KeyValue>, evs: &mut Vec<Event>, k: u8, v: u8, rev: i64) {
        let old = state.get(&key(k));
        let kv = KeyValue {
            key: key(k).into_bytes(),
            create_revision: old.map_or(rev, |o| o.create_revision),
            mod_revision: rev,
            version: old.map_or(1, |o| o.version + 1),
            value: vec![v],
            lease: 0,
        };
        state.insert(key(k), kv.clone());
        evs.push(Event {
            r#type: EventType::Put as i32,
            kv: Some(kv),
            prev_kv: None,
        });
    }

    /// Applies `op`; returns whether it made a revision.
    fn apply(&mut self, op: &Op) -> bool {
        let rev = self.rev() + 1;
        let mut state = self.states.last().cloned().unwrap_or_default();
        let mut evs = Vec::new();
        match op {
            Op::Put(k, v) => Self::put(&mut state, &mut evs, *k, *v, rev),
            Op::Txn(puts) => {
                for (k, v) in puts {
                    Self::put(&mut state, &mut evs, *k, *v, rev);
                }
            }
            Op::Del(k, e) => {
                let range = del_range(*k, *e);
                let gone: Vec<String> = state
                    .keys()
                    .filter(|name| range.contains(name.as_bytes()))
                    .cloned()
                    .collect();
                for name in gone {
                    state.remove(&name);
                    evs.push(Event {
                        r#type: EventType::Delete as i32,
                        kv: Some(KeyValue {
                            key: name.into_bytes(),
                            mod_revision: rev,
                            ..Default::default()
                        }),
                        prev_kv: None,
                    });
                }
            }
        }
        if evs.is_empty() {
            return false;
        }
        self.states.push(state);
        self.events.extend(evs);
        true
    }
}

/// `Del(k, e)`: the single key when `e <= k`, else `[k, e)`.
fn del_range(k: u8, e: u8) -> KeyRange {
    if e <= k {
        KeyRange::new(key(k), "")
    } else {
        KeyRange::new(key(k), key(e))
    }
}

fn request(op: &Op) -> mango_proto::mangopb::raft_request::Request {
    match op {
        Op::Put(k, v) => put(&key(*k), &String::from_utf8_lossy(&[*v])),
        Op::Del(k, e) => {
            let r = del_range(*k, *e);
            del(
                &String::from_utf8_lossy(&r.key),
                &String::from_utf8_lossy(&r.range_end),
            )
        }
        Op::Txn(puts) => txn(TxnRequest {
            success: puts
                .iter()
                .map(|(k, v)| RequestOp {
                    request: Some(OpReq::RequestPut(PutRequest {
                        key: key(*k).into_bytes(),
                        value: vec![*v],
                        ..Default::default()
                    })),
                })
                .collect(),
            ..Default::default()
        }),
    }
}

fn watch_range() -> impl Strategy<Value = Option<KeyRange>> {
    prop_oneof![
        Just(None),
        (0u8..6).prop_map(|k| Some(KeyRange::new(key(k), ""))),
        (0u8..6).prop_map(|k| Some(KeyRange::new(key(k), "\0"))),
        (0u8..6, 0u8..7).prop_map(|(k, e)| Some(KeyRange::new(key(k), key(e)))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn chained_batches_give_the_models_events(
        ops in proptest::collection::vec(op(), 1..40),
        range in watch_range(),
        start in 0i64..30,
        max_scanned in 0usize..6,
        max_bytes in prop_oneof![Just(0usize), Just(40), Just(usize::MAX)],
    ) {
        let (_dir, store) = temp_store();
        // Revision 1 is the empty store.
        let mut model = Model { states: vec![BTreeMap::new()], events: Vec::new() };
        for op in &ops {
            let made = model.apply(op);
            apply_one(&store, request(op)).unwrap();
            prop_assert_eq!(store.read(0).unwrap().revision(), model.rev(), "after {:?} (made {})", op, made);
        }
        let view = store.read(0).unwrap();
        let head = view.revision();
        let after = start.min(head);
        let limits = EventLimits { max_scanned, max_bytes };
        let mut got = Vec::new();
        let mut at = after;
        while at < head {
            let batch = view.events(at, head, range.as_ref(), limits).unwrap();
            prop_assert!(batch.through > at && batch.through <= head);
            // Whole revisions only: nothing of `through` is left for the next batch.
            let whole = batch.events.iter().all(|e| {
                let r = e.kv.as_ref().unwrap().mod_revision;
                r > at && r <= batch.through
            });
            prop_assert!(whole, "a batch after {} through {} strays", at, batch.through);
            got.extend(batch.events);
            at = batch.through;
        }
        let want: Vec<Event> = model
            .events
            .iter()
            .filter(|e| {
                let kv = e.kv.as_ref().unwrap();
                kv.mod_revision > after && range.as_ref().is_none_or(|r| r.contains(&kv.key))
            })
            .cloned()
            .collect();
        prop_assert_eq!(&got, &want);
        for e in &want {
            let kv = e.kv.as_ref().unwrap();
            let before = &model.states[(kv.mod_revision - 2) as usize];
            let prev = before.get(std::str::from_utf8(&kv.key).unwrap()).cloned();
            prop_assert_eq!(view.prev_kv(&kv.key, kv.mod_revision).unwrap(), prev);
        }
    }
}
