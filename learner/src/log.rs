//! The learner's end of the log stream, and its onward source: entries received from the
//! upstream are applied with the store's one `apply` (the code voters run), kept in a bounded
//! window of recent entries for learners that follow this one, and their stamps recorded for
//! bounded-staleness reads.

use std::collections::VecDeque;
use std::future::Future;
use std::io::Read;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use mango_logstream::{
    LogEntry, LogSink, LogSource, LogStreamError, ReadIndexClient, SnapshotSource, SourceError,
    Stamp,
};
use mango_store::{ApplyEntry, Store};
use tokio::sync::watch;

/// The only group so far.
pub const GROUP: u64 = 0;
/// Bytes of recent entries kept for downstream learners.
const RECENT_BYTES: usize = 64 << 20;
/// Bytes of one snapshot chunk served onward.
const SNAPSHOT_CHUNK: usize = 1 << 20;

/// Recent entries, consecutive, bounded by bytes.
#[derive(Default)]
struct Recent {
    entries: VecDeque<LogEntry>,
    bytes: usize,
}

impl Recent {
    fn push(&mut self, e: LogEntry) {
        if self.entries.back().is_some_and(|b| b.index + 1 != e.index) {
            self.entries.clear();
            self.bytes = 0;
        }
        self.bytes += e.data.len() + 24;
        self.entries.push_back(e);
        while self.bytes > RECENT_BYTES {
            match self.entries.pop_front() {
                Some(old) => self.bytes -= old.data.len() + 24,
                None => break,
            }
        }
    }
}

/// When the data was last known current: the commit index of the newest stamp and the local
/// time it was current at.
#[derive(Clone, Copy, Debug)]
pub struct Freshness {
    /// The commit index the stamp named.
    pub commit: u64,
    /// When that commit index was known to be the group's.
    pub at: Instant,
}

/// See the module doc.
pub struct LearnerLog {
    store: Arc<Store>,
    recent: Mutex<Recent>,
    freshness: Mutex<Option<Freshness>>,
    /// The newest time the applied state was known current (a stamp's time whose commit
    /// index the learner had applied): what its lag in seconds is measured from.
    current_at: Mutex<Option<Instant>>,
    applied: watch::Sender<u64>,
    revision: watch::Sender<i64>,
    upstream_reads: Arc<ReadIndexClient>,
    /// Tripped when the store fails under an apply: the learner cannot go on.
    fatal: mango_boot::Fatal,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl LearnerLog {
    /// Over `store`, asking `upstream_reads` for read indexes.
    /// A storage failure while applying trips `fatal`.
    pub fn new(
        store: Arc<Store>,
        upstream_reads: Arc<ReadIndexClient>,
        fatal: mango_boot::Fatal,
    ) -> Result<Self, mango_store::StoreError> {
        let state = store.read(GROUP)?.state();
        Ok(Self {
            store,
            recent: Mutex::default(),
            freshness: Mutex::default(),
            current_at: Mutex::default(),
            applied: watch::channel(state.applied_index).0,
            revision: watch::channel(state.revision).0,
            upstream_reads,
            fatal,
        })
    }

    /// The store.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The applied index, as it changes.
    pub fn applied_updates(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }

    /// The applied revision, as it changes.
    pub fn revision_updates(&self) -> watch::Receiver<i64> {
        self.revision.subscribe()
    }

    /// The newest stamp, if any arrived.
    pub fn freshness(&self) -> Option<Freshness> {
        *lock(&self.freshness)
    }

    /// The newest time the applied state was known to be the group's current state.
    pub fn known_current_at(&self) -> Option<Instant> {
        *lock(&self.current_at)
    }

    /// Moves [`Self::known_current_at`] to `at` if the applied index reaches `commit`.
    fn note_current(&self, commit: u64, at: Instant) {
        if *self.applied.borrow() >= commit {
            let mut c = lock(&self.current_at);
            if c.is_none_or(|old| at > old) {
                *c = Some(at);
            }
        }
    }

    /// Asks the upstream for a linearizable read index.
    pub async fn read_index(&self) -> Result<u64, UpstreamError> {
        self.upstream_reads
            .read_index(GROUP)
            .await
            .map_err(UpstreamError::from)
    }

    fn publish(&self) {
        if let Ok(view) = self.store.read(GROUP) {
            let state = view.state();
            self.applied.send_if_modified(|a| {
                let changed = *a != state.applied_index;
                *a = state.applied_index;
                changed
            });
            self.revision.send_if_modified(|r| {
                let changed = *r != state.revision;
                *r = state.revision;
                changed
            });
            if let Some(f) = self.freshness() {
                self.note_current(f.commit, f.at);
            }
        }
    }
}

/// Why the upstream could not answer a read-index request. Cheap to clone: one answer is
/// shared by every read of a batch.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// Unreachable, leaderless, timed out or the connection broke: try again, maybe at
    /// another member (clients see `Unavailable`).
    #[error("upstream unavailable: {0}")]
    Unavailable(String),
    /// Anything else (a protocol or TLS failure): a fault to report.
    #[error("upstream: {0}")]
    Failed(String),
}

impl From<LogStreamError> for UpstreamError {
    fn from(e: LogStreamError) -> Self {
        match e {
            LogStreamError::Unreachable(_)
            | LogStreamError::Connection(_)
            | LogStreamError::Timeout
            | LogStreamError::Source(SourceError::Unavailable(_)) => {
                UpstreamError::Unavailable(e.to_string())
            }
            other => UpstreamError::Failed(other.to_string()),
        }
    }
}

impl LogSink for LearnerLog {
    fn next_index(&self, group: u64) -> u64 {
        self.store
            .read(group)
            .map(|v| v.state().applied_index + 1)
            .unwrap_or(1)
    }

    fn append(&self, group: u64, entries: Vec<LogEntry>) -> Result<(), String> {
        let batch: Vec<ApplyEntry<'_>> = entries
            .iter()
            .map(|e| ApplyEntry {
                index: e.index,
                term: e.term,
                data: &e.data,
            })
            .collect();
        if let Err(e) = self.store.apply(group, &batch) {
            // Only storage fails an apply (domain errors are responses): fatal.
            self.fatal
                .trip(format!("the store failed applying streamed entries: {e}"));
            return Err(format!("applying streamed entries: {e}"));
        }
        {
            let mut recent = lock(&self.recent);
            for e in entries {
                recent.push(e);
            }
        }
        self.publish();
        Ok(())
    }

    fn install(
        &self,
        group: u64,
        index: u64,
        _term: u64,
        chunks: &mut dyn Read,
    ) -> Result<(), String> {
        let state = self
            .store
            .install_snapshot(group, chunks)
            .map_err(|e| format!("installing a streamed snapshot: {e}"))?;
        if state.applied_index != index {
            tracing::warn!(
                announced = index,
                installed = state.applied_index,
                "snapshot index differs from the announced one"
            );
        }
        {
            let mut recent = lock(&self.recent);
            recent.entries.clear();
            recent.bytes = 0;
        }
        self.publish();
        tracing::info!(
            index = state.applied_index,
            "installed a snapshot from upstream"
        );
        Ok(())
    }

    fn stamp(&self, _group: u64, stamp: Stamp, received: Instant) {
        let at = received.checked_sub(stamp.age).unwrap_or(received);
        let mut f = lock(&self.freshness);
        let newer = f.is_none_or(|old| at >= old.at && stamp.commit >= old.commit);
        if newer {
            *f = Some(Freshness {
                commit: stamp.commit,
                at,
            });
        }
        drop(f);
        self.note_current(stamp.commit, at);
    }
}

impl LogSource for LearnerLog {
    fn entries(
        &self,
        group: u64,
        from: u64,
        max_bytes: usize,
    ) -> Result<Vec<LogEntry>, SourceError> {
        if group != GROUP {
            return Err(SourceError::NotFound);
        }
        let applied = *self.applied.borrow();
        let recent = lock(&self.recent);
        let first = recent.entries.front().map_or(applied + 1, |e| e.index);
        if from < first {
            return Err(SourceError::Compacted { first_index: first });
        }
        let mut out = Vec::new();
        let mut bytes = 0;
        let skip = usize::try_from(from - first).unwrap_or(usize::MAX);
        for e in recent.entries.iter().skip(skip) {
            if e.index > applied || (!out.is_empty() && bytes + e.data.len() > max_bytes) {
                break;
            }
            bytes += e.data.len();
            out.push(e.clone());
        }
        Ok(out)
    }

    fn stamp(&self, _group: u64) -> Result<Stamp, SourceError> {
        let f = self
            .freshness()
            .ok_or_else(|| SourceError::Unavailable("no stamp from upstream yet".into()))?;
        Ok(Stamp {
            commit: f.commit,
            age: f.at.elapsed(),
        })
    }

    fn commit_updates(&self) -> watch::Receiver<u64> {
        self.applied.subscribe()
    }

    fn snapshot(&self, group: u64) -> Result<SnapshotSource, SourceError> {
        let mut reader = self
            .store
            .snapshot_reader(group)
            .map_err(|e| SourceError::Unavailable(e.to_string()))?;
        let state = reader.state();
        let chunks = std::iter::from_fn(move || match reader.next_chunk(SNAPSHOT_CHUNK) {
            Ok(Some(chunk)) => Some(Ok(chunk)),
            Ok(None) => None,
            Err(e) => Some(Err(e.to_string())),
        });
        Ok(SnapshotSource {
            index: state.applied_index,
            term: state.applied_term,
            chunks: Box::new(chunks),
        })
    }

    fn read_index(
        &self,
        group: u64,
    ) -> Pin<Box<dyn Future<Output = Result<u64, SourceError>> + Send>> {
        let client = self.upstream_reads.clone();
        Box::pin(async move {
            tokio::time::timeout(Duration::from_secs(5), client.read_index(group))
                .await
                .map_err(|_| SourceError::Unavailable("read index timed out".into()))?
                .map_err(|e| SourceError::Unavailable(e.to_string()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, len: usize) -> LogEntry {
        LogEntry {
            index,
            term: 1,
            data: vec![0u8; len].into(),
        }
    }

    #[test]
    fn recent_entries_stay_consecutive_and_bounded() {
        let mut r = Recent::default();
        for i in 1..=3 {
            r.push(entry(i, 10));
        }
        r.push(entry(7, 10));
        assert_eq!(r.entries.len(), 1, "a gap restarts the window");
        for i in 8..=8 + (RECENT_BYTES / (1 << 20)) as u64 + 2 {
            r.push(entry(i, 1 << 20));
        }
        assert!(r.bytes <= RECENT_BYTES);
        let idx: Vec<u64> = r.entries.iter().map(|e| e.index).collect();
        assert!(idx.windows(2).all(|w| w[1] == w[0] + 1));
    }
}
