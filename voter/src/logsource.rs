//! The voter as a source of the committed-log stream for learners: committed entries from the
//! Raft log (converted to what the store applies), stamps from the Raft status, snapshots of
//! the store, and read indexes from Raft (a follower's ReadIndex goes to the leader).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use mango_consensus::LogStore;
use mango_consensus::node::RaftHandle;
use mango_logstream::{LogEntry, LogSource, SnapshotSource, SourceError, Stamp};
use mango_store::Store;
use tokio::sync::watch;

use crate::machine::{Output, store_data};

/// Bytes of one snapshot chunk on the stream.
const SNAPSHOT_CHUNK: usize = 1 << 20;

/// See the module doc.
pub struct VoterLogSource {
    /// The Raft log (entries up to the commit index are served).
    pub log: LogStore,
    /// Commit index, leader contact, read index.
    pub raft: RaftHandle<Output>,
    /// Snapshots.
    pub store: Arc<Store>,
    /// One Raft tick: the commit index a follower knows may lag the leader's by one heartbeat.
    pub tick: Duration,
}

fn unavailable(e: impl std::fmt::Display) -> SourceError {
    SourceError::Unavailable(e.to_string())
}

impl LogSource for VoterLogSource {
    fn entries(
        &self,
        group: u64,
        from: u64,
        max_bytes: usize,
    ) -> Result<Vec<LogEntry>, SourceError> {
        let status = self.raft.status(group).map_err(|_| SourceError::NotFound)?;
        let storage = self.log.group_storage(group);
        let first = storage.first_index().map_err(unavailable)?;
        if from < first {
            return Err(SourceError::Compacted { first_index: first });
        }
        if from > status.commit {
            return Ok(Vec::new());
        }
        let entries = storage
            .entries(from, status.commit + 1, Some(max_bytes as u64))
            .map_err(|e| match e {
                mango_consensus::LogStoreError::Compacted { first_index, .. } => {
                    SourceError::Compacted { first_index }
                }
                other => unavailable(other),
            })?;
        Ok(entries
            .iter()
            .map(|e| LogEntry {
                index: e.index,
                term: e.term,
                data: Bytes::from(store_data(e).0),
            })
            .collect())
    }

    fn stamp(&self, group: u64) -> Result<Stamp, SourceError> {
        let status = self.raft.status(group).map_err(|_| SourceError::NotFound)?;
        if status.leader == 0 {
            return Err(SourceError::Unavailable("no leader".into()));
        }
        // A follower's commit index is the leader's as of its last heartbeat, at most one tick
        // old then.
        let age = if status.leader == self.raft.id() {
            Duration::ZERO
        } else {
            status.leader_contact_age + self.tick
        };
        Ok(Stamp {
            commit: status.commit,
            age,
        })
    }

    fn commit_updates(&self) -> watch::Receiver<u64> {
        match self.raft.applied_updates(0) {
            Ok(rx) => rx,
            // No group 0: nothing ever changes.
            Err(_) => watch::channel(0).1,
        }
    }

    fn snapshot(&self, group: u64) -> Result<SnapshotSource, SourceError> {
        let mut reader = self.store.snapshot_reader(group).map_err(unavailable)?;
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
        let raft = self.raft.clone();
        Box::pin(async move {
            tokio::time::timeout(Duration::from_secs(5), raft.read_index(group))
                .await
                .map_err(|_| SourceError::Unavailable("read index timed out".into()))?
                .map_err(unavailable)
        })
    }
}
