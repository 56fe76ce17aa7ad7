//! What the two ends of the stream plug into: [`LogSource`] (what a server reads from) and
//! [`LogSink`] (what a follower applies into), and the values they exchange.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use bytes::Bytes;

/// One committed entry as the store applies it: `data` is an encoded `mangopb.RaftRequest`
/// (or empty for a no-op).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    /// The entry's Raft index.
    pub index: u64,
    /// The entry's Raft term.
    pub term: u64,
    /// An encoded `mangopb.RaftRequest`, or empty for a no-op.
    pub data: Bytes,
}

/// The commit index of a group and how old that knowledge is: `commit` was known to be the
/// group's commit index `age` ago (as the sender saw it when it sent the stamp).
///
/// Voters stamp with age 0 when they are the leader with a quorum heard within the election
/// timeout, else with the time since they last heard from the leader; a learner forwarding a
/// stamp adds the time since it received it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    /// The group's commit index.
    pub commit: u64,
    /// How long before sending `commit` was known to be the commit index.
    pub age: Duration,
}

impl Stamp {
    /// This stamp as seen `elapsed` later (what a learner re-serves).
    pub fn aged(self, elapsed: Duration) -> Stamp {
        Stamp {
            commit: self.commit,
            age: self.age.saturating_add(elapsed),
        }
    }
}

/// Why a [`LogSource`] could not answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// The wanted index is below the first index still kept.
    #[error("compacted: the first index kept is {first_index}")]
    Compacted {
        /// The first index still kept.
        first_index: u64,
    },
    /// Not now (no leader, not started, storage error, the upstream is unreachable...).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// No such group.
    #[error("no such group")]
    NotFound,
}

/// A snapshot of a group's applied state, streamed in chunks.
pub struct SnapshotSource {
    /// The index of the last entry the snapshot includes.
    pub index: u64,
    /// The term of that entry.
    pub term: u64,
    /// The snapshot's bytes in order; an `Err` aborts the transfer (the follower retries).
    pub chunks: Box<dyn Iterator<Item = Result<Vec<u8>, String>> + Send>,
}

/// What a server of the stream reads from (a voter: its Raft log up to the commit index and
/// its store; a learner: what it received).
///
/// `stamp` and `commit_updates` are called on the async runtime and MUST NOT block; `entries`
/// and `snapshot` are called from `spawn_blocking` and may.
pub trait LogSource: Send + Sync + 'static {
    /// Committed entries of `group` from `from` on, all <= the commit index; at most
    /// `max_bytes` of data (but at least one entry when `from` <= commit). Empty when nothing
    /// new. `Compacted` when `from` is below the first index still kept.
    fn entries(
        &self,
        group: u64,
        from: u64,
        max_bytes: usize,
    ) -> Result<Vec<LogEntry>, SourceError>;

    /// The current stamp of `group`.
    fn stamp(&self, group: u64) -> Result<Stamp, SourceError>;

    /// Changes (to any value) whenever any group's commit index may have advanced; the server
    /// waits on it instead of polling.
    fn commit_updates(&self) -> tokio::sync::watch::Receiver<u64>;

    /// A snapshot of `group` (blocking; called from `spawn_blocking`).
    fn snapshot(&self, group: u64) -> Result<SnapshotSource, SourceError>;

    /// A linearizable read index of `group` (a Raft ReadIndex round at a voter; a learner
    /// forwards to its upstream).
    fn read_index(
        &self,
        group: u64,
    ) -> Pin<Box<dyn Future<Output = Result<u64, SourceError>> + Send>>;
}

/// What a follower of the stream applies into (a learner).
///
/// `next_index` and `stamp` are called on the async runtime and MUST NOT block; `append` and
/// `install` are called from `spawn_blocking`, one at a time per followed group.
pub trait LogSink: Send + Sync + 'static {
    /// The next index wanted for `group` (applied + 1); asked at every (re)connect.
    fn next_index(&self, group: u64) -> u64;

    /// Consecutive entries starting at `next_index` (blocking allowed: called from
    /// `spawn_blocking`). An `Err` makes the follower reconnect and resume from `next_index`.
    fn append(&self, group: u64, entries: Vec<LogEntry>) -> Result<(), String>;

    /// Replace the group's state with a snapshot at `(index, term)`; blocking; `chunks` reads
    /// the snapshot's bytes in order (the concatenation of the source's chunks). A read error
    /// means the transfer broke: the sink MUST then leave its state as it was and return `Err`.
    fn install(
        &self,
        group: u64,
        index: u64,
        term: u64,
        chunks: &mut dyn std::io::Read,
    ) -> Result<(), String>;

    /// A stamp arrived; `received` is the local time it arrived. Its `age` already includes
    /// the estimated time it spent on the way (queueing behind entries, plus one RTT).
    fn stamp(&self, group: u64, stamp: Stamp, received: Instant);
}
