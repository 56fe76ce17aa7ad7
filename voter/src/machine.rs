//! The voter's replicated state machine: Raft entries into the store's one apply, snapshots in
//! and out of the store, and the Raft log compaction that snapshots make possible.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::SyncSender;

use mango_consensus::node::{GroupId, StateMachine};
use mango_consensus::transport::{PeerUrls, SnapshotChunks, SnapshotSink, SnapshotSource};
use mango_consensus::{LogStore, SnapshotProvider};
use mango_proto::mangopb::{MemberChange, RaftRequest};
use mango_store::{ApplyEntry, Response, Store, StoreError};
use prost::Message as _;
use protobuf::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeV2, Entry, EntryType, Snapshot};

/// What applying one entry answered.
pub type Output = Result<Response, StoreError>;

/// The store as Raft's state machine.
pub struct StoreMachine {
    /// The state.
    pub store: Arc<Store>,
    /// The Raft log, compacted behind the applied index every `snapshot_count` entries.
    pub log: LogStore,
    /// Applied entries between log compactions.
    pub snapshot_count: u64,
    /// Entries kept in the Raft log behind the applied index after a compaction, so a follower
    /// a little behind catches up from the log rather than by snapshot.
    pub catch_up_entries: u64,
    /// Where staged incoming snapshots are.
    pub staging: Staging,
    /// Wakes the physical-compaction thread after a Compaction applied.
    pub compactor: SyncSender<()>,
    /// Where peers are: kept in step with the member registry as changes apply, on every
    /// node, so the leader can reach a member added through any other node.
    pub peers: PeerUrls,
    /// The applied revision of group 0, announced after each applied batch (its view is
    /// published by then) to wake the watch hub.
    pub revisions: tokio::sync::watch::Sender<i64>,
    /// The lessor: a grant applied on the leader starts its clock.
    pub lessor: Arc<crate::lessor::Lessor>,
    /// Fault injection for tests: a pause before each applied batch (zero in production).
    pub apply_delay: std::time::Duration,
    /// Where the duration of each batch's store transaction goes (etcd's backend commit
    /// latency); None: not measured.
    pub commit_durations: Option<Arc<mango_boot::prom::Histogram>>,
}

/// Converts a configuration change entry to the membership change it carries.
fn member_change(entry: &Entry) -> Option<MemberChange> {
    let context = match entry.get_entry_type() {
        EntryType::EntryConfChange => ConfChange::parse_from_bytes(&entry.data).ok()?.context,
        _ => ConfChangeV2::parse_from_bytes(&entry.data).ok()?.context,
    };
    MemberChange::decode(context.as_ref())
        .ok()
        .filter(|c| c.member.is_some())
}

/// What the store applies for a Raft entry: a normal entry's data as is (an encoded
/// `RaftRequest`, or empty), a configuration change as the `RaftRequest` of its member change
/// (empty if it carries none). Also returns the member change, if any, so callers can follow
/// peer URLs. Learners receive entries already converted (see `logsource`).
pub(crate) fn store_data(e: &Entry) -> (Vec<u8>, Option<MemberChange>) {
    match e.get_entry_type() {
        EntryType::EntryNormal => {
            // A member update rides a normal entry: its encoding starts with field 10 of
            // RaftRequest (the proposer leaves id 0), tag byte 0x52.
            let change = if e.data.first() == Some(&0x52) {
                match RaftRequest::decode(e.data.as_ref()) {
                    Ok(RaftRequest {
                        request: Some(mango_proto::mangopb::raft_request::Request::MemberChange(c)),
                        ..
                    }) => Some(c),
                    _ => None,
                }
            } else {
                None
            };
            (e.data.to_vec(), change)
        }
        _ => match member_change(e) {
            Some(c) => {
                let request = mango_proto::mangopb::raft_request::Request::MemberChange(c.clone());
                let data = RaftRequest {
                    id: 0,
                    auth: None,
                    request: Some(request),
                }
                .encode_to_vec();
                (data, Some(c))
            }
            None => (Vec::new(), None),
        },
    }
}

impl StateMachine for StoreMachine {
    type Output = Output;

    fn applied_index(&self, group: GroupId) -> u64 {
        self.store
            .read(group)
            .map(|v| v.state().applied_index)
            .unwrap_or(0)
    }

    fn apply(&mut self, group: GroupId, entries: &[Entry]) -> Result<Vec<Output>, String> {
        if !self.apply_delay.is_zero() {
            std::thread::sleep(self.apply_delay);
        }
        let converted: Vec<Vec<u8>> = entries
            .iter()
            .map(|e| {
                let (data, change) = store_data(e);
                if let Some(c) = change {
                    self.track_peer(&c);
                }
                data
            })
            .collect();
        let batch: Vec<ApplyEntry<'_>> = entries
            .iter()
            .zip(&converted)
            .map(|(e, data)| ApplyEntry {
                index: e.index,
                term: e.term,
                data,
            })
            .collect();
        let started = std::time::Instant::now();
        let applied = self.store.apply(group, &batch).map_err(|e| e.to_string())?;
        if let Some(h) = &self.commit_durations {
            h.observe(started.elapsed());
        }
        self.announce_revision(group);
        let mut compacted = false;
        let mut by_index = applied.into_iter().peekable();
        let mut outputs = Vec::with_capacity(entries.len());
        for e in entries {
            match by_index.peek() {
                Some(a) if a.index == e.index => {
                    let a = by_index
                        .next()
                        .map(|a| a.result)
                        .unwrap_or(Ok(Response::Empty));
                    compacted |= matches!(a, Ok(Response::Compaction(_)));
                    if let Ok(Response::LeaseGrant(g)) = &a {
                        self.lessor.granted(g.id, g.ttl, std::time::Instant::now());
                    }
                    outputs.push(a);
                }
                // Already applied before a restart: nobody waits for it.
                _ => outputs.push(Ok(Response::Empty)),
            }
        }
        if compacted {
            let _ = self.compactor.try_send(());
        }
        self.maybe_compact_log(group)?;
        Ok(outputs)
    }

    fn restore(&mut self, group: GroupId, snapshot: &Snapshot) -> Result<(), String> {
        let index = snapshot.get_metadata().get_index();
        let path = self.staging.path(group, index);
        let mut file = std::fs::File::open(&path)
            .map_err(|e| format!("opening staged snapshot {}: {e}", path.display()))?;
        let state = self
            .store
            .install_snapshot(group, &mut std::io::BufReader::new(&mut file))
            .map_err(|e| format!("installing snapshot {}: {e}", path.display()))?;
        if state.applied_index != index {
            return Err(format!(
                "snapshot data is at {}, its message says {index}",
                state.applied_index
            ));
        }
        let _ = std::fs::remove_file(&path);
        // The registry came with the snapshot: the transport must know where each member is
        // (a newcomer knew only the members it was told about when it joined).
        if let Ok(members) = self.store.read(group).and_then(|v| v.members()) {
            for m in members {
                if let Some(url) = m.peer_urls.first() {
                    self.peers.set(m.id, url.clone());
                }
            }
        }
        self.announce_revision(group);
        tracing::info!(group, index, "installed a snapshot from the leader");
        Ok(())
    }
}

impl StoreMachine {
    /// Tells the watch hub the revision `group` is at now (only when it moved).
    fn announce_revision(&self, group: GroupId) {
        if group != 0 {
            return;
        }
        if let Ok(view) = self.store.read(group) {
            let revision = view.revision();
            self.revisions.send_if_modified(|r| {
                let moved = *r != revision;
                *r = revision;
                moved
            });
        }
    }

    /// Follows a membership change in the transport's address book.
    fn track_peer(&self, change: &MemberChange) {
        use mango_proto::mangopb::member_change::Kind;
        let Some(m) = &change.member else { return };
        match Kind::try_from(change.kind) {
            Ok(Kind::Remove) => self.peers.remove(m.id),
            _ => {
                if let Some(url) = m.peer_urls.first() {
                    self.peers.set(m.id, url.clone());
                }
            }
        }
    }

    /// Every `snapshot_count` applied entries: make the store durable, then drop the Raft log
    /// up to `catch_up_entries` behind the applied index.
    fn maybe_compact_log(&mut self, group: GroupId) -> Result<(), String> {
        let applied = self.applied_index(group);
        let storage = self.log.group_storage(group);
        let first = storage.first_index().map_err(|e| e.to_string())?;
        if applied < first + self.snapshot_count + self.catch_up_entries {
            return Ok(());
        }
        self.store.sync(group).map_err(|e| e.to_string())?;
        let to = applied - self.catch_up_entries;
        if let Err(e) = self.log.compact(group, to) {
            tracing::warn!(group, to, error = %e, "raft log compaction skipped");
        }
        Ok(())
    }
}

/// Where incoming snapshots are staged.
#[derive(Clone, Debug)]
pub struct Staging(pub PathBuf);

impl Staging {
    fn path(&self, group: GroupId, index: u64) -> PathBuf {
        self.0.join(format!("{group}-{index}.snap"))
    }
}

impl SnapshotSink for Staging {
    fn staging_path(&self, group: GroupId, index: u64) -> PathBuf {
        self.path(group, index)
    }

    fn verify(&self, _group: GroupId, path: &std::path::Path) -> Result<(), String> {
        let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        mango_store::verify_snapshot(&mut std::io::BufReader::new(file))
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// Snapshots for Raft: metadata from the store's applied state, bytes streamed from a view.
pub struct StoreSnapshots {
    /// The state.
    pub store: Arc<Store>,
    /// The Raft log, for the configuration as of the applied index.
    pub log: LogStore,
}

/// Bytes per snapshot chunk on the wire.
const CHUNK: usize = 1 << 20;

impl SnapshotProvider for StoreSnapshots {
    fn snapshot(&self, group: u64, request_index: u64, _to: u64) -> Option<Snapshot> {
        let state = self.store.read(group).ok()?.state();
        if state.applied_index < request_index || state.applied_index == 0 {
            return None;
        }
        let mut snap = Snapshot::default();
        let meta = snap.mut_metadata();
        meta.set_index(state.applied_index);
        meta.set_term(state.applied_term);
        meta.set_conf_state(self.log.conf_state(group).ok()?);
        Some(snap)
    }
}

impl SnapshotSource for StoreSnapshots {
    fn chunks(&self, group: GroupId, snapshot: &Snapshot) -> Result<SnapshotChunks, String> {
        let mut reader = self
            .store
            .snapshot_reader(group)
            .map_err(|e| e.to_string())?;
        let index = snapshot.get_metadata().get_index();
        if reader.state().applied_index != index {
            return Err(format!(
                "the store moved on to {} since the snapshot at {index} was taken",
                reader.state().applied_index
            ));
        }
        Ok(Box::new(std::iter::from_fn(move || {
            match reader.next_chunk(CHUNK) {
                Ok(Some(chunk)) => Some(Ok(chunk)),
                Ok(None) => None,
                Err(e) => Some(Err(e.to_string())),
            }
        })))
    }
}
