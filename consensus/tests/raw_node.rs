//! Three raft-rs `RawNode`s, each on its own `LogStore`, driven through an
//! election, proposals, a restart, compaction and a snapshot install, with
//! messages passed in memory.

use std::collections::{HashSet, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use raft::eraftpb::{ConfState, Entry, EntryType, HardState, Message, MessageType, Snapshot};
use raft::{Config, RawNode, SnapshotStatus, StateRole, Storage, StorageError};
use tempfile::TempDir;

use mango_consensus::{GroupStorage, LogStore, LogStoreConfig, WriteBatch};

const GROUP: u64 = 0;
const VOTERS: [u64; 3] = [1, 2, 3];

/// A toy state machine: the payloads applied, in order.
#[derive(Debug, Default)]
struct StateMachine {
    /// `(index, term, data)` of every entry applied one by one.
    applied_entries: Vec<(u64, u64, Vec<u8>)>,
    /// Payloads of the normal, non-empty entries: the state.
    data: Vec<Vec<u8>>,
    applied_index: u64,
    applied_term: u64,
    conf_state: ConfState,
    snapshots_installed: usize,
}

impl StateMachine {
    fn apply(&mut self, entry: &Entry) {
        assert_eq!(entry.index, self.applied_index + 1, "applied out of order");
        assert_eq!(entry.get_entry_type(), EntryType::EntryNormal);
        self.applied_entries
            .push((entry.index, entry.term, entry.data.to_vec()));
        if !entry.data.is_empty() {
            self.data.push(entry.data.to_vec());
        }
        self.applied_index = entry.index;
        self.applied_term = entry.term;
    }

    fn snapshot(&self) -> Snapshot {
        let mut data = Vec::new();
        for item in &self.data {
            data.extend_from_slice(&(item.len() as u32).to_be_bytes());
            data.extend_from_slice(item);
        }
        let mut snapshot = Snapshot::default();
        snapshot.set_data(data.into());
        let metadata = snapshot.mut_metadata();
        metadata.index = self.applied_index;
        metadata.term = self.applied_term;
        metadata.set_conf_state(self.conf_state.clone());
        snapshot
    }

    fn restore(&mut self, snapshot: &Snapshot) {
        let mut data = Vec::new();
        let mut rest = snapshot.get_data();
        while let Some((len, tail)) = rest.split_first_chunk::<4>() {
            let len = u32::from_be_bytes(*len) as usize;
            data.push(tail[..len].to_vec());
            rest = &tail[len..];
        }
        let metadata = snapshot.get_metadata();
        self.data = data;
        self.applied_index = metadata.index;
        self.applied_term = metadata.term;
        self.conf_state = metadata.get_conf_state().clone();
        self.snapshots_installed += 1;
    }
}

type Shared<T> = Arc<Mutex<T>>;

fn lock(sm: &Shared<StateMachine>) -> MutexGuard<'_, StateMachine> {
    sm.lock().expect("state machine lock")
}

struct Node {
    store: LogStore,
    raw: RawNode<GroupStorage>,
    sm: Shared<StateMachine>,
}

fn logger() -> slog::Logger {
    slog::Logger::root(slog::Discard, slog::o!())
}

impl Node {
    /// Opens the node's store and starts its RawNode from it.
    fn start(id: u64, dir: &Path, sm: Shared<StateMachine>) -> Node {
        let store = LogStore::open(LogStoreConfig::new(dir)).expect("open log store");
        let provider_sm = sm.clone();
        let storage = store.group_storage(GROUP).with_snapshot_provider(Arc::new(
            move |_group: u64, request_index: u64, _to: u64| {
                let sm = lock(&provider_sm);
                (sm.applied_index > 0 && sm.applied_index >= request_index).then(|| sm.snapshot())
            },
        ));
        let config = Config {
            id,
            election_tick: 10,
            heartbeat_tick: 1,
            check_quorum: true,
            pre_vote: true,
            applied: lock(&sm).applied_index,
            max_size_per_msg: 4 << 10,
            max_inflight_msgs: 16,
            ..Default::default()
        };
        let raw = RawNode::new(&config, storage, &logger()).expect("raw node");
        Node { store, raw, sm }
    }

    /// One pass of the Ready loop; returns the messages to send.
    fn handle_ready(&mut self) -> Vec<Message> {
        let mut out = Vec::new();
        let mut ready = self.raw.ready();
        out.extend(ready.take_messages());

        let mut batch = WriteBatch::new();
        if !ready.snapshot().is_empty() {
            lock(&self.sm).restore(ready.snapshot());
            batch.apply_snapshot(GROUP, ready.snapshot().get_metadata().clone());
        }
        for entry in ready.take_committed_entries() {
            lock(&self.sm).apply(&entry);
        }
        batch.append(GROUP, ready.take_entries());
        if let Some(hard_state) = ready.hs() {
            batch.set_hard_state(GROUP, hard_state.clone());
        }
        self.store
            .write(batch, ready.must_sync())
            .expect("persist ready");
        out.extend(ready.take_persisted_messages());

        let mut light = self.raw.advance(ready);
        if let Some(commit) = light.commit_index() {
            let mut batch = WriteBatch::new();
            batch.set_commit(GROUP, commit);
            self.store.write(batch, false).expect("persist commit");
        }
        out.extend(light.take_messages());
        for entry in light.take_committed_entries() {
            lock(&self.sm).apply(&entry);
        }
        self.raw.advance_apply();
        out
    }
}

struct Cluster {
    /// Node `id` is at `nodes[id - 1]`; `None` while stopped.
    nodes: Vec<Option<Node>>,
    /// Each node's log store directory.
    dirs: Vec<TempDir>,
    /// Each node's state machine, which survives restarts of the node.
    sms: Vec<Shared<StateMachine>>,
    /// Messages in flight.
    outbox: VecDeque<Message>,
    /// Nodes whose messages, both ways, are dropped.
    isolated: HashSet<u64>,
}

impl Cluster {
    fn new() -> Cluster {
        let mut cluster = Cluster {
            nodes: Vec::new(),
            dirs: Vec::new(),
            sms: Vec::new(),
            outbox: VecDeque::new(),
            isolated: HashSet::new(),
        };
        for id in VOTERS {
            let dir = tempfile::tempdir().expect("tempdir");
            let conf_state = ConfState::from((VOTERS.to_vec(), vec![]));
            {
                let store = LogStore::open(LogStoreConfig::new(dir.path())).expect("open");
                let mut batch = WriteBatch::new();
                batch.set_conf_state(GROUP, conf_state.clone());
                store.write(batch, true).expect("bootstrap");
            }
            let sm = Arc::new(Mutex::new(StateMachine {
                conf_state,
                ..Default::default()
            }));
            cluster
                .nodes
                .push(Some(Node::start(id, dir.path(), sm.clone())));
            cluster.dirs.push(dir);
            cluster.sms.push(sm);
        }
        cluster
    }

    fn node(&mut self, id: u64) -> &mut Node {
        self.nodes[(id - 1) as usize]
            .as_mut()
            .expect("node is running")
    }

    fn sm(&self, id: u64) -> MutexGuard<'_, StateMachine> {
        lock(&self.sms[(id - 1) as usize])
    }

    fn stop(&mut self, id: u64) {
        self.nodes[(id - 1) as usize] = None;
    }

    fn restart(&mut self, id: u64) {
        let index = (id - 1) as usize;
        let node = Node::start(id, self.dirs[index].path(), self.sms[index].clone());
        self.nodes[index] = Some(node);
    }

    /// Handles Readys and delivers messages until nothing happens.
    fn run(&mut self) {
        for _ in 0..10_000 {
            let mut busy = false;
            for node in self.nodes.iter_mut().flatten() {
                while node.raw.has_ready() {
                    busy = true;
                    self.outbox.extend(node.handle_ready());
                }
            }
            while let Some(message) = self.outbox.pop_front() {
                busy = true;
                self.deliver(message);
            }
            if !busy {
                return;
            }
        }
        panic!("the cluster did not settle");
    }

    fn deliver(&mut self, message: Message) {
        let (from, to) = (message.from, message.to);
        if self.isolated.contains(&from) || self.isolated.contains(&to) {
            return;
        }
        let is_snapshot = message.get_msg_type() == MessageType::MsgSnapshot;
        let Some(node) = self.nodes[(to - 1) as usize].as_mut() else {
            return;
        };
        node.raw.step(message).expect("step");
        if is_snapshot && let Some(sender) = self.nodes[(from - 1) as usize].as_mut() {
            sender.raw.report_snapshot(to, SnapshotStatus::Finish);
        }
    }

    fn leader(&self) -> u64 {
        let leaders: Vec<u64> = self
            .nodes
            .iter()
            .flatten()
            .filter(|node| node.raw.raft.state == StateRole::Leader)
            .map(|node| node.raw.raft.id)
            .collect();
        assert_eq!(leaders.len(), 1, "exactly one leader");
        leaders[0]
    }

    fn propose(&mut self, payloads: impl IntoIterator<Item = Vec<u8>>) {
        let leader = self.leader();
        for payload in payloads {
            self.node(leader)
                .raw
                .propose(vec![], payload)
                .expect("propose");
            self.run();
        }
    }
}

fn payloads(range: std::ops::Range<u32>) -> Vec<Vec<u8>> {
    range
        .map(|i| format!("proposal {i}").into_bytes())
        .collect()
}

fn raft_state(node: &Node) -> (HardState, u64, Vec<Entry>) {
    let log = &node.raw.raft.raft_log;
    let storage = node.raw.store();
    let entries = storage
        .entries(
            storage.first_index().expect("first"),
            log.last_index() + 1,
            None,
        )
        .expect("entries");
    (node.raw.raft.hard_state(), log.last_index(), entries)
}

#[test]
fn three_nodes_agree_restart_compact_and_catch_up_by_snapshot() {
    let mut cluster = Cluster::new();

    // Election.
    cluster.node(1).raw.campaign().expect("campaign");
    cluster.run();
    assert_eq!(cluster.leader(), 1);

    // Proposals: every node applies the same entries in the same order.
    let mut want = payloads(0..60);
    cluster.propose(want.clone());
    let reference = cluster.sm(1).applied_entries.clone();
    assert!(
        reference.len() > 60,
        "the election's empty entry and the proposals"
    );
    for id in VOTERS {
        let sm = cluster.sm(id);
        assert_eq!(sm.applied_entries, reference, "node {id}");
        assert_eq!(sm.data, want, "node {id}");
    }

    // Restart node 2 from its store: same hard state and log.
    let before = raft_state(cluster.node(2));
    assert_eq!(before.0.commit, before.1);
    cluster.stop(2);
    cluster.restart(2);
    let after = raft_state(cluster.node(2));
    assert_eq!(after, before);
    let sm_applied = cluster.sm(2).applied_index;
    assert_eq!(cluster.node(2).raw.raft.raft_log.applied, sm_applied);
    let more = payloads(60..80);
    cluster.propose(more.clone());
    want.extend(more);
    let reference = cluster.sm(1).applied_entries.clone();
    for id in VOTERS {
        assert_eq!(cluster.sm(id).applied_entries, reference, "node {id}");
    }

    // Compact node 2's log below what it applied.
    let applied = cluster.sm(2).applied_index;
    let compact_to = applied - 10;
    let storage = cluster.node(2).raw.store().clone();
    let term_before = storage.term(compact_to - 1).expect("term");
    cluster
        .node(2)
        .store
        .compact(GROUP, compact_to)
        .expect("compact");
    assert_eq!(Storage::first_index(&storage), Ok(compact_to));
    assert_eq!(
        Storage::entries(
            &storage,
            compact_to - 1,
            compact_to + 1,
            None,
            raft::GetEntriesContext::empty(false)
        ),
        Err(raft::Error::Store(StorageError::Compacted))
    );
    assert_eq!(Storage::term(&storage, compact_to - 1), Ok(term_before));
    let more = payloads(80..90);
    cluster.propose(more.clone());
    want.extend(more);
    for id in VOTERS {
        assert_eq!(cluster.sm(id).data, want, "node {id}");
    }

    // Node 3 falls behind while the others compact past it: it must catch up
    // from a snapshot the leader's provider builds.
    cluster.isolated.insert(3);
    let more = payloads(90..120);
    cluster.propose(more.clone());
    want.extend(more);
    for id in [1, 2] {
        let applied = cluster.sm(id).applied_index;
        cluster
            .node(id)
            .store
            .compact(GROUP, applied + 1)
            .expect("compact");
    }
    let leader_applied = cluster.sm(1).applied_index;
    assert!(cluster.sm(3).applied_index < leader_applied);
    cluster.isolated.clear();
    let more = payloads(120..125);
    cluster.propose(more.clone());
    want.extend(more);
    for _ in 0..3 {
        cluster.node(1).raw.tick();
        cluster.run();
    }
    assert_eq!(cluster.sm(3).snapshots_installed, 1);
    let leader_applied = cluster.sm(1).applied_index;
    for id in VOTERS {
        assert_eq!(cluster.sm(id).data, want, "node {id}");
        assert_eq!(cluster.sm(id).applied_index, leader_applied, "node {id}");
    }
    let snapshot_index = cluster
        .node(3)
        .store
        .snapshot_metadata(GROUP)
        .expect("metadata")
        .expect("node 3 installed a snapshot")
        .index;
    assert_eq!(
        Storage::first_index(cluster.node(3).raw.store()),
        Ok(snapshot_index + 1)
    );

    // Node 3 restarts from the snapshot-based log.
    let before = raft_state(cluster.node(3));
    cluster.stop(3);
    cluster.restart(3);
    assert_eq!(raft_state(cluster.node(3)), before);
    let more = payloads(125..130);
    cluster.propose(more.clone());
    want.extend(more);
    for id in VOTERS {
        assert_eq!(cluster.sm(id).data, want, "node {id}");
    }
}
