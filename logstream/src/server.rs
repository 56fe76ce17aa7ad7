//! The serving end: accept connections, then per stream either a subscription (entries,
//! stamps, snapshots) or one read index.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use mango_proto::mangologpb as pb;
use pb::frame::Kind;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::endpoint::transport;
use crate::error::LogStreamError;
use crate::frame::{self, entries_frame, error_frame, invalid_frame, stamp_frame};
use crate::source::{LogEntry, LogSource, SourceError};
use crate::tls::ServerTls;
use crate::{BATCH_BYTES, MAX_REQUEST, STAMP_INTERVAL};

/// Connections served at once; more are refused.
const MAX_CONNECTIONS: usize = 4096;

/// How long a client has to send its request after opening a stream.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a read index may take at the source before the client is told `Unavailable`.
const READ_INDEX_TIMEOUT: Duration = Duration::from_secs(10);

/// How long shutdown waits for streams to end before dropping them.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// Serves `source` on `addr` (UDP) until `shutdown` resolves; returns the bound address
/// (port 0 → the real port) and the task, which ends once the endpoint is closed.
pub async fn serve(
    addr: SocketAddr,
    tls: ServerTls,
    source: Arc<dyn LogSource>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), LogStreamError> {
    let mut config = tls.quic_config()?;
    config.transport_config(transport());
    let endpoint = quinn::Endpoint::server(config, addr)
        .map_err(|source| LogStreamError::Bind { addr, source })?;
    let local = endpoint
        .local_addr()
        .map_err(|source| LogStreamError::Bind { addr, source })?;
    tracing::info!(addr = %local, "logstream serving");
    let task = tokio::spawn(accept_loop(endpoint, source, shutdown));
    Ok((local, task))
}

async fn accept_loop(
    endpoint: quinn::Endpoint,
    source: Arc<dyn LogSource>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let mut conns = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            incoming = endpoint.accept() => {
                let Some(incoming) = incoming else { break };
                if conns.len() >= MAX_CONNECTIONS {
                    tracing::warn!(peer = %incoming.remote_address(), "logstream: too many connections, refusing");
                    incoming.refuse();
                    continue;
                }
                conns.spawn(connection(incoming, Arc::clone(&source)));
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    endpoint.close(quinn::VarInt::from_u32(0), b"shutdown");
    // Every stream's next write fails now; let them end by themselves, briefly.
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    conns.shutdown().await;
    let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
    tracing::info!("logstream server stopped");
}

async fn connection(incoming: quinn::Incoming, source: Arc<dyn LogSource>) {
    let peer = incoming.remote_address();
    let conn = match incoming.await {
        Ok(conn) => conn,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "logstream handshake failed");
            return;
        }
    };
    tracing::debug!(%peer, "logstream connection");
    let mut streams = JoinSet::new();
    loop {
        tokio::select! {
            accepted = conn.accept_bi() => match accepted {
                Ok((send, recv)) => {
                    streams.spawn(stream(send, recv, Arc::clone(&source), peer));
                }
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "logstream connection ended");
                    break;
                }
            },
            Some(_) = streams.join_next(), if !streams.is_empty() => {}
        }
    }
    streams.shutdown().await;
}

/// One stream: read the request, then serve it.
async fn stream(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    source: Arc<dyn LogSource>,
    peer: SocketAddr,
) {
    let request = tokio::time::timeout(
        REQUEST_TIMEOUT,
        frame::read::<pb::Request>(&mut recv, MAX_REQUEST),
    )
    .await;
    let result = match request {
        Ok(Ok(Some(pb::Request {
            kind: Some(pb::request::Kind::Subscribe(sub)),
        }))) => {
            tracing::debug!(%peer, group = sub.group, from = sub.from, "logstream subscription");
            let _counted = Subscribed::new();
            subscription(&mut send, source, sub.group, sub.from).await
        }
        Ok(Ok(Some(pb::Request {
            kind: Some(pb::request::Kind::ReadIndex(req)),
        }))) => read_index(&mut send, source, req.group).await,
        Ok(Ok(_)) => {
            let _ = frame::write(&mut send, &invalid_frame("expected a request")).await;
            Err(LogStreamError::Protocol("no request".into()))
        }
        Ok(Err(e)) => Err(e),
        Err(_) => Err(LogStreamError::Timeout),
    };
    match result {
        Ok(()) => {
            let _ = send.finish();
        }
        Err(e) => {
            // Not a clean end: the client must not take what it got for the whole answer.
            let _ = send.reset(quinn::VarInt::from_u32(1));
            tracing::debug!(%peer, error = %e, "logstream stream ended");
        }
    }
}

/// Subscriptions being served now by this process (every `serve` of it together: a
/// process is one voter or one learner).
static SUBSCRIBERS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The log-stream subscriptions this process serves now (for metrics).
pub fn subscribers() -> u64 {
    SUBSCRIBERS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Counts one subscription while it lives.
struct Subscribed;

impl Subscribed {
    fn new() -> Self {
        SUBSCRIBERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self
    }
}

impl Drop for Subscribed {
    fn drop(&mut self) {
        SUBSCRIBERS.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

async fn read_index(
    send: &mut quinn::SendStream,
    source: Arc<dyn LogSource>,
    group: u64,
) -> Result<(), LogStreamError> {
    let answer = match tokio::time::timeout(READ_INDEX_TIMEOUT, source.read_index(group)).await {
        Ok(Ok(index)) => frame::frame(Kind::ReadIndex(pb::ReadIndexResponse { index })),
        Ok(Err(e)) => error_frame(&e),
        Err(_) => error_frame(&SourceError::Unavailable("read index timed out".into())),
    };
    frame::write(send, &answer).await
}

/// Serves a subscription until the client goes away or the source fails: entries in batches
/// of about [`BATCH_BYTES`], each followed by a stamp; a stamp every [`STAMP_INTERVAL`] while
/// idle; a snapshot when the wanted index is compacted. `Ok` after an `Error` frame was sent.
async fn subscription(
    send: &mut quinn::SendStream,
    source: Arc<dyn LogSource>,
    group: u64,
    from: u64,
) -> Result<(), LogStreamError> {
    let mut updates = source.commit_updates();
    let stopped = send.stopped();
    tokio::pin!(stopped);
    let mut next = from;
    // A stamp right away, on the still empty stream: the subscriber learns the commit index at
    // once and measures its baseline transit time (see `frame::Transit`).
    send_stamp(send, &*source, group).await?;
    let mut last_stamp = Instant::now();
    // A snapshot was sent and no entry since.
    let mut just_snapshotted = false;
    loop {
        updates.borrow_and_update();
        let src = Arc::clone(&source);
        let fetched = tokio::task::spawn_blocking(move || src.entries(group, next, BATCH_BYTES))
            .await
            .map_err(|e| LogStreamError::Connection(format!("source task: {e}")))?;
        match fetched {
            Ok(entries) if !entries.is_empty() => {
                next = send_entries(send, &entries, next).await?;
                just_snapshotted = false;
                send_stamp(send, &*source, group).await?;
                last_stamp = Instant::now();
                continue;
            }
            Ok(_) => {}
            Err(SourceError::Compacted { first_index }) if just_snapshotted => {
                // The source's snapshot is older than its own log: sending it again would loop.
                tracing::error!(
                    group,
                    next,
                    first_index,
                    "logstream: the snapshot does not reach the log"
                );
                let e = SourceError::Unavailable(format!(
                    "the snapshot ends before the first index kept ({first_index})"
                ));
                frame::write(send, &error_frame(&e)).await?;
                return Ok(());
            }
            Err(SourceError::Compacted { first_index }) => {
                tracing::info!(
                    group,
                    from = next,
                    first_index,
                    "logstream: sending a snapshot"
                );
                match send_snapshot(send, &source, group).await? {
                    Some(index) => next = index + 1,
                    None => return Ok(()),
                }
                just_snapshotted = true;
                last_stamp = Instant::now();
                continue;
            }
            Err(e) => {
                frame::write(send, &error_frame(&e)).await?;
                return Ok(());
            }
        }
        // Caught up: stamp if due, then wait for a commit, the next stamp, or the client.
        if last_stamp.elapsed() >= STAMP_INTERVAL {
            send_stamp(send, &*source, group).await?;
            last_stamp = Instant::now();
        }
        let deadline = last_stamp + STAMP_INTERVAL;
        tokio::select! {
            changed = updates.changed() => {
                if changed.is_err() {
                    // The source dropped its sender: no more wake-ups, poll at the stamp rate.
                    tokio::time::sleep_until(deadline).await;
                }
            }
            () = tokio::time::sleep_until(deadline) => {}
            _ = &mut stopped => return Ok(()),
        }
    }
}

/// Sends `entries` (which must start at `next` and be consecutive) in frames of about
/// [`BATCH_BYTES`]; returns the index after the last.
async fn send_entries(
    send: &mut quinn::SendStream,
    entries: &[LogEntry],
    next: u64,
) -> Result<u64, LogStreamError> {
    let mut expected = next;
    for e in entries {
        if e.index != expected {
            tracing::error!(
                expected,
                got = e.index,
                "logstream: the source returned entries out of order"
            );
            return Err(LogStreamError::Protocol(format!(
                "source returned index {} where {expected} was due",
                e.index
            )));
        }
        expected += 1;
    }
    let mut start = 0;
    while start < entries.len() {
        let mut end = start;
        let mut bytes = 0usize;
        while end < entries.len()
            && (end == start || bytes + entries[end].data.len() <= BATCH_BYTES)
        {
            bytes += entries[end].data.len();
            end += 1;
        }
        frame::write(send, &entries_frame(&entries[start..end])).await?;
        start = end;
    }
    Ok(expected)
}

/// Sends the source's current stamp (none if it has none now: no leader, say).
async fn send_stamp(
    send: &mut quinn::SendStream,
    source: &dyn LogSource,
    group: u64,
) -> Result<(), LogStreamError> {
    match source.stamp(group) {
        Ok(stamp) => frame::write(send, &stamp_frame(stamp)).await,
        Err(e) => {
            tracing::trace!(group, error = %e, "logstream: no stamp");
            Ok(())
        }
    }
}

/// Streams a snapshot of `group`; `Some(index)` of the snapshot when sent, `None` when the
/// source failed (an `Error` frame was sent instead).
async fn send_snapshot(
    send: &mut quinn::SendStream,
    source: &Arc<dyn LogSource>,
    group: u64,
) -> Result<Option<u64>, LogStreamError> {
    let src = Arc::clone(source);
    let making = tokio::task::spawn_blocking(move || src.snapshot(group));
    tokio::pin!(making);
    // Making a snapshot can take a while: keep stamping so the follower stays informed.
    let made = loop {
        tokio::select! {
            made = &mut making => break made,
            () = tokio::time::sleep(STAMP_INTERVAL) => send_stamp(send, &**source, group).await?,
        }
    };
    let snapshot = match made {
        Ok(Ok(snapshot)) => snapshot,
        Ok(Err(e)) => {
            frame::write(send, &error_frame(&e)).await?;
            return Ok(None);
        }
        Err(e) => {
            let e = SourceError::Unavailable(format!("snapshot task: {e}"));
            frame::write(send, &error_frame(&e)).await?;
            return Ok(None);
        }
    };
    let (index, term) = (snapshot.index, snapshot.term);
    frame::write(
        send,
        &frame::frame(Kind::SnapshotBegin(pb::SnapshotBegin { index, term })),
    )
    .await?;
    // The chunks are read on a blocking thread, at most two ahead of the network.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, String>>(2);
    let chunks = snapshot.chunks;
    let producer = tokio::task::spawn_blocking(move || {
        for chunk in chunks {
            let failed = chunk.is_err();
            if tx.blocking_send(chunk).is_err() || failed {
                break;
            }
        }
    });
    let mut crc = crc32fast::Hasher::new();
    let mut total = 0u64;
    while let Some(chunk) = rx.recv().await {
        let chunk = match chunk {
            Ok(chunk) => Bytes::from(chunk),
            Err(e) => {
                let e = SourceError::Unavailable(format!("snapshot: {e}"));
                frame::write(send, &error_frame(&e)).await?;
                return Ok(None);
            }
        };
        crc.update(&chunk);
        total += chunk.len() as u64;
        let mut at = 0;
        while at < chunk.len() {
            let end = (at + BATCH_BYTES).min(chunk.len());
            let piece = pb::SnapshotChunk {
                data: chunk.slice(at..end),
            };
            frame::write(send, &frame::frame(Kind::SnapshotChunk(piece))).await?;
            at = end;
        }
    }
    if producer.await.is_err() {
        let e = SourceError::Unavailable("snapshot reader panicked".into());
        frame::write(send, &error_frame(&e)).await?;
        return Ok(None);
    }
    let end = pb::SnapshotEnd {
        total_bytes: total,
        crc32: crc.finalize(),
    };
    frame::write(send, &frame::frame(Kind::SnapshotEnd(end))).await?;
    tracing::info!(
        group,
        index,
        term,
        bytes = total,
        "logstream: snapshot sent"
    );
    Ok(Some(index))
}
