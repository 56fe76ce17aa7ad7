//! The stale-read cache through a real proxy: a repeated stale read is answered from the cache
//! (the metrics count the hit), and a write through a voter invalidates it, so stale reads
//! through the proxy move on to the new value rather than serving the cached one forever.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::{Deployment, free_port, get, kv, put, wait_value};

fn metric(port: u16, name: &str) -> u64 {
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    conn.read_to_string(&mut text).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_reads_hit_the_cache_until_a_write_invalidates_them() {
    let mut d = Deployment::start(&[]);
    let leader = d.wait_leader();
    let upstream = d.voters[(leader + 1) % 3].stream_addr();
    d.add_learner(&upstream, &[]);
    let mut w = kv(&d.voters[leader].endpoint()).await;
    put(&mut w, "c/k", "v1").await;
    wait_value(
        &d.learners[0].endpoint(),
        "c/k",
        "v1",
        Duration::from_secs(10),
    )
    .await;
    let mport = free_port();
    d.start_proxy(&[
        "--stale-cache-bytes",
        "1048576",
        "--listen-metrics-addr",
        &format!("127.0.0.1:{mport}"),
    ])
    .await;
    let mut p = kv(&d.proxy_endpoint()).await;

    // Once the invalidation watch runs, a stale read is cached and the next one hits.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let before = metric(mport, "mango_proxy_stale_cache_hits_total");
        let a = get(&mut p, "c/k", "stale").await.unwrap();
        assert_eq!(a.kvs[0].value, b"v1");
        let b = get(&mut p, "c/k", "stale").await.unwrap();
        assert_eq!(b.kvs[0].value, b"v1");
        if metric(mport, "mango_proxy_stale_cache_hits_total") > before {
            break;
        }
        assert!(Instant::now() < deadline, "stale reads never hit the cache");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A write through a voter: the cached answer goes, the proxy serves the new value.
    put(&mut w, "c/k", "v2").await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = get(&mut p, "c/k", "stale").await.unwrap();
        if r.kvs[0].value == b"v2" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the proxy kept serving a cached answer after the key was overwritten"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
