//! One simulated node: mango's Raft loop ([`SteppedNode`]) over raft-engine and the store on
//! real files, stepped at simulated instants, its messages sent as datagrams on turmoil's
//! network, and a small client protocol (put, linearizable get) served over the same socket.
//!
//! A crash kills the node's disk switches ([`crate::disk`]) and then drops the host's runtime
//! and so everything in it, as kill -9 drops a process: the files keep what was written to
//! them before, nothing written while the node shuts down reaches them (the store's unsynced
//! batches are lost, as on a voter, and replayed from the Raft log), and a power loss also
//! loses every file's unsynced bytes. A restart opens the same files again.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mango_consensus::node::{ElectionTimeouts, NodeConfig, RaftHandle};
use mango_proto::etcdserverpb::{PutRequest, RangeRequest};
use mango_proto::mangopb::{RaftRequest, raft_request};
use mango_store::backend::redb::RedbBackend;
use mango_store::{Response, Store};
use prost::Message as _;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::sync::mpsc;
use turmoil::net::UdpSocket;

use crate::machine::Output;
use crate::node_thread::{NodeThread, Start, staging_path};
use crate::record::{Shared, now_ms};
use crate::wire::{Answer, Datagram, PORT, Request};

/// How long a node works on a client request before answering that it failed.
const REQUEST_TIMEOUT: Duration = Duration::from_millis(1_000);

/// How often a node records a snapshot of its log for the log-matching invariant.
const LOG_SNAPSHOT_EVERY: Duration = Duration::from_millis(1_000);

/// What a simulated node is.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    /// Its Raft id now (1..=n for founders; a replaced machine gets a new one), and whether
    /// it joins an existing cluster.
    pub identity: crate::membership::Identity,
    /// The founding voters' ids.
    pub initial_voters: Vec<u64>,
    /// Where each node id runs.
    pub directory: crate::membership::Directory,
    /// Where its files are; kept across restarts.
    pub dir: PathBuf,
    /// Raft groups (0..groups), each with every node as a voter.
    pub groups: u64,
    /// The fault switches over its files; kept across restarts.
    pub disk: crate::disk::NodeDisk,
    /// Its seed (the run's seed mixed with its id).
    pub seed: u64,
    /// The share of outgoing Raft messages dropped.
    pub drop_rate: f64,
    /// Raft tick.
    pub tick: Duration,
    /// Ticks before an election.
    pub election_ticks: usize,
    pub record: Shared,
    /// How many times it has started (each start draws from its own RNG stream).
    pub boots: Arc<AtomicU64>,
}

/// The node's software: runs until the host crashes (or the Raft loop fails, which fails the
/// simulation).
pub async fn run(spec: NodeSpec) -> turmoil::Result {
    let boot = spec.boots.fetch_add(1, Ordering::SeqCst);
    // The crash that ended the last boot killed that process; this one may write.
    spec.disk.revive();
    let (id, joins) = spec.identity.get();
    let mut rng = SmallRng::seed_from_u64(spec.seed ^ boot.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let timeouts = Arc::new(Mutex::new(SmallRng::seed_from_u64(rng.random())));
    let config = NodeConfig {
        id,
        tick: spec.tick,
        election_ticks: spec.election_ticks,
        max_size_per_msg: 64 << 10,
        election_timeouts: Some(ElectionTimeouts(Arc::new(move |lo, hi| {
            let mut r = timeouts.lock().unwrap_or_else(|p| p.into_inner());
            r.random_range(lo..hi)
        }))),
        ..Default::default()
    };
    // A replaced machine joins: the leader sends it a snapshot once it is added.
    let voters = if joins {
        Vec::new()
    } else {
        spec.initial_voters.clone()
    };
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<(u64, Vec<u8>)>();
    let (mut node, handle, store) = NodeThread::start(Start {
        id,
        dir: spec.dir.clone(),
        groups: spec.groups,
        disk: spec.disk.clone(),
        config,
        voters,
        out: out_tx,
        record: spec.record.clone(),
        logger: logger(id),
        now: tokio::time::Instant::now().into_std(),
    })?;
    spec.record.event(format!("n{id} started (boot {boot})"));
    let sock =
        Rc::new(UdpSocket::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), PORT)).await?);
    // Large enough for a snapshot of a long run's store; a datagram that fills it may have
    // been cut short, and is dropped (as the network may drop any).
    let mut buf = vec![0u8; 16 << 20];
    let mut next_snapshot = tokio::time::Instant::now() + LOG_SNAPSHOT_EVERY;
    // The last term in which this node saw itself lead, per group.
    let mut last_leader = vec![0u64; spec.groups as usize];
    loop {
        while let Ok((n, from)) = sock.try_recv_from(&mut buf) {
            if n == buf.len() {
                continue;
            }
            match Datagram::decode(&buf[..n]) {
                // For an id this host no longer runs (a stale message to its old member).
                Some(Datagram::Raft { message, .. } | Datagram::Snapshot { message, .. })
                    if message.to != id => {}
                Some(Datagram::Snapshot {
                    group,
                    message,
                    data,
                    ..
                }) => {
                    // Staged before Raft sees the message, as the voter's transport does.
                    let index = message.get_snapshot().get_metadata().get_index();
                    let path = staging_path(&spec.dir, group, index);
                    if std::fs::write(&path, &data).is_ok() {
                        let _ = handle.step(group, *message);
                    }
                }
                Some(Datagram::Raft { group, message, .. }) => {
                    if debug_log() {
                        eprintln!(
                            "{:>8} n{id} recv {:?} from {} index {} log_term {} entries {:?} commit {}",
                            now_ms(),
                            message.get_msg_type(),
                            message.from,
                            message.index,
                            message.log_term,
                            message
                                .entries
                                .iter()
                                .map(|e| (e.index, e.term))
                                .collect::<Vec<_>>(),
                            message.commit
                        );
                    }
                    let _ = handle.step(group, *message);
                }
                Some(Datagram::Request { id: rid, request }) => {
                    let (handle, store, sock) = (handle.clone(), store.clone(), sock.clone());
                    tokio::task::spawn_local(async move {
                        let answer = match tokio::time::timeout(
                            REQUEST_TIMEOUT,
                            serve(&handle, &store, request),
                        )
                        .await
                        {
                            Ok(a) => a,
                            Err(_) => Answer::Failed("timed out".into()),
                        };
                        let _ =
                            sock.try_send_to(&Datagram::Answer { id: rid, answer }.encode(), from);
                    });
                }
                _ => {}
            }
        }
        if !node.step(tokio::time::Instant::now().into_std())? {
            return Ok(());
        }
        while let Ok((to, bytes)) = out_rx.try_recv() {
            if spec.drop_rate > 0.0 && rng.random_bool(spec.drop_rate) {
                continue;
            }
            if let Some(host) = spec.directory.host(to) {
                let addr = SocketAddr::new(turmoil::lookup(host.as_str()), PORT);
                let _ = sock.try_send_to(&bytes, addr);
            }
        }
        for (group, last) in last_leader.iter_mut().enumerate() {
            let group = group as u64;
            if let Ok(status) = handle.status(group)
                && status.leader == id
                && status.term != *last
            {
                *last = status.term;
                let news = spec.record.lock().elections.observe(group, status.term, id);
                if news {
                    spec.record.event(if group == 0 {
                        format!("n{id} leads term {}", status.term)
                    } else {
                        format!("n{id} leads group {group} term {}", status.term)
                    });
                }
            }
        }
        if tokio::time::Instant::now() >= next_snapshot {
            next_snapshot += LOG_SNAPSHOT_EVERY;
            let (logs, hashes) = node.observe(now_ms());
            let mut r = spec.record.lock();
            for snapshot in logs {
                r.logs.observe(snapshot);
            }
            for (group, rev, hash) in hashes {
                r.stores.observe(group, id, rev, hash);
            }
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Answers one client request: a put through Raft, a get after a ReadIndex.
async fn serve(
    handle: &RaftHandle<Output>,
    store: &Store<RedbBackend>,
    request: Request,
) -> Answer {
    match request {
        Request::Put { group, key, value } => {
            if debug_log() {
                eprintln!(
                    "{:>8} n{} serve put {}",
                    now_ms(),
                    handle.id(),
                    String::from_utf8_lossy(&value)
                );
            }
            let data = RaftRequest {
                id: 0,
                auth: None,
                request: Some(raft_request::Request::Put(PutRequest {
                    key,
                    value,
                    ..Default::default()
                })),
            }
            .encode_to_vec();
            match handle.propose(group, data).await {
                Ok(Ok(Response::Put(p))) => Answer::Put {
                    revision: p.header.map(|h| h.revision).unwrap_or(0),
                },
                Ok(Ok(other)) => Answer::Failed(format!("a put answered {other:?}")),
                Ok(Err(e)) => Answer::Failed(e.to_string()),
                Err(e) => Answer::Failed(e.to_string()),
            }
        }
        Request::Member { group, add, node } => change_members(handle, group, add, node).await,
        Request::Get { group, key } => {
            let index = match handle.read_index(group).await {
                Ok(i) => i,
                Err(e) => return Answer::Failed(e.to_string()),
            };
            if let Err(e) = handle.wait_applied(group, index).await {
                return Answer::Failed(e.to_string());
            }
            let view = match store.read(group) {
                Ok(v) => v,
                Err(e) => return Answer::Failed(e.to_string()),
            };
            match view.range(&RangeRequest {
                key,
                ..Default::default()
            }) {
                Ok(r) => Answer::Get {
                    value: r.kvs.first().map(|kv| kv.value.clone()),
                    revision: r.header.map(|h| h.revision).unwrap_or(0),
                },
                Err(e) => Answer::Failed(e.to_string()),
            }
        }
    }
}

/// Adds `node` to `group` as a voter, or removes it: a Raft configuration change carrying the
/// member change, as a voter's `MemberAdd` and `MemberRemove` propose it.
async fn change_members(handle: &RaftHandle<Output>, group: u64, add: bool, node: u64) -> Answer {
    use mango_proto::mangopb::{MemberChange, MemberInfo, member_change::Kind};
    use raft::eraftpb::{ConfChangeSingle, ConfChangeType, ConfChangeV2};
    let mut single = ConfChangeSingle::default();
    single.set_change_type(if add {
        ConfChangeType::AddNode
    } else {
        ConfChangeType::RemoveNode
    });
    single.set_node_id(node);
    let mut cc = ConfChangeV2::default();
    cc.set_changes(vec![single].into());
    let change = MemberChange {
        kind: if add { Kind::Add } else { Kind::Remove } as i32,
        member: Some(MemberInfo {
            id: node,
            peer_urls: vec![format!("sim://n{node}")],
            ..Default::default()
        }),
    };
    cc.set_context(change.encode_to_vec().into());
    match handle.conf_change(group, cc).await {
        Ok(Ok(_)) => Answer::Changed,
        Ok(Err(e)) => Answer::Failed(e.to_string()),
        Err(e) => Answer::Failed(e.to_string()),
    }
}

/// raft-rs's log lines on standard error, prefixed with the node and simulated time (for
/// replaying a seed with `MANGO_SIM_RAFT_LOG=1`).
struct StderrDrain(u64);

impl slog::Drain for StderrDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(
        &self,
        record: &slog::Record<'_>,
        values: &slog::OwnedKVList,
    ) -> Result<(), slog::Never> {
        struct Line(String);
        impl slog::Serializer for Line {
            fn emit_arguments(
                &mut self,
                key: slog::Key,
                val: &std::fmt::Arguments<'_>,
            ) -> slog::Result {
                self.0.push_str(&format!(" {key}={val}"));
                Ok(())
            }
        }
        let mut line = Line(String::new());
        let _ = slog::KV::serialize(&record.kv(), record, &mut line);
        let _ = slog::KV::serialize(values, record, &mut line);
        eprintln!(
            "{:>8} n{} {} {}{}",
            now_ms(),
            self.0,
            record.level().as_short_str(),
            record.msg(),
            line.0
        );
        Ok(())
    }
}

fn logger(node: u64) -> slog::Logger {
    if debug_log() {
        slog::Logger::root(slog::Fuse(StderrDrain(node)), slog::o!())
    } else {
        slog::Logger::root(slog::Discard, slog::o!())
    }
}

/// Whether `MANGO_SIM_RAFT_LOG` asks for raft-rs's log and the node's messages on standard
/// error (read once).
fn debug_log() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("MANGO_SIM_RAFT_LOG").is_some())
}
