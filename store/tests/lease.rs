//! Leases, case by case: etcd's grant, revoke and checkpoint, and keys attached by puts.
//! (The sub-revision order of a revoke's deletes is checked on the revision log itself, in
//! the unit tests of `src/lease.rs`.)
#![allow(clippy::unwrap_used)]

mod common;

use common::{apply_one, checkpoint, del, get, grant, put, put_lease, revoke, temp_store, txn};
use mango_proto::etcdserverpb::request_op::Request as Op;
use mango_proto::etcdserverpb::{
    DeleteRangeRequest, LeaseGrantResponse, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use mango_proto::mangopb::raft_request::Request;
use mango_store::{ErrorCode, LeaseInfo, MAX_LEASE_TTL, Response, Store, StoreError};

fn rev(store: &Store) -> i64 {
    store.read(0).unwrap().revision()
}

fn lease_of(store: &Store, key: &str) -> Option<i64> {
    let view = store.read(0).unwrap();
    view.range(&get(key))
        .unwrap()
        .kvs
        .first()
        .map(|kv| kv.lease)
}

fn keys_of(store: &Store, id: i64) -> Vec<String> {
    let view = store.read(0).unwrap();
    let keys = view.lease_keys(id).unwrap();
    keys.into_iter()
        .map(|k| String::from_utf8(k).unwrap())
        .collect()
}

fn lease(id: i64, granted_ttl: i64, remaining_ttl: Option<i64>) -> LeaseInfo {
    LeaseInfo {
        id,
        granted_ttl,
        remaining_ttl,
    }
}

fn txn_of(success: Vec<Op>) -> Request {
    txn(TxnRequest {
        compare: vec![],
        success: success
            .into_iter()
            .map(|r| RequestOp { request: Some(r) })
            .collect(),
        failure: vec![],
    })
}

#[test]
fn grant_answers_like_etcd() {
    let (_d, store) = temp_store();
    apply_one(&store, put("k", "v")).unwrap();
    let Response::LeaseGrant(resp) = apply_one(&store, grant(7, 30)).unwrap() else {
        panic!()
    };
    assert_eq!(
        resp,
        LeaseGrantResponse {
            header: Some(mango_proto::etcdserverpb::ResponseHeader {
                revision: 2,
                ..Default::default()
            }),
            id: 7,
            ttl: 30,
            error: String::new(),
        }
    );
    assert_eq!(rev(&store), 2, "a grant makes no revision");

    let e = apply_one(&store, grant(7, 60)).unwrap_err();
    assert_eq!(
        (e.to_string().as_str(), e.code()),
        (
            "etcdserver: lease already exists",
            ErrorCode::FailedPrecondition
        )
    );
    let e = apply_one(&store, grant(8, MAX_LEASE_TTL + 1)).unwrap_err();
    assert_eq!(
        (e.to_string().as_str(), e.code()),
        ("etcdserver: too large lease TTL", ErrorCode::OutOfRange)
    );
    // etcd checks the TTL before the id.
    let e = apply_one(&store, grant(7, MAX_LEASE_TTL + 1)).unwrap_err();
    assert!(matches!(e, StoreError::LeaseTtlTooLarge));
    // The proposer must choose the id: 0 never reaches apply from a correct node.
    let e = apply_one(&store, grant(0, 30)).unwrap_err();
    assert!(matches!(e, StoreError::Malformed(_)), "{e}");

    apply_one(&store, grant(8, MAX_LEASE_TTL)).unwrap();
    // Stored as given: raising a TTL below etcd's minimum is the API layer's job.
    apply_one(&store, grant(-9, 1)).unwrap();
    let view = store.read(0).unwrap();
    assert_eq!(
        view.leases().unwrap(),
        vec![
            lease(-9, 1, None),
            lease(7, 30, None),
            lease(8, MAX_LEASE_TTL, None)
        ],
        "in id order, negative ids first"
    );
    assert_eq!(view.lease(7).unwrap(), Some(lease(7, 30, None)));
    assert_eq!(view.lease(6).unwrap(), None);
    assert_eq!(view.revision(), 2);
}

#[test]
fn put_attaches_moves_keeps_and_detaches() {
    let (_d, store) = temp_store();
    apply_one(&store, grant(1, 10)).unwrap();
    apply_one(&store, grant(2, 10)).unwrap();
    apply_one(&store, put_lease("k", "v", 1)).unwrap();
    assert_eq!(lease_of(&store, "k"), Some(1));
    assert_eq!(keys_of(&store, 1), ["k"]);

    apply_one(&store, put_lease("k", "v", 2)).unwrap();
    assert_eq!(lease_of(&store, "k"), Some(2));
    assert!(keys_of(&store, 1).is_empty(), "detached from the old lease");
    assert_eq!(keys_of(&store, 2), ["k"]);

    let keep = Request::Put(PutRequest {
        key: b"k".to_vec(),
        value: b"new".to_vec(),
        ignore_lease: true,
        ..Default::default()
    });
    apply_one(&store, keep).unwrap();
    assert_eq!(lease_of(&store, "k"), Some(2), "ignore_lease keeps it");
    assert_eq!(keys_of(&store, 2), ["k"]);

    apply_one(&store, put("k", "plain")).unwrap();
    assert_eq!(lease_of(&store, "k"), Some(0), "lease 0 detaches");
    assert!(keys_of(&store, 2).is_empty());

    let before = rev(&store);
    let e = apply_one(&store, put_lease("k", "v", 3)).unwrap_err();
    assert_eq!(
        (e.to_string().as_str(), e.code()),
        ("etcdserver: requested lease not found", ErrorCode::NotFound)
    );
    assert_eq!(rev(&store), before, "a refused put makes no revision");
}

#[test]
fn a_put_checks_its_lease_before_its_key_and_a_txn_the_other_way_round() {
    let (_d, store) = temp_store();
    let req = PutRequest {
        key: b"missing".to_vec(),
        lease: 5,
        ignore_value: true,
        ..Default::default()
    };
    let e = apply_one(&store, Request::Put(req.clone())).unwrap_err();
    assert!(matches!(e, StoreError::LeaseNotFound), "{e}");
    let e = apply_one(&store, txn_of(vec![Op::RequestPut(req)])).unwrap_err();
    assert!(matches!(e, StoreError::KeyNotFound), "{e}");
}

#[test]
fn txn_puts_attach_and_txn_deletes_detach() {
    let (_d, store) = temp_store();
    apply_one(&store, grant(1, 10)).unwrap();
    let put_op = |k: &str, lease: i64| {
        Op::RequestPut(PutRequest {
            key: k.into(),
            lease,
            ..Default::default()
        })
    };
    apply_one(&store, txn_of(vec![put_op("a", 1), put_op("b", 1)])).unwrap();
    assert_eq!(keys_of(&store, 1), ["a", "b"]);
    let e = apply_one(&store, txn_of(vec![put_op("c", 1), put_op("d", 4)])).unwrap_err();
    assert!(matches!(e, StoreError::LeaseNotFound));
    assert_eq!(
        keys_of(&store, 1),
        ["a", "b"],
        "the refused txn wrote nothing"
    );
    let delete_a = Op::RequestDeleteRange(DeleteRangeRequest {
        key: b"a".to_vec(),
        ..Default::default()
    });
    apply_one(&store, txn_of(vec![delete_a, put_op("c", 1)])).unwrap();
    assert_eq!(keys_of(&store, 1), ["b", "c"]);
}

#[test]
fn revoke_deletes_every_attached_key_in_one_revision() {
    let (_d, store) = temp_store();
    apply_one(&store, grant(1, 10)).unwrap();
    apply_one(&store, grant(2, 10)).unwrap();
    for k in ["k3", "k1", "k2"] {
        apply_one(&store, put_lease(k, "v", 1)).unwrap();
    }
    apply_one(&store, put_lease("other", "v", 2)).unwrap();
    apply_one(&store, put("plain", "v")).unwrap();
    let before = rev(&store);
    let Response::LeaseRevoke(resp) = apply_one(&store, revoke(1)).unwrap() else {
        panic!()
    };
    assert_eq!(resp.header.unwrap().revision, before + 1);
    assert_eq!(rev(&store), before + 1, "one revision for every key");

    let view = store.read(0).unwrap();
    let all = RangeRequest {
        key: vec![0],
        range_end: vec![0],
        ..Default::default()
    };
    let left: Vec<Vec<u8>> = view
        .range(&all)
        .unwrap()
        .kvs
        .into_iter()
        .map(|kv| kv.key)
        .collect();
    assert_eq!(left, [b"other".to_vec(), b"plain".to_vec()]);
    assert_eq!(view.lease(1).unwrap(), None);
    assert!(view.lease_keys(1).unwrap().is_empty());
    assert_eq!(view.leases().unwrap(), vec![lease(2, 10, None)]);
    // History still shows the keys with their lease before the revoke.
    let old = RangeRequest {
        revision: before,
        ..all
    };
    let old = view.range(&old).unwrap();
    assert_eq!(old.count, 5);
    assert_eq!(old.kvs[0].lease, 1);

    let e = apply_one(&store, revoke(1)).unwrap_err();
    assert_eq!(
        (e.to_string().as_str(), e.code()),
        ("etcdserver: requested lease not found", ErrorCode::NotFound)
    );
    // The id can be granted again, empty.
    apply_one(&store, grant(1, 5)).unwrap();
    assert!(keys_of(&store, 1).is_empty());
}

#[test]
fn revoke_of_a_lease_without_keys_makes_no_revision() {
    let (_d, store) = temp_store();
    apply_one(&store, put("k", "v")).unwrap();
    apply_one(&store, grant(1, 10)).unwrap();
    let Response::LeaseRevoke(resp) = apply_one(&store, revoke(1)).unwrap() else {
        panic!()
    };
    assert_eq!(resp.header.unwrap().revision, 2);
    assert_eq!(rev(&store), 2);
    assert!(store.read(0).unwrap().leases().unwrap().is_empty());
    let e = apply_one(&store, revoke(0)).unwrap_err();
    assert!(matches!(e, StoreError::LeaseNotFound));
}

#[test]
fn deletes_detach_so_a_revoke_spares_keys_put_again_without_the_lease() {
    let (_d, store) = temp_store();
    apply_one(&store, grant(1, 10)).unwrap();
    for k in ["a", "b", "c"] {
        apply_one(&store, put_lease(k, "v", 1)).unwrap();
    }
    apply_one(&store, del("a", "")).unwrap();
    apply_one(&store, del("b", "z")).unwrap();
    assert!(keys_of(&store, 1).is_empty());
    apply_one(&store, put("a", "again")).unwrap();
    apply_one(&store, put("c", "again")).unwrap();
    let before = rev(&store);
    apply_one(&store, revoke(1)).unwrap();
    assert_eq!(rev(&store), before, "nothing was attached any more");
    let view = store.read(0).unwrap();
    assert_eq!(view.range(&get("a")).unwrap().kvs[0].value, b"again");
    assert_eq!(view.range(&get("c")).unwrap().kvs[0].value, b"again");
}

#[test]
fn checkpoint_records_the_remaining_ttl() {
    let (_d, store) = temp_store();
    apply_one(&store, put("k", "v")).unwrap();
    apply_one(&store, grant(1, 100)).unwrap();
    apply_one(&store, grant(2, 100)).unwrap();
    let Response::LeaseCheckpoint(resp) =
        apply_one(&store, checkpoint(&[(1, 40), (9, 5), (2, 70)])).unwrap()
    else {
        panic!()
    };
    assert_eq!(resp.header.unwrap().revision, 2);
    let view = store.read(0).unwrap();
    assert_eq!(
        view.leases().unwrap(),
        vec![lease(1, 100, Some(40)), lease(2, 100, Some(70))],
        "unknown ids are skipped"
    );
    assert_eq!(view.revision(), 2);
    // A renewal clears the checkpoint by checkpointing 0.
    apply_one(&store, checkpoint(&[(1, 0)])).unwrap();
    assert_eq!(
        store.read(0).unwrap().lease(1).unwrap(),
        Some(lease(1, 100, None))
    );
}

fn lease_state(store: &Store) -> Vec<(LeaseInfo, Vec<Vec<u8>>)> {
    let view = store.read(0).unwrap();
    view.leases()
        .unwrap()
        .into_iter()
        .map(|l| (l, view.lease_keys(l.id).unwrap()))
        .collect()
}

#[test]
fn leases_survive_reopen_and_travel_in_a_snapshot() {
    let (dir, store) = temp_store();
    apply_one(&store, grant(1, 10)).unwrap();
    apply_one(&store, grant(i64::MIN, 20)).unwrap();
    apply_one(&store, grant(i64::MAX, 30)).unwrap();
    apply_one(&store, put_lease("a", "v", 1)).unwrap();
    apply_one(&store, put_lease("b", "v", i64::MAX)).unwrap();
    apply_one(&store, put_lease("c", "v", i64::MIN)).unwrap();
    apply_one(&store, checkpoint(&[(1, 4)])).unwrap();
    let want = lease_state(&store);
    assert_eq!(want.len(), 3);
    assert_eq!(want[0].1, [b"c".to_vec()]);
    assert_eq!(want[2].1, [b"b".to_vec()], "the largest id's keys");

    drop(store);
    let store = Store::open_path(dir.path().join("db"), Default::default()).unwrap();
    assert_eq!(lease_state(&store), want);

    let mut reader = store.snapshot_reader(0).unwrap();
    let mut bytes = Vec::new();
    while let Some(chunk) = reader.next_chunk(64).unwrap() {
        bytes.extend_from_slice(&chunk);
    }
    let (_d2, target) = temp_store();
    apply_one(&target, grant(5, 5)).unwrap();
    apply_one(&target, put_lease("stale", "v", 5)).unwrap();
    target.install_snapshot(0, &mut bytes.as_slice()).unwrap();
    assert_eq!(
        lease_state(&target),
        want,
        "the target's own leases are gone"
    );

    // Both go on alike.
    for s in [&store, &target] {
        let Response::LeaseRevoke(r) = apply_one(s, revoke(i64::MAX)).unwrap() else {
            panic!()
        };
        assert_eq!(r.header.unwrap().revision, 5);
    }
    assert_eq!(lease_state(&store), lease_state(&target));
    assert_eq!(
        store.read(0).unwrap().hash_kv(0).unwrap(),
        target.read(0).unwrap().hash_kv(0).unwrap()
    );
}
