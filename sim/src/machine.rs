//! The simulated node's state machine: mango's store, applying with the same
//! `Store::apply` as voters and learners, and telling the state-machine-safety invariant
//! what it applied.

use std::sync::Arc;

use mango_consensus::node::{GroupId, StateMachine};
use mango_store::backend::redb::RedbBackend;
use mango_store::{ApplyEntry, Response, Store, StoreError};
use raft::eraftpb::{Entry, EntryType, Snapshot};

use crate::invariants::digest;
use crate::record::Shared;

/// What applying an entry answered.
pub type Output = Result<Response, StoreError>;

pub struct SimMachine {
    pub node: u64,
    pub store: Arc<Store<RedbBackend>>,
    pub record: Shared,
}

impl StateMachine for SimMachine {
    type Output = Output;

    fn applied_index(&self, group: GroupId) -> u64 {
        self.store
            .read(group)
            .map(|v| v.state().applied_index)
            .unwrap_or(0)
    }

    fn apply(&mut self, group: GroupId, entries: &[Entry]) -> Result<Vec<Output>, String> {
        {
            let mut r = self.record.lock();
            for e in entries {
                let d = digest(&e.data);
                r.applied.observe(self.node, e.index, e.term, d);
                r.mix(
                    &[
                        &self.node.to_be_bytes()[..],
                        &e.index.to_be_bytes(),
                        &d.to_be_bytes(),
                    ]
                    .concat(),
                );
            }
        }
        // Configuration changes carry no store request here (the simulated cluster's
        // membership is fixed): the store only advances its applied index for them.
        let batch: Vec<ApplyEntry<'_>> = entries
            .iter()
            .map(|e| ApplyEntry {
                index: e.index,
                term: e.term,
                data: if e.get_entry_type() == EntryType::EntryNormal {
                    &e.data
                } else {
                    &[]
                },
            })
            .collect();
        let applied = self.store.apply(group, &batch).map_err(|e| e.to_string())?;
        let mut by_index = applied.into_iter().peekable();
        Ok(entries
            .iter()
            .map(|e| match by_index.peek() {
                Some(a) if a.index == e.index => by_index
                    .next()
                    .map(|a| a.result)
                    .unwrap_or(Ok(Response::Empty)),
                // Applied before a restart: nobody waits for it.
                _ => Ok(Response::Empty),
            })
            .collect())
    }

    fn restore(&mut self, _group: GroupId, _snapshot: &Snapshot) -> Result<(), String> {
        // The simulated nodes never compact their logs, so no snapshot is ever sent.
        Err("the simulation does not send snapshots".into())
    }
}
