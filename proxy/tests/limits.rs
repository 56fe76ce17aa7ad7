//! The proxy's limits against real voters: streams (watch, lease keep-alive) have a limit of
//! their own, held for each stream's life, so open streams neither use up the unary limit nor
//! go unbounded; beyond it a stream is refused with etcd's "too many requests", and closing a
//! stream frees its place.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use mango_proto::etcdserverpb::lease_client::LeaseClient;
use mango_proto::etcdserverpb::watch_client::WatchClient;
use mango_proto::etcdserverpb::watch_request::RequestUnion;
use mango_proto::etcdserverpb::{
    LeaseKeepAliveRequest, WatchCreateRequest, WatchRequest, WatchResponse,
};
use mango_testkit::{Cluster, get, kv, put, wait_until};
use tokio::sync::mpsc;
use tonic::Streaming;
use tonic::transport::Channel;

/// Waits until the proxy's metric `name` is `want`.
fn wait_metric(d: &Cluster, name: &str, want: u64) {
    wait_until(
        Duration::from_secs(10),
        format_args!("{name} = {want}"),
        || {
            let v = d.proxy_metric(name);
            if v == want { Ok(()) } else { Err(v) }
        },
    );
}

type Watch = (mpsc::Sender<WatchRequest>, Streaming<WatchResponse>);

/// Opens a watch stream with one watch on `key`, created.
async fn watch(ch: &Channel, key: &str) -> Result<Watch, tonic::Status> {
    let (tx, rx) = mpsc::channel(4);
    tx.send(WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
            key: key.as_bytes().to_vec(),
            ..Default::default()
        })),
    })
    .await
    .unwrap();
    let mut stream = WatchClient::new(ch.clone())
        .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    let created = stream.message().await?.expect("a created response");
    assert!(created.created && !created.canceled, "{created:?}");
    Ok((tx, stream))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_have_their_own_limit_held_for_their_life() {
    let mut d = Cluster::start_tiered(&[]);
    d.start_proxy(&[
        "--max-concurrent-streams",
        "2",
        "--max-concurrent-requests",
        "1",
    ]);
    let ch = Channel::from_shared(format!("http://{}", d.proxy_endpoint()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let first = watch(&ch, "lim/a").await.expect("first stream");
    let mut second = watch(&ch, "lim/b").await.expect("second stream");
    assert_eq!(d.proxy_metric("mango_proxy_streams_open"), 2);

    // A third stream is refused at once, as etcd refuses when overloaded.
    let Err(refused) = watch(&ch, "lim/c").await else {
        panic!("over the stream limit");
    };
    assert_eq!(
        refused.code(),
        tonic::Code::ResourceExhausted,
        "{refused:?}"
    );
    assert_eq!(refused.message(), "etcdserver: too many requests");
    let (_ka_tx, ka_rx) = mpsc::channel::<LeaseKeepAliveRequest>(1);
    let Err(refused) = LeaseClient::new(ch.clone())
        .lease_keep_alive(tokio_stream::wrappers::ReceiverStream::new(ka_rx))
        .await
    else {
        panic!("a keep-alive stream counts too");
    };
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
    assert_eq!(d.proxy_metric("mango_proxy_streams_shed_total"), 2);

    // The open streams do not hold unary permits: a limit of one request is enough.
    let mut c = kv(&d.proxy_endpoint()).await;
    for i in 0..5 {
        put(&mut c, "lim/b", &format!("v{i}")).await;
        get(&mut c, "lim/b", "linearizable").await.unwrap();
    }
    assert_eq!(d.proxy_metric("mango_proxy_shed_total"), 0);
    let event = tokio::time::timeout(Duration::from_secs(10), second.1.message())
        .await
        .expect("an event in time")
        .unwrap()
        .unwrap();
    assert_eq!(event.events[0].kv.as_ref().unwrap().value, b"v0");

    // Closing a stream frees its place.
    drop(first);
    wait_metric(&d, "mango_proxy_streams_open", 1);
    let (_tx, mut third) = watch(&ch, "lim/c").await.expect("room again");
    put(&mut c, "lim/c", "x").await;
    let event = tokio::time::timeout(Duration::from_secs(10), third.message())
        .await
        .expect("an event in time")
        .unwrap()
        .unwrap();
    assert_eq!(event.events[0].kv.as_ref().unwrap().value, b"x");
    assert_eq!(d.proxy_metric("mango_proxy_streams_open"), 2);
}
