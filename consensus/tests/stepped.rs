//! A [`SteppedNode`] runs the Raft loop only when stepped, at the caller's instants: a
//! single voter elects itself, commits and applies proposals, and answers ReadIndex. And the
//! contexts that match applied entries to their proposers differ between runs of a node, so
//! an entry proposed before a restart can never answer a proposal made after it.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use raft::eraftpb::{Entry, Message, Snapshot};

use mango_consensus::node::{
    GroupBootstrap, GroupId, NodeConfig, RaftHandle, StateMachine, SteppedNode, Transport,
    start_stepped,
};
use mango_consensus::{LogStore, LogStoreConfig};

/// An applied entry's (index, context, data).
type Record = (u64, Vec<u8>, Vec<u8>);

/// Every applied entry, shared with the test.
#[derive(Clone, Default)]
struct Applied(Arc<Mutex<Vec<Record>>>);

impl StateMachine for Applied {
    type Output = u64;

    fn applied_index(&self, _group: GroupId) -> u64 {
        let applied = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        applied.last().map(|(i, _, _)| *i).unwrap_or(0)
    }

    fn apply(&mut self, _group: GroupId, entries: &[Entry]) -> Result<Vec<u64>, String> {
        let mut applied = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        for e in entries {
            applied.push((e.index, e.context.to_vec(), e.data.to_vec()));
        }
        Ok(entries.iter().map(|e| e.index).collect())
    }

    fn restore(&mut self, _group: GroupId, _snapshot: &Snapshot) -> Result<(), String> {
        Err("a single voter never receives a snapshot".into())
    }
}

struct NoPeers;

impl Transport for NoPeers {
    fn send(&mut self, _group: GroupId, msgs: Vec<Message>) {
        assert!(msgs.is_empty(), "a single voter sent {msgs:?}");
    }
}

const TICK: Duration = Duration::from_millis(10);

fn start(
    log: &LogStore,
    sm: Applied,
    now: Instant,
) -> (RaftHandle<u64>, SteppedNode<Applied, NoPeers>) {
    let config = NodeConfig {
        id: 1,
        tick: TICK,
        election_ticks: 3,
        ..Default::default()
    };
    let boot = GroupBootstrap {
        group: 0,
        initial_voters: vec![1],
    };
    let logger = slog::Logger::root(slog::Discard, slog::o!());
    start_stepped(
        config,
        log.clone(),
        vec![boot],
        sm,
        |_| NoPeers,
        None,
        logger,
        now,
    )
    .expect("start")
}

/// Steps `node` one tick at a time (simulated time), letting the test's tasks run between
/// steps, until `done` or 200 ticks.
async fn step_until(
    node: &mut SteppedNode<Applied, NoPeers>,
    now: &mut Instant,
    mut done: impl FnMut() -> bool,
) {
    for _ in 0..200 {
        *now += TICK;
        assert!(node.step(*now).expect("step"), "the node stopped");
        tokio::task::yield_now().await;
        if done() {
            return;
        }
    }
    panic!("not done after 200 ticks");
}

#[tokio::test]
async fn a_stepped_voter_commits_reads_and_numbers_each_run_apart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = LogStore::open(LogStoreConfig::new(dir.path())).expect("open log");
    let sm = Applied::default();
    let mut now = Instant::now();
    let (handle, mut node) = start(&log, sm.clone(), now);
    // Nothing happens without steps: no time passes for the node.
    std::thread::sleep(TICK * 5);
    assert_eq!(handle.status(0).expect("status").leader, 0);
    step_until(&mut node, &mut now, || {
        handle.status(0).is_ok_and(|s| s.leader == 1)
    })
    .await;

    let proposal = {
        let handle = handle.clone();
        tokio::spawn(async move { handle.propose(0, b"first".to_vec()).await })
    };
    tokio::task::yield_now().await;
    step_until(&mut node, &mut now, || proposal.is_finished()).await;
    let index = proposal.await.expect("join").expect("proposal applied");
    let read = {
        let handle = handle.clone();
        tokio::spawn(async move { handle.read_index(0).await })
    };
    tokio::task::yield_now().await;
    step_until(&mut node, &mut now, || read.is_finished()).await;
    assert!(read.await.expect("join").expect("read index") >= index);
    drop(node);
    drop(handle);

    // The second run's proposal carries a context of its own.
    let (handle, mut node) = start(&log, sm.clone(), now);
    step_until(&mut node, &mut now, || {
        handle.status(0).is_ok_and(|s| s.leader == 1)
    })
    .await;
    let proposal = {
        let handle = handle.clone();
        tokio::spawn(async move { handle.propose(0, b"second".to_vec()).await })
    };
    tokio::task::yield_now().await;
    step_until(&mut node, &mut now, || proposal.is_finished()).await;
    proposal.await.expect("join").expect("proposal applied");

    let applied = sm.0.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let context = |data: &[u8]| {
        applied
            .iter()
            .find(|(_, _, d)| d == data)
            .map(|(_, c, _)| c.clone())
            .expect("applied")
    };
    let (first, second) = (context(b"first"), context(b"second"));
    assert_eq!(first.len(), 16);
    assert_eq!(first[..8], second[..8], "both name node 1");
    assert_ne!(first, second, "the two runs numbered their proposals alike");
}
