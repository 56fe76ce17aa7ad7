//! The simulated node's state machine: the voter's own `StoreMachine` (the store's one
//! `Store::apply`, Raft log compaction every `snapshot_count` entries, snapshots installed
//! from a staged file), wrapped to tell the state-machine-safety invariant what it applied.

use mango_consensus::node::{GroupId, StateMachine};
use mango_voter::machine::StoreMachine;
use raft::eraftpb::{Entry, Snapshot};

use crate::invariants::digest;
use crate::record::Shared;

/// What applying an entry answered.
pub type Output = mango_voter::machine::Output;

pub struct SimMachine {
    pub node: u64,
    pub inner: StoreMachine,
    pub record: Shared,
}

impl StateMachine for SimMachine {
    type Output = Output;

    fn applied_index(&self, group: GroupId) -> u64 {
        self.inner.applied_index(group)
    }

    fn apply(&mut self, group: GroupId, entries: &[Entry]) -> Result<Vec<Output>, String> {
        {
            let mut r = self.record.lock();
            for e in entries {
                let d = digest(&e.data);
                r.applied.observe(group, self.node, e.index, e.term, d);
                let event = [
                    &self.node.to_be_bytes()[..],
                    &group.to_be_bytes(),
                    &e.index.to_be_bytes(),
                    &d.to_be_bytes(),
                ]
                .concat();
                r.mix(&event);
            }
        }
        self.inner.apply(group, entries)
    }

    fn restore(&mut self, group: GroupId, snapshot: &Snapshot) -> Result<(), String> {
        let index = snapshot.get_metadata().get_index();
        {
            let mut r = self.record.lock();
            r.snapshots_installed += 1;
            r.mix(
                &[
                    &self.node.to_be_bytes()[..],
                    &group.to_be_bytes(),
                    b"snapshot",
                    &index.to_be_bytes(),
                ]
                .concat(),
            );
        }
        self.inner.restore(group, snapshot)
    }
}
