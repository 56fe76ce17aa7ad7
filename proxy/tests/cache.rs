//! The stale-read cache through a real proxy: a repeated stale read is answered from the cache
//! (the metrics count the hit), and a write through a voter invalidates it, so stale reads
//! through the proxy move on to the new value rather than serving the cached one forever.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use mango_proto::etcdserverpb::kv_client::KvClient;
use mango_testkit::metrics::metric;
use mango_testkit::{Cluster, get, kv, put, wait_until_async, wait_value};
use tonic::transport::Channel;

/// 3 voters, a learner holding `key` = `value`, and the proxy with its stale-read cache on;
/// a KV client of the leader.
async fn with_cache(key: &str, value: &str) -> (Cluster, KvClient<Channel>) {
    let mut d = Cluster::start_tiered(&[]);
    let leader = d.wait_leader();
    let upstream = d.voters[(leader + 1) % 3].stream_addr();
    d.add_learner(&upstream, &[]);
    let mut w = kv(&d.voters[leader].endpoint()).await;
    put(&mut w, key, value).await;
    wait_value(
        &d.learners[0].endpoint(),
        key,
        value,
        Duration::from_secs(10),
    )
    .await;
    d.start_proxy(&["--stale-cache-bytes", "1048576"]);
    (d, w)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_reads_hit_the_cache_until_a_write_invalidates_them() {
    let (d, mut w) = with_cache("c/k", "v1").await;
    let mport = d.proxy().metrics_addr();
    let mport = mport.as_str();
    let p = kv(&d.proxy_endpoint()).await;

    // Once the invalidation watch runs, a stale read is cached and the next one hits.
    wait_until_async(
        Duration::from_secs(10),
        "a repeated stale read to hit the cache",
        || {
            let mut p = p.clone();
            let mport = mport.to_owned();
            async move {
                let before = metric(&mport, "mango_proxy_stale_cache_hits_total");
                let a = get(&mut p, "c/k", "stale").await.unwrap();
                assert_eq!(a.kvs[0].value, b"v1");
                let b = get(&mut p, "c/k", "stale").await.unwrap();
                assert_eq!(b.kvs[0].value, b"v1");
                metric(&mport, "mango_proxy_stale_cache_hits_total") > before
            }
        },
    )
    .await;

    // A write through a voter: the cached answer goes, the proxy serves the new value.
    put(&mut w, "c/k", "v2").await;
    wait_until_async(
        Duration::from_secs(5),
        "the proxy to serve the overwritten key's new value, not the cached one",
        || {
            let mut p = p.clone();
            async move { get(&mut p, "c/k", "stale").await.unwrap().kvs[0].value == b"v2" }
        },
    )
    .await;
    let mut p = p;
    // Per-route latency: the stale reads that missed went through the read pool.
    assert!(
        metric(
            mport,
            "mango_proxy_request_duration_seconds_count{route=\"reads\"}"
        ) > 0
    );
    let inf = metric(
        mport,
        "mango_proxy_request_duration_seconds_bucket{route=\"reads\",le=\"+Inf\"}",
    );
    assert_eq!(
        inf,
        metric(
            mport,
            "mango_proxy_request_duration_seconds_count{route=\"reads\"}"
        )
    );
    // Linearizable reads never come from the cache.
    let before = metric(mport, "mango_proxy_stale_cache_hits_total");
    let r = get(&mut p, "c/k", "linearizable").await.unwrap();
    assert_eq!(r.kvs[0].value, b"v2");
    assert_eq!(metric(mport, "mango_proxy_stale_cache_hits_total"), before);
}

/// Answers cached while auth was off are not served once it is on: the proxy learns it from
/// the voters' Status and stops serving the shared cache, so an anonymous stale read gets
/// etcd's "user name is empty" instead of data cached for everyone (before, the cached answer
/// was served until a write to the key invalidated it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_answers_are_not_served_once_auth_is_enabled() {
    let (d, _w) = with_cache("s/k", "secret").await;
    let mport = d.proxy().metrics_addr();
    let mport = mport.as_str();
    let p = kv(&d.proxy_endpoint()).await;
    wait_until_async(
        Duration::from_secs(10),
        "the stale read to be cached",
        || {
            let mut p = p.clone();
            let mport = mport.to_owned();
            async move {
                let before = metric(&mport, "mango_proxy_stale_cache_hits_total");
                let _ = get(&mut p, "s/k", "stale").await;
                let _ = get(&mut p, "s/k", "stale").await;
                metric(&mport, "mango_proxy_stale_cache_hits_total") > before
            }
        },
    )
    .await;
    let endpoints = d.endpoints();
    mango_testkit::etcdctl_ok(&endpoints, &["user", "add", "root:rootpw"]);
    mango_testkit::etcdctl_ok(&endpoints, &["auth", "enable"]);
    wait_until_async(
        Duration::from_secs(10),
        "an anonymous stale read through the proxy to be refused",
        || {
            let mut p = p.clone();
            async move {
                matches!(get(&mut p, "s/k", "stale").await,
                    Err(e) if e.message() == "etcdserver: user name is empty")
            }
        },
    )
    .await;
}
