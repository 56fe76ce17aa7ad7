//! The OS thread a simulated node's Raft loop runs on, in lock-step with the simulation.
//!
//! raft-engine caches the last block it read in a thread-local, keyed by file and offset:
//! several engines read on one thread would serve each other's blocks (seed 37 found it: an
//! entry of one node read back as another's). So each simulated node owns a thread, as it
//! would own a process, and everything that touches its engine runs there. The host's task
//! hands it one piece of work at a time and waits for the answer, so only one thread ever
//! runs at once and the run stays deterministic.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Instant;

use std::path::{Path, PathBuf};

use mango_consensus::node::{GroupBootstrap, NodeConfig, RaftHandle, Transport, start_stepped};
use mango_consensus::transport::{PeerUrls, SnapshotSink, SnapshotSource};
use mango_consensus::{LogStore, LogStoreConfig, SnapshotProvider};
use mango_store::backend::redb::RedbBackend;
use mango_store::{Store, StoreOptions};
use mango_voter::lessor::Lessor;
use mango_voter::machine::{Staging, StoreMachine, StoreSnapshots};
use raft::eraftpb::{Message, MessageType};
use tokio::sync::mpsc::UnboundedSender;

use crate::wire::Datagram;

use crate::invariants::digest;
use crate::invariants::log_matching::LogSnapshot;
use crate::machine::{Output, SimMachine};
use crate::record::Shared;

/// What a node shows the invariants at one moment: each group's Raft log, and each group's
/// store HashKV (group, revision, hash) at every multiple of [`HASH_EVERY`] revisions it
/// reached since the last look.
pub type Observed = (Vec<LogSnapshot>, Vec<(u64, i64, u32)>);

/// Revisions between the store hashes the convergence invariant compares.
const HASH_EVERY: i64 = 25;

enum Work {
    Step(Instant, mpsc::SyncSender<Result<bool, String>>),
    Snapshot(u64, mpsc::SyncSender<Observed>),
}

/// Raft log entries kept between compactions, and behind the applied index after one: small,
/// so that a node that was down for a while catches up by snapshot.
const SNAPSHOT_COUNT: u64 = 40;
const CATCH_UP_ENTRIES: u64 = 2;

/// Where a node stages the snapshot of `group` at `index` it received.
pub fn staging_path(dir: &Path, group: u64, index: u64) -> PathBuf {
    Staging(dir.join("staging")).staging_path(group, index)
}

/// Sends Raft messages to the node's socket task; a snapshot message travels with the
/// store's bytes.
pub struct SimTransport {
    me: u64,
    out: UnboundedSender<(u64, Vec<u8>)>,
    snapshots: Arc<StoreSnapshots>,
    handle: RaftHandle<Output>,
}

impl Transport for SimTransport {
    fn send(&mut self, group: u64, msgs: Vec<Message>) {
        for m in msgs {
            let to = m.to;
            let datagram = if m.get_msg_type() == MessageType::MsgSnapshot {
                let data: Result<Vec<u8>, String> = self
                    .snapshots
                    .chunks(group, m.get_snapshot())
                    .and_then(|chunks| chunks.collect::<Result<Vec<_>, _>>().map(|c| c.concat()));
                let Ok(data) = data else {
                    self.handle.report_snapshot(group, to, false);
                    continue;
                };
                // Sent, as far as this node can tell; if the datagram is lost, the follower
                // rejects the next append and Raft sends a snapshot again.
                self.handle.report_snapshot(group, to, true);
                Datagram::Snapshot {
                    from: self.me,
                    group,
                    message: Box::new(m),
                    data,
                }
            } else {
                Datagram::Raft {
                    from: self.me,
                    group,
                    message: Box::new(m),
                }
            };
            let _ = self.out.send((to, datagram.encode()));
        }
    }
}

/// What the node's thread needs to start.
pub struct Start {
    pub id: u64,
    pub dir: PathBuf,
    /// Raft groups 0..groups, each with every node as a voter.
    pub groups: u64,
    /// The fault switches the log and the store open their files behind.
    pub disk: crate::disk::NodeDisk,
    pub config: NodeConfig,
    pub voters: Vec<u64>,
    pub out: UnboundedSender<(u64, Vec<u8>)>,
    pub record: Shared,
    pub logger: slog::Logger,
    pub now: Instant,
}

/// The node's thread; dropping it stops the node and waits for the thread to end, so the
/// files are closed before a restart opens them again.
pub struct NodeThread {
    work: Option<mpsc::Sender<Work>>,
    thread: Option<JoinHandle<()>>,
}

/// A started node: its thread, its Raft handle and its store (for reads).
pub type Running = (NodeThread, RaftHandle<Output>, Arc<Store<RedbBackend>>);

/// The simulated clock in milliseconds, for log lines written on node threads.
pub static CLOCK_MS: AtomicU64 = AtomicU64::new(0);

impl NodeThread {
    /// Opens the node's log and store and starts its Raft loop on a new thread.
    pub fn start(start: Start) -> Result<Running, String> {
        let (work_tx, work_rx) = mpsc::channel::<Work>();
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        let groups = start.groups;
        let thread = std::thread::Builder::new()
            .name(format!("sim-n{}", start.id))
            .spawn(move || {
                let opened = open(start);
                let (mut node, log, handle, store) = match opened {
                    Ok(parts) => parts,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok((handle, store.clone())));
                // Hashed up to here, per group (from scratch after a restart: a store restored
                // from a snapshot, or replayed from the log, is checked again).
                let mut hashed = vec![0i64; groups as usize];
                while let Ok(work) = work_rx.recv() {
                    match work {
                        Work::Step(now, reply) => {
                            let _ = reply.send(node.step(now));
                        }
                        Work::Snapshot(at_ms, reply) => {
                            let mut observed: Observed = (Vec::new(), Vec::new());
                            for (group, hashed) in hashed.iter_mut().enumerate() {
                                let group = group as u64;
                                observed
                                    .0
                                    .extend(log_snapshot(node_id(&log), group, at_ms, &log));
                                observed.1.extend(
                                    store_hashes(&store, group, hashed)
                                        .into_iter()
                                        .map(|(rev, hash)| (group, rev, hash)),
                                );
                            }
                            let _ = reply.send(observed);
                        }
                    }
                }
                drop(node);
            })
            .map_err(|e| format!("spawning a node thread: {e}"))?;
        let (handle, store) = ready_rx
            .recv()
            .map_err(|_| "the node thread ended while starting".to_string())??;
        Ok((
            Self {
                work: Some(work_tx),
                thread: Some(thread),
            },
            handle,
            store,
        ))
    }

    /// One step of the Raft loop at `now` (see `SteppedNode::step`).
    pub fn step(&mut self, now: Instant) -> Result<bool, String> {
        CLOCK_MS.store(crate::record::now_ms(), Ordering::Relaxed);
        let (tx, rx) = mpsc::sync_channel(1);
        let answer = match self.send(Work::Step(now, tx)) {
            Ok(()) => rx.recv().ok(),
            Err(_) => None,
        };
        match answer {
            Some(result) => result,
            None => Err(self.why_ended()),
        }
    }

    /// Why the thread ended: its panic message, if it panicked (raft-rs panics on broken
    /// invariants, such as a commit index beyond the log).
    fn why_ended(&mut self) -> String {
        self.work.take();
        let Some(thread) = self.thread.take() else {
            return "the node thread ended".into();
        };
        match thread.join() {
            Ok(()) => "the node thread ended".into(),
            Err(panic) => {
                let text = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                format!("the node panicked: {text}")
            }
        }
    }

    /// Each group's Raft log as (index, term, digest), and the new store hashes.
    pub fn observe(&self, at_ms: u64) -> Observed {
        let (tx, rx) = mpsc::sync_channel(1);
        if self.send(Work::Snapshot(at_ms, tx)).is_err() {
            return (Vec::new(), Vec::new());
        }
        rx.recv().unwrap_or_default()
    }

    fn send(&self, work: Work) -> Result<(), String> {
        self.work
            .as_ref()
            .ok_or_else(|| "the node stopped".to_string())?
            .send(work)
            .map_err(|_| "the node thread ended".to_string())
    }
}

impl Drop for NodeThread {
    fn drop(&mut self) {
        self.work.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

type Opened = (
    mango_consensus::node::SteppedNode<SimMachine, SimTransport>,
    (u64, LogStore),
    RaftHandle<Output>,
    Arc<Store<RedbBackend>>,
);

fn node_id(log: &(u64, LogStore)) -> u64 {
    log.0
}

fn open(start: Start) -> Result<Opened, String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    std::fs::create_dir_all(&start.dir).map_err(|e| err(&e))?;
    let log = LogStore::open(LogStoreConfig {
        recovery_threads: 1,
        disk_faults: Some(start.disk.log.clone()),
        ..LogStoreConfig::new(start.dir.join("log"))
    })
    .map_err(|e| err(&e))?;
    // As on a voter: applied batches are not synced; the Raft log replays what a crash lost.
    let store = Arc::new(
        Store::open_path_with_faults(
            start.dir.join("store.redb"),
            StoreOptions {
                durable_apply: false,
            },
            start.disk.store.clone(),
        )
        .map_err(|e| err(&e))?,
    );
    let staging = start.dir.join("staging");
    std::fs::create_dir_all(&staging).map_err(|e| err(&e))?;
    // The physical compaction thread is not simulated: nothing compacts MVCC history here.
    let (compactor, _) = std::sync::mpsc::sync_channel(1);
    let machine = SimMachine {
        node: start.id,
        inner: StoreMachine {
            store: store.clone(),
            log: log.clone(),
            snapshot_count: SNAPSHOT_COUNT,
            catch_up_entries: CATCH_UP_ENTRIES,
            staging: Staging(staging),
            compactor,
            peers: PeerUrls::default(),
            revisions: tokio::sync::watch::channel(0).0,
            lessor: Arc::new(Lessor::default()),
            apply_delay: std::time::Duration::ZERO,
            commit_durations: None,
        },
        record: start.record,
    };
    let snapshots = Arc::new(StoreSnapshots {
        store: store.clone(),
        log: log.clone(),
    });
    let (id, out) = (start.id, start.out);
    let provider: Arc<dyn SnapshotProvider> = snapshots.clone();
    let (handle, node) = start_stepped(
        start.config,
        log.clone(),
        (0..start.groups)
            .map(|group| GroupBootstrap {
                group,
                initial_voters: start.voters.clone(),
            })
            .collect(),
        machine,
        |handle| SimTransport {
            me: id,
            out,
            snapshots,
            handle,
        },
        Some(provider),
        start.logger,
        start.now,
    )
    .map_err(|e| err(&e))?;
    Ok((node, (start.id, log), handle, store))
}

/// `group`'s HashKV at every multiple of `HASH_EVERY` above `hashed` up to the store's
/// revision.
fn store_hashes(store: &Store<RedbBackend>, group: u64, hashed: &mut i64) -> Vec<(i64, u32)> {
    let Ok(view) = store.read(group) else {
        return Vec::new();
    };
    let head = view.revision();
    let mut out = Vec::new();
    let mut rev = (*hashed / HASH_EVERY + 1) * HASH_EVERY;
    while rev <= head {
        if let Ok(h) = view.hash_kv(rev) {
            out.push((rev, h.hash));
        }
        *hashed = rev;
        rev += HASH_EVERY;
    }
    out
}

fn log_snapshot(node: u64, group: u64, at_ms: u64, log: &(u64, LogStore)) -> Option<LogSnapshot> {
    let storage = log.1.group_storage(group);
    let (first, last) = (storage.first_index().ok()?, storage.last_index().ok()?);
    let entries = if last >= first {
        storage.entries(first, last + 1, None).ok()?
    } else {
        Vec::new()
    };
    Some(LogSnapshot {
        node,
        group,
        at_ms,
        entries: entries
            .iter()
            .map(|e| (e.index, e.term, digest(&e.data)))
            .collect(),
    })
}
