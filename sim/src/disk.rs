//! A node's disk as a crash leaves it: the fault switches over its Raft log
//! ([`DiskFaults`]) and its store ([`StoreFaults`]). Kept across the node's restarts, as
//! its files are.
//!
//! Every crash kills the process first, so nothing the dying node would write on its way
//! out (raft-engine tidying its files, redb making a pending commit durable as it closes)
//! reaches the files, as after a `kill -9`. A power loss also loses what was written since
//! each file's last sync.

use mango_consensus::DiskFaults;
use mango_store::backend::redb_faults::StoreFaults;

#[derive(Clone, Debug, Default)]
pub struct NodeDisk {
    pub log: DiskFaults,
    pub store: StoreFaults,
}

/// What a power loss took: unsynced log bytes, and unsynced store writes undone.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lost {
    pub log_bytes: u64,
    pub store_writes: usize,
}

impl NodeDisk {
    /// The process dies: nothing more it writes reaches its files.
    pub fn kill(&self) {
        self.log.kill();
        self.store.kill();
    }

    /// The power goes (after [`kill`](Self::kill), with the node's files closed).
    pub fn lose_unsynced(&self) -> Result<Lost, String> {
        Ok(Lost {
            log_bytes: self
                .log
                .lose_unsynced()
                .map_err(|e| format!("power loss on the log: {e}"))?,
            store_writes: self
                .store
                .lose_unsynced()
                .map_err(|e| format!("power loss on the store: {e}"))?,
        })
    }

    /// The node's files were wiped: nothing is left to lose.
    pub fn forget(&self) {
        self.log.forget();
        self.store.forget();
    }

    /// The node starts again.
    pub fn revive(&self) {
        self.log.revive();
        self.store.revive();
    }
}
