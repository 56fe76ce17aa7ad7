//! The Raft thread does not wait for the disk: with every log write held at the persist
//! thread (a gate in front of the real raft-engine write), the node still answers reads and
//! takes proposals, applies nothing that is not durable, and writes what queued up meanwhile
//! in one go once the disk is free.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use raft::eraftpb::{Entry, Message, Snapshot};

use mango_consensus::node::{
    self, GroupBootstrap, GroupId, NodeConfig, PersistHook, StateMachine, Transport,
};
use mango_consensus::{LogStore, LogStoreConfig};

/// Applied payloads, shared with the test.
#[derive(Clone, Default)]
struct Applied(Arc<Mutex<(u64, Vec<Vec<u8>>)>>);

impl Applied {
    fn payloads(&self) -> Vec<Vec<u8>> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .1
            .clone()
    }
}

impl StateMachine for Applied {
    type Output = u64;

    fn applied_index(&self, _group: GroupId) -> u64 {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).0
    }

    fn apply(&mut self, _group: GroupId, entries: &[Entry]) -> Result<Vec<u64>, String> {
        let mut state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = Vec::new();
        for e in entries {
            state.0 = e.index;
            if !e.data.is_empty() {
                state.1.push(e.data.to_vec());
            }
            out.push(e.index);
        }
        Ok(out)
    }

    fn restore(&mut self, _group: GroupId, _snapshot: &Snapshot) -> Result<(), String> {
        Err("a single-node group never receives a snapshot".into())
    }
}

/// A single voter has no peers.
struct NoPeers;

impl Transport for NoPeers {
    fn send(&mut self, _group: GroupId, msgs: Vec<Message>) {
        assert!(msgs.is_empty(), "a single voter sent {msgs:?}");
    }
}

/// Holds every log write while closed; counts writes.
#[derive(Default)]
struct Gate {
    closed: Mutex<bool>,
    opened: Condvar,
    writes: AtomicUsize,
}

impl Gate {
    fn set_closed(&self, closed: bool) {
        *self.closed.lock().unwrap_or_else(PoisonError::into_inner) = closed;
        self.opened.notify_all();
    }

    fn pass(&self) {
        let mut closed = self.closed.lock().unwrap_or_else(PoisonError::into_inner);
        while *closed {
            closed = self
                .opened
                .wait(closed)
                .unwrap_or_else(PoisonError::into_inner);
        }
        self.writes.fetch_add(1, Ordering::SeqCst);
    }
}

const LONG: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_and_proposals_go_on_while_the_log_write_is_held() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = LogStore::open(LogStoreConfig::new(dir.path())).expect("open log");
    let gate = Arc::new(Gate::default());
    let hook = {
        let gate = gate.clone();
        PersistHook(Arc::new(move || {
            gate.pass();
            Ok(())
        }))
    };
    let config = NodeConfig {
        id: 1,
        tick: Duration::from_millis(20),
        persist_hook: Some(hook),
        ..Default::default()
    };
    let sm = Applied::default();
    let logger = slog::Logger::root(slog::Discard, slog::o!());
    let boot = GroupBootstrap {
        group: 0,
        initial_voters: vec![1],
    };
    let (raft, thread) = node::start(
        config,
        log,
        vec![boot],
        sm.clone(),
        |_| NoPeers,
        None,
        logger,
    )
    .expect("start node");

    // Elected, and the first proposal is durable and applied.
    let first = tokio::time::timeout(LONG, async {
        loop {
            match raft.propose(0, b"first".to_vec()).await {
                Ok(index) => break index,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    })
    .await
    .expect("elected and first proposal applied");
    assert_eq!(sm.payloads(), vec![b"first".to_vec()]);

    // Hold the disk, then propose: the proposal's write is stuck at the gate.
    gate.set_closed(true);
    let writes_before = gate.writes.load(Ordering::SeqCst);
    let proposals: Vec<_> = (0..100)
        .map(|i| {
            let raft = raft.clone();
            tokio::spawn(async move { raft.propose(0, format!("held {i}").into_bytes()).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The Raft thread is free: a linearizable read (ReadIndex) still answers, with the commit
    // index from before the held write; the status moves on with the new entries.
    let read = tokio::time::timeout(Duration::from_secs(3), raft.read_index(0))
        .await
        .expect("ReadIndex answered while the disk is held")
        .expect("read index");
    assert_eq!(read, first, "nothing new may commit before it is durable");
    let status = raft.status(0).expect("status");
    assert!(
        status.last_index > first,
        "the held proposals reached the log: {status:?}"
    );
    assert_eq!(
        status.commit, first,
        "nothing commits before its write lands"
    );
    assert_eq!(
        sm.payloads().len(),
        1,
        "nothing applies before its write lands"
    );

    // Release the disk: everything applies, and what queued up meanwhile shared few writes.
    gate.set_closed(false);
    for p in proposals {
        tokio::time::timeout(LONG, p)
            .await
            .expect("proposal answered after the disk is free")
            .expect("task")
            .expect("proposal applied");
    }
    assert_eq!(sm.payloads().len(), 101);
    let writes = gate.writes.load(Ordering::SeqCst) - writes_before;
    assert!(
        writes <= 10,
        "100 proposals made while one write was held took {writes} writes"
    );

    raft.stop();
    thread.join().expect("raft thread");
}

/// A log write that fails stops the loop, and the thread's result says why: what a server
/// watches to exit instead of lingering (mango-boot's fatal path).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_log_write_ends_the_loop_with_its_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = LogStore::open(LogStoreConfig::new(dir.path())).expect("open log");
    let failing = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hook = {
        let failing = failing.clone();
        PersistHook(Arc::new(move || {
            if failing.load(Ordering::SeqCst) {
                Err("injected: the disk is gone".into())
            } else {
                Ok(())
            }
        }))
    };
    let config = NodeConfig {
        id: 1,
        tick: Duration::from_millis(20),
        persist_hook: Some(hook),
        ..Default::default()
    };
    let logger = slog::Logger::root(slog::Discard, slog::o!());
    let boot = GroupBootstrap {
        group: 0,
        initial_voters: vec![1],
    };
    let (raft, thread) = node::start(
        config,
        log,
        vec![boot],
        Applied::default(),
        |_| NoPeers,
        None,
        logger,
    )
    .expect("start node");
    tokio::time::timeout(LONG, async {
        while raft.propose(0, b"first".to_vec()).await.is_err() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("elected and first proposal applied");
    failing.store(true, Ordering::SeqCst);
    let _ = tokio::time::timeout(Duration::from_secs(2), raft.propose(0, b"lost".to_vec())).await;
    let reason = tokio::task::spawn_blocking(move || thread.join())
        .await
        .expect("join task")
        .expect("raft thread");
    let reason = reason.expect("a fatal stop reports its reason");
    assert!(reason.contains("the disk is gone"), "{reason}");
}
