//! The services end to end over real gRPC, driven by the `etcd-client` crate: results, headers
//! and etcd's error codes and messages.

mod common;

use common::{CLUSTER_ID, MEMBER_ID, TERM, TestServer};
use etcd_client::{
    AlarmAction, AlarmType, Client, CompactionOptions, Compare, CompareOp, DeleteOptions, Error,
    GetOptions, MemberAddOptions, ResponseHeader, SortOrder, SortTarget, Txn, TxnOp, TxnOpResponse,
};
use mango_api::ApiConfig;
use mango_proto::etcdserverpb::AlarmMember;
use tonic::Code;

async fn connect(server: &TestServer) -> Client {
    Client::connect([server.endpoint()], None)
        .await
        .expect("client connects")
}

/// Checks the fields the node fills, and the revision.
fn check_header(header: Option<&ResponseHeader>, revision: i64) {
    let header = header.expect("a header");
    assert_eq!(header.cluster_id(), CLUSTER_ID);
    assert_eq!(header.member_id(), MEMBER_ID);
    assert_eq!(header.raft_term(), TERM);
    assert_eq!(header.revision(), revision);
}

/// The gRPC status of a failed call.
fn status<T: std::fmt::Debug>(result: Result<T, Error>) -> (Code, String) {
    match result {
        Err(Error::GRpcStatus(s)) => (s.code(), s.message().to_string()),
        other => panic!("expected a gRPC error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_get_delete_with_headers() {
    let server = TestServer::start(ApiConfig::default()).await;
    let mut c = connect(&server).await;

    let put = c.put("a/1", "one", None).await.expect("put");
    check_header(put.header(), 2);
    c.put("a/2", "two", None).await.expect("put");
    c.put("a/3", "three", None).await.expect("put");
    let put = c
        .put(
            "b",
            "bee",
            Some(etcd_client::PutOptions::new().with_prev_key()),
        )
        .await
        .expect("put");
    check_header(put.header(), 5);
    assert!(put.prev_key().is_none());
    let put = c
        .put(
            "b",
            "bee2",
            Some(etcd_client::PutOptions::new().with_prev_key()),
        )
        .await
        .expect("put");
    assert_eq!(put.prev_key().expect("previous").value(), b"bee");

    let get = c.get("a/2", None).await.expect("get");
    check_header(get.header(), 6);
    assert_eq!(get.kvs().len(), 1);
    assert_eq!(get.kvs()[0].value(), b"two");
    assert_eq!(get.kvs()[0].create_revision(), 3);

    // Prefix, serializable, limit and sort.
    let get = c
        .get(
            "a/",
            Some(
                GetOptions::new()
                    .with_prefix()
                    .with_serializable()
                    .with_limit(2)
                    .with_sort(SortTarget::Key, SortOrder::Descend),
            ),
        )
        .await
        .expect("get prefix");
    check_header(get.header(), 6);
    let keys: Vec<&[u8]> = get.kvs().iter().map(|kv| kv.key()).collect();
    assert_eq!(keys, [b"a/3".as_slice(), b"a/2".as_slice()]);
    assert!(get.more());
    assert_eq!(get.count(), 3);

    // An old revision; the header still reports the current one.
    let get = c
        .get("b", Some(GetOptions::new().with_revision(5)))
        .await
        .expect("get at revision");
    check_header(get.header(), 6);
    assert_eq!(get.kvs()[0].value(), b"bee");

    let del = c
        .delete(
            "a/",
            Some(DeleteOptions::new().with_prefix().with_prev_key()),
        )
        .await
        .expect("delete");
    check_header(del.header(), 7);
    assert_eq!(del.deleted(), 3);
    assert_eq!(del.prev_kvs().len(), 3);
    let get = c
        .get(
            "a/",
            Some(GetOptions::new().with_prefix().with_count_only()),
        )
        .await
        .expect("count");
    assert_eq!(get.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txn_reads_and_writes() {
    let server = TestServer::start(ApiConfig::default()).await;
    let mut c = connect(&server).await;
    c.put("k", "v1", None).await.expect("put");

    // A writing txn: the compare holds, the put goes through the node.
    let txn = Txn::new()
        .when([Compare::value("k", CompareOp::Equal, "v1")])
        .and_then([TxnOp::put("k", "v2", None), TxnOp::get("k", None)])
        .or_else([TxnOp::get("k", None)]);
    let resp = c.txn(txn).await.expect("txn");
    assert!(resp.succeeded());
    check_header(resp.header(), 3);
    match &resp.op_responses()[1] {
        TxnOpResponse::Get(get) => assert_eq!(get.kvs()[0].value(), b"v2"),
        other => panic!("expected a get, got {other:?}"),
    }

    // A read-only txn (serializable and not) is served from a view: no new revision.
    for options in [None, Some(GetOptions::new().with_serializable())] {
        let txn = Txn::new()
            .when([Compare::version("k", CompareOp::Greater, 5)])
            .and_then([TxnOp::get("nothing", None)])
            .or_else([
                TxnOp::get("k", options.clone()),
                TxnOp::txn(Txn::new().and_then([TxnOp::get("k", options)])),
            ]);
        let resp = c.txn(txn).await.expect("read-only txn");
        assert!(!resp.succeeded());
        check_header(resp.header(), 3);
        match &resp.op_responses()[0] {
            TxnOpResponse::Get(get) => assert_eq!(get.kvs()[0].value(), b"v2"),
            other => panic!("expected a get, got {other:?}"),
        }
    }
    let get = c.get("k", None).await.expect("get");
    check_header(get.header(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_errors() {
    let server = TestServer::start(ApiConfig::default()).await;
    let mut c = connect(&server).await;

    let empty = "etcdserver: key is not provided".to_string();
    assert_eq!(
        status(c.put("", "v", None).await),
        (Code::InvalidArgument, empty.clone())
    );
    assert_eq!(
        status(c.get("", None).await),
        (Code::InvalidArgument, empty.clone())
    );
    assert_eq!(
        status(c.delete("", None).await),
        (Code::InvalidArgument, empty)
    );

    // Over 1.5 MiB but under the gRPC limit: etcd's own error.
    let big = vec![b'x'; 1_600_000];
    assert_eq!(
        status(c.put("big", big, None).await),
        (
            Code::InvalidArgument,
            "etcdserver: request is too large".into()
        )
    );
    let txn = Txn::new().and_then([TxnOp::put("big", vec![b'x'; 1_600_000], None)]);
    assert_eq!(
        status(c.txn(txn).await),
        (
            Code::InvalidArgument,
            "etcdserver: request is too large".into()
        )
    );
    // Just under the limit passes.
    c.put("big", vec![b'x'; 1_500_000], None)
        .await
        .expect("a put under the limit");

    for i in 0..5 {
        c.put(format!("k{i}"), "v", None).await.expect("put");
    }
    // Revision is now 7.
    let future = status(
        c.get("k0", Some(GetOptions::new().with_revision(100)))
            .await,
    );
    assert_eq!(
        future,
        (
            Code::OutOfRange,
            "etcdserver: mvcc: required revision is a future revision".into()
        )
    );
    let compact = c
        .compact(5, Some(CompactionOptions::new().with_physical()))
        .await
        .expect("compact");
    check_header(compact.header(), 7);
    let compacted = "etcdserver: mvcc: required revision has been compacted".to_string();
    assert_eq!(
        status(c.get("k0", Some(GetOptions::new().with_revision(3))).await),
        (Code::OutOfRange, compacted.clone())
    );
    assert_eq!(
        status(c.compact(4, None).await),
        (Code::OutOfRange, compacted)
    );
    let got = c
        .get("k0", Some(GetOptions::new().with_revision(5)))
        .await
        .expect("at the compacted revision");
    assert_eq!(got.kvs().len(), 1);

    let dup = Txn::new().and_then([TxnOp::put("d", "1", None), TxnOp::put("d", "2", None)]);
    assert_eq!(
        status(c.txn(dup).await),
        (
            Code::InvalidArgument,
            "etcdserver: duplicate key given in txn request".into()
        )
    );
    let ops: Vec<TxnOp> = (0..129)
        .map(|i| TxnOp::put(format!("t{i}"), "v", None))
        .collect();
    assert_eq!(
        status(c.txn(Txn::new().and_then(ops)).await),
        (
            Code::InvalidArgument,
            "etcdserver: too many operations in txn request".into()
        )
    );
    let ops: Vec<TxnOp> = (0..128)
        .map(|i| TxnOp::put(format!("t{i}"), "v", None))
        .collect();
    c.txn(Txn::new().and_then(ops)).await.expect("128 ops pass");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_smaller_request_limit_is_honoured() {
    let server = TestServer::start(ApiConfig {
        max_request_bytes: 4096,
        ..ApiConfig::default()
    })
    .await;
    let mut c = connect(&server).await;
    c.put("k", vec![0u8; 3000], None)
        .await
        .expect("under the limit");
    assert_eq!(
        status(c.put("k", vec![0u8; 5000], None).await),
        (
            Code::InvalidArgument,
            "etcdserver: request is too large".into()
        )
    );
    // Past limit + 512 KiB the transport refuses before the service sees it (tonic answers
    // OutOfRange where grpc-go answers ResourceExhausted; either way not etcd's own error).
    let (code, message) = status(c.put("k", vec![0u8; 600 * 1024], None).await);
    assert_eq!(code, Code::OutOfRange, "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance() {
    let server = TestServer::start(ApiConfig::default()).await;
    let mut c = connect(&server).await;
    for i in 0..20 {
        c.put(format!("key{i:02}"), format!("value{i}"), None)
            .await
            .expect("put");
    }

    let status = c.status().await.expect("status");
    check_header(status.header(), 21);
    assert_eq!(status.version(), "3.4.23");
    assert_eq!(status.leader(), MEMBER_ID);
    assert_eq!(status.raft_term(), TERM);
    assert_eq!(status.raft_index(), 20);
    assert_eq!(status.raft_applied_index(), 20);
    assert!(status.db_size() > 0);
    assert!(status.errors().is_empty());
    assert!(!status.is_learner());

    let hash = c.hash().await.expect("hash");
    check_header(hash.header(), 21);
    let hash_kv = c.hash_kv(0).await.expect("hash kv");
    check_header(hash_kv.header(), 21);
    assert_eq!(hash_kv.hash(), hash.hash());
    assert_eq!(hash_kv.hash_revision(), 21);
    // Nothing compacted yet: etcd reports -1.
    assert_eq!(hash_kv.compact_version(), -1);
    let older = c.hash_kv(10).await.expect("hash kv at 10");
    assert_eq!(older.hash_revision(), 10);
    assert_ne!(older.hash(), hash.hash());
    let (code, message) = match c.hash_kv(99).await {
        Err(Error::GRpcStatus(s)) => (s.code(), s.message().to_string()),
        other => panic!("expected an error, got {other:?}"),
    };
    assert_eq!(code, Code::OutOfRange);
    assert_eq!(
        message,
        "etcdserver: mvcc: required revision is a future revision"
    );

    c.defragment().await.expect("defragment");
    c.move_leader(MEMBER_ID).await.expect("move to self");
    let err = c.move_leader(42).await.expect_err("not a member");
    assert!(
        matches!(&err, Error::GRpcStatus(s) if s.code() == Code::FailedPrecondition
            && s.message() == "etcdserver: bad leader transferee"),
        "{err:?}"
    );

    // Alarms: GET lists, DEACTIVATE disarms and answers with the disarmed alarm.
    let nospace = AlarmMember {
        member_id: MEMBER_ID,
        alarm: AlarmType::Nospace as i32,
    };
    server.node.raise_alarm(nospace);
    let list = c
        .alarm(AlarmAction::Get, AlarmType::None, None)
        .await
        .expect("alarm list");
    assert_eq!(list.alarms().len(), 1);
    assert_eq!(list.alarms()[0].alarm(), AlarmType::Nospace);
    let corrupt = c
        .alarm(AlarmAction::Get, AlarmType::Corrupt, None)
        .await
        .expect("alarm list");
    assert!(corrupt.alarms().is_empty());
    let status = c.status().await.expect("status");
    assert_eq!(status.errors().len(), 1);
    let mut options = etcd_client::AlarmOptions::new();
    options.with_member(MEMBER_ID);
    let disarmed = c
        .alarm(AlarmAction::Deactivate, AlarmType::Nospace, Some(options))
        .await
        .expect("disarm");
    assert_eq!(disarmed.alarms().len(), 1);
    let list = c
        .alarm(AlarmAction::Get, AlarmType::None, None)
        .await
        .expect("alarm list");
    assert!(list.alarms().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_streams_an_installable_state() {
    let server = TestServer::start(ApiConfig::default()).await;
    let mut c = connect(&server).await;
    // About 3 MiB of values: several 1 MiB chunks.
    for i in 0..30 {
        c.put(
            format!("key{i:02}"),
            vec![b'a' + (i % 26) as u8; 100_000],
            None,
        )
        .await
        .expect("put");
    }
    let mut stream = c.snapshot().await.expect("snapshot");
    let mut bytes = Vec::new();
    let mut messages = Vec::new();
    while let Some(msg) = stream.message().await.expect("snapshot message") {
        check_header(msg.header(), 31);
        bytes.extend_from_slice(msg.blob());
        messages.push(msg.remaining_bytes());
    }
    assert!(messages.len() >= 3, "{messages:?}");
    let (last, before) = messages.split_last().expect("messages");
    assert_eq!(*last, 0);
    assert!(before.iter().all(|&r| r > 0), "{messages:?}");
    // etcd's layout, which etcdctl checks: a bbolt file (pages of 4096 bytes), then its
    // SHA-256.
    assert_eq!(bytes.len() % 512, 32);
    let (data, sum) = bytes.split_at(bytes.len() - 32);
    use sha2::Digest as _;
    assert_eq!(sha2::Sha256::digest(data).as_slice(), sum);
    let (snapshot, _) = mango_store::mango_bbolt::etcd::EtcdSnapshot::from_file_bytes(bytes)
        .expect("an etcd snapshot");
    assert_eq!(snapshot.current_revision(), 31);

    let dir = tempfile::tempdir().expect("temporary directory");
    let copy = mango_store::Store::open_path(
        dir.path().join("copy.redb"),
        mango_store::StoreOptions::default(),
    )
    .expect("store opens");
    let state = copy.import_etcd(0, &snapshot).expect("snapshot imports");
    assert_eq!(state.revision, 31);
    let view = copy.read(0).expect("view");
    let original = server.node.store().read(0).expect("view");
    assert_eq!(
        view.hash_kv(0).expect("hash"),
        original.hash_kv(0).expect("hash")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_knows_no_members_yet_is_unavailable_for_member_list() {
    let server = TestServer::start(ApiConfig::default()).await;
    let mut c = connect(&server).await;
    server.node.forget_members();
    let err = c.member_list().await.expect_err("an empty member list");
    let etcd_client::Error::GRpcStatus(s) = err else {
        panic!("not a gRPC status: {err}");
    };
    assert_eq!(s.code(), tonic::Code::Unavailable);
    assert_eq!(s.message(), mango_rpctypes::NOT_STARTED.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_membership() {
    let server = TestServer::start(ApiConfig::default()).await;
    let mut c = connect(&server).await;

    let list = c.member_list().await.expect("member list");
    check_header(list.header(), 0);
    assert_eq!(list.members().len(), 1);
    assert_eq!(list.members()[0].id(), MEMBER_ID);
    assert_eq!(list.members()[0].client_urls(), [server.endpoint()]);

    let added = c
        .member_add(
            ["http://10.0.0.2:2380"],
            Some(MemberAddOptions::new().with_is_learner()),
        )
        .await
        .expect("member add");
    check_header(added.header(), 0);
    let learner = added.member().expect("the added member").clone();
    assert!(learner.is_learner());
    assert_eq!(learner.peer_urls(), ["http://10.0.0.2:2380"]);
    assert_eq!(added.member_list().len(), 2);

    let err = c
        .member_add(["http://10.0.0.2:2380"], None)
        .await
        .expect_err("same peer URL");
    assert!(
        matches!(&err, Error::GRpcStatus(s) if s.code() == Code::FailedPrecondition
            && s.message() == "etcdserver: Peer URLs already exists"),
        "{err:?}"
    );
    let err = c
        .member_add(["http://10.0.0.3:2380/path"], None)
        .await
        .expect_err("bad URL");
    assert!(
        matches!(&err, Error::GRpcStatus(s) if s.code() == Code::InvalidArgument
            && s.message() == "etcdserver: given member URLs are invalid"),
        "{err:?}"
    );

    let promoted = c.member_promote(learner.id()).await.expect("promote");
    assert!(promoted.members().iter().all(|m| !m.is_learner()));
    let err = c
        .member_promote(learner.id())
        .await
        .expect_err("not a learner any more");
    assert!(
        matches!(&err, Error::GRpcStatus(s) if s.code() == Code::FailedPrecondition
            && s.message() == "etcdserver: can only promote a learner member"),
        "{err:?}"
    );

    let updated = c
        .member_update(learner.id(), vec!["http://10.0.0.9:2380".to_string()])
        .await
        .expect("update");
    let member = updated
        .members()
        .iter()
        .find(|m| m.id() == learner.id())
        .expect("still there");
    assert_eq!(member.peer_urls(), ["http://10.0.0.9:2380"]);

    let removed = c.member_remove(learner.id()).await.expect("remove");
    assert_eq!(removed.members().len(), 1);
    let err = c
        .member_remove(learner.id())
        .await
        .expect_err("already gone");
    assert!(
        matches!(&err, Error::GRpcStatus(s) if s.code() == Code::NotFound
            && s.message() == "etcdserver: member not found"),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_serving() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;

    let server = TestServer::start(ApiConfig::default()).await;
    let channel = tonic::transport::Endpoint::from_shared(server.endpoint())
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut health = HealthClient::new(channel);
    let resp = health
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health check");
    assert_eq!(resp.into_inner().status(), ServingStatus::Serving);
}

/// A range far larger than a client takes (etcd-client keeps tonic's 4 MiB receive limit):
/// the server answers it whole, the client refuses it on its side, and the server goes on
/// serving; limits, `count_only` and `keys_only` answer the same data in a few bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_range_is_refused_by_the_client_not_by_a_crash() {
    let server = TestServer::start(ApiConfig::default()).await;
    let mut client = connect(&server).await;
    let value = vec![b'x'; 1 << 20];
    for i in 0..6 {
        client
            .put(format!("big/{i}"), value.clone(), None)
            .await
            .expect("a 1 MiB put is within the request limit");
    }
    let all = client
        .get("big/", Some(GetOptions::new().with_prefix()))
        .await;
    let (code, message) = status(all);
    assert_eq!(code, Code::OutOfRange, "{message}");
    assert!(message.contains("message length too large"), "{message}");

    let limited = client
        .get("big/", Some(GetOptions::new().with_prefix().with_limit(2)))
        .await
        .expect("a limited range");
    assert_eq!(
        (limited.kvs().len(), limited.count(), limited.more()),
        (2, 6, true)
    );
    let counted = client
        .get(
            "big/",
            Some(GetOptions::new().with_prefix().with_count_only()),
        )
        .await
        .expect("count only");
    assert_eq!((counted.kvs().len(), counted.count()), (0, 6));
    let keys = client
        .get(
            "big/",
            Some(GetOptions::new().with_prefix().with_keys_only()),
        )
        .await
        .expect("keys only");
    assert_eq!(keys.kvs().len(), 6);
    assert!(keys.kvs().iter().all(|kv| kv.value().is_empty()));
    // The server is fine.
    let one = client.get("big/5", None).await.expect("still serving");
    assert_eq!(one.kvs()[0].value().len(), 1 << 20);
}
