//! Who may do what once auth is enabled: the checks made at apply with a request's
//! credentials, simple tokens across members, and auth in snapshots.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{apply_one, put, temp_store};
use mango_proto::authpb::Permission;
use mango_proto::authpb::permission::Type as PermType;
use mango_proto::etcdserverpb::request_op::Request as Op;
use mango_proto::etcdserverpb::*;
use mango_proto::mangopb::raft_request::Request;
use mango_proto::mangopb::{InternalAuthenticateRequest, RaftRequest, RequestAuth};
use mango_store::auth::{AuthError, AuthInfo, AuthResponse, TokenLookup, hash_password};
use mango_store::{ApplyEntry, Response, Store, StoreError};
use prost::Message;

/// Applies `request` as the next entry, sent by `user` at auth revision `rev`.
fn apply_as(store: &Store, user: &str, rev: u64, request: Request) -> Result<Response, StoreError> {
    let index = store.read(0).unwrap().state().applied_index + 1;
    let data = RaftRequest {
        id: index,
        request: Some(request),
        auth: Some(RequestAuth {
            username: user.into(),
            auth_revision: rev,
        }),
    }
    .encode_to_vec();
    let entry = ApplyEntry {
        index,
        term: 1,
        data: &data,
    };
    store.apply(0, &[entry]).unwrap().remove(0).result
}

fn denied(r: Result<Response, StoreError>) -> AuthError {
    match r {
        Err(StoreError::Auth(e)) => e,
        other => panic!("expected an auth error, got {other:?}"),
    }
}

fn setup(store: &Store) {
    let requests = [
        Request::AuthUserAdd(AuthUserAddRequest {
            name: "root".into(),
            hashed_password: hash_password("pw", 4).unwrap(),
            ..Default::default()
        }),
        Request::AuthUserGrantRole(AuthUserGrantRoleRequest {
            user: "root".into(),
            role: "root".into(),
        }),
        Request::AuthUserAdd(AuthUserAddRequest {
            name: "alice".into(),
            hashed_password: hash_password("pw", 4).unwrap(),
            ..Default::default()
        }),
        Request::AuthRoleAdd(AuthRoleAddRequest { name: "app".into() }),
        Request::AuthRoleGrantPermission(AuthRoleGrantPermissionRequest {
            name: "app".into(),
            perm: Some(Permission {
                perm_type: PermType::Readwrite as i32,
                key: b"app/".to_vec(),
                range_end: b"app0".to_vec(),
            }),
        }),
        Request::AuthRoleGrantPermission(AuthRoleGrantPermissionRequest {
            name: "app".into(),
            perm: Some(Permission {
                perm_type: PermType::Read as i32,
                key: b"config".to_vec(),
                range_end: vec![],
            }),
        }),
        Request::AuthUserGrantRole(AuthUserGrantRoleRequest {
            user: "alice".into(),
            role: "app".into(),
        }),
        Request::AuthEnable(AuthEnableRequest {}),
    ];
    for r in requests {
        apply_one(store, r).unwrap();
    }
}

fn rev(store: &Store) -> u64 {
    store.auth(0).unwrap().revision()
}

#[test]
fn key_requests_are_checked_at_apply() {
    let (_d, store) = temp_store();
    setup(&store);
    let r = rev(&store);
    apply_as(&store, "alice", r, put("app/x", "1")).unwrap();
    assert_eq!(
        denied(apply_as(&store, "alice", r, put("other", "1"))),
        AuthError::PermissionDenied
    );
    assert_eq!(
        denied(apply_as(&store, "alice", r, put("config", "1"))),
        AuthError::PermissionDenied
    );
    assert_eq!(
        denied(apply_as(&store, "", 0, put("app/x", "1"))),
        AuthError::UserEmpty
    );
    assert_eq!(
        denied(apply_as(&store, "ghost", r, put("app/x", "1"))),
        AuthError::PermissionDenied
    );
    apply_as(&store, "root", r, put("anything", "1")).unwrap();
    // A member's own request (no credentials) is not checked.
    apply_one(&store, put("other", "2")).unwrap();
    let range = |key: &str, end: &str| {
        Request::Range(RangeRequest {
            key: key.into(),
            range_end: end.into(),
            ..Default::default()
        })
    };
    apply_as(&store, "alice", r, range("app/", "app0")).unwrap();
    apply_as(&store, "alice", r, range("config", "")).unwrap();
    assert_eq!(
        denied(apply_as(&store, "alice", r, range("app/", "\0"))),
        AuthError::PermissionDenied
    );
    let put_prev = Request::Put(PutRequest {
        key: b"app/y".to_vec(),
        prev_kv: true,
        ..Default::default()
    });
    apply_as(&store, "alice", r, put_prev).unwrap();
    let del = Request::DeleteRange(DeleteRangeRequest {
        key: b"app/".to_vec(),
        range_end: b"app1".to_vec(),
        ..Default::default()
    });
    assert_eq!(
        denied(apply_as(&store, "alice", r, del)),
        AuthError::PermissionDenied
    );
    // A denied request changes nothing.
    let view = store.read(0).unwrap();
    assert_eq!(
        view.range(&common::get("other")).unwrap().kvs[0].value,
        b"2"
    );
}

#[test]
fn credentials_older_than_an_auth_change_are_refused() {
    let (_d, store) = temp_store();
    setup(&store);
    let old = rev(&store);
    apply_one(
        &store,
        Request::AuthRoleAdd(AuthRoleAddRequest {
            name: "more".into(),
        }),
    )
    .unwrap();
    assert_eq!(
        denied(apply_as(&store, "alice", old, put("app/x", "1"))),
        AuthError::AuthOldRevision
    );
    apply_as(&store, "alice", rev(&store), put("app/x", "1")).unwrap();
}

#[test]
fn auth_management_needs_the_root_role() {
    let (_d, store) = temp_store();
    setup(&store);
    let r = rev(&store);
    let add = || Request::AuthRoleAdd(AuthRoleAddRequest { name: "x".into() });
    assert_eq!(
        denied(apply_as(&store, "alice", r, add())),
        AuthError::PermissionDenied
    );
    assert_eq!(denied(apply_as(&store, "", 0, add())), AuthError::UserEmpty);
    assert_eq!(
        denied(apply_as(&store, "ghost", r, add())),
        AuthError::UserNotFound
    );
    apply_as(&store, "root", r, add()).unwrap();
    // One may read oneself, and one's own roles.
    let r = rev(&store);
    let get_user = |n: &str| Request::AuthUserGet(AuthUserGetRequest { name: n.into() });
    apply_as(&store, "alice", r, get_user("alice")).unwrap();
    assert_eq!(
        denied(apply_as(&store, "alice", r, get_user("root"))),
        AuthError::PermissionDenied
    );
    let get_role = |n: &str| Request::AuthRoleGet(AuthRoleGetRequest { role: n.into() });
    apply_as(&store, "alice", r, get_role("app")).unwrap();
    assert_eq!(
        denied(apply_as(&store, "alice", r, get_role("x"))),
        AuthError::PermissionDenied
    );
}

#[test]
fn txns_are_checked_op_by_op_nested_ones_too() {
    let (_d, store) = temp_store();
    setup(&store);
    let r = rev(&store);
    let op_put = |k: &str| RequestOp {
        request: Some(Op::RequestPut(PutRequest {
            key: k.into(),
            ..Default::default()
        })),
    };
    let txn = |compare_key: &str, success: Vec<RequestOp>, failure: Vec<RequestOp>| {
        Request::Txn(TxnRequest {
            compare: vec![Compare {
                key: compare_key.into(),
                ..Default::default()
            }],
            success,
            failure,
        })
    };
    apply_as(
        &store,
        "alice",
        r,
        txn("config", vec![op_put("app/a")], vec![]),
    )
    .unwrap();
    assert_eq!(
        denied(apply_as(
            &store,
            "alice",
            r,
            txn("secret", vec![op_put("app/a")], vec![])
        )),
        AuthError::PermissionDenied
    );
    assert_eq!(
        denied(apply_as(
            &store,
            "alice",
            r,
            txn("config", vec![], vec![op_put("x")])
        )),
        AuthError::PermissionDenied
    );
    let nested = RequestOp {
        request: Some(Op::RequestTxn(TxnRequest {
            success: vec![op_put("x")],
            ..Default::default()
        })),
    };
    assert_eq!(
        denied(apply_as(
            &store,
            "alice",
            r,
            txn("config", vec![nested], vec![])
        )),
        AuthError::PermissionDenied
    );
}

#[test]
fn a_lease_binds_whoever_would_revoke_it() {
    let (_d, store) = temp_store();
    setup(&store);
    let r = rev(&store);
    apply_one(
        &store,
        Request::LeaseGrant(LeaseGrantRequest { ttl: 60, id: 7 }),
    )
    .unwrap();
    apply_one(
        &store,
        Request::Put(PutRequest {
            key: b"secret".to_vec(),
            lease: 7,
            ..Default::default()
        }),
    )
    .unwrap();
    let leased_put = Request::Put(PutRequest {
        key: b"app/l".to_vec(),
        lease: 7,
        ..Default::default()
    });
    assert_eq!(
        denied(apply_as(&store, "alice", r, leased_put.clone())),
        AuthError::PermissionDenied
    );
    let revoke = Request::LeaseRevoke(LeaseRevokeRequest { id: 7 });
    assert_eq!(
        denied(apply_as(&store, "alice", r, revoke.clone())),
        AuthError::PermissionDenied
    );
    apply_as(&store, "root", r, leased_put).unwrap();
    apply_as(&store, "root", r, revoke).unwrap();
}

#[test]
fn views_check_requests_without_applying_them() {
    let (_d, store) = temp_store();
    setup(&store);
    let view = store.read(0).unwrap();
    let alice = AuthInfo {
        username: "alice".into(),
        revision: view.auth().revision(),
    };
    assert!(view.check_request(&alice, &put("app/k", "v")).is_ok());
    assert!(matches!(
        view.check_request(&alice, &put("k", "v")),
        Err(StoreError::Auth(AuthError::PermissionDenied))
    ));
    assert_eq!(
        view.auth().is_admin_permitted(&alice),
        Err(AuthError::PermissionDenied)
    );
}

fn authenticate(store: &Store, user: &str) -> String {
    authenticate_with(
        store,
        user,
        &mango_store::auth::simple_token_prefix().unwrap(),
    )
}

/// Applies an Authenticate with the token prefix its proposer drew.
fn authenticate_with(store: &Store, user: &str, prefix: &str) -> String {
    let request = Request::Authenticate(InternalAuthenticateRequest {
        name: user.into(),
        simple_token: prefix.into(),
    });
    match apply_one(store, request).unwrap() {
        Response::Auth(AuthResponse::Authenticate(a)) => a.response.token,
        other => panic!("{other:?}"),
    }
}

#[test]
fn simple_tokens_live_on_every_member_until_unused_for_the_ttl() {
    let (_d1, leader) = temp_store();
    let (_d2, learner) = temp_store();
    setup(&leader);
    setup(&learner);
    let prefix = mango_store::auth::simple_token_prefix().unwrap();
    let token = authenticate_with(&leader, "alice", &prefix);
    let now = Instant::now();
    let index = mango_store::auth::simple_token_index(&token).unwrap();
    // A member that has not applied the Authenticate yet waits for it, then knows it.
    assert_eq!(
        learner.simple_token(0, &token, now).unwrap(),
        TokenLookup::Pending { index }
    );
    assert_eq!(authenticate_with(&learner, "alice", &prefix), token);
    for store in [&leader, &learner] {
        match store.simple_token(0, &token, now).unwrap() {
            TokenLookup::Valid(info) => assert_eq!(info.username, "alice"),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        leader.simple_token(0, "nope.1", now).unwrap(),
        TokenLookup::Invalid
    );
    assert_eq!(
        leader.simple_token(0, "garbage", now).unwrap(),
        TokenLookup::Invalid
    );
    // Expiry is each node's own: used at +200 s it lives past +300 s, then goes.
    let ttl = Duration::from_secs(300);
    leader.expire_tokens(ttl, now).unwrap();
    assert!(matches!(
        leader
            .simple_token(0, &token, now + Duration::from_secs(200))
            .unwrap(),
        TokenLookup::Valid(_)
    ));
    assert_eq!(
        leader
            .expire_tokens(ttl, now + Duration::from_secs(400))
            .unwrap(),
        0
    );
    assert_eq!(
        leader
            .expire_tokens(ttl, now + Duration::from_secs(501))
            .unwrap(),
        1
    );
    assert_eq!(
        leader.simple_token(0, &token, now).unwrap(),
        TokenLookup::Invalid
    );
    // A password change drops the user's tokens; disabling auth drops all.
    let t2 = authenticate(&learner, "root");
    apply_one(
        &learner,
        Request::AuthUserChangePassword(AuthUserChangePasswordRequest {
            name: "alice".into(),
            hashed_password: hash_password("new", 4).unwrap(),
            ..Default::default()
        }),
    )
    .unwrap();
    assert_eq!(
        learner.simple_token(0, &token, now).unwrap(),
        TokenLookup::Invalid
    );
    assert!(matches!(
        learner.simple_token(0, &t2, now).unwrap(),
        TokenLookup::Valid(_)
    ));
    apply_one(&learner, Request::AuthDisable(AuthDisableRequest {})).unwrap();
    assert_eq!(
        learner.simple_token(0, &t2, now).unwrap(),
        TokenLookup::Invalid
    );
}

#[test]
fn snapshots_carry_auth() {
    let (_d1, source) = temp_store();
    setup(&source);
    let token = authenticate(&source, "alice");
    let mut reader = source.snapshot_reader(0).unwrap();
    let mut bytes = Vec::new();
    while let Some(chunk) = reader.next_chunk(1024).unwrap() {
        bytes.extend_from_slice(&chunk);
    }
    let (_d2, target) = temp_store();
    let before = authenticate_target_first(&target);
    target.install_snapshot(0, &mut bytes.as_slice()).unwrap();
    assert_eq!(*target.auth(0).unwrap(), *source.auth(0).unwrap());
    assert!(target.auth(0).unwrap().enabled());
    // Tokens are node-local: the snapshot brings none, and the old state's go.
    let now = Instant::now();
    assert_eq!(
        target.simple_token(0, &token, now).unwrap(),
        TokenLookup::Invalid
    );
    assert_eq!(
        target.simple_token(0, &before, now).unwrap(),
        TokenLookup::Invalid
    );
}

/// A token issued on a store whose state a snapshot then replaces.
fn authenticate_target_first(store: &Store) -> String {
    apply_one(
        store,
        Request::AuthUserAdd(AuthUserAddRequest {
            name: "root".into(),
            hashed_password: hash_password("pw", 4).unwrap(),
            ..Default::default()
        }),
    )
    .unwrap();
    apply_one(
        store,
        Request::AuthUserGrantRole(AuthUserGrantRoleRequest {
            user: "root".into(),
            role: "root".into(),
        }),
    )
    .unwrap();
    apply_one(store, Request::AuthEnable(AuthEnableRequest {})).unwrap();
    apply_one(
        store,
        Request::AuthUserAdd(AuthUserAddRequest {
            name: "zed".into(),
            hashed_password: hash_password("pw", 4).unwrap(),
            ..Default::default()
        }),
    )
    .unwrap();
    authenticate(store, "zed")
}
