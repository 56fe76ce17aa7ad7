//! The nemesis: faults injected between simulation steps, chosen by the run's seed. At most
//! one crash and one partition at a time; each fault is healed after a while, and all are
//! healed for the run's last phase so the invariants also see a cluster that recovered.

use std::collections::BTreeMap;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::disk::NodeDisk;
use crate::record::Shared;

/// Which faults a run injects.
#[derive(Clone, Debug)]
pub struct Faults {
    /// kill -9 and restart of a node.
    pub crash: bool,
    /// A node cut off from every other host (clients too).
    pub partition: bool,
    /// Message delays raised on every link for a while.
    pub delay: bool,
    /// Every link of a node held for a while, then its queued messages delivered at once
    /// (what peers see of a paused process: silence, then a burst of stale messages).
    pub hold: bool,
    /// Power losses: half the crashes also lose every file's unsynced bytes, and now and
    /// then every node loses power at once (all restarted together).
    pub power_loss: bool,
    /// Machines replaced now and then: member removed, machine wiped, added back as a new
    /// member ([`crate::membership`]).
    pub membership: bool,
    /// The share of Raft messages each node drops (always on when > 0).
    pub drop_rate: f64,
    /// Mean time between faults.
    pub every: Duration,
}

impl Faults {
    /// No faults at all.
    pub fn none() -> Self {
        Self {
            crash: false,
            partition: false,
            delay: false,
            hold: false,
            power_loss: false,
            membership: false,
            drop_rate: 0.0,
            every: Duration::from_secs(1),
        }
    }

    /// Every kind of fault.
    pub fn all() -> Self {
        Self {
            crash: true,
            partition: true,
            delay: true,
            // Off in `all` so that the seeds recorded for earlier bugs keep replaying the
            // same runs; `with_holds` adds it.
            hold: false,
            // Off in `all` for the same reason; `with_power_loss` adds it.
            power_loss: false,
            membership: false,
            drop_rate: 0.01,
            every: Duration::from_millis(700),
        }
    }
}

impl Faults {
    /// Every kind of fault, holds included.
    pub fn with_holds() -> Self {
        Self {
            hold: true,
            ..Self::all()
        }
    }

    /// Every kind of fault but holds and power losses, and machines replaced.
    pub fn with_membership() -> Self {
        Self {
            membership: true,
            ..Self::all()
        }
    }

    /// Every kind of fault but holds, and power losses.
    pub fn with_power_loss() -> Self {
        Self {
            power_loss: true,
            ..Self::all()
        }
    }
}

/// How many faults of each kind a run injected.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultCounts {
    pub crashes: u32,
    pub partitions: u32,
    pub delays: u32,
    pub holds: u32,
    /// Crashes that were power losses (of one node, or of all at once), and of all at once.
    pub power_losses: u32,
    pub outages: u32,
    /// Unsynced log bytes and store writes the power losses took.
    pub lost_log_bytes: u64,
    pub lost_store_writes: u64,
    /// Machines wiped and restarted as new members.
    pub replacements: u32,
}

pub(crate) struct Nemesis {
    faults: Faults,
    rng: SmallRng,
    nodes: Vec<String>,
    /// Every host (nodes and clients), for cutting a node off from all of them.
    hosts: Vec<String>,
    next_at: Duration,
    crashed: Option<(String, Duration)>,
    /// Every node is down (a power loss of all), until then.
    outage: Option<Duration>,
    /// Each node's disk, to kill it before a crash and lose its unsynced bytes after.
    disks: BTreeMap<String, NodeDisk>,
    /// A fault the nemesis could not inject (fails the run).
    pub failure: Option<String>,
    partitioned: Option<(String, Duration)>,
    delayed_until: Option<Duration>,
    held: Option<(String, Duration)>,
    pub counts: FaultCounts,
    record: Shared,
}

/// The normal message latency, and the raised one.
pub(crate) const LATENCY: Duration = Duration::from_millis(2);
const SLOW_LATENCY: Duration = Duration::from_millis(60);

impl Nemesis {
    pub fn new(
        faults: Faults,
        seed: u64,
        nodes: Vec<String>,
        hosts: Vec<String>,
        disks: BTreeMap<String, NodeDisk>,
        record: Shared,
    ) -> Self {
        let mut rng = SmallRng::seed_from_u64(seed);
        let next_at = jitter(&mut rng, faults.every);
        Self {
            faults,
            rng,
            nodes,
            hosts,
            next_at,
            crashed: None,
            outage: None,
            disks,
            failure: None,
            partitioned: None,
            delayed_until: None,
            held: None,
            counts: FaultCounts::default(),
            record,
        }
    }

    /// Called after every step at simulated time `now`; `active` is false once faults must
    /// stop (everything is healed then).
    pub fn act(&mut self, sim: &mut turmoil::Sim<'_>, now: Duration, active: bool) {
        let ms = u64::try_from(now.as_millis()).unwrap_or(u64::MAX);
        if let Some((node, until)) = self.crashed.clone()
            && (now >= until || !active)
        {
            sim.bounce(node.as_str());
            self.record.event_at(ms, format!("nemesis: restart {node}"));
            self.crashed = None;
        }
        if let Some(until) = self.outage
            && (now >= until || !active)
        {
            for node in &self.nodes {
                sim.bounce(node.as_str());
            }
            self.record
                .event_at(ms, "nemesis: power back, restart every node".into());
            self.outage = None;
        }
        if let Some((node, until)) = self.partitioned.clone()
            && (now >= until || !active)
        {
            for h in self.hosts.iter().filter(|h| **h != node) {
                sim.repair(node.as_str(), h.as_str());
            }
            self.record.event_at(ms, format!("nemesis: heal {node}"));
            self.partitioned = None;
        }
        if let Some(until) = self.delayed_until
            && (now >= until || !active)
        {
            sim.set_max_message_latency(LATENCY);
            self.record
                .event_at(ms, "nemesis: latency back to normal".into());
            self.delayed_until = None;
        }
        if let Some((node, until)) = self.held.clone()
            && (now >= until || !active)
        {
            for h in self.hosts.iter().filter(|h| **h != node) {
                sim.release(node.as_str(), h.as_str());
            }
            self.record.event_at(ms, format!("nemesis: release {node}"));
            self.held = None;
        }
        if !active || now < self.next_at {
            return;
        }
        self.next_at = now + jitter(&mut self.rng, self.faults.every);
        let mut kinds = Vec::new();
        if self.faults.crash && self.crashed.is_none() && self.outage.is_none() {
            kinds.push(0);
        }
        if self.faults.partition && self.partitioned.is_none() && self.held.is_none() {
            kinds.push(1);
        }
        if self.faults.delay && self.delayed_until.is_none() {
            kinds.push(2);
        }
        // Never a node held and cut off or crashed at once (a release would undo a cut).
        if self.faults.hold && self.held.is_none() && self.partitioned.is_none() {
            kinds.push(3);
        }
        if self.faults.power_loss && self.crashed.is_none() && self.outage.is_none() {
            kinds.push(4);
        }
        if kinds.is_empty() {
            return;
        }
        let kind = kinds[self.rng.random_range(0..kinds.len())];
        let node = self.nodes[self.rng.random_range(0..self.nodes.len())].clone();
        let lasts = Duration::from_millis(self.rng.random_range(100..2_000));
        match kind {
            0 => {
                let power = self.faults.power_loss && self.rng.random_bool(0.5);
                let lost = self.crash(sim, &node, power);
                self.record.event_at(
                    ms,
                    format!(
                        "nemesis: {} {node} for {lasts:?}{lost}",
                        if power { "power loss of" } else { "crash" }
                    ),
                );
                self.crashed = Some((node, now + lasts));
                self.counts.crashes += 1;
            }
            4 => {
                let mut lost = String::new();
                for n in self.nodes.clone() {
                    lost += &self.crash(sim, &n, true);
                }
                self.record.event_at(
                    ms,
                    format!("nemesis: power loss of every node for {lasts:?}{lost}"),
                );
                self.outage = Some(now + lasts);
                self.counts.crashes += self.nodes.len() as u32;
                self.counts.outages += 1;
            }
            1 => {
                for h in self.hosts.iter().filter(|h| **h != node) {
                    sim.partition(node.as_str(), h.as_str());
                }
                self.record
                    .event_at(ms, format!("nemesis: partition {node} for {lasts:?}"));
                self.partitioned = Some((node, now + lasts));
                self.counts.partitions += 1;
            }
            3 => {
                if self.crashed.as_ref().is_some_and(|(n, _)| *n == node) {
                    return;
                }
                for h in self.hosts.iter().filter(|h| **h != node) {
                    sim.hold(node.as_str(), h.as_str());
                }
                self.record
                    .event_at(ms, format!("nemesis: hold {node}'s links for {lasts:?}"));
                self.held = Some((node, now + lasts));
                self.counts.holds += 1;
            }
            _ => {
                sim.set_max_message_latency(SLOW_LATENCY);
                self.record.event_at(
                    ms,
                    format!("nemesis: latency up to {SLOW_LATENCY:?} for {lasts:?}"),
                );
                self.delayed_until = Some(now + lasts);
                self.counts.delays += 1;
            }
        }
    }
}

impl Nemesis {
    /// Whether the nemesis holds `node` down (it restarts it itself).
    pub fn is_down(&self, node: &str) -> bool {
        self.outage.is_some() || self.crashed.as_ref().is_some_and(|(n, _)| n == node)
    }

    /// Kills `node`'s disk, crashes the host and, for a power loss, loses its unsynced bytes.
    /// Returns what was lost, for the trace.
    fn crash(&mut self, sim: &mut turmoil::Sim<'_>, node: &str, power: bool) -> String {
        let disk = self.disks.get(node).cloned().unwrap_or_default();
        disk.kill();
        sim.crash(node);
        if !power {
            return String::new();
        }
        self.counts.power_losses += 1;
        match disk.lose_unsynced() {
            Ok(lost) => {
                self.counts.lost_log_bytes += lost.log_bytes;
                self.counts.lost_store_writes += lost.store_writes as u64;
                format!(
                    " ({node}: {} unsynced log bytes, {} store writes lost)",
                    lost.log_bytes, lost.store_writes
                )
            }
            Err(e) => {
                self.failure.get_or_insert(e);
                String::new()
            }
        }
    }
}

/// Between half and one and a half times `mean`.
fn jitter(rng: &mut SmallRng, mean: Duration) -> Duration {
    let ms = u64::try_from(mean.as_millis()).unwrap_or(1).max(2);
    Duration::from_millis(rng.random_range(ms / 2..ms + ms / 2))
}
