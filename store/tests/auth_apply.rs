//! Applying etcd's auth requests: every error etcd 3.4 answers, the auth revision, and the
//! state every member reads afterwards.
#![allow(clippy::unwrap_used)]

mod common;

use common::{apply_one, temp_store};
use mango_proto::authpb::permission::Type as PermType;
use mango_proto::authpb::{Permission, UserAddOptions};
use mango_proto::etcdserverpb::*;
use mango_proto::mangopb::InternalAuthenticateRequest;
use mango_proto::mangopb::raft_request::Request;
use mango_store::auth::{AuthError, AuthResponse, hash_password};
use mango_store::{ErrorCode, Response, Store, StoreError};

fn ok(store: &Store, request: Request) -> AuthResponse {
    match apply_one(store, request) {
        Ok(Response::Auth(r)) => r,
        other => panic!("expected an auth response, got {other:?}"),
    }
}

fn err(store: &Store, request: Request) -> AuthError {
    match apply_one(store, request) {
        Err(StoreError::Auth(e)) => e,
        other => panic!("expected an auth error, got {other:?}"),
    }
}

pub fn user_add(name: &str, password: &str) -> Request {
    Request::AuthUserAdd(AuthUserAddRequest {
        name: name.into(),
        hashed_password: hash_password(password, 4).unwrap(),
        ..Default::default()
    })
}

fn role_add(name: &str) -> Request {
    Request::AuthRoleAdd(AuthRoleAddRequest { name: name.into() })
}

fn grant_role(user: &str, role: &str) -> Request {
    Request::AuthUserGrantRole(AuthUserGrantRoleRequest {
        user: user.into(),
        role: role.into(),
    })
}

fn grant(role: &str, t: PermType, key: &str, end: &str) -> Request {
    Request::AuthRoleGrantPermission(AuthRoleGrantPermissionRequest {
        name: role.into(),
        perm: Some(Permission {
            perm_type: t as i32,
            key: key.into(),
            range_end: end.into(),
        }),
    })
}

fn revision(store: &Store) -> u64 {
    store.auth(0).unwrap().revision()
}

fn enable_with_root(store: &Store) {
    ok(store, user_add("root", "rootpw"));
    ok(store, grant_role("root", "root"));
    ok(store, Request::AuthEnable(AuthEnableRequest {}));
}

#[test]
fn enable_needs_root_user_with_root_role() {
    let (_d, store) = temp_store();
    assert_eq!(
        revision(&store),
        1,
        "a fresh group is at etcd's first auth revision"
    );
    assert_eq!(
        err(&store, Request::AuthEnable(AuthEnableRequest {})),
        AuthError::RootUserNotExist
    );
    ok(&store, user_add("root", "pw"));
    assert_eq!(
        err(&store, Request::AuthEnable(AuthEnableRequest {})),
        AuthError::RootRoleNotExist
    );
    ok(&store, grant_role("root", "root"));
    let before = revision(&store);
    ok(&store, Request::AuthEnable(AuthEnableRequest {}));
    let auth = store.auth(0).unwrap();
    assert!(auth.enabled());
    assert_eq!(
        auth.revision(),
        before,
        "AuthEnable does not raise the revision"
    );
    // Enabling again is a no-op; disabling raises the revision once.
    ok(&store, Request::AuthEnable(AuthEnableRequest {}));
    ok(&store, Request::AuthDisable(AuthDisableRequest {}));
    assert!(!store.auth(0).unwrap().enabled());
    assert_eq!(revision(&store), before + 1);
    ok(&store, Request::AuthDisable(AuthDisableRequest {}));
    assert_eq!(revision(&store), before + 1);
    match ok(&store, Request::AuthStatus(AuthStatusRequest {})) {
        AuthResponse::AuthStatus(s) => {
            assert!(!s.enabled);
            assert_eq!(s.auth_revision, before + 1);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn user_errors() {
    let (_d, store) = temp_store();
    assert_eq!(err(&store, user_add("", "pw")), AuthError::UserEmpty);
    let r0 = revision(&store);
    ok(&store, user_add("alice", "pw"));
    assert_eq!(revision(&store), r0 + 1);
    assert_eq!(
        err(&store, user_add("alice", "pw")),
        AuthError::UserAlreadyExist
    );
    let missing = [
        Request::AuthUserDelete(AuthUserDeleteRequest { name: "bob".into() }),
        Request::AuthUserGet(AuthUserGetRequest { name: "bob".into() }),
        Request::AuthUserChangePassword(AuthUserChangePasswordRequest {
            name: "bob".into(),
            hashed_password: hash_password("x", 4).unwrap(),
            ..Default::default()
        }),
        grant_role("bob", "root"),
        Request::AuthUserRevokeRole(AuthUserRevokeRoleRequest {
            name: "bob".into(),
            role: "r".into(),
        }),
    ];
    for request in missing {
        assert_eq!(err(&store, request), AuthError::UserNotFound);
    }
    assert_eq!(
        err(&store, grant_role("alice", "nope")),
        AuthError::RoleNotFound
    );
    assert_eq!(
        err(
            &store,
            Request::AuthUserRevokeRole(AuthUserRevokeRoleRequest {
                name: "alice".into(),
                role: "root".into(),
            })
        ),
        AuthError::RoleNotGranted
    );
    let e = StoreError::from(AuthError::UserNotFound);
    assert_eq!(e.code(), ErrorCode::FailedPrecondition);
    assert_eq!(e.to_string(), "etcdserver: user name not found");
}

#[test]
fn a_password_must_arrive_hashed_unless_the_user_has_none() {
    let (_d, store) = temp_store();
    let unhashed = Request::AuthUserAdd(AuthUserAddRequest {
        name: "a".into(),
        password: "plain".into(),
        ..Default::default()
    });
    assert!(matches!(
        apply_one(&store, unhashed),
        Err(StoreError::Malformed(_))
    ));
    ok(
        &store,
        Request::AuthUserAdd(AuthUserAddRequest {
            name: "svc".into(),
            options: Some(UserAddOptions { no_password: true }),
            ..Default::default()
        }),
    );
    let svc = store.auth(0).unwrap().user("svc").unwrap().clone();
    assert!(svc.password.is_empty());
    assert_eq!(svc.options, Some(UserAddOptions { no_password: true }));
}

#[test]
fn role_errors_and_grants() {
    let (_d, store) = temp_store();
    assert_eq!(err(&store, role_add("")), AuthError::RoleEmpty);
    ok(&store, role_add("r"));
    assert_eq!(err(&store, role_add("r")), AuthError::RoleAlreadyExist);
    for request in [
        Request::AuthRoleDelete(AuthRoleDeleteRequest { role: "x".into() }),
        Request::AuthRoleGet(AuthRoleGetRequest { role: "x".into() }),
        grant("x", PermType::Read, "a", ""),
        Request::AuthRoleRevokePermission(AuthRoleRevokePermissionRequest {
            role: "x".into(),
            key: "a".into(),
            range_end: vec![],
        }),
    ] {
        assert_eq!(err(&store, request), AuthError::RoleNotFound);
    }
    assert_eq!(
        err(
            &store,
            Request::AuthRoleGrantPermission(AuthRoleGrantPermissionRequest {
                name: "r".into(),
                perm: None,
            })
        ),
        AuthError::PermissionNotGiven
    );
    assert_eq!(
        err(&store, grant("r", PermType::Read, "b", "a")),
        AuthError::InvalidAuthMgmt
    );
    assert_eq!(
        err(&store, grant("r", PermType::Read, "", "")),
        AuthError::InvalidAuthMgmt
    );
    ok(&store, grant("r", PermType::Read, "k", "m"));
    ok(&store, grant("r", PermType::Write, "a", ""));
    ok(&store, grant("r", PermType::Read, "k", ""));
    // Same key and range end again: the type is updated, no duplicate.
    ok(&store, grant("r", PermType::Readwrite, "k", "m"));
    let perms = match ok(
        &store,
        Request::AuthRoleGet(AuthRoleGetRequest { role: "r".into() }),
    ) {
        AuthResponse::RoleGet(r) => r.perm,
        other => panic!("{other:?}"),
    };
    let seen: Vec<_> = perms
        .iter()
        .map(|p| (p.key.clone(), p.range_end.clone(), p.perm_type))
        .collect();
    assert_eq!(
        seen,
        vec![
            (b"a".to_vec(), vec![], PermType::Write as i32),
            (b"k".to_vec(), b"m".to_vec(), PermType::Readwrite as i32),
            (b"k".to_vec(), vec![], PermType::Read as i32),
        ]
    );
    assert_eq!(
        err(
            &store,
            Request::AuthRoleRevokePermission(AuthRoleRevokePermissionRequest {
                role: "r".into(),
                key: "k".into(),
                range_end: b"z".to_vec(),
            })
        ),
        AuthError::PermissionNotGranted
    );
    let r0 = revision(&store);
    ok(
        &store,
        Request::AuthRoleRevokePermission(AuthRoleRevokePermissionRequest {
            role: "r".into(),
            key: "k".into(),
            range_end: b"m".to_vec(),
        }),
    );
    assert_eq!(revision(&store), r0 + 1);
    assert_eq!(
        store
            .auth(0)
            .unwrap()
            .role("r")
            .unwrap()
            .key_permission
            .len(),
        2
    );
}

#[test]
fn granting_roles_keeps_them_sorted_once_and_deleting_a_role_revokes_it() {
    let (_d, store) = temp_store();
    ok(&store, user_add("u", "pw"));
    ok(&store, role_add("b"));
    ok(&store, role_add("a"));
    ok(&store, grant_role("u", "b"));
    ok(&store, grant_role("u", "a"));
    // The root role may be granted before it exists as a role.
    ok(&store, grant_role("u", "root"));
    let r0 = revision(&store);
    ok(&store, grant_role("u", "a"));
    assert_eq!(
        revision(&store),
        r0,
        "granting a role held already changes nothing"
    );
    match ok(
        &store,
        Request::AuthUserGet(AuthUserGetRequest { name: "u".into() }),
    ) {
        AuthResponse::UserGet(r) => assert_eq!(r.roles, ["a", "b", "root"]),
        other => panic!("{other:?}"),
    }
    ok(
        &store,
        Request::AuthRoleDelete(AuthRoleDeleteRequest { role: "b".into() }),
    );
    assert_eq!(
        store.auth(0).unwrap().user("u").unwrap().roles,
        ["a", "root"]
    );
    match ok(&store, Request::AuthRoleList(AuthRoleListRequest {})) {
        AuthResponse::RoleList(r) => assert_eq!(r.roles, ["a"]),
        other => panic!("{other:?}"),
    }
    ok(&store, user_add("t", "pw"));
    match ok(&store, Request::AuthUserList(AuthUserListRequest {})) {
        AuthResponse::UserList(r) => assert_eq!(r.users, ["t", "u"]),
        other => panic!("{other:?}"),
    }
}

#[test]
fn root_is_protected_while_auth_is_enabled() {
    let (_d, store) = temp_store();
    ok(&store, role_add("root"));
    enable_with_root(&store);
    for request in [
        Request::AuthUserDelete(AuthUserDeleteRequest {
            name: "root".into(),
        }),
        Request::AuthRoleDelete(AuthRoleDeleteRequest {
            role: "root".into(),
        }),
        Request::AuthUserRevokeRole(AuthUserRevokeRoleRequest {
            name: "root".into(),
            role: "root".into(),
        }),
    ] {
        assert_eq!(err(&store, request.clone()), AuthError::InvalidAuthMgmt);
    }
    ok(&store, Request::AuthDisable(AuthDisableRequest {}));
    ok(
        &store,
        Request::AuthUserRevokeRole(AuthUserRevokeRoleRequest {
            name: "root".into(),
            role: "root".into(),
        }),
    );
    ok(
        &store,
        Request::AuthUserDelete(AuthUserDeleteRequest {
            name: "root".into(),
        }),
    );
}

#[test]
fn authenticate_needs_auth_enabled_and_a_user_with_a_password() {
    let (_d, store) = temp_store();
    let authenticate = |name: &str| {
        Request::Authenticate(InternalAuthenticateRequest {
            name: name.into(),
            simple_token: "abcdefghijklmnop".into(),
        })
    };
    assert_eq!(err(&store, authenticate("root")), AuthError::AuthNotEnabled);
    enable_with_root(&store);
    ok(
        &store,
        Request::AuthUserAdd(AuthUserAddRequest {
            name: "svc".into(),
            options: Some(UserAddOptions { no_password: true }),
            ..Default::default()
        }),
    );
    assert_eq!(err(&store, authenticate("nobody")), AuthError::AuthFailed);
    assert_eq!(err(&store, authenticate("svc")), AuthError::AuthFailed);
    let index = store.read(0).unwrap().state().applied_index + 1;
    match ok(&store, authenticate("root")) {
        AuthResponse::Authenticate(a) => {
            assert_eq!(a.response.token, format!("abcdefghijklmnop.{index}"));
            assert_eq!(a.username, "root");
            assert_eq!(a.auth_revision, revision(&store));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn check_password_is_etcds() {
    let (_d, store) = temp_store();
    ok(&store, user_add("root", "rootpw"));
    assert_eq!(
        store.auth(0).unwrap().check_password("root", "rootpw"),
        Err(AuthError::AuthNotEnabled)
    );
    ok(&store, grant_role("root", "root"));
    ok(&store, Request::AuthEnable(AuthEnableRequest {}));
    ok(
        &store,
        Request::AuthUserAdd(AuthUserAddRequest {
            name: "svc".into(),
            options: Some(UserAddOptions { no_password: true }),
            ..Default::default()
        }),
    );
    let auth = store.auth(0).unwrap();
    assert_eq!(auth.check_password("root", "rootpw"), Ok(auth.revision()));
    assert_eq!(
        auth.check_password("root", "wrong"),
        Err(AuthError::AuthFailed)
    );
    assert_eq!(
        auth.check_password("nobody", "x"),
        Err(AuthError::AuthFailed)
    );
    assert_eq!(
        auth.check_password("svc", "x"),
        Err(AuthError::NoPasswordUser)
    );
    ok(
        &store,
        Request::AuthUserChangePassword(AuthUserChangePasswordRequest {
            name: "root".into(),
            hashed_password: hash_password("new", 4).unwrap(),
            ..Default::default()
        }),
    );
    let auth = store.auth(0).unwrap();
    assert_eq!(
        auth.check_password("root", "rootpw"),
        Err(AuthError::AuthFailed)
    );
    assert_eq!(auth.check_password("root", "new"), Ok(auth.revision()));
    assert!(
        auth.user("root").unwrap().password.starts_with(b"$2a$04$"),
        "Go's bcrypt form, so etcd reads the hash too"
    );
}

#[test]
fn auth_state_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let before = {
        let store = Store::open_path(&path, Default::default()).unwrap();
        enable_with_root(&store);
        ok(&store, role_add("r"));
        ok(&store, grant("r", PermType::Read, "a", "b"));
        store.auth(0).unwrap()
    };
    let store = Store::open_path(&path, Default::default()).unwrap();
    assert_eq!(*store.auth(0).unwrap(), *before);
}
