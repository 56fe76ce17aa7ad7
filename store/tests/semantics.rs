//! etcd's semantics, case by case, where the model test's random walk is unlikely to look.
#![allow(clippy::unwrap_used)]

mod common;

use common::{apply_one, compact, del, get, put, temp_store, txn};
use mango_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use mango_proto::etcdserverpb::request_op::Request as Op;
use mango_proto::etcdserverpb::response_op::Response as OpResp;
use mango_proto::etcdserverpb::{
    Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, ResponseHeader, TxnRequest,
};
use mango_store::{ApplyEntry, ErrorCode, Response, StoreError};

fn op_put(k: &str) -> RequestOp {
    RequestOp {
        request: Some(Op::RequestPut(PutRequest {
            key: k.into(),
            ..Default::default()
        })),
    }
}

fn op_del(k: &str, end: &str) -> RequestOp {
    RequestOp {
        request: Some(Op::RequestDeleteRange(DeleteRangeRequest {
            key: k.into(),
            range_end: end.into(),
            ..Default::default()
        })),
    }
}

fn op_txn(success: Vec<RequestOp>, failure: Vec<RequestOp>) -> RequestOp {
    RequestOp {
        request: Some(Op::RequestTxn(TxnRequest {
            compare: vec![],
            success,
            failure,
        })),
    }
}

fn t(success: Vec<RequestOp>) -> TxnRequest {
    TxnRequest {
        compare: vec![],
        success,
        failure: vec![],
    }
}

fn dup(req: TxnRequest) -> bool {
    matches!(
        mango_store::validate_txn(&req, 128),
        Err(StoreError::DuplicateKey)
    )
}

#[test]
fn revisions_versions_and_generations_follow_etcd() {
    let (_d, store) = temp_store();
    assert_eq!(
        store.read(0).unwrap().revision(),
        1,
        "etcd starts at revision 1"
    );
    let Response::Put(p) = apply_one(&store, put("k", "1")).unwrap() else {
        panic!()
    };
    assert_eq!(p.header.unwrap().revision, 2);
    apply_one(&store, put("k", "2")).unwrap();
    let kv = store
        .read(0)
        .unwrap()
        .range(&get("k"))
        .unwrap()
        .kvs
        .remove(0);
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (2, 3, 2));
    // Deleting nothing creates no revision.
    let Response::DeleteRange(d) = apply_one(&store, del("nope", "")).unwrap() else {
        panic!()
    };
    assert_eq!((d.deleted, d.header.unwrap().revision), (0, 3));
    apply_one(&store, del("k", "")).unwrap();
    apply_one(&store, put("k", "3")).unwrap();
    let kv = store
        .read(0)
        .unwrap()
        .range(&get("k"))
        .unwrap()
        .kvs
        .remove(0);
    assert_eq!(
        (kv.create_revision, kv.mod_revision, kv.version),
        (5, 5, 1),
        "a new generation"
    );
}

#[test]
fn a_view_keeps_its_revision_while_writes_go_on() {
    let (_d, store) = temp_store();
    apply_one(&store, put("k", "old")).unwrap();
    let view = store.read(0).unwrap();
    apply_one(&store, put("k", "new")).unwrap();
    assert_eq!(view.range(&get("k")).unwrap().kvs[0].value, b"old");
    assert_eq!(
        store.read(0).unwrap().range(&get("k")).unwrap().kvs[0].value,
        b"new"
    );
}

#[test]
fn txn_duplicate_key_rules_match_etcd() {
    assert!(dup(t(vec![op_put("a"), op_put("a")])));
    assert!(dup(t(vec![op_put("a"), op_del("a", "")])));
    assert!(dup(t(vec![op_del("a", "c"), op_put("b")])));
    assert!(!dup(t(vec![op_del("a", "c"), op_put("c")])));
    assert!(
        !dup(t(vec![op_del("a", ""), op_del("a", "")])),
        "two deletes may overlap"
    );
    // Then and else of a nested txn may put the same key: only one runs.
    assert!(!dup(t(vec![op_txn(vec![op_put("a")], vec![op_put("a")])])));
    assert!(dup(t(vec![op_put("a"), op_txn(vec![op_put("a")], vec![])])));
    assert!(dup(t(vec![
        op_txn(vec![op_del("a", "")], vec![]),
        op_put("a")
    ])));
    // mango is stricter than etcd on a "\0" range end (etcd then panics on ignore_value).
    assert!(dup(t(vec![op_del("a", "\0"), op_put("b")])));
}

#[test]
fn txn_limits_and_empty_ops_are_refused() {
    let many = TxnRequest {
        success: (0..129).map(|i| op_put(&format!("k{i}"))).collect(),
        ..Default::default()
    };
    assert!(matches!(
        mango_store::validate_txn(&many, 128),
        Err(StoreError::TooManyOps)
    ));
    let empty_op = t(vec![RequestOp { request: None }]);
    assert!(matches!(
        mango_store::validate_txn(&empty_op, 128),
        Err(StoreError::KeyNotFound)
    ));
    let empty_key = t(vec![op_put("")]);
    assert!(matches!(
        mango_store::validate_txn(&empty_key, 128),
        Err(StoreError::EmptyKey)
    ));
}

#[test]
fn txn_is_one_revision_and_inner_headers_look_like_etcds() {
    let (_d, store) = temp_store();
    apply_one(&store, put("a", "1")).unwrap();
    let cmp = Compare {
        result: CompareResult::Equal as i32,
        target: CompareTarget::Value as i32,
        key: b"a".to_vec(),
        range_end: vec![],
        target_union: Some(TargetUnion::Value(b"1".to_vec())),
    };
    let req = TxnRequest {
        compare: vec![cmp],
        success: vec![
            op_put("b"),
            op_put("c"),
            RequestOp {
                request: Some(Op::RequestRange(RangeRequest {
                    key: b"b".to_vec(),
                    ..Default::default()
                })),
            },
            op_txn(vec![op_del("a", "")], vec![]),
        ],
        failure: vec![],
    };
    let Response::Txn(resp) = apply_one(&store, txn(req)).unwrap() else {
        panic!()
    };
    assert!(resp.succeeded);
    assert_eq!(
        resp.header.unwrap().revision,
        3,
        "one revision for the whole txn"
    );
    let OpResp::ResponseRange(r) = resp.responses[2].response.clone().unwrap() else {
        panic!()
    };
    assert_eq!(
        r.kvs[0].mod_revision, 3,
        "reads inside a txn see its earlier writes"
    );
    let OpResp::ResponseTxn(inner) = resp.responses[3].response.clone().unwrap() else {
        panic!()
    };
    assert_eq!(inner.header, Some(ResponseHeader::default()));
    assert!(
        store
            .read(0)
            .unwrap()
            .range(&get("a"))
            .unwrap()
            .kvs
            .is_empty()
    );
}

#[test]
fn compaction_errors_and_reads_around_it() {
    let (_d, store) = temp_store();
    for i in 0..5 {
        apply_one(&store, put("k", &i.to_string())).unwrap();
    }
    let future = apply_one(&store, compact(100)).unwrap_err();
    assert_eq!(
        future.to_string(),
        "etcdserver: mvcc: required revision is a future revision"
    );
    assert_eq!(future.code(), ErrorCode::OutOfRange);
    apply_one(&store, compact(4)).unwrap();
    let again = apply_one(&store, compact(3)).unwrap_err();
    assert_eq!(
        again.to_string(),
        "etcdserver: mvcc: required revision has been compacted"
    );
    store.compact_all(0).unwrap();
    let view = store.read(0).unwrap();
    let at = |rev| {
        view.range(&RangeRequest {
            key: b"k".to_vec(),
            revision: rev,
            ..Default::default()
        })
    };
    assert!(matches!(at(3), Err(StoreError::Compacted)));
    assert_eq!(
        at(4).unwrap().kvs[0].value,
        b"2",
        "the compacted revision itself stays readable"
    );
    assert!(matches!(at(7), Err(StoreError::FutureRevision)));
    // Physical compaction removed revisions 2 and 3; 4 (what revision 4 reads), 5 and 6 stay.
    assert_eq!(view.versions().unwrap(), 3);
}

#[test]
fn put_checks_match_etcd() {
    let (_d, store) = temp_store();
    let p = |f: fn(&mut PutRequest)| {
        let mut req = PutRequest {
            key: b"k".to_vec(),
            ..Default::default()
        };
        f(&mut req);
        mango_proto::mangopb::raft_request::Request::Put(req)
    };
    let e = apply_one(&store, p(|r| r.ignore_value = true)).unwrap_err();
    assert_eq!(e.to_string(), "etcdserver: key not found");
    let e = apply_one(&store, p(|r| r.lease = 42)).unwrap_err();
    assert_eq!(
        (e.to_string().as_str(), e.code()),
        ("etcdserver: requested lease not found", ErrorCode::NotFound)
    );
    let e = apply_one(&store, p(|r| r.key.clear())).unwrap_err();
    assert_eq!(e.to_string(), "etcdserver: key is not provided");
    let e = apply_one(
        &store,
        p(|r| {
            r.ignore_value = true;
            r.value = b"v".to_vec();
        }),
    )
    .unwrap_err();
    assert_eq!(e.to_string(), "etcdserver: value is provided");
    apply_one(&store, p(|r| r.value = b"v1".to_vec())).unwrap();
    let Response::Put(resp) = apply_one(
        &store,
        p(|r| {
            r.ignore_value = true;
            r.prev_kv = true;
        }),
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!(resp.prev_kv.unwrap().value, b"v1");
    assert_eq!(
        store.read(0).unwrap().range(&get("k")).unwrap().kvs[0].value,
        b"v1"
    );
    assert_eq!(
        store.read(0).unwrap().revision(),
        3,
        "failed puts made no revision"
    );
}

#[test]
fn replayed_and_malformed_entries() {
    let (_d, store) = temp_store();
    let data = common::encode(9, put("k", "v"));
    let out = store
        .apply(
            0,
            &[ApplyEntry {
                index: 1,
                term: 1,
                data: &data,
            }],
        )
        .unwrap();
    assert_eq!(out[0].id, 9);
    // Replaying index 1 (as after a restart) is skipped, not applied twice.
    let out = store
        .apply(
            0,
            &[ApplyEntry {
                index: 1,
                term: 1,
                data: &data,
            }],
        )
        .unwrap();
    assert!(out.is_empty());
    assert_eq!(store.read(0).unwrap().revision(), 2);
    // Garbage is answered with an error, and the index still advances.
    let out = store
        .apply(
            0,
            &[ApplyEntry {
                index: 2,
                term: 1,
                data: b"\xff\xff\xff",
            }],
        )
        .unwrap();
    assert!(matches!(out[0].result, Err(StoreError::Malformed(_))));
    let out = store
        .apply(
            0,
            &[ApplyEntry {
                index: 3,
                term: 2,
                data: &[],
            }],
        )
        .unwrap();
    assert!(matches!(out[0].result, Ok(Response::Empty)));
    let state = store.read(0).unwrap().state();
    assert_eq!(
        (state.applied_index, state.applied_term, state.revision),
        (3, 2, 2)
    );
}

#[test]
fn physical_compaction_works_in_bounded_steps() {
    let (_d, store) = temp_store();
    for i in 0..100 {
        apply_one(&store, put(&format!("k{}", i % 10), "v")).unwrap();
    }
    apply_one(&store, compact(101)).unwrap();
    let mut steps = Vec::new();
    loop {
        let s = store.compact_step(0, 10).unwrap();
        steps.push(s.removed);
        if !s.more {
            break;
        }
    }
    assert!(steps.len() >= 9, "100 revisions in steps of 10: {steps:?}");
    assert_eq!(steps.iter().sum::<u64>(), 90);
    assert_eq!(store.read(0).unwrap().versions().unwrap(), 10);
}

#[test]
fn hash_kv_ignores_physical_compaction_progress_but_not_data() {
    let (_d1, a) = temp_store();
    let (_d2, b) = temp_store();
    for store in [&a, &b] {
        for i in 0..50 {
            apply_one(store, put(&format!("k{}", i % 7), &i.to_string())).unwrap();
        }
        apply_one(store, del("k3", "")).unwrap();
        apply_one(store, compact(30)).unwrap();
    }
    a.compact_all(0).unwrap();
    let (ha, hb) = (
        a.read(0).unwrap().hash_kv(0).unwrap(),
        b.read(0).unwrap().hash_kv(0).unwrap(),
    );
    assert_eq!(ha, hb, "one compacted physically, the other not");
    assert_eq!((ha.compact_revision, ha.hash_revision), (30, 52));
    assert_eq!(
        a.read(0).unwrap().hash_kv(40).unwrap(),
        b.read(0).unwrap().hash_kv(40).unwrap()
    );
    apply_one(&b, put("k1", "different")).unwrap();
    apply_one(&a, put("k1", "other")).unwrap();
    assert_ne!(
        a.read(0).unwrap().hash_kv(0).unwrap().hash,
        b.read(0).unwrap().hash_kv(0).unwrap().hash
    );
    assert!(matches!(
        a.read(0).unwrap().hash_kv(10),
        Err(StoreError::Compacted)
    ));
}

#[test]
fn defragment_gives_space_back_and_keeps_data() {
    let (_d, store) = temp_store();
    for i in 0..2000 {
        apply_one(&store, put(&format!("k{:04}", i % 200), &"x".repeat(1000))).unwrap();
    }
    apply_one(&store, compact(2001)).unwrap();
    store.compact_all(0).unwrap();
    let before_view = store.read(0).unwrap().range(&get("k0001")).unwrap();
    let before = store.size().unwrap();
    store.defragment().unwrap();
    let after = store.size().unwrap();
    assert!(
        after.file_bytes < before.file_bytes,
        "{before:?} -> {after:?}"
    );
    assert_eq!(
        store.read(0).unwrap().range(&get("k0001")).unwrap(),
        before_view
    );
    apply_one(&store, put("after", "defrag")).unwrap();
    assert_eq!(
        store
            .read(0)
            .unwrap()
            .range(&get("after"))
            .unwrap()
            .kvs
            .len(),
        1
    );
}

#[test]
fn members_follow_member_changes() {
    use mango_proto::mangopb::member_change::Kind;
    use mango_proto::mangopb::raft_request::Request;
    use mango_proto::mangopb::{MemberChange, MemberInfo};
    let (_d, store) = temp_store();
    let m = |id: u64, learner: bool| MemberInfo {
        id,
        name: format!("m{id}"),
        peer_urls: vec![format!("http://h{id}")],
        client_urls: vec![],
        is_learner: learner,
    };
    store
        .bootstrap_members(0, &[m(1, false), m(2, false)])
        .unwrap();
    store.bootstrap_members(0, &[m(9, false)]).unwrap(); // not empty any more: ignored
    let change = |kind: Kind, member: MemberInfo| {
        Request::MemberChange(MemberChange {
            kind: kind as i32,
            member: Some(member),
        })
    };
    apply_one(&store, change(Kind::Add, m(3, true))).unwrap();
    apply_one(
        &store,
        change(
            Kind::Promote,
            MemberInfo {
                id: 3,
                ..Default::default()
            },
        ),
    )
    .unwrap();
    apply_one(
        &store,
        change(
            Kind::Remove,
            MemberInfo {
                id: 1,
                ..Default::default()
            },
        ),
    )
    .unwrap();
    let members = store.read(0).unwrap().members().unwrap();
    let ids: Vec<(u64, bool)> = members.iter().map(|m| (m.id, m.is_learner)).collect();
    assert_eq!(ids, vec![(2, false), (3, false)]);
    assert_eq!(
        store.read(0).unwrap().revision(),
        1,
        "membership makes no revision"
    );
}
