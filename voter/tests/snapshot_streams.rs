//! Snapshot streams are bounded: clients that open `Maintenance.Snapshot` and do not read
//! hold a slot each (no thread), beyond `MAX_SNAPSHOT_STREAMS` a request gets etcd's "too
//! many requests" at once, writes and the log stream to learners go on meanwhile, and the
//! slots come back when those clients leave. Before, each unread stream parked a blocking
//! thread; at tokio's 512 every `spawn_blocking` of the process queued behind them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use mango_api::MAX_SNAPSHOT_STREAMS;
use mango_proto::etcdserverpb::SnapshotRequest;
use mango_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use mango_testkit::{Cluster, kv, put, wait_value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_snapshot_streams_are_bounded_and_harm_nothing() {
    let mut c = Cluster::start_tiered(&[]);
    let leader = c.wait_leader();
    let learner = c.add_learner(&c.stream_addrs(), &[]);
    let mut client = kv(&c.voters[leader].endpoint()).await;
    // 16 MiB of incompressible data, so a snapshot outlasts every buffer on the way.
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for i in 0..256 {
        let value: String = (0..(64 * 1024 / 16))
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                format!("{x:016x}")
            })
            .collect();
        put(&mut client, &format!("big{i:03}"), &value).await;
    }
    let url = c.voters[leader].client_url();
    // Clients that read the first message of their snapshot, then stop reading.
    let mut held = Vec::new();
    for _ in 0..MAX_SNAPSHOT_STREAMS {
        // Small HTTP/2 windows: the client buffers little of what it does not read.
        let channel = tonic::transport::Endpoint::from_shared(url.clone())
            .unwrap()
            .initial_stream_window_size(65_535)
            .initial_connection_window_size(65_535)
            .connect()
            .await
            .unwrap();
        let mut m = MaintenanceClient::new(channel);
        let mut stream = m.snapshot(SnapshotRequest {}).await.unwrap().into_inner();
        let first = stream.message().await.unwrap().expect("a first chunk");
        assert!(
            first.remaining_bytes > 0,
            "the snapshot is too small to stall"
        );
        held.push((m, stream));
    }
    // One more is refused at once, with etcd's code and text.
    let mut m = MaintenanceClient::connect(url.clone()).await.unwrap();
    let refused = m
        .snapshot(SnapshotRequest {})
        .await
        .expect_err("beyond the bound");
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
    assert_eq!(refused.message(), "etcdserver: too many requests");
    // Writes and the log stream to the learner are unharmed.
    put(&mut client, "during", "stalls").await;
    let learner_endpoint = c.learners[learner].endpoint();
    wait_value(
        &learner_endpoint,
        "during",
        "stalls",
        Duration::from_secs(20),
    )
    .await;
    // The stalled clients leave: their slots come back and a whole snapshot streams.
    drop(held);
    let whole =
        mango_testkit::wait_until_async(Duration::from_secs(20), "a snapshot slot freed", || {
            let url = url.clone();
            async move {
                let mut m = MaintenanceClient::connect(url).await.ok()?;
                let mut stream = m.snapshot(SnapshotRequest {}).await.ok()?.into_inner();
                let mut bytes = 0usize;
                while let Some(chunk) = stream.message().await.ok()? {
                    bytes += chunk.blob.len();
                    if chunk.remaining_bytes == 0 {
                        return Some(bytes);
                    }
                }
                None
            }
        })
        .await;
    assert!(whole > 16 << 20, "{whole} bytes");
    c.kill_learner(learner);
}
