//! What a run records: the trace (every event that matters, in order, with its simulated
//! time) and the observations the invariants check. One `Recorder` per run, shared by every
//! simulated host (they all run on the simulation's one thread; the mutex only satisfies
//! `Send` for the state machine, which the Raft loop requires).

use std::sync::{Arc, Mutex, MutexGuard};

use crate::invariants::digest;
use crate::invariants::election_safety::Elections;
use crate::invariants::linearizable::History;
use crate::invariants::log_matching::Logs;
use crate::invariants::state_machine_safety::AppliedEntries;
use crate::invariants::store_convergence::StoreHashes;

/// The run's record.
#[derive(Debug, Default)]
pub struct Recorder {
    /// Event lines, in the order they happened.
    pub trace: Vec<String>,
    /// A running digest of every event, including the ones too frequent for `trace`
    /// (applied entries): two runs with equal digests did the same things in the same order.
    pub digest: u64,
    pub elections: Elections,
    pub applied: AppliedEntries,
    pub logs: Logs,
    pub history: History,
    pub stores: StoreHashes,
    /// Snapshots installed by any node.
    pub snapshots_installed: u64,
    /// Client operations that completed, by Raft group.
    pub completed_by_group: std::collections::BTreeMap<u64, u64>,
}

/// The recorder, shared.
#[derive(Clone, Debug, Default)]
pub struct Shared(Arc<Mutex<Recorder>>);

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, Recorder> {
        // A panic while recording already fails the run; go on with what is there.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds an event line to the trace, at the simulated time (inside a host).
    pub fn event(&self, line: String) {
        self.event_at(now_ms(), line);
    }

    /// Adds an event line to the trace at `ms` (from outside the hosts).
    pub fn event_at(&self, ms: u64, line: String) {
        let mut r = self.lock();
        let line = format!("{ms:>8} {line}");
        r.mix(line.as_bytes());
        r.trace.push(line);
    }
}

impl Recorder {
    /// Mixes `bytes` into the run's digest.
    pub fn mix(&mut self, bytes: &[u8]) {
        self.digest = digest(&[&self.digest.to_be_bytes()[..], bytes].concat());
    }
}

/// Simulated milliseconds since the run began (0 outside a simulation).
pub fn now_ms() -> u64 {
    turmoil::sim_elapsed()
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Simulated microseconds since the run began, for client histories.
pub fn now_us() -> u64 {
    turmoil::sim_elapsed()
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
