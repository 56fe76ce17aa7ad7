//! The subscription over real QUIC on 127.0.0.1 with real TLS: order, resumption, snapshots,
//! stamps, back-pressure, and a chain of re-serving followers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{
    Follower, GROUP, MemLog, Server, dev_tls, dev_tls_for, init_tracing, localhost0, restart,
    wait_until,
};
use mango_logstream::{BATCH_BYTES, LogSource, ServerTls};
use mango_testkit::Host;
use mango_testkit::net::LOGSTREAM_PORT;

const LIMIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn entries_stream_in_order_and_resume_after_a_server_restart() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    // An address of its own, so nothing else can take the port while the server is down.
    let host = Host::reserve();
    let (server_tls, client_tls) = dev_tls_for(dir.path(), &[host.ip().to_string()]);
    let source = MemLog::leader();
    source.commit(500, 100);
    let server = Server::start(host.addr(LOGSTREAM_PORT), server_tls, source.clone()).await;
    let addr = server.addr;

    let sink = MemLog::learner();
    let follower = Follower::start(vec![addr], client_tls, sink.clone());
    wait_until(LIMIT, "the first 500 entries", || sink.last_index() == 500).await;

    // New commits arrive without polling delay.
    source.commit(10, 100);
    wait_until(LIMIT, "510 entries", || sink.last_index() == 510).await;

    // The server goes away; entries committed meanwhile arrive after it comes back on the
    // same port.
    server.stop().await;
    source.commit(90, 100);
    let server = restart(addr, dir.path(), source.clone()).await;
    wait_until(LIMIT, "600 entries after the restart", || {
        sink.last_index() == 600
    })
    .await;

    follower.stop().await;
    server.stop().await;
    // The sink asserts no gap and no duplicate on every append; the content matches too.
    assert_eq!(sink.history(), source.history());
}

#[tokio::test]
async fn the_follower_moves_to_the_next_upstream() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let (tls_a, client_tls) = dev_tls(dir.path());
    let tls_b = ServerTls::dev(dir.path(), &[]).unwrap();
    // Two voters with the same log.
    let a = MemLog::leader();
    let b = MemLog::leader();
    a.commit(100, 50);
    b.commit(100, 50);
    let server_a = Server::start(localhost0(), tls_a, a.clone()).await;
    let server_b = Server::start(localhost0(), tls_b, b.clone()).await;

    let sink = MemLog::learner();
    let follower = Follower::start(vec![server_a.addr, server_b.addr], client_tls, sink.clone());
    wait_until(LIMIT, "100 entries from A", || sink.last_index() == 100).await;

    server_a.stop().await;
    a.commit(50, 50);
    b.commit(50, 50);
    wait_until(LIMIT, "150 entries from B", || sink.last_index() == 150).await;
    assert_eq!(sink.history(), b.history());
    follower.stop().await;
    server_b.stop().await;
}

#[tokio::test]
async fn a_subscriber_behind_the_first_index_gets_a_snapshot_then_entries() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let (server_tls, client_tls) = dev_tls(dir.path());
    let source = MemLog::leader();
    // 3 MB of history: several chunks, some split into frames.
    source.commit(1000, 3000);
    source.compact(901);
    let server = Server::start(localhost0(), server_tls, source.clone()).await;

    let sink = MemLog::learner();
    let follower = Follower::start(vec![server.addr], client_tls, sink.clone());
    wait_until(LIMIT, "the snapshot", || sink.last_index() == 1000).await;
    assert_eq!(sink.installs.load(Ordering::Relaxed), 1);

    source.commit(20, 3000);
    wait_until(LIMIT, "entries after the snapshot", || {
        sink.last_index() == 1020
    })
    .await;
    assert_eq!(sink.installs.load(Ordering::Relaxed), 1);
    assert_eq!(sink.history(), source.history());
    follower.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn a_broken_snapshot_transfer_leaves_the_sink_as_it_was_and_is_retried() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let (server_tls, client_tls) = dev_tls(dir.path());
    let source = MemLog::leader();
    source.commit(1000, 3000);
    source.compact(500);
    source.break_snapshots.store(1, Ordering::Relaxed);
    let server = Server::start(localhost0(), server_tls, source.clone()).await;

    let sink = MemLog::learner();
    let follower = Follower::start(vec![server.addr], client_tls, sink.clone());
    wait_until(LIMIT, "the snapshot", || sink.last_index() == 1000).await;
    assert_eq!(
        source.break_snapshots.load(Ordering::Relaxed),
        0,
        "the first one broke"
    );
    assert_eq!(
        sink.installs.load(Ordering::Relaxed),
        1,
        "only the whole one was installed"
    );
    assert_eq!(sink.history(), source.history());
    follower.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn stamps_arrive_while_idle_with_a_sane_age() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let (server_tls, client_tls) = dev_tls(dir.path());
    let source = MemLog::leader();
    source.commit(5, 10);
    let server = Server::start(localhost0(), server_tls, source.clone()).await;
    let sink = MemLog::learner();
    let follower = Follower::start(vec![server.addr], client_tls, sink.clone());
    wait_until(LIMIT, "the entries", || sink.last_index() == 5).await;

    // One per 100 ms while idle: at least 3 within 600 ms (timers on a busy 2-core
    // machine may slip a little).
    let before = sink.stamps.lock().unwrap().len();
    wait_until(Duration::from_millis(600), "3 stamps while idle", || {
        sink.stamps.lock().unwrap().len() >= before + 3
    })
    .await;
    let stamps = sink.stamps.lock().unwrap().clone();
    let idle = &stamps[before..];
    for (stamp, _) in idle {
        assert_eq!(stamp.commit, 5);
        // A leader stamps with age 0; what arrives is aged by the (loopback) transit only.
        assert!(stamp.age < Duration::from_millis(50), "{stamp:?}");
    }
    // Gaps between stamps stay near the interval.
    for pair in idle.windows(2) {
        let gap = pair[1].1 - pair[0].1;
        assert!(gap < Duration::from_millis(400), "stamp gap {gap:?}");
    }
    // A learner re-serving the stamp reports it aged by the time since it arrived (nothing
    // else runs between these lines on this single-threaded runtime). The pause is the
    // test: time for the stamp to age by.
    tokio::time::sleep(Duration::from_millis(30)).await;
    let (last, at) = *sink.stamps.lock().unwrap().last().unwrap();
    let forwarded = LogSource::stamp(&*sink, GROUP).unwrap();
    let since = at.elapsed();
    assert_eq!(forwarded.commit, 5);
    assert!(forwarded.age > last.age, "{forwarded:?}");
    assert!(forwarded.age <= last.age + since, "{forwarded:?} {since:?}");
    assert!(
        since < Duration::from_millis(300),
        "no recent stamp: {since:?}"
    );
    follower.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn a_large_backlog_streams_with_bounded_memory() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let (server_tls, client_tls) = dev_tls(dir.path());
    const N: u64 = 100_000;
    const SIZE: usize = 256;
    let source = MemLog::leader();
    source.commit(N, SIZE);
    let server = Server::start(localhost0(), server_tls, source.clone()).await;

    // A sink that takes nothing for a while: the server must stall, not read the whole
    // backlog into buffers.
    let sink = MemLog::learner();
    sink.hold.store(true, Ordering::Relaxed);
    let follower = Follower::start(vec![server.addr], client_tls, sink.clone());
    // Until the server stalls: what it read from the source stays put (as it does once it
    // read everything, if it does not stall).
    let (mut last, mut since) = (0, Instant::now());
    wait_until(LIMIT, "the server to stop reading ahead", || {
        let served = source.served.load(Ordering::Relaxed);
        if served != last {
            (last, since) = (served, Instant::now());
        }
        served > 0 && since.elapsed() >= Duration::from_millis(300)
    })
    .await;
    let served = source.served.load(Ordering::Relaxed);
    let ahead_bytes = served as usize * SIZE;
    eprintln!("a stalled sink: the server read {ahead_bytes} bytes ahead");
    // Flow-control windows (2 MiB stream, 8 MiB connection) + 4 MiB send buffer + a batch on
    // each side: well under the 25 MB backlog.
    assert!(served > 0, "nothing was read from the source");
    assert!(
        ahead_bytes <= 12 << 20,
        "the server read {ahead_bytes} bytes ahead of a stalled sink"
    );
    assert!(source.max_asked.load(Ordering::Relaxed) <= BATCH_BYTES as u64);

    let start = Instant::now();
    let held_since = {
        let stamps = sink.stamps.lock().unwrap();
        assert_eq!(
            stamps.len(),
            1,
            "only the first stamp arrives before the entries"
        );
        stamps[0].1
    };
    sink.hold.store(false, Ordering::Relaxed);
    wait_until(Duration::from_secs(15), "the whole backlog", || {
        sink.last_index() == N
    })
    .await;
    eprintln!("{N} entries of {SIZE} bytes in {:?}", start.elapsed());
    // The stamp written after the first batch waited in the stream while the sink was held:
    // it arrives aged by that wait, not with the sender's age 0.
    let (queued, _) = sink.stamps.lock().unwrap()[1];
    let held = start - held_since;
    assert!(
        queued.age + Duration::from_millis(100) >= held,
        "a stamp queued for {held:?} arrived with age {:?}",
        queued.age
    );
    assert_eq!(sink.history(), source.history());
    follower.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn a_chain_of_followers_gets_the_same_entries() {
    init_tracing();
    let dir_a = tempfile::tempdir().unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    let (tls_a, trust_a) = dev_tls(dir_a.path());
    let (tls_b, trust_b) = dev_tls(dir_b.path());
    let a = MemLog::leader();
    a.commit(300, 200);
    a.compact(101);
    let server_a = Server::start(localhost0(), tls_a, a.clone()).await;

    // B follows A and re-serves what it received.
    let b = MemLog::learner();
    *b.upstream.lock().unwrap() = Some(Arc::new(mango_logstream::ReadIndexClient::new(
        vec![server_a.addr],
        trust_a.clone(),
    )));
    let follow_b = Follower::start(vec![server_a.addr], trust_a, b.clone());
    let server_b = Server::start(localhost0(), tls_b, b.clone()).await;

    let c = MemLog::learner();
    let follow_c = Follower::start(vec![server_b.addr], trust_b.clone(), c.clone());
    wait_until(LIMIT, "C to catch up", || c.last_index() == 300).await;
    a.commit(200, 200);
    wait_until(LIMIT, "C to get new entries", || c.last_index() == 500).await;
    assert_eq!(c.history(), a.history());

    // Stamps reach C through B.
    wait_until(LIMIT, "a stamp at C", || {
        c.stamps
            .lock()
            .unwrap()
            .iter()
            .any(|(s, _)| s.commit == 500)
    })
    .await;

    // A read index at B is forwarded to A.
    let client = mango_logstream::ReadIndexClient::new(vec![server_b.addr], trust_b);
    assert_eq!(client.read_index(GROUP).await.unwrap(), 500);

    follow_c.stop().await;
    server_b.stop().await;
    follow_b.stop().await;
    server_a.stop().await;
}

/// A UDP relay to `target` that can go silent (as a crashed host or a cut link would: no
/// CONNECTION_CLOSE, nothing at all).
async fn relay(
    target: std::net::SocketAddr,
) -> (std::net::SocketAddr, Arc<std::sync::atomic::AtomicBool>) {
    let front = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let back = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
    back.connect(target).await.unwrap();
    let addr = front.local_addr().unwrap();
    let cut = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let client = Arc::new(std::sync::Mutex::new(None));
    {
        let (front, back, cut, client) = (front.clone(), back.clone(), cut.clone(), client.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            while let Ok((n, from)) = front.recv_from(&mut buf).await {
                *client.lock().unwrap() = Some(from);
                if !cut.load(Ordering::Relaxed) {
                    let _ = back.send(&buf[..n]).await;
                }
            }
        });
    }
    {
        let cut = cut.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            while let Ok(n) = back.recv(&mut buf).await {
                let to = *client.lock().unwrap();
                if let (Some(to), false) = (to, cut.load(Ordering::Relaxed)) {
                    let _ = front.send_to(&buf[..n], to).await;
                }
            }
        });
    }
    (addr, cut)
}

#[tokio::test]
async fn a_silent_upstream_is_left_within_the_idle_timeout() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let (tls_a, client_tls) = dev_tls(dir.path());
    let tls_b = ServerTls::dev(dir.path(), &[]).unwrap();
    let a = MemLog::leader();
    let b = MemLog::leader();
    a.commit(10, 10);
    b.commit(10, 10);
    let server_a = Server::start(localhost0(), tls_a, a.clone()).await;
    let server_b = Server::start(localhost0(), tls_b, b.clone()).await;
    let (via, cut) = relay(server_a.addr).await;

    let sink = MemLog::learner();
    let follower = Follower::start(vec![via, server_b.addr], client_tls, sink.clone());
    wait_until(LIMIT, "entries through the relay", || {
        sink.last_index() == 10
    })
    .await;
    cut.store(true, Ordering::Relaxed);
    let cut_at = Instant::now();
    b.commit(5, 10);
    wait_until(LIMIT, "entries from B", || sink.last_index() == 15).await;
    let took = cut_at.elapsed();
    assert!(
        took < mango_logstream::IDLE_TIMEOUT
            + mango_logstream::KEEP_ALIVE
            + Duration::from_millis(700),
        "a silent upstream was noticed after {took:?}"
    );
    follower.stop().await;
    server_b.stop().await;
    server_a.stop().await;
}
