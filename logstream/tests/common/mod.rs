//! An in-memory log that is both a `LogSource` and a `LogSink`, and helpers: the protocol is
//! what is under test, so the state machine here is just the list of applied entries.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::io::Read;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use mango_logstream::{
    ClientTls, LogEntry, LogSink, LogSource, ReadIndexClient, ServerTls, SnapshotSource,
    SourceError, Stamp,
};
use mango_testkit::wait_until_async;
use tokio::sync::{oneshot, watch};

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// The group every test uses unless it says otherwise.
pub const GROUP: u64 = 0;

/// How the log stamps what it serves.
pub enum StampMode {
    /// A leader with a quorum: its last index, age 0.
    Leader,
    /// A follower of the stream: the last stamp received, aged by the time since.
    Forwarded(Option<(Stamp, Instant)>),
}

struct Inner {
    /// Every applied entry, from index 1 on (a snapshot brings the whole history).
    history: Vec<LogEntry>,
    /// Entries below this are no longer served (`Compacted`).
    first_index: u64,
    stamp: StampMode,
}

/// See the module doc.
pub struct MemLog {
    inner: Mutex<Inner>,
    updates: watch::Sender<u64>,
    /// Forward read indexes here (a learner), else answer the last index (a leader).
    pub upstream: Mutex<Option<Arc<ReadIndexClient>>>,
    /// The highest index `entries` handed out.
    pub served: AtomicU64,
    /// The largest `max_bytes` `entries` was asked for.
    pub max_asked: AtomicU64,
    /// While true, `append` waits (a slow sink).
    pub hold: AtomicBool,
    /// Stamps received as a sink: (stamp, received).
    pub stamps: Mutex<Vec<(Stamp, Instant)>>,
    /// Snapshots installed as a sink.
    pub installs: AtomicU64,
    /// This many of the next snapshots break off after their first chunk.
    pub break_snapshots: AtomicU64,
}

impl MemLog {
    pub fn new(stamp: StampMode) -> Arc<Self> {
        Arc::new(MemLog {
            inner: Mutex::new(Inner {
                history: Vec::new(),
                first_index: 1,
                stamp,
            }),
            updates: watch::channel(0).0,
            upstream: Mutex::new(None),
            served: AtomicU64::new(0),
            max_asked: AtomicU64::new(0),
            hold: AtomicBool::new(false),
            stamps: Mutex::new(Vec::new()),
            installs: AtomicU64::new(0),
            break_snapshots: AtomicU64::new(0),
        })
    }

    /// A leader's log.
    pub fn leader() -> Arc<Self> {
        Self::new(StampMode::Leader)
    }

    /// A learner's log.
    pub fn learner() -> Arc<Self> {
        Self::new(StampMode::Forwarded(None))
    }

    /// Commits `n` new entries of `size` data bytes each (content derived from the index).
    pub fn commit(&self, n: u64, size: usize) {
        let mut inner = self.inner.lock().unwrap();
        let mut index = inner.history.len() as u64;
        for _ in 0..n {
            index += 1;
            inner.history.push(entry(index, size));
        }
        drop(inner);
        self.updates.send_modify(|v| *v += 1);
    }

    /// Stops serving entries below `first_index`.
    pub fn compact(&self, first_index: u64) {
        self.inner.lock().unwrap().first_index = first_index;
    }

    pub fn last_index(&self) -> u64 {
        self.inner.lock().unwrap().history.len() as u64
    }

    pub fn history(&self) -> Vec<LogEntry> {
        self.inner.lock().unwrap().history.clone()
    }
}

/// Entry `index`: term index/100 + 1, `size` bytes derived from the index.
pub fn entry(index: u64, size: usize) -> LogEntry {
    let data: Vec<u8> = (0..size).map(|i| (index as usize + i) as u8).collect();
    LogEntry {
        index,
        term: index / 100 + 1,
        data: Bytes::from(data),
    }
}

fn encode_history(history: &[LogEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in history {
        out.extend_from_slice(&e.index.to_be_bytes());
        out.extend_from_slice(&e.term.to_be_bytes());
        out.extend_from_slice(&(e.data.len() as u32).to_be_bytes());
        out.extend_from_slice(&e.data);
    }
    out
}

fn decode_history(mut bytes: &[u8]) -> Result<Vec<LogEntry>, String> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        if bytes.len() < 20 {
            return Err("truncated".into());
        }
        let index = u64::from_be_bytes(bytes[0..8].try_into().unwrap());
        let term = u64::from_be_bytes(bytes[8..16].try_into().unwrap());
        let len = u32::from_be_bytes(bytes[16..20].try_into().unwrap()) as usize;
        if bytes.len() < 20 + len {
            return Err("truncated".into());
        }
        out.push(LogEntry {
            index,
            term,
            data: Bytes::copy_from_slice(&bytes[20..20 + len]),
        });
        bytes = &bytes[20 + len..];
    }
    Ok(out)
}

impl LogSource for MemLog {
    fn entries(
        &self,
        _group: u64,
        from: u64,
        max_bytes: usize,
    ) -> Result<Vec<LogEntry>, SourceError> {
        self.max_asked
            .fetch_max(max_bytes as u64, Ordering::Relaxed);
        let inner = self.inner.lock().unwrap();
        if from < inner.first_index {
            return Err(SourceError::Compacted {
                first_index: inner.first_index,
            });
        }
        let mut out = Vec::new();
        let mut bytes = 0;
        for e in inner.history.iter().skip((from - 1) as usize) {
            if !out.is_empty() && bytes + e.data.len() > max_bytes {
                break;
            }
            bytes += e.data.len();
            out.push(e.clone());
        }
        if let Some(last) = out.last() {
            self.served.fetch_max(last.index, Ordering::Relaxed);
        }
        Ok(out)
    }

    fn stamp(&self, _group: u64) -> Result<Stamp, SourceError> {
        let inner = self.inner.lock().unwrap();
        match &inner.stamp {
            StampMode::Leader => Ok(Stamp {
                commit: inner.history.len() as u64,
                age: Duration::ZERO,
            }),
            StampMode::Forwarded(Some((stamp, at))) => Ok(stamp.aged(at.elapsed())),
            StampMode::Forwarded(None) => Err(SourceError::Unavailable("no stamp yet".into())),
        }
    }

    fn commit_updates(&self) -> watch::Receiver<u64> {
        self.updates.subscribe()
    }

    fn snapshot(&self, _group: u64) -> Result<SnapshotSource, SourceError> {
        let inner = self.inner.lock().unwrap();
        let last = inner.history.last().cloned();
        let bytes = encode_history(&inner.history);
        drop(inner);
        let (index, term) = last.map_or((0, 0), |e| (e.index, e.term));
        // Uneven chunk sizes, some larger than a frame batch.
        let mut chunks: Vec<Result<Vec<u8>, String>> =
            bytes.chunks(1_500_000).map(|c| Ok(c.to_vec())).collect();
        let broken = self
            .break_snapshots
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok();
        if broken {
            chunks.truncate(1);
            chunks.push(Err("disk error".into()));
        }
        Ok(SnapshotSource {
            index,
            term,
            chunks: Box::new(chunks.into_iter()),
        })
    }

    fn read_index(
        &self,
        group: u64,
    ) -> Pin<Box<dyn Future<Output = Result<u64, SourceError>> + Send>> {
        let upstream = self.upstream.lock().unwrap().clone();
        let last = self.last_index();
        Box::pin(async move {
            match upstream {
                None => Ok(last),
                Some(client) => client
                    .read_index(group)
                    .await
                    .map_err(|e| SourceError::Unavailable(e.to_string())),
            }
        })
    }
}

impl LogSink for MemLog {
    fn next_index(&self, _group: u64) -> u64 {
        self.last_index() + 1
    }

    fn append(&self, _group: u64, entries: Vec<LogEntry>) -> Result<(), String> {
        // A slow sink: blocks (polling the flag) until the test releases it.
        while self.hold.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut inner = self.inner.lock().unwrap();
        for e in entries {
            let want = inner.history.len() as u64 + 1;
            assert_eq!(e.index, want, "gap or duplicate in the appended entries");
            inner.history.push(e);
        }
        drop(inner);
        self.updates.send_modify(|v| *v += 1);
        Ok(())
    }

    fn install(
        &self,
        _group: u64,
        index: u64,
        _term: u64,
        chunks: &mut dyn Read,
    ) -> Result<(), String> {
        let mut bytes = Vec::new();
        chunks.read_to_end(&mut bytes).map_err(|e| e.to_string())?;
        let history = decode_history(&bytes)?;
        if history.last().map_or(0, |e| e.index) != index {
            return Err("snapshot index does not match its content".into());
        }
        self.inner.lock().unwrap().history = history;
        self.installs.fetch_add(1, Ordering::Relaxed);
        self.updates.send_modify(|v| *v += 1);
        Ok(())
    }

    fn stamp(&self, _group: u64, stamp: Stamp, received: Instant) {
        self.stamps.lock().unwrap().push((stamp, received));
        let mut inner = self.inner.lock().unwrap();
        if let StampMode::Forwarded(last) = &mut inner.stamp {
            *last = Some((stamp, received));
        }
    }
}

/// A development server certificate in `dir` and a client that trusts exactly it.
pub fn dev_tls(dir: &std::path::Path) -> (ServerTls, ClientTls) {
    dev_tls_for(dir, &[])
}

/// [`dev_tls`] for a server at one of `names` too (e.g. a reserved loopback address).
pub fn dev_tls_for(dir: &std::path::Path, names: &[String]) -> (ServerTls, ClientTls) {
    let server = ServerTls::dev(dir, names).unwrap();
    let client = ClientTls::trust_pem(server.cert_pem().as_bytes()).unwrap();
    (server, client)
}

/// A server on `addr` again, on a fresh endpoint, once the stopped one's socket is
/// released (the TLS certificate from `dir`, generated there before).
pub async fn restart(
    addr: SocketAddr,
    dir: &std::path::Path,
    source: Arc<dyn LogSource>,
) -> Server {
    let (stop, task) = wait_until_async(
        Duration::from_secs(10),
        format!("a server bound to {addr} again"),
        || {
            let source = source.clone();
            async move {
                let tls = ServerTls::dev(dir, &[]).map_err(|e| e.to_string())?;
                let (tx, rx) = oneshot::channel::<()>();
                let (_, task) = mango_logstream::serve(addr, tls, source, async move {
                    let _ = rx.await;
                })
                .await
                .map_err(|e| e.to_string())?;
                Ok::<_, String>((tx, task))
            }
        },
    )
    .await;
    Server::adopt(addr, stop, task)
}

/// A running server: its address and the means to stop it.
pub struct Server {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Server {
    pub async fn start(addr: SocketAddr, tls: ServerTls, source: Arc<dyn LogSource>) -> Server {
        let (tx, rx) = oneshot::channel::<()>();
        let (addr, task) = mango_logstream::serve(addr, tls, source, async move {
            let _ = rx.await;
        })
        .await
        .unwrap();
        Server {
            addr,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// A server started by hand.
    pub fn adopt(
        addr: SocketAddr,
        stop: oneshot::Sender<()>,
        task: tokio::task::JoinHandle<()>,
    ) -> Server {
        Server {
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops the server and waits for its task.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .expect("server stops in time")
                .unwrap();
        }
    }
}

/// A running follower and the means to stop it.
pub struct Follower {
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Follower {
    pub fn start(upstreams: Vec<SocketAddr>, tls: ClientTls, sink: Arc<dyn LogSink>) -> Follower {
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(mango_logstream::follow(
            upstreams,
            tls,
            GROUP,
            sink,
            async move {
                let _ = rx.await;
            },
        ));
        Follower {
            stop: Some(tx),
            task: Some(task),
        }
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .expect("follower stops in time")
                .unwrap();
        }
    }
}

/// Waits until `cond` holds, polling (mango-testkit's wait, for a condition that needs no
/// await); panics naming `what` after `limit`.
pub async fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    wait_until_async(limit, what, || std::future::ready(cond())).await
}

/// Port 0 on 127.0.0.1: the server binds it and reports the port.
pub fn localhost0() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}
