//! Wire compatibility with the `etcd-client` crate, a third-party etcd client whose types are
//! generated from etcd's own .proto files.
//!
//! For every message type `etcd_client::proto` exposes, the same value (every field set to a
//! distinct non-default value, nested messages and repeated fields included, every oneof
//! variant) is built in both crates' types, then:
//! - etcd-client's encoding is decoded with ours: the `Debug` forms must be equal (this catches
//!   a swapped field number or a changed type even when the bytes would survive), and our
//!   re-encoding must be byte-identical;
//! - the reverse: ours encoded, decoded with etcd-client's, compared the same way.
//!
//! etcd-client 0.21's protos are from a newer etcd (3.6+) than ours (3.5). Its extra fields
//! are left unset here, since prost drops unknown fields:
//! - `StatusResponse`: `storageVersion` = 11, `dbSizeQuota` = 12, `downgradeInfo` = 13;
//! - `SnapshotResponse`: `version` = 4;
//! - extra messages `DowngradeInfo`, `DowngradeVersionTestRequest`, `RangeStreamResponse` and
//!   the `KV.RangeStream` method.
//!
//! Messages etcd-client does not expose (`AuthStatus*`, `LeaseCheckpoint*`, the lock and
//! election requests, and mango's own `mangopb`) are checked at the end against the field
//! numbers and wire types we expect.

use std::fmt::Debug;

use etcd_client::proto as theirs;
use mango_proto::{authpb, etcdserverpb as pb, mangopb, mvccpb, v3electionpb, v3lockpb};
use prost::Message;

/// Builds a `T` from its default with `f` (only where `T` is known from the context).
fn with<T: Default>(f: impl FnOnce(&mut T)) -> T {
    let mut value = T::default();
    f(&mut value);
    value
}

// The helpers below take the type of the value to fill from their first argument, so that the
// same code builds values of both crates' types by inference.

/// Fills the message in an optional field, creating it.
fn set<T: Default>(slot: &mut Option<T>, f: impl FnOnce(&mut T)) {
    f(slot.get_or_insert_with(T::default));
}

/// Appends a message built by `f` to a repeated field.
fn push<T: Default>(list: &mut Vec<T>, f: impl FnOnce(&mut T)) {
    list.push(with(f));
}

/// Builds a oneof variant holding a message built by `f`.
fn variant<T: Default, U>(constructor: fn(T) -> U, f: impl FnOnce(&mut T)) -> Option<U> {
    Some(constructor(with(f)))
}

/// etcd-client's extra fields (see the module docs) as they appear, unset, in its `Debug` form,
/// and what that form is without them.
const THEIR_EXTRAS: &[(&str, &str)] = &[
    (
        ", storage_version: \"\", db_size_quota: 0, downgrade_info: None }",
        " }",
    ),
    (
        "blob: [0, 1, 2, 255], version: \"\" }",
        "blob: [0, 1, 2, 255] }",
    ),
];

/// etcd-client's `Debug` form of `value`, without its unset extra fields.
fn their_debug(value: &impl Debug) -> String {
    let mut debug = format!("{value:?}");
    for (extra, without) in THEIR_EXTRAS {
        debug = debug.replace(extra, without);
    }
    debug
}

/// The checks described in the module docs.
fn compare<T, O>(their_value: &T, our_value: &O)
where
    T: Message + Default + Debug,
    O: Message + Default + Debug,
{
    let debug = their_debug(their_value);
    assert_eq!(
        debug,
        format!("{our_value:?}"),
        "the test built different values"
    );

    // etcd-client -> mango -> bytes.
    let their_bytes = their_value.encode_to_vec();
    let decoded = O::decode(their_bytes.as_slice()).expect("ours decodes etcd-client's bytes");
    assert_eq!(
        format!("{decoded:?}"),
        debug,
        "ours decoded a different value"
    );
    assert_eq!(
        decoded.encode_to_vec(),
        their_bytes,
        "our re-encoding differs"
    );

    // mango -> etcd-client -> bytes.
    let our_bytes = our_value.encode_to_vec();
    let decoded = T::decode(our_bytes.as_slice()).expect("etcd-client decodes our bytes");
    assert_eq!(
        their_debug(&decoded),
        debug,
        "etcd-client decoded a different value"
    );
    assert_eq!(
        decoded.encode_to_vec(),
        our_bytes,
        "etcd-client's re-encoding differs"
    );
    assert_eq!(our_bytes, their_bytes, "the encodings differ");
}

/// `wire!(test_name: TheirType => OurType, Alias = TheirPath => OurPath, ...; |v| { .. }, ..)`
/// expands each body twice, once per crate, with each alias bound to that crate's type, and
/// compares the results. Each body must leave a non-empty message.
macro_rules! wire {
    ($name:ident: $theirs:ty => $ours:ty $(, $alias:ident = $ta:ty => $oa:ty)* ;
     $(|$v:ident| $body:block),+ $(,)?) => {
        #[test]
        fn $name() {
            #[allow(dead_code, unused_imports)]
            mod their_side {
                use super::*;
                $(pub type $alias = $ta;)*
            }
            #[allow(dead_code, unused_imports)]
            mod our_side {
                use super::*;
                $(pub type $alias = $oa;)*
            }
            $({
                let their_value = {
                    #[allow(unused_imports)]
                    use their_side::*;
                    let mut $v = <$theirs>::default();
                    $body;
                    $v
                };
                let our_value = {
                    #[allow(unused_imports)]
                    use our_side::*;
                    let mut $v = <$ours>::default();
                    $body;
                    $v
                };
                assert!(our_value.encoded_len() > 0, "set some fields");
                compare(&their_value, &our_value);
            })+
        }
    };
}

/// Messages without fields: both must encode to nothing and decode from nothing.
macro_rules! wire_empty {
    ($name:ident: $($theirs:ty => $ours:ty),+ $(,)?) => {
        #[test]
        fn $name() {
            $(compare(&<$theirs>::default(), &<$ours>::default());)+
        }
    };
}

// Shared values; each macro fills the message behind a `&mut` expression. Negative numbers in
// int64 fields make a signed/unsigned or zigzag mismatch visible, distinct numbers make a
// swapped field visible.
macro_rules! header {
    ($h:expr) => {{
        let h = $h;
        h.cluster_id = 11;
        h.member_id = 12;
        h.revision = -13;
        h.raft_term = 14;
    }};
}

macro_rules! kv {
    ($kv:expr, $n:expr) => {{
        let kv = $kv;
        kv.key = format!("key{}", $n).into_bytes();
        kv.create_revision = -21 - $n;
        kv.mod_revision = 22 + $n;
        kv.version = -23 - $n;
        kv.value = format!("value{}", $n).into_bytes();
        kv.lease = 24 + $n;
    }};
}

macro_rules! event {
    ($e:expr, $type:expr, $n:expr) => {{
        let e = $e;
        e.r#type = $type;
        set(&mut e.kv, |kv| kv!(kv, $n));
        set(&mut e.prev_kv, |kv| kv!(kv, $n + 100));
    }};
}

macro_rules! member {
    ($m:expr, $n:expr) => {{
        let m = $m;
        m.id = 31 + $n;
        m.name = format!("member{}", $n);
        m.peer_ur_ls = vec![format!("http://p{}:2380", $n), "http://p:2381".into()];
        m.client_ur_ls = vec![format!("http://c{}:2379", $n), "http://c:2378".into()];
        m.is_learner = true;
    }};
}

macro_rules! range_request {
    ($r:expr) => {{
        let r = $r;
        r.key = b"a".to_vec();
        r.range_end = b"z".to_vec();
        r.limit = -41;
        r.revision = -42;
        r.sort_order = 2;
        r.sort_target = 4;
        r.serializable = true;
        r.keys_only = true;
        r.count_only = true;
        r.min_mod_revision = -43;
        r.max_mod_revision = -44;
        r.min_create_revision = -45;
        r.max_create_revision = -46;
    }};
}

macro_rules! put_request {
    ($p:expr) => {{
        let p = $p;
        p.key = b"put-key".to_vec();
        p.value = b"put-value".to_vec();
        p.lease = -51;
        p.prev_kv = true;
        p.ignore_value = true;
        p.ignore_lease = true;
    }};
}

macro_rules! delete_request {
    ($d:expr) => {{
        let d = $d;
        d.key = b"del-a".to_vec();
        d.range_end = b"del-z".to_vec();
        d.prev_kv = true;
    }};
}

macro_rules! range_response {
    ($r:expr) => {{
        let r = $r;
        set(&mut r.header, |h| header!(h));
        push(&mut r.kvs, |kv| kv!(kv, 1));
        push(&mut r.kvs, |kv| kv!(kv, 2));
        r.more = true;
        r.count = -61;
    }};
}

macro_rules! put_response {
    ($p:expr) => {{
        let p = $p;
        set(&mut p.header, |h| header!(h));
        set(&mut p.prev_kv, |kv| kv!(kv, 3));
    }};
}

macro_rules! delete_response {
    ($d:expr) => {{
        let d = $d;
        set(&mut d.header, |h| header!(h));
        d.deleted = -71;
        push(&mut d.prev_kvs, |kv| kv!(kv, 4));
        push(&mut d.prev_kvs, |kv| kv!(kv, 5));
    }};
}

macro_rules! compare {
    ($c:expr, $union:expr) => {{
        let c = $c;
        c.result = 3;
        c.target = 4;
        c.key = b"cmp-key".to_vec();
        c.target_union = Some($union);
        c.range_end = b"cmp-end".to_vec();
    }};
}

macro_rules! permission {
    ($p:expr, $n:expr) => {{
        let p = $p;
        p.perm_type = 2 - $n;
        p.key = format!("perm{}", $n).into_bytes();
        p.range_end = format!("perm{}-end", $n).into_bytes();
    }};
}

/// Sets the header of the response `v`.
macro_rules! with_header {
    ($v:expr) => {
        set(&mut $v.header, |h| header!(h))
    };
}

// --- mvccpb ---

wire!(key_value: theirs::PbKeyValue => mvccpb::KeyValue; |v| { kv!(&mut v, 0) });
wire!(event: theirs::PbEvent => mvccpb::Event;
    |v| { event!(&mut v, 0, 1) },
    |v| { event!(&mut v, 1, 2) },
);

// --- etcdserverpb: KV ---

wire!(response_header: theirs::PbResponseHeader => pb::ResponseHeader; |v| { header!(&mut v) });
wire!(range_request: theirs::PbRangeRequest => pb::RangeRequest; |v| { range_request!(&mut v) });
wire!(range_response: theirs::PbRangeResponse => pb::RangeResponse;
    |v| { range_response!(&mut v) }
);
wire!(put_request: theirs::PbPutRequest => pb::PutRequest; |v| { put_request!(&mut v) });
wire!(put_response: theirs::PbPutResponse => pb::PutResponse; |v| { put_response!(&mut v) });
wire!(delete_range_request: theirs::PbDeleteRequest => pb::DeleteRangeRequest;
    |v| { delete_request!(&mut v) }
);
wire!(delete_range_response: theirs::PbDeleteResponse => pb::DeleteRangeResponse;
    |v| { delete_response!(&mut v) }
);
wire!(compare_each_target: theirs::PbCompare => pb::Compare,
    U = theirs::PbTargetUnion => pb::compare::TargetUnion;
    |v| { compare!(&mut v, U::Version(-81)) },
    |v| { compare!(&mut v, U::CreateRevision(-82)) },
    |v| { compare!(&mut v, U::ModRevision(-83)) },
    |v| { compare!(&mut v, U::Value(b"cmp-value".to_vec())) },
    |v| { compare!(&mut v, U::Lease(-84)) },
);
wire!(request_op_each_variant: theirs::PbTxnRequestOp => pb::RequestOp,
    R = theirs::PbTxnOpRequest => pb::request_op::Request,
    U = theirs::PbTargetUnion => pb::compare::TargetUnion;
    |v| { v.request = variant(R::RequestRange, |r| range_request!(r)) },
    |v| { v.request = variant(R::RequestPut, |p| put_request!(p)) },
    |v| { v.request = variant(R::RequestDeleteRange, |d| delete_request!(d)) },
    |v| {
        v.request = variant(R::RequestTxn, |t| {
            push(&mut t.compare, |c| compare!(c, U::Lease(-85)));
            push(&mut t.success, |op| {
                op.request = variant(R::RequestPut, |p| put_request!(p))
            });
            push(&mut t.failure, |op| {
                op.request = variant(R::RequestDeleteRange, |d| delete_request!(d))
            });
        })
    },
);
wire!(response_op_each_variant: theirs::PbResponseOp => pb::ResponseOp,
    R = theirs::PbTxnOpResponse => pb::response_op::Response;
    |v| { v.response = variant(R::ResponseRange, |r| range_response!(r)) },
    |v| { v.response = variant(R::ResponsePut, |p| put_response!(p)) },
    |v| { v.response = variant(R::ResponseDeleteRange, |d| delete_response!(d)) },
    |v| {
        v.response = variant(R::ResponseTxn, |t| {
            with_header!(t);
            t.succeeded = true;
            push(&mut t.responses, |op| {
                op.response = variant(R::ResponsePut, |p| put_response!(p))
            });
        })
    },
);
wire!(txn_request: theirs::PbTxnRequest => pb::TxnRequest,
    U = theirs::PbTargetUnion => pb::compare::TargetUnion,
    R = theirs::PbTxnOpRequest => pb::request_op::Request;
    |v| {
        push(&mut v.compare, |c| compare!(c, U::Version(-81)));
        push(&mut v.compare, |c| compare!(c, U::CreateRevision(-82)));
        push(&mut v.compare, |c| compare!(c, U::ModRevision(-83)));
        push(&mut v.compare, |c| compare!(c, U::Value(b"cmp-value".to_vec())));
        push(&mut v.compare, |c| compare!(c, U::Lease(-84)));
        push(&mut v.success, |op| op.request = variant(R::RequestRange, |r| range_request!(r)));
        push(&mut v.success, |op| op.request = variant(R::RequestPut, |p| put_request!(p)));
        push(&mut v.success, |op| {
            op.request = variant(R::RequestDeleteRange, |d| delete_request!(d))
        });
        push(&mut v.success, |op| {
            op.request = variant(R::RequestTxn, |t| {
                push(&mut t.compare, |c| compare!(c, U::Value(b"nested".to_vec())));
                push(&mut t.success, |op| {
                    op.request = variant(R::RequestPut, |p| put_request!(p))
                });
                push(&mut t.failure, |op| {
                    op.request = variant(R::RequestRange, |r| range_request!(r))
                });
            })
        });
        push(&mut v.failure, |op| {
            op.request = variant(R::RequestDeleteRange, |d| delete_request!(d))
        });
        push(&mut v.failure, |op| op.request = variant(R::RequestPut, |p| put_request!(p)));
    }
);
wire!(txn_response: theirs::PbTxnResponse => pb::TxnResponse,
    R = theirs::PbTxnOpResponse => pb::response_op::Response;
    |v| {
        with_header!(v);
        v.succeeded = true;
        push(&mut v.responses, |op| {
            op.response = variant(R::ResponseRange, |r| range_response!(r))
        });
        push(&mut v.responses, |op| op.response = variant(R::ResponsePut, |p| put_response!(p)));
        push(&mut v.responses, |op| {
            op.response = variant(R::ResponseDeleteRange, |d| delete_response!(d))
        });
        push(&mut v.responses, |op| {
            op.response = variant(R::ResponseTxn, |t| {
                with_header!(t);
                t.succeeded = true;
                push(&mut t.responses, |op| {
                    op.response = variant(R::ResponsePut, |p| put_response!(p))
                });
            })
        });
    }
);
wire!(compaction_request: theirs::PbCompactionRequest => pb::CompactionRequest;
    |v| { v.revision = -91; v.physical = true; }
);
wire!(compaction_response: theirs::PbCompactionResponse => pb::CompactionResponse;
    |v| { with_header!(v) }
);

// --- etcdserverpb: Watch ---

wire!(watch_request_each_variant: theirs::PbWatchRequest => pb::WatchRequest,
    U = theirs::PbWatchRequestUnion => pb::watch_request::RequestUnion;
    |v| {
        v.request_union = variant(U::CreateRequest, |c| {
            c.key = b"watch-a".to_vec();
            c.range_end = b"watch-z".to_vec();
            c.start_revision = -101;
            c.progress_notify = true;
            c.filters = vec![1, 0];
            c.prev_kv = true;
            c.watch_id = -102;
            c.fragment = true;
        })
    },
    |v| { v.request_union = variant(U::CancelRequest, |c| c.watch_id = -103) },
    |v| { v.request_union = variant(U::ProgressRequest, |_| {}) },
);
wire!(watch_response: theirs::PbWatchResponse => pb::WatchResponse;
    |v| {
        with_header!(v);
        v.watch_id = -111;
        v.created = true;
        v.canceled = true;
        v.compact_revision = -112;
        v.cancel_reason = "compacted".into();
        v.fragment = true;
        push(&mut v.events, |e| event!(e, 0, 6));
        push(&mut v.events, |e| event!(e, 1, 7));
    }
);

// --- etcdserverpb: Lease ---

wire!(lease_grant_request: theirs::PbLeaseGrantRequest => pb::LeaseGrantRequest;
    |v| { v.ttl = -121; v.id = -122; }
);
wire!(lease_grant_response: theirs::PbLeaseGrantResponse => pb::LeaseGrantResponse;
    |v| { with_header!(v); v.id = -123; v.ttl = -124; v.error = "no".into(); }
);
wire!(lease_revoke_request: theirs::PbLeaseRevokeRequest => pb::LeaseRevokeRequest;
    |v| { v.id = -125; }
);
wire!(lease_revoke_response: theirs::PbLeaseRevokeResponse => pb::LeaseRevokeResponse;
    |v| { with_header!(v) }
);
wire!(lease_keep_alive_request: theirs::PbLeaseKeepAliveRequest => pb::LeaseKeepAliveRequest;
    |v| { v.id = -126; }
);
wire!(lease_keep_alive_response: theirs::PbLeaseKeepAliveResponse
        => pb::LeaseKeepAliveResponse;
    |v| { with_header!(v); v.id = -127; v.ttl = -128; }
);
wire!(lease_time_to_live_request: theirs::PbLeaseTimeToLiveRequest
        => pb::LeaseTimeToLiveRequest;
    |v| { v.id = -129; v.keys = true; }
);
wire!(lease_time_to_live_response: theirs::PbLeaseTimeToLiveResponse
        => pb::LeaseTimeToLiveResponse;
    |v| {
        with_header!(v);
        v.id = -130;
        v.ttl = -131;
        v.granted_ttl = -132;
        v.keys = vec![b"lk1".to_vec(), b"lk2".to_vec()];
    }
);
wire!(lease_status: theirs::PbLeaseStatus => pb::LeaseStatus; |v| { v.id = -133; });
wire!(lease_leases_response: theirs::PbLeaseLeasesResponse => pb::LeaseLeasesResponse;
    |v| {
        with_header!(v);
        push(&mut v.leases, |l| l.id = -134);
        push(&mut v.leases, |l| l.id = 135);
    }
);

// --- etcdserverpb: Cluster ---

wire!(member: theirs::PbMember => pb::Member; |v| { member!(&mut v, 0) });
wire!(member_add_request: theirs::PbMemberAddRequest => pb::MemberAddRequest;
    |v| {
        v.peer_ur_ls = vec!["http://a:2380".into(), "http://b:2380".into()];
        v.is_learner = true;
    }
);
wire!(member_add_response: theirs::PbMemberAddResponse => pb::MemberAddResponse;
    |v| {
        with_header!(v);
        set(&mut v.member, |m| member!(m, 1));
        push(&mut v.members, |m| member!(m, 2));
        push(&mut v.members, |m| member!(m, 3));
    }
);
wire!(member_remove_request: theirs::PbMemberRemoveRequest => pb::MemberRemoveRequest;
    |v| { v.id = 141; }
);
wire!(member_remove_response: theirs::PbMemberRemoveResponse => pb::MemberRemoveResponse;
    |v| {
        with_header!(v);
        push(&mut v.members, |m| member!(m, 4));
        push(&mut v.members, |m| member!(m, 5));
    }
);
wire!(member_update_request: theirs::PbMemberUpdateRequest => pb::MemberUpdateRequest;
    |v| { v.id = 142; v.peer_ur_ls = vec!["http://u:2380".into(), "http://v:2380".into()]; }
);
wire!(member_update_response: theirs::PbMemberUpdateResponse => pb::MemberUpdateResponse;
    |v| { with_header!(v); push(&mut v.members, |m| member!(m, 6)); }
);
wire!(member_list_request: theirs::PbMemberListRequest => pb::MemberListRequest;
    |v| { v.linearizable = true; }
);
wire!(member_list_response: theirs::PbMemberListResponse => pb::MemberListResponse;
    |v| {
        with_header!(v);
        push(&mut v.members, |m| member!(m, 7));
        push(&mut v.members, |m| member!(m, 8));
    }
);
wire!(member_promote_request: theirs::PbMemberPromoteRequest => pb::MemberPromoteRequest;
    |v| { v.id = 143; }
);
wire!(member_promote_response: theirs::PbMemberPromoteResponse => pb::MemberPromoteResponse;
    |v| { with_header!(v); push(&mut v.members, |m| member!(m, 9)); }
);

// --- etcdserverpb: Maintenance ---

wire!(alarm_request: theirs::PbAlarmRequest => pb::AlarmRequest;
    |v| { v.action = 1; v.member_id = 151; v.alarm = 2; },
    |v| { v.action = 2; v.member_id = 152; v.alarm = 1; },
);
wire!(alarm_member: theirs::PbAlarmMember => pb::AlarmMember;
    |v| { v.member_id = 153; v.alarm = 2; }
);
wire!(alarm_response: theirs::PbAlarmResponse => pb::AlarmResponse;
    |v| {
        with_header!(v);
        push(&mut v.alarms, |a| { a.member_id = 154; a.alarm = 1; });
        push(&mut v.alarms, |a| { a.member_id = 155; a.alarm = 2; });
    }
);
wire!(status_response: theirs::PbStatusResponse => pb::StatusResponse;
    |v| {
        with_header!(v);
        v.version = "3.5.0".into();
        v.db_size = -161;
        v.leader = 162;
        v.raft_index = 163;
        v.raft_term = 164;
        v.raft_applied_index = 165;
        v.errors = vec!["NOSPACE".into(), "CORRUPT".into()];
        v.db_size_in_use = -166;
        v.is_learner = true;
    }
);
wire!(defragment_response: theirs::PbDefragmentResponse => pb::DefragmentResponse;
    |v| { with_header!(v) }
);
wire!(hash_response: theirs::PbHashResponse => pb::HashResponse;
    |v| { with_header!(v); v.hash = 0xdead_beef; }
);
wire!(hash_kv_request: theirs::PbHashKvRequest => pb::HashKvRequest; |v| { v.revision = -171; });
wire!(hash_kv_response: theirs::PbHashKvResponse => pb::HashKvResponse;
    |v| {
        with_header!(v);
        v.hash = 0xfeed_f00d;
        v.compact_revision = -172;
        v.hash_revision = -173;
    }
);
wire!(snapshot_response: theirs::PbSnapshotResponse => pb::SnapshotResponse;
    |v| { with_header!(v); v.remaining_bytes = 181; v.blob = vec![0, 1, 2, 255]; }
);
wire!(move_leader_request: theirs::PbMoveLeaderRequest => pb::MoveLeaderRequest;
    |v| { v.target_id = 191; }
);
wire!(move_leader_response: theirs::PbMoveLeaderResponse => pb::MoveLeaderResponse;
    |v| { with_header!(v) }
);
wire!(downgrade_request: theirs::PbDowngradeRequest => pb::DowngradeRequest;
    |v| { v.action = 1; v.version = "3.4".into(); },
    |v| { v.action = 2; v.version = "3.3".into(); },
);
wire!(downgrade_response: theirs::PbDowngradeResponse => pb::DowngradeResponse;
    |v| { with_header!(v); v.version = "3.5.1".into(); }
);

// --- etcdserverpb: Auth ---

wire!(authenticate_request: theirs::PbAuthenticateRequest => pb::AuthenticateRequest;
    |v| { v.name = "root".into(); v.password = "secret".into(); }
);
wire!(authenticate_response: theirs::PbAuthenticateResponse => pb::AuthenticateResponse;
    |v| { with_header!(v); v.token = "token.1".into(); }
);
wire!(auth_user_add_request: theirs::PbAuthUserAddRequest => pb::AuthUserAddRequest;
    |v| {
        v.name = "alice".into();
        v.password = "pw".into();
        set(&mut v.options, |o| o.no_password = true);
        v.hashed_password = "$2a$10$hash".into();
    }
);
wire!(auth_user_get_request: theirs::PbAuthUserGetRequest => pb::AuthUserGetRequest;
    |v| { v.name = "bob".into(); }
);
wire!(auth_user_get_response: theirs::PbAuthUserGetResponse => pb::AuthUserGetResponse;
    |v| { with_header!(v); v.roles = vec!["r1".into(), "r2".into()]; }
);
wire!(auth_user_delete_request: theirs::PbAuthUserDeleteRequest => pb::AuthUserDeleteRequest;
    |v| { v.name = "carol".into(); }
);
wire!(auth_user_change_password_request: theirs::PbAuthUserChangePasswordRequest
        => pb::AuthUserChangePasswordRequest;
    |v| { v.name = "dave".into(); v.password = "new".into(); v.hashed_password = "$2a$h".into(); }
);
wire!(auth_user_grant_role_request: theirs::PbAuthUserGrantRoleRequest
        => pb::AuthUserGrantRoleRequest;
    |v| { v.user = "erin".into(); v.role = "admin".into(); }
);
wire!(auth_user_revoke_role_request: theirs::PbAuthUserRevokeRoleRequest
        => pb::AuthUserRevokeRoleRequest;
    |v| { v.name = "frank".into(); v.role = "reader".into(); }
);
wire!(auth_user_list_response: theirs::PbAuthUserListResponse => pb::AuthUserListResponse;
    |v| { with_header!(v); v.users = vec!["u1".into(), "u2".into()]; }
);
wire!(auth_role_add_request: theirs::PbAuthRoleAddRequest => pb::AuthRoleAddRequest;
    |v| { v.name = "writer".into(); }
);
wire!(auth_role_get_request: theirs::PbAuthRoleGetRequest => pb::AuthRoleGetRequest;
    |v| { v.role = "writer".into(); }
);
wire!(auth_role_get_response: theirs::PbAuthRoleGetResponse => pb::AuthRoleGetResponse;
    |v| {
        with_header!(v);
        push(&mut v.perm, |p| permission!(p, 0));
        push(&mut v.perm, |p| permission!(p, 1));
        push(&mut v.perm, |p| permission!(p, 2));
    }
);
wire!(auth_role_list_response: theirs::PbAuthRoleListResponse => pb::AuthRoleListResponse;
    |v| { with_header!(v); v.roles = vec!["ra".into(), "rb".into()]; }
);
wire!(auth_role_delete_request: theirs::PbAuthRoleDeleteRequest => pb::AuthRoleDeleteRequest;
    |v| { v.role = "old".into(); }
);
wire!(auth_role_grant_permission_request: theirs::PbAuthRoleGrantPermissionRequest
        => pb::AuthRoleGrantPermissionRequest;
    |v| { v.name = "writer".into(); set(&mut v.perm, |p| permission!(p, 1)); }
);
wire!(auth_role_revoke_permission_request: theirs::PbAuthRoleRevokePermissionRequest
        => pb::AuthRoleRevokePermissionRequest;
    |v| { v.role = "writer".into(); v.key = b"rk".to_vec(); v.range_end = b"rz".to_vec(); }
);

// Responses that carry only a header.
wire!(auth_enable_response: theirs::PbAuthEnableResponse => pb::AuthEnableResponse;
    |v| { with_header!(v) });
wire!(auth_disable_response: theirs::PbAuthDisableResponse => pb::AuthDisableResponse;
    |v| { with_header!(v) });
wire!(auth_user_add_response: theirs::PbAuthUserAddResponse => pb::AuthUserAddResponse;
    |v| { with_header!(v) });
wire!(auth_user_delete_response: theirs::PbAuthUserDeleteResponse
        => pb::AuthUserDeleteResponse; |v| { with_header!(v) });
wire!(auth_user_change_password_response: theirs::PbAuthUserChangePasswordResponse
        => pb::AuthUserChangePasswordResponse; |v| { with_header!(v) });
wire!(auth_user_grant_role_response: theirs::PbAuthUserGrantRoleResponse
        => pb::AuthUserGrantRoleResponse; |v| { with_header!(v) });
wire!(auth_user_revoke_role_response: theirs::PbAuthUserRevokeRoleResponse
        => pb::AuthUserRevokeRoleResponse; |v| { with_header!(v) });
wire!(auth_role_add_response: theirs::PbAuthRoleAddResponse => pb::AuthRoleAddResponse;
    |v| { with_header!(v) });
wire!(auth_role_delete_response: theirs::PbAuthRoleDeleteResponse
        => pb::AuthRoleDeleteResponse; |v| { with_header!(v) });
wire!(auth_role_grant_permission_response: theirs::PbAuthRoleGrantPermissionResponse
        => pb::AuthRoleGrantPermissionResponse; |v| { with_header!(v) });
wire!(auth_role_revoke_permission_response: theirs::PbAuthRoleRevokePermissionResponse
        => pb::AuthRoleRevokePermissionResponse; |v| { with_header!(v) });

wire_empty!(empty_requests:
    theirs::PbHashRequest => pb::HashRequest,
    theirs::PbSnapshotRequest => pb::SnapshotRequest,
    theirs::PbStatusRequest => pb::StatusRequest,
    theirs::PbDefragmentRequest => pb::DefragmentRequest,
    theirs::PbLeaseLeasesRequest => pb::LeaseLeasesRequest,
    theirs::PbAuthEnableRequest => pb::AuthEnableRequest,
    theirs::PbAuthDisableRequest => pb::AuthDisableRequest,
    theirs::PbAuthUserListRequest => pb::AuthUserListRequest,
    theirs::PbAuthRoleListRequest => pb::AuthRoleListRequest,
);

// --- v3lockpb and v3electionpb (etcd-client exposes the responses and LeaderKey) ---

macro_rules! leader_key {
    ($l:expr) => {{
        let l = $l;
        l.name = b"election".to_vec();
        l.key = b"election/694d7a".to_vec();
        l.rev = -201;
        l.lease = -202;
    }};
}

wire!(lock_response: theirs::PbLockResponse => v3lockpb::LockResponse;
    |v| { with_header!(v); v.key = b"lock/694d7b".to_vec(); }
);
wire!(unlock_response: theirs::PbUnlockResponse => v3lockpb::UnlockResponse;
    |v| { with_header!(v) }
);
wire!(leader_key: theirs::PbLeaderKey => v3electionpb::LeaderKey; |v| { leader_key!(&mut v) });
wire!(campaign_response: theirs::PbCampaignResponse => v3electionpb::CampaignResponse;
    |v| { with_header!(v); set(&mut v.leader, |l| leader_key!(l)); }
);
wire!(leader_response: theirs::PbLeaderResponse => v3electionpb::LeaderResponse;
    |v| { with_header!(v); set(&mut v.kv, |kv| kv!(kv, 9)); }
);
wire!(proclaim_response: theirs::PbProclaimResponse => v3electionpb::ProclaimResponse;
    |v| { with_header!(v) }
);
wire!(resign_response: theirs::PbResignResponse => v3electionpb::ResignResponse;
    |v| { with_header!(v) }
);

// --- Messages etcd-client does not expose: check field numbers and wire types directly. ---

const VARINT: u64 = 0;
const LEN: u64 = 2;

/// The (field number, wire type) of each top-level field in `bytes`, in order.
fn fields(mut bytes: &[u8]) -> Vec<(u64, u64)> {
    fn varint(bytes: &mut &[u8]) -> u64 {
        prost::encoding::decode_varint(bytes).expect("valid varint")
    }
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let key = varint(&mut bytes);
        let (number, wire_type) = (key >> 3, key & 7);
        match wire_type {
            VARINT => {
                varint(&mut bytes);
            }
            LEN => {
                let len = usize::try_from(varint(&mut bytes)).expect("length fits");
                bytes = &bytes[len..];
            }
            other => panic!("unexpected wire type {other}"),
        }
        out.push((number, wire_type));
    }
    out
}

fn assert_fields(message: &(impl Message + Debug), expected: &[(u64, u64)]) {
    assert_eq!(fields(&message.encode_to_vec()), expected, "{message:?}");
}

#[test]
fn auth_status() {
    assert_eq!(pb::AuthStatusRequest::default().encoded_len(), 0);
    let mut v = pb::AuthStatusResponse::default();
    with_header!(v);
    v.enabled = true;
    v.auth_revision = 5;
    assert_fields(&v, &[(1, LEN), (2, VARINT), (3, VARINT)]);
}

#[test]
fn lease_checkpoint() {
    let checkpoint = pb::LeaseCheckpoint {
        id: 1,
        remaining_ttl: 2,
    };
    assert_fields(&checkpoint, &[(1, VARINT), (2, VARINT)]);
    let request = pb::LeaseCheckpointRequest {
        checkpoints: vec![checkpoint, checkpoint],
    };
    assert_fields(&request, &[(1, LEN), (1, LEN)]);
    let mut response = pb::LeaseCheckpointResponse::default();
    with_header!(response);
    assert_fields(&response, &[(1, LEN)]);
}

#[test]
fn lock_requests() {
    let lock = v3lockpb::LockRequest {
        name: b"l".to_vec(),
        lease: 7,
    };
    assert_fields(&lock, &[(1, LEN), (2, VARINT)]);
    let unlock = v3lockpb::UnlockRequest { key: b"k".to_vec() };
    assert_fields(&unlock, &[(1, LEN)]);
}

#[test]
fn election_requests() {
    use v3electionpb::{CampaignRequest, LeaderKey, LeaderRequest, ProclaimRequest, ResignRequest};
    let campaign = CampaignRequest {
        name: b"e".to_vec(),
        lease: 1,
        value: b"v".to_vec(),
    };
    assert_fields(&campaign, &[(1, LEN), (2, VARINT), (3, LEN)]);
    assert_fields(
        &LeaderRequest {
            name: b"e".to_vec(),
        },
        &[(1, LEN)],
    );
    let leader = Some(with(|l: &mut LeaderKey| leader_key!(l)));
    let resign = ResignRequest {
        leader: leader.clone(),
    };
    assert_fields(&resign, &[(1, LEN)]);
    let proclaim = ProclaimRequest {
        leader,
        value: b"v".to_vec(),
    };
    assert_fields(&proclaim, &[(1, LEN), (2, LEN)]);
}

#[test]
fn authpb_stored_types() {
    let user = authpb::User {
        name: b"u".to_vec(),
        password: b"p".to_vec(),
        roles: vec!["r".into()],
        options: Some(authpb::UserAddOptions { no_password: true }),
    };
    assert_fields(&user, &[(1, LEN), (2, LEN), (3, LEN), (4, LEN)]);
    let role = authpb::Role {
        name: b"r".to_vec(),
        key_permission: vec![with(|p: &mut authpb::Permission| permission!(p, 1))],
    };
    assert_fields(&role, &[(1, LEN), (2, LEN)]);
}

#[test]
fn mangopb_raft_request() {
    use mangopb::raft_request::Request;
    let variants = [
        (2, variant(Request::Put, |p| put_request!(p))),
        (3, variant(Request::DeleteRange, |d| delete_request!(d))),
        (4, variant(Request::Txn, |t| push(&mut t.success, |_| {}))),
        (5, variant(Request::Compaction, |c| c.revision = 1)),
        (6, variant(Request::LeaseGrant, |l| l.ttl = 1)),
        (7, variant(Request::LeaseRevoke, |l| l.id = 1)),
        (
            8,
            variant(Request::LeaseCheckpoint, |l| {
                push(&mut l.checkpoints, |c| c.id = 1)
            }),
        ),
        (9, variant(Request::Range, |r| range_request!(r))),
        (20, variant(Request::AuthEnable, |_| {})),
        (21, variant(Request::AuthDisable, |_| {})),
        (22, variant(Request::AuthStatus, |_| {})),
        (
            23,
            variant(Request::Authenticate, |a| {
                a.name = "u".into();
                a.simple_token = "t".into();
            }),
        ),
        (
            24,
            variant(Request::AuthUserAdd, |u| {
                u.name = "u".into();
                u.hashed_password = "h".into();
            }),
        ),
        (
            25,
            variant(Request::AuthUserDelete, |u| u.name = "u".into()),
        ),
        (26, variant(Request::AuthUserGet, |u| u.name = "u".into())),
        (
            27,
            variant(Request::AuthUserChangePassword, |u| u.name = "u".into()),
        ),
        (
            28,
            variant(Request::AuthUserGrantRole, |u| u.user = "u".into()),
        ),
        (
            29,
            variant(Request::AuthUserRevokeRole, |u| u.name = "u".into()),
        ),
        (30, variant(Request::AuthUserList, |_| {})),
        (31, variant(Request::AuthRoleList, |_| {})),
        (32, variant(Request::AuthRoleAdd, |r| r.name = "r".into())),
        (
            33,
            variant(Request::AuthRoleDelete, |r| r.role = "r".into()),
        ),
        (34, variant(Request::AuthRoleGet, |r| r.role = "r".into())),
        (
            35,
            variant(Request::AuthRoleGrantPermission, |r| r.name = "r".into()),
        ),
        (
            36,
            variant(Request::AuthRoleRevokePermission, |r| r.role = "r".into()),
        ),
    ];
    for (number, request) in variants {
        let message = mangopb::RaftRequest {
            id: 42,
            request,
            auth: None,
        };
        assert_fields(&message, &[(1, VARINT), (number, LEN)]);
        let decoded =
            mangopb::RaftRequest::decode(message.encode_to_vec().as_slice()).expect("decodes");
        assert_eq!(decoded, message);
    }
    let with_auth = mangopb::RaftRequest {
        id: 1,
        request: variant(Request::AuthEnable, |_| {}),
        auth: Some(mangopb::RequestAuth {
            username: "root".into(),
            auth_revision: 7,
        }),
    };
    assert_fields(&with_auth, &[(1, VARINT), (20, LEN), (100, LEN)]);
    assert_fields(
        with_auth.auth.as_ref().expect("set"),
        &[(1, LEN), (2, VARINT)],
    );
    let batch = mangopb::PeerBatch {
        messages: vec![vec![1, 2], vec![3]],
        cluster_id: 7,
    };
    assert_fields(&batch, &[(1, LEN), (1, LEN), (2, VARINT)]);
}
