//! The Watch service over gRPC with the raw wire types: etcd's control responses (created,
//! duplicate and empty-range refusals, cancel, progress) and fragmentation of a revision larger
//! than the request limit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::TestServer;
use mango_api::ApiConfig;
use mango_proto::etcdserverpb::kv_client::KvClient;
use mango_proto::etcdserverpb::request_op::Request as Op;
use mango_proto::etcdserverpb::watch_client::WatchClient;
use mango_proto::etcdserverpb::watch_request::RequestUnion;
use mango_proto::etcdserverpb::{
    PutRequest, RequestOp, TxnRequest, WatchCancelRequest, WatchCreateRequest,
    WatchProgressRequest, WatchRequest, WatchResponse,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

/// A watch stream: requests in, responses out.
struct Stream {
    tx: mpsc::Sender<WatchRequest>,
    rx: Streaming<WatchResponse>,
}

impl Stream {
    async fn open(server: &TestServer) -> Self {
        let mut client = WatchClient::connect(server.endpoint())
            .await
            .unwrap()
            .max_decoding_message_size(usize::MAX);
        let (tx, rx) = mpsc::channel(16);
        let rx = client
            .watch(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        Self { tx, rx }
    }

    async fn send(&self, request: RequestUnion) {
        self.tx
            .send(WatchRequest {
                request_union: Some(request),
            })
            .await
            .unwrap();
    }

    async fn create(&self, create: WatchCreateRequest) {
        self.send(RequestUnion::CreateRequest(create)).await;
    }

    async fn next(&mut self) -> WatchResponse {
        tokio::time::timeout(Duration::from_secs(10), self.rx.message())
            .await
            .expect("a response in time")
            .unwrap()
            .expect("the stream is open")
    }
}

async fn put(server: &TestServer, key: &str, value: Vec<u8>) -> i64 {
    let mut kv = KvClient::connect(server.endpoint()).await.unwrap();
    let resp = kv
        .put(PutRequest {
            key: key.into(),
            value,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    resp.header.unwrap().revision
}

fn watch(key: &str, watch_id: i64) -> WatchCreateRequest {
    WatchCreateRequest {
        key: key.into(),
        watch_id,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_responses_are_etcds() {
    let server = TestServer::start(ApiConfig::default()).await;
    let rev = put(&server, "a", b"1".to_vec()).await;
    let mut s = Stream::open(&server).await;

    // Ids the server picks count from 0; a client may choose its own.
    s.create(watch("a", 0)).await;
    let r = s.next().await;
    assert!(r.created && !r.canceled);
    assert_eq!((r.watch_id, r.header.unwrap().revision), (0, rev));
    s.create(watch("a", 7)).await;
    assert_eq!(s.next().await.watch_id, 7);
    // A duplicate id is refused: created and cancelled at once, id -1.
    s.create(watch("b", 7)).await;
    let r = s.next().await;
    assert!(r.created && r.canceled);
    assert_eq!(r.watch_id, -1);
    assert_eq!(r.cancel_reason, mango_rpctypes::DUPLICATE_WATCH_ID.message);
    // So is a range whose end is not after its key.
    s.create(WatchCreateRequest {
        range_end: b"a".to_vec(),
        ..watch("b", 0)
    })
    .await;
    let r = s.next().await;
    assert_eq!(
        (r.created, r.canceled, r.watch_id, r.cancel_reason.as_str()),
        (true, true, -1, mango_rpctypes::EMPTY_WATCHER_RANGE.message)
    );

    // An event reaches both watches of the key, each with its own id.
    let rev = put(&server, "a", b"2".to_vec()).await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let r = s.next().await;
        assert_eq!(r.header.as_ref().unwrap().revision, rev);
        assert_eq!(r.events.len(), 1);
        ids.push(r.watch_id);
    }
    ids.sort_unstable();
    assert_eq!(ids, [0, 7]);

    // A progress request: watch id -1, the revision everything was sent up to.
    s.send(RequestUnion::ProgressRequest(WatchProgressRequest {}))
        .await;
    let r = s.next().await;
    assert_eq!((r.watch_id, r.header.unwrap().revision), (-1, rev));

    // Cancel: one response; an unknown id gets none; the cancelled watch gets no more events.
    s.send(RequestUnion::CancelRequest(WatchCancelRequest {
        watch_id: 7,
    }))
    .await;
    let r = s.next().await;
    assert_eq!((r.watch_id, r.canceled), (7, true));
    s.send(RequestUnion::CancelRequest(WatchCancelRequest {
        watch_id: 99,
    }))
    .await;
    let rev = put(&server, "a", b"3".to_vec()).await;
    let r = s.next().await;
    assert_eq!((r.watch_id, r.header.unwrap().revision), (0, rev));
    // Server-picked ids go on counting from where they were.
    s.create(watch("a", 0)).await;
    assert_eq!(s.next().await.watch_id, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revision_larger_than_the_limit_is_fragmented_on_request() {
    let server = TestServer::start(ApiConfig::default()).await;
    let big = || vec![b'x'; 400 * 1024];
    for k in ["k1", "k2", "k3"] {
        put(&server, k, big()).await;
    }
    let mut s = Stream::open(&server).await;
    let mut plain = Stream::open(&server).await;
    let create = WatchCreateRequest {
        key: b"k".to_vec(),
        range_end: b"l".to_vec(),
        prev_kv: true,
        ..Default::default()
    };
    s.create(WatchCreateRequest {
        fragment: true,
        ..create.clone()
    })
    .await;
    assert!(s.next().await.created);
    plain.create(create).await;
    assert!(plain.next().await.created);
    // One txn rewriting all three: with previous values, ~2.4 MB of events in one revision,
    // above the 2 MiB limit (1.5 MiB of request plus etcd's 512 KiB allowance).
    let ops = ["k1", "k2", "k3"]
        .iter()
        .map(|k| RequestOp {
            request: Some(Op::RequestPut(PutRequest {
                key: (*k).into(),
                value: vec![b'y'; 400 * 1024],
                ..Default::default()
            })),
        })
        .collect();
    let mut kv = KvClient::connect(server.endpoint()).await.unwrap();
    kv.txn(TxnRequest {
        success: ops,
        ..Default::default()
    })
    .await
    .unwrap();
    let mut parts = Vec::new();
    loop {
        let r = s.next().await;
        let last = !r.fragment;
        parts.push(r);
        if last {
            break;
        }
    }
    assert!(parts.len() >= 2, "{} parts", parts.len());
    assert_eq!(parts.iter().map(|p| p.events.len()).sum::<usize>(), 3);
    // Without fragments the revision comes whole.
    let whole = plain.next().await;
    assert_eq!((whole.events.len(), whole.fragment), (3, false));
}
