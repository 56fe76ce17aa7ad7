//! The following end: subscribe to a group, apply what arrives into a [`LogSink`], reconnect
//! on any error.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mango_proto::mangologpb as pb;
use pb::frame::Kind;
use tokio::sync::{mpsc, watch};

use crate::endpoint::Dialer;
use crate::error::LogStreamError;
use crate::frame::{self, MAX_FRAME, Transit, entries_from, error_from};
use crate::source::LogSink;
use crate::tls::ClientTls;

/// The first wait before reconnecting after an error.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
/// The longest wait before reconnecting.
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Follows `group` from the first reachable of `upstreams` into `sink` until `shutdown`.
///
/// Subscribes from `sink.next_index(group)`, applies entries in order (checking they continue
/// exactly where the sink is), installs a snapshot when the upstream streams one (it does when
/// the wanted index is compacted), passes every stamp on (the upstream sends one at least every
/// 100 ms), and on any error reconnects with capped backoff to the next upstream, resuming from
/// `sink.next_index(group)` again. An `append` or `install` in progress when `shutdown`
/// resolves is waited for. Reports nothing else; logs with tracing.
pub async fn follow(
    upstreams: Vec<SocketAddr>,
    tls: ClientTls,
    group: u64,
    sink: Arc<dyn LogSink>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopper = tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let mut dialer = match Dialer::new(upstreams, &tls) {
        Ok(dialer) => dialer,
        Err(e) => {
            tracing::error!(group, error = %e, "logstream follower cannot start");
            stopped(stop_rx).await;
            return;
        }
    };
    let mut backoff = BACKOFF_MIN;
    loop {
        let mut progress = false;
        let result = session(&mut dialer, group, &sink, stop_rx.clone(), &mut progress).await;
        match result {
            Ok(()) => break,
            Err(_) if *stop_rx.borrow() => break,
            Err(e) => {
                tracing::warn!(group, error = %e, "logstream follower reconnecting");
                dialer.advance();
            }
        }
        if progress {
            backoff = BACKOFF_MIN;
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = stopped(stop_rx.clone()) => break,
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
    stopper.abort();
    dialer.close().await;
}

/// Resolves once the shutdown flag is set (or its sender is gone).
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// One connection's subscription; `Ok` only when stopped.
async fn session(
    dialer: &mut Dialer,
    group: u64,
    sink: &Arc<dyn LogSink>,
    stop: watch::Receiver<bool>,
    progress: &mut bool,
) -> Result<(), LogStreamError> {
    let conn = tokio::select! {
        conn = dialer.connect() => conn?,
        () = stopped(stop.clone()) => return Ok(()),
    };
    let result = subscribe(&conn, group, sink, stop, progress).await;
    let reason: &[u8] = if result.is_ok() {
        b"shutdown"
    } else {
        b"error"
    };
    conn.close(quinn::VarInt::from_u32(0), reason);
    result
}

async fn subscribe(
    conn: &quinn::Connection,
    group: u64,
    sink: &Arc<dyn LogSink>,
    stop: watch::Receiver<bool>,
    progress: &mut bool,
) -> Result<(), LogStreamError> {
    let (mut send, mut recv) = conn
        .open_bi()
        .await
        .map_err(|e| LogStreamError::Connection(e.to_string()))?;
    let from = sink.next_index(group);
    let request = pb::Request {
        kind: Some(pb::request::Kind::Subscribe(pb::Subscribe { group, from })),
    };
    frame::write(&mut send, &request).await?;
    // The client says nothing more on this stream.
    let _ = send.finish();
    tracing::info!(group, from, upstream = %conn.remote_address(), "logstream following");
    let mut next = from;
    let mut stamps = Stamps {
        conn,
        transit: Transit::new(),
        sink: Arc::clone(sink),
        group,
    };
    loop {
        let Some(kind) = next_frame(&mut recv, &stop).await? else {
            return Ok(());
        };
        match kind {
            Kind::Entries(batch) => {
                let entries = entries_from(batch);
                next = append(sink, group, next, entries).await?;
                *progress = true;
            }
            Kind::Stamp(stamp) => {
                stamps.arrived(&stamp);
                *progress = true;
            }
            Kind::SnapshotBegin(begin) => {
                install(&mut recv, &stop, &mut stamps, begin).await?;
                next = begin.index + 1;
                *progress = true;
            }
            Kind::Error(e) => return Err(error_from(e)),
            Kind::SnapshotChunk(_) | Kind::SnapshotEnd(_) | Kind::ReadIndex(_) => {
                return Err(LogStreamError::Protocol("unexpected frame".into()));
            }
        }
    }
}

/// Passes the stamps of one connection to the sink, aged by their time on the way.
struct Stamps<'a> {
    /// For its RTT estimate.
    conn: &'a quinn::Connection,
    /// Queueing-delay estimate of this connection.
    transit: Transit,
    /// Where the stamps go.
    sink: Arc<dyn LogSink>,
    /// The followed group.
    group: u64,
}

impl Stamps<'_> {
    fn arrived(&mut self, stamp: &pb::Stamp) {
        let now = Instant::now();
        let stamp = self.transit.arrived(stamp, now, self.conn.rtt());
        self.sink.stamp(self.group, stamp, now);
    }
}

/// The next frame's content; `None` when stopped; an error when the stream ends or breaks.
async fn next_frame(
    recv: &mut quinn::RecvStream,
    stop: &watch::Receiver<bool>,
) -> Result<Option<Kind>, LogStreamError> {
    let frame = tokio::select! {
        frame = frame::read::<pb::Frame>(recv, MAX_FRAME) => frame?,
        () = stopped(stop.clone()) => return Ok(None),
    };
    match frame {
        Some(pb::Frame { kind: Some(kind) }) => Ok(Some(kind)),
        Some(pb::Frame { kind: None }) => Err(LogStreamError::Protocol("empty frame".into())),
        None => Err(LogStreamError::Connection(
            "the upstream ended the stream".into(),
        )),
    }
}

/// Checks that `entries` continue at `next` without gaps and appends them; the index after
/// the last.
async fn append(
    sink: &Arc<dyn LogSink>,
    group: u64,
    next: u64,
    entries: Vec<crate::LogEntry>,
) -> Result<u64, LogStreamError> {
    let mut expected = next;
    for e in &entries {
        if e.index != expected {
            return Err(LogStreamError::Protocol(format!(
                "entry {} where {expected} was due",
                e.index
            )));
        }
        expected += 1;
    }
    if entries.is_empty() {
        return Ok(next);
    }
    let sink = Arc::clone(sink);
    tokio::task::spawn_blocking(move || sink.append(group, entries))
        .await
        .map_err(|e| LogStreamError::Sink(format!("append task: {e}")))?
        .map_err(LogStreamError::Sink)?;
    Ok(expected)
}

/// What the network side hands the installing thread.
enum Piece {
    /// The next bytes of the snapshot.
    Chunk(Bytes),
    /// All bytes were delivered and checked.
    End,
}

/// Reads the snapshot's chunks that follow a `SnapshotBegin` into `sink.install`, which runs
/// on a blocking thread at most a few chunks behind the network.
async fn install(
    recv: &mut quinn::RecvStream,
    stop: &watch::Receiver<bool>,
    stamps: &mut Stamps<'_>,
    begin: pb::SnapshotBegin,
) -> Result<(), LogStreamError> {
    let group = stamps.group;
    let (tx, rx) = mpsc::channel::<Piece>(4);
    let installer = {
        let sink = Arc::clone(&stamps.sink);
        tokio::task::spawn_blocking(move || {
            let mut reader = PieceReader {
                rx,
                current: Bytes::new(),
                ended: false,
            };
            sink.install(group, begin.index, begin.term, &mut reader)
        })
    };
    tracing::info!(
        group,
        index = begin.index,
        term = begin.term,
        "logstream: installing a snapshot"
    );
    let streamed = stream_snapshot(recv, stop, stamps, &tx).await;
    // Without `End` the reader reports a broken transfer and the sink keeps its old state.
    drop(tx);
    let installed = installer
        .await
        .map_err(|e| LogStreamError::Sink(format!("install task: {e}")))?;
    streamed?;
    installed.map_err(LogStreamError::Sink)?;
    tracing::info!(group, index = begin.index, "logstream: snapshot installed");
    Ok(())
}

async fn stream_snapshot(
    recv: &mut quinn::RecvStream,
    stop: &watch::Receiver<bool>,
    stamps: &mut Stamps<'_>,
    tx: &mpsc::Sender<Piece>,
) -> Result<(), LogStreamError> {
    let mut crc = crc32fast::Hasher::new();
    let mut total = 0u64;
    let gone = || LogStreamError::Sink("the sink stopped reading the snapshot".into());
    loop {
        let Some(kind) = next_frame(recv, stop).await? else {
            return Err(LogStreamError::Connection(
                "stopped during a snapshot".into(),
            ));
        };
        match kind {
            Kind::SnapshotChunk(chunk) => {
                crc.update(&chunk.data);
                total += chunk.data.len() as u64;
                tx.send(Piece::Chunk(chunk.data))
                    .await
                    .map_err(|_| gone())?;
            }
            Kind::SnapshotEnd(end) => {
                let crc = crc.finalize();
                if end.total_bytes != total || end.crc32 != crc {
                    return Err(LogStreamError::Protocol(format!(
                        "snapshot check failed: {total} bytes crc {crc:08x}, sender says {} bytes crc {:08x}",
                        end.total_bytes, end.crc32
                    )));
                }
                tx.send(Piece::End).await.map_err(|_| gone())?;
                return Ok(());
            }
            Kind::Stamp(stamp) => stamps.arrived(&stamp),
            Kind::Error(e) => return Err(error_from(e)),
            Kind::Entries(_) | Kind::SnapshotBegin(_) | Kind::ReadIndex(_) => {
                return Err(LogStreamError::Protocol(
                    "unexpected frame in a snapshot".into(),
                ));
            }
        }
    }
}

/// `std::io::Read` over the pieces the network side sends; an error if the channel closes
/// before `End`.
struct PieceReader {
    /// Pieces from the network side.
    rx: mpsc::Receiver<Piece>,
    /// What is left of the current chunk.
    current: Bytes,
    /// `End` was received.
    ended: bool,
}

impl std::io::Read for PieceReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            if self.ended || buf.is_empty() {
                return Ok(0);
            }
            match self.rx.blocking_recv() {
                Some(Piece::Chunk(chunk)) => self.current = chunk,
                Some(Piece::End) => self.ended = true,
                None => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the snapshot transfer broke off",
                    ));
                }
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current = self.current.slice(n..);
        Ok(n)
    }
}
