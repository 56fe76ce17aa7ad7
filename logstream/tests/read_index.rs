//! Read-index requests: round trip, many callers on one client, errors, reconnection.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{GROUP, Server, dev_tls, dev_tls_for, init_tracing, localhost0, restart};
use mango_logstream::{
    LogEntry, LogSource, LogStreamError, ReadIndexClient, SnapshotSource, SourceError, Stamp,
};
use mango_testkit::Host;
use mango_testkit::net::LOGSTREAM_PORT;
use tokio::sync::watch;

/// Answers read indexes only: group 0 with a counter, others `NotFound`.
struct Counter {
    calls: AtomicU64,
    updates: watch::Sender<u64>,
}

impl LogSource for Counter {
    fn entries(&self, _: u64, _: u64, _: usize) -> Result<Vec<LogEntry>, SourceError> {
        Ok(Vec::new())
    }
    fn stamp(&self, _: u64) -> Result<Stamp, SourceError> {
        Err(SourceError::Unavailable("none".into()))
    }
    fn commit_updates(&self) -> watch::Receiver<u64> {
        self.updates.subscribe()
    }
    fn snapshot(&self, _: u64) -> Result<SnapshotSource, SourceError> {
        Err(SourceError::Unavailable("none".into()))
    }
    fn read_index(
        &self,
        group: u64,
    ) -> Pin<Box<dyn Future<Output = Result<u64, SourceError>> + Send>> {
        let n = self.calls.fetch_add(1, Ordering::Relaxed) + 1;
        Box::pin(async move {
            // A quorum round takes a moment.
            tokio::time::sleep(Duration::from_millis(5)).await;
            if group == GROUP {
                Ok(1000 + n)
            } else {
                Err(SourceError::NotFound)
            }
        })
    }
}

fn counter() -> Arc<Counter> {
    Arc::new(Counter {
        calls: AtomicU64::new(0),
        updates: watch::channel(0).0,
    })
}

#[tokio::test]
async fn many_concurrent_callers_share_one_client() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let (server_tls, client_tls) = dev_tls(dir.path());
    let source = counter();
    let server = Server::start(localhost0(), server_tls, source.clone()).await;
    let client = Arc::new(ReadIndexClient::new(vec![server.addr], client_tls));

    assert_eq!(client.read_index(GROUP).await.unwrap(), 1001);
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..200 {
        let client = Arc::clone(&client);
        calls.spawn(async move { client.read_index(GROUP).await.unwrap() });
    }
    let mut seen = Vec::new();
    while let Some(index) = calls.join_next().await {
        seen.push(index.unwrap());
    }
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), 200, "every caller got its own answer");
    assert_eq!(source.calls.load(Ordering::Relaxed), 201);

    let err = client.read_index(7).await.unwrap_err();
    assert!(
        matches!(err, LogStreamError::Source(SourceError::NotFound)),
        "{err}"
    );
    server.stop().await;
}

#[tokio::test]
async fn the_client_reconnects_after_the_server_restarts() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    // An address of its own, so nothing else can take the port while the server is down.
    let host = Host::reserve();
    let (server_tls, client_tls) = dev_tls_for(dir.path(), &[host.ip().to_string()]);
    let server = Server::start(host.addr(LOGSTREAM_PORT), server_tls, counter()).await;
    let addr = server.addr;
    let client = ReadIndexClient::new(vec![addr], client_tls);
    assert_eq!(client.read_index(GROUP).await.unwrap(), 1001);
    server.stop().await;

    let server = restart(addr, dir.path(), counter()).await;
    // The old connection was closed by the server; the client notices and reconnects.
    assert_eq!(client.read_index(GROUP).await.unwrap(), 1001);
    server.stop().await;
}

#[tokio::test]
async fn a_silent_upstream_is_skipped_within_the_idle_timeout() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let (server_tls, client_tls) = dev_tls(dir.path());
    let server = Server::start(localhost0(), server_tls, counter()).await;
    // A UDP port where nobody answers QUIC.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let client = ReadIndexClient::new(vec![silent.local_addr().unwrap(), server.addr], client_tls);
    let start = Instant::now();
    assert_eq!(client.read_index(GROUP).await.unwrap(), 1001);
    let took = start.elapsed();
    assert!(
        took < mango_logstream::IDLE_TIMEOUT + Duration::from_secs(1),
        "{took:?}"
    );
    server.stop().await;
}
