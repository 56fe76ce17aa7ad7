//! The peer transport on tonic: one long-lived client stream per peer carrying batches of Raft
//! messages (of every group), reconnecting with backoff; snapshots on their own streaming call
//! in bounded chunks, staged to disk by the receiver before Raft sees the message.

mod client;
mod probe;
mod server;

use std::path::PathBuf;

use raft::eraftpb::Snapshot;

pub use client::{GrpcTransport, PeerLink, PeerUrls, identify};
pub use probe::probe_peers;
pub use server::PeerService;

use crate::node::GroupId;

/// Chunks of a state-machine snapshot being sent.
pub type SnapshotChunks = Box<dyn Iterator<Item = Result<Vec<u8>, String>> + Send>;

/// Where the bytes of outgoing snapshots come from (the state machine).
pub trait SnapshotSource: Send + Sync + 'static {
    /// The state-machine bytes of `snapshot` (its metadata names the index), as chunks. Called
    /// on the Raft thread when the message is sent, so the state machine is still at the index
    /// the snapshot was taken at; the iterator is consumed on another thread.
    fn chunks(&self, group: GroupId, snapshot: &Snapshot) -> Result<SnapshotChunks, String>;
}

/// Where incoming snapshot bytes are staged until Raft hands the snapshot to the state machine.
pub trait SnapshotSink: Send + Sync + 'static {
    /// The file to stage `group`'s snapshot at `index` in.
    fn staging_path(&self, group: GroupId, index: u64) -> PathBuf;

    /// Checks a staged file whole before Raft sees its message: an `Err` refuses the snapshot
    /// (the file is removed and the sender told), so damaged or forged bytes never reach the
    /// state machine's restore, whose failure would be fatal.
    fn verify(&self, group: GroupId, path: &std::path::Path) -> Result<(), String>;
}

/// Prefixes an encoded Raft message with its group.
pub(crate) fn frame(group: GroupId, message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + message.len());
    out.extend_from_slice(&group.to_be_bytes());
    out.extend_from_slice(message);
    out
}

/// Splits [`frame`]'s output.
pub(crate) fn unframe(bytes: &[u8]) -> Option<(GroupId, &[u8])> {
    if bytes.len() < 8 {
        return None;
    }
    let (group, message) = bytes.split_at(8);
    Some((u64::from_be_bytes(group.try_into().ok()?), message))
}
