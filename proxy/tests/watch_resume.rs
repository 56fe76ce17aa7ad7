//! Shared watches whose upstream goes away, through `mango-proxy` against real voters and
//! learners: when the revision a broken watch must resume from was compacted meanwhile, its
//! clients get etcd's compacted cancel; and a watch opened while no learner was up moves to
//! a learner once one is, with no gap and no duplicate.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mango_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use mango_proto::etcdserverpb::watch_client::WatchClient;
use mango_proto::etcdserverpb::watch_request::RequestUnion;
use mango_proto::etcdserverpb::{
    CompactionRequest, StatusRequest, WatchCreateRequest, WatchRequest, WatchResponse,
};
use mango_testkit::{Cluster, kv, put, wait_until, wait_value};
use tokio::sync::mpsc;
use tonic::Streaming;

/// Opens a watch stream through the proxy with one watch on `prefix` (from now); returns the
/// sender (kept to keep the stream open), the stream and the watch id.
async fn watch_prefix(
    d: &Cluster,
    prefix: &str,
) -> (mpsc::Sender<WatchRequest>, Streaming<WatchResponse>, i64) {
    let mut end = prefix.as_bytes().to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    let (tx, rx) = mpsc::channel(4);
    tx.send(WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
            key: prefix.as_bytes().to_vec(),
            range_end: end,
            ..Default::default()
        })),
    })
    .await
    .unwrap();
    let mut stream = WatchClient::connect(format!("http://{}", d.proxy_endpoint()))
        .await
        .unwrap()
        .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let created = stream.message().await.unwrap().unwrap();
    assert!(created.created && !created.canceled, "{created:?}");
    (tx, stream, created.watch_id)
}

/// The next response within `timeout`.
async fn next(stream: &mut Streaming<WatchResponse>, timeout: Duration) -> WatchResponse {
    tokio::time::timeout(timeout, stream.message())
        .await
        .expect("a response in time")
        .expect("the stream goes on")
        .expect("the stream is not over")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_resumed_past_a_compaction_is_cancelled_with_the_compact_revision() {
    let mut d = Cluster::start_tiered(&[]);
    let upstream = d.stream_addrs();
    d.add_learner(&upstream, &[]);
    d.start_proxy(&["--health-interval-ms", "200"]);
    let mut c = kv(&d.proxy_endpoint()).await;
    put(&mut c, "learners-up", "yes").await;
    wait_value(
        &d.learners[0].endpoint(),
        "learners-up",
        "yes",
        Duration::from_secs(20),
    )
    .await;
    // The watch must go to the learner: the proxy routes reads to it.
    d.wait_proxy_reads_on_learners();

    let (_tx, mut stream, id) = watch_prefix(&d, "cmp/").await;
    let mut last = 0;
    for i in 0..3 {
        last = put(&mut c, "cmp/a", &format!("v{i}")).await;
    }
    let mut seen = Vec::new();
    while seen.last() != Some(&last) {
        let r = next(&mut stream, Duration::from_secs(10)).await;
        assert!(!r.canceled, "{r:?}");
        seen.extend(r.events.iter().map(|e| e.kv.as_ref().unwrap().mod_revision));
    }
    assert_eq!(seen, vec![last - 2, last - 1, last]);

    // The learner serving the watch stops answering (its connection stays up until the
    // proxy's HTTP/2 keep-alive gives up on it). Meanwhile the watch's prefix moves on and
    // the history it would resume from is compacted away.
    d.learners[0].signal("STOP");
    put(&mut c, "cmp/b", "1").await;
    let compact_to = put(&mut c, "cmp/b", "2").await;
    c.compact(CompactionRequest {
        revision: compact_to,
        physical: false,
    })
    .await
    .unwrap();

    // The watch resumes (on a voter: the learner is ejected) from `last + 1`, compacted: the
    // client gets etcd's answer, a cancel naming the compacted revision, and no event.
    let r = next(&mut stream, Duration::from_secs(30)).await;
    d.learners[0].signal("CONT");
    assert!(
        r.canceled && r.events.is_empty(),
        "a compacted cancel, not {r:?}; proxy log:\n{}",
        d.proxy_log()
    );
    assert_eq!(r.watch_id, id);
    assert_eq!(r.compact_revision, compact_to);
    assert!(d.proxy_metric("mango_proxy_upstream_watch_resumes_total") >= 1);
    // The watch is over, in the proxy too.
    wait_until(Duration::from_secs(10), "the upstream watch to end", || {
        d.proxy_metric("mango_proxy_upstream_watches") == 0
    });
    assert_eq!(d.proxy_metric("mango_proxy_client_watches"), 0);
}

/// The member id `endpoint` reports in its Status header.
async fn member_id(endpoint: &str) -> u64 {
    MaintenanceClient::connect(format!("http://{endpoint}"))
        .await
        .unwrap()
        .status(StatusRequest {})
        .await
        .unwrap()
        .into_inner()
        .header
        .unwrap()
        .member_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_opened_while_no_learner_was_up_moves_to_one_without_gap_or_duplicate() {
    let mut d = Cluster::start_tiered(&[]);
    let upstream = d.stream_addrs();
    d.add_learner(&upstream, &[]);
    d.kill_learner(0);
    // The proxy has the learner in its list, though it is down.
    d.start_proxy(&["--health-interval-ms", "200"]);
    // The health checks eject the learner that is down: watches go to a voter.
    d.proxy().wait_log(
        Duration::from_secs(10),
        &["upstream ejected", &d.learners[0].client_url()],
    );
    let mut voter_ids = Vec::new();
    for v in &d.voters {
        voter_ids.push(member_id(&v.endpoint()).await);
    }
    let (_tx, mut stream, _id) = watch_prefix(&d, "mv/").await;

    // Writes all along: before the learner is up, while the watch moves, after.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let mut c = kv(&d.proxy_endpoint()).await;
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut revs = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                revs.push(put(&mut c, &format!("mv/{}", i % 3), &format!("v{i}")).await);
                i += 1;
                // Pacing the writes (the test's load): one every 20 ms.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            revs
        })
    };
    // (revision, answering member) of every event the client gets.
    let mut seen: Vec<(i64, u64)> = Vec::new();
    while seen.len() < 10 {
        let r = next(&mut stream, Duration::from_secs(10)).await;
        assert!(!r.canceled, "{r:?}");
        let member = r.header.as_ref().unwrap().member_id;
        seen.extend(
            r.events
                .iter()
                .map(|e| (e.kv.as_ref().unwrap().mod_revision, member)),
        );
    }
    assert_eq!(d.proxy_metric("mango_proxy_upstream_watch_moves_total"), 0);
    assert!(voter_ids.contains(&seen[0].1), "on a voter first: {seen:?}");

    d.spawn_learner(0);
    wait_until(Duration::from_secs(30), "the shared watch to move", || {
        d.proxy_metric("mango_proxy_upstream_watch_moves_total") >= 1
    });
    let learner_id = member_id(&d.learners[0].endpoint()).await;
    // Writes go on until events come from the learner.
    while !seen.iter().any(|s| s.1 == learner_id) {
        let r = next(&mut stream, Duration::from_secs(20)).await;
        assert!(!r.canceled, "{r:?}");
        let member = r.header.as_ref().unwrap().member_id;
        seen.extend(
            r.events
                .iter()
                .map(|e| (e.kv.as_ref().unwrap().mod_revision, member)),
        );
    }
    stop.store(true, Ordering::Relaxed);
    let written = writer.await.unwrap();
    let last = *written.last().unwrap();
    while seen.last().map(|s| s.0) != Some(last) {
        let r = next(&mut stream, Duration::from_secs(20)).await;
        assert!(!r.canceled, "{r:?}");
        let member = r.header.as_ref().unwrap().member_id;
        seen.extend(
            r.events
                .iter()
                .map(|e| (e.kv.as_ref().unwrap().mod_revision, member)),
        );
    }
    let revs: Vec<i64> = seen.iter().map(|s| s.0).collect();
    assert_eq!(revs, written, "no gap, no duplicate across the move");
    assert_eq!(
        seen.last().unwrap().1,
        learner_id,
        "the last events come from the learner; proxy log:\n{}",
        d.proxy_log()
    );
    assert_eq!(d.proxy_metric("mango_proxy_upstream_watches"), 1);
    assert_eq!(d.proxy_metric("mango_proxy_upstream_watch_moves_total"), 1);
}
