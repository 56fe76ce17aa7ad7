//! Raft groups on [raft-rs](raft), with [raft-engine](raft_engine) as the log
//! store of every group on a node.
//!
//! # What this crate owns
//!
//! - [`LogStore`]: one raft-engine instance per node, holding the Raft log and
//!   metadata of every group. raft-engine's region id is our Raft group id.
//!   Per group it stores the entries, the `HardState`, the `ConfState`, the
//!   metadata of the last applied snapshot and the index and term of the last
//!   discarded entry.
//! - [`WriteBatch`]: the changes of one Ready pass over many groups, persisted
//!   by [`LogStore::write`] in one raft-engine write, one fsync, all or nothing.
//! - [`GroupStorage`]: raft-rs's [`raft::Storage`] for one group.
//! - [`SnapshotProvider`]: how `GroupStorage` gets state-machine snapshots,
//!   which live in another crate.
//! - [`disk`]: the file system raft-engine writes through, with a fault switch
//!   ([`DiskFaults`]) for simulated crashes and power losses.
//!
//! It knows nothing of the etcd API or of what entries mean.
//!
//! # Contracts
//!
//! - A Ready's snapshot metadata, entries and hard state MUST be written with
//!   [`LogStore::write`] (with `sync` = [`raft::Ready::must_sync`] or `true`)
//!   before its persisted messages are sent and before it is passed back to
//!   [`raft::RawNode::advance`]; the conf state returned by
//!   [`raft::RawNode::apply_conf_change`] MUST be written with
//!   [`WriteBatch::set_conf_state`].
//! - The commit index of a [`raft::LightReady`] SHOULD be written with
//!   [`WriteBatch::set_commit`]; compaction cannot pass the persisted commit.
//! - Appends MUST start within `[first_index, last_index + 1]`; a persisted
//!   commit index MUST stay within `[first_index - 1, last_index]`.
//!   [`LogStore::write`] refuses a batch breaking either, writing nothing,
//!   because raft-engine would panic on the first and raft-rs on restart on
//!   the second.
//! - Only entries the state machine has applied durably MAY be discarded with
//!   [`LogStore::compact`]; after it, `term(first_index - 1)` still answers.
//! - One process opens a directory at a time (raft-engine locks it).
//! - [`GroupStorage`] reads see a write once [`LogStore::write`] has returned;
//!   readers racing a write of the same group may see either side of it.
//! - For raft-rs's asynchronous Ready (`advance_append_async`), a Ready's entries
//!   are made readable first with [`LogStore::stage_pending`] and written later,
//!   by another thread, with [`LogStore::write_pending`]; `GroupStorage` serves
//!   them from memory in between.
//!
//! # The Ready loop
//!
//! A single-voter group, from bootstrap to an applied proposal. Each step
//! below is what a node does for every group with a Ready.
//!
//! ```
//! use raft::eraftpb::{ConfState, EntryType};
//! use raft::{Config, RawNode};
//! use mango_consensus::{LogStore, LogStoreConfig, WriteBatch};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let store = LogStore::open(LogStoreConfig::new(dir.path()))?;
//! let group = 0;
//!
//! // Bootstrap: every initial voter starts from the same conf state.
//! let mut batch = WriteBatch::new();
//! batch.set_conf_state(group, ConfState::from((vec![1], vec![])));
//! store.write(batch, true)?;
//!
//! let config = Config { id: 1, check_quorum: true, pre_vote: true, ..Default::default() };
//! let logger = slog::Logger::root(slog::Discard, slog::o!());
//! let mut node = RawNode::new(&config, store.group_storage(group), &logger)?;
//! node.campaign()?;
//!
//! let mut applied = Vec::new();
//! let mut proposed = false;
//! while node.has_ready() {
//!     // 1. Take the Ready; messages that need no persistence go out now.
//!     let mut ready = node.ready();
//!     let _send_now = ready.take_messages();
//!
//!     // 2. A snapshot: restore the state machine from its data, and record
//!     //    its metadata in the batch (this discards the log).
//!     let mut batch = WriteBatch::new();
//!     if !ready.snapshot().is_empty() {
//!         batch.apply_snapshot(group, ready.snapshot().get_metadata().clone());
//!     }
//!
//!     // 3. Apply committed entries to the state machine.
//!     for entry in ready.take_committed_entries() {
//!         if entry.get_entry_type() == EntryType::EntryNormal && !entry.data.is_empty() {
//!             applied.push(entry.data.to_vec());
//!         }
//!     }
//!
//!     // 4. Persist new entries and the hard state: one write for all groups.
//!     batch.append(group, ready.take_entries());
//!     if let Some(hard_state) = ready.hs() {
//!         batch.set_hard_state(group, hard_state.clone());
//!     }
//!     store.write(batch, ready.must_sync())?;
//!
//!     // 5. Only now may the persisted messages go out.
//!     let _send_after_persist = ready.take_persisted_messages();
//!
//!     // 6. Advance; the LightReady carries a commit index to persist, more
//!     //    messages and more committed entries.
//!     let mut light = node.advance(ready);
//!     if let Some(commit) = light.commit_index() {
//!         let mut batch = WriteBatch::new();
//!         batch.set_commit(group, commit);
//!         store.write(batch, false)?;
//!     }
//!     let _send = light.take_messages();
//!     for entry in light.take_committed_entries() {
//!         if entry.get_entry_type() == EntryType::EntryNormal && !entry.data.is_empty() {
//!             applied.push(entry.data.to_vec());
//!         }
//!     }
//!     node.advance_apply();
//!
//!     // Once leader, propose something.
//!     if !proposed && node.raft.state == raft::StateRole::Leader {
//!         node.propose(vec![], b"hello".to_vec())?;
//!         proposed = true;
//!     }
//! }
//! assert_eq!(applied, vec![b"hello".to_vec()]);
//!
//! // Applied entries may be discarded; the term of the last one stays known.
//! let last = store.group_storage(group).last_index()?;
//! store.compact(group, last)?;
//! assert_eq!(store.group_storage(group).first_index()?, last);
//! # Ok(())
//! # }
//! ```

mod config;
pub mod disk;
mod error;
mod group_storage;
mod layout;
mod log_store;
pub mod node;
mod pending;
mod shared;
mod snapshot_provider;
mod staging;
mod term_cache;
pub mod transport;
mod write_batch;

pub use config::LogStoreConfig;
pub use disk::DiskFaults;
pub use error::LogStoreError;
pub use group_storage::GroupStorage;
pub use log_store::LogStore;
pub use snapshot_provider::SnapshotProvider;
pub use write_batch::WriteBatch;
