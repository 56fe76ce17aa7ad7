//! Deterministic simulation of mango clusters: whole clusters in one process, from one seed.
//!
//! [`run`] builds a turmoil simulation with one host per node and one per client. Each node
//! runs mango's own Raft loop ([`mango_consensus::node::SteppedNode`]: the same code a voter
//! runs, with log writes and applying inline), raft-engine and mango's store on real files
//! (in `/dev/shm` where it exists), and sends Raft messages as datagrams on turmoil's
//! network. A node runs one Raft group or several (every node a voter of each, one Raft loop
//! and one log engine for all, as mango's multi-Raft does). Clients put and get
//! (linearizably) a few keys of each group through random nodes. A nemesis
//! crashes and restarts nodes, cuts one off from every other host, raises message delays,
//! and every node drops a share of its messages. Afterwards each safety invariant is checked
//! by its own module ([`invariants`]).
//!
//! Everything random comes from the seed: turmoil's network (delays, host order), the
//! nemesis, the clients, the message drops, and raft-rs's election timeouts (through
//! `NodeConfig::election_timeouts`). So the same seed gives the same trace, event for event
//! ([`Report::digest`]); a failing seed is replayed with the command [`Failure`] prints.
//!
//! Architecture invariant: nothing here replaces mango's consensus or store code; only the
//! network, the clock and the threads are the simulator's.

pub mod client;
pub mod disk;
pub mod invariants;
pub mod machine;
pub mod membership;
pub mod nemesis;
pub mod node;
pub mod node_thread;
pub mod record;
pub mod wire;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

pub use nemesis::{FaultCounts, Faults};

use crate::nemesis::{LATENCY, Nemesis};
use crate::record::Shared;

/// One simulated run.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub seed: u64,
    /// Voters.
    pub nodes: u64,
    /// Raft groups (0..groups), each replicated by every node.
    pub groups: u64,
    /// Concurrent clients.
    pub clients: usize,
    /// Keys the clients share, in each group.
    pub keys: usize,
    /// Simulated time with clients working (and faults, if any).
    pub duration: Duration,
    /// Simulated time after that with every fault healed and clients still working.
    pub settle: Duration,
    pub faults: Faults,
    /// Raft tick, and ticks before an election.
    pub tick: Duration,
    pub election_ticks: usize,
}

impl SimConfig {
    /// 3 nodes, one Raft group, 3 clients on 3 keys, 8 s of faults then 3 s healed.
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            nodes: 3,
            groups: 1,
            clients: 3,
            keys: 3,
            duration: Duration::from_secs(8),
            settle: Duration::from_secs(3),
            faults: Faults::all(),
            tick: Duration::from_millis(10),
            election_ticks: 10,
        }
    }
}

/// What a run did.
#[derive(Clone, Debug)]
pub struct Report {
    pub seed: u64,
    /// The digest of every event of the run, in order.
    pub digest: u64,
    /// The trace's event lines.
    pub trace: Vec<String>,
    /// Client operations recorded, and how many of them completed.
    pub operations: usize,
    pub completed: usize,
    /// Terms that had a leader (over all groups).
    pub terms: usize,
    /// Raft groups run, groups that elected a leader, and groups in which some client
    /// operation completed.
    pub groups: u64,
    pub groups_with_leader: usize,
    pub groups_with_completed_ops: usize,
    /// The highest index applied anywhere, and entries applied over all nodes.
    pub highest_applied: u64,
    pub applied: u64,
    /// Log snapshots compared.
    pub log_snapshots: usize,
    /// Raft snapshots installed (nodes that fell behind the compacted log).
    pub snapshots_installed: u64,
    /// The highest first index of a Raft log seen (how far logs were compacted).
    pub compacted_to: u64,
    /// Store hashes compared across nodes (same revision, same HashKV).
    pub store_hashes_compared: u64,
    pub faults: FaultCounts,
}

/// A run that broke an invariant (or could not run).
#[derive(Debug)]
pub struct Failure {
    pub seed: u64,
    pub error: String,
    /// The report, when the simulation itself ran to the end.
    pub report: Option<Report>,
    /// Whether the run held links (the replay must too).
    pub holds: bool,
    /// The run's Raft groups (the replay must run as many).
    pub groups: u64,
    /// Whether the run had power losses (the replay must too).
    pub power_loss: bool,
    /// Whether the run replaced machines (the replay must too).
    pub membership: bool,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "simulation seed {} failed: {}", self.seed, self.error)?;
        if let Some(r) = &self.report {
            let tail = r.trace.len().saturating_sub(40);
            writeln!(f, "last events:")?;
            for line in &r.trace[tail..] {
                writeln!(f, "  {line}")?;
            }
        }
        write!(
            f,
            "replay: {}{}{}{}MANGO_SIM_SEED={} cargo nextest run -p mango-sim --test sim replay_one_seed --run-ignored all",
            if self.holds { "MANGO_SIM_HOLDS=1 " } else { "" },
            if self.power_loss {
                "MANGO_SIM_POWER_LOSS=1 "
            } else {
                ""
            },
            if self.membership {
                "MANGO_SIM_MEMBERSHIP=1 "
            } else {
                ""
            },
            if self.groups > 1 {
                format!("MANGO_SIM_GROUPS={} ", self.groups)
            } else {
                String::new()
            },
            self.seed
        )
    }
}

impl std::error::Error for Failure {}

/// Mixes `x` into `seed` (splitmix64), so each host gets its own stream.
fn derive(seed: u64, x: u64) -> u64 {
    let mut z = seed ^ x.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Runs one simulation and checks every invariant.
pub fn run(config: &SimConfig) -> Result<Report, Box<Failure>> {
    let fail = |error: String, report: Option<Report>| {
        Box::new(Failure {
            seed: config.seed,
            error,
            report,
            holds: config.faults.hold,
            groups: config.groups,
            power_loss: config.faults.power_loss,
            membership: config.faults.membership,
        })
    };
    let base = if std::path::Path::new("/dev/shm").is_dir() {
        tempfile::Builder::new()
            .prefix("mango-sim")
            .tempdir_in("/dev/shm")
    } else {
        tempfile::Builder::new().prefix("mango-sim").tempdir()
    }
    .map_err(|e| fail(format!("making the data folder: {e}"), None))?;
    let record = Shared::default();
    let nodes: Vec<String> = (1..=config.nodes).map(|i| format!("n{i}")).collect();
    let clients: Vec<String> = (0..config.clients).map(|i| format!("c{i}")).collect();
    let members: Vec<(u64, String)> = (1..=config.nodes).zip(nodes.iter().cloned()).collect();
    let end = config.duration + config.settle;
    let mut sim = turmoil::Builder::new()
        .rng_seed(derive(config.seed, 0))
        .enable_random_order()
        .simulation_duration(end + Duration::from_secs(30))
        .tick_duration(Duration::from_millis(1))
        .min_message_latency(Duration::from_micros(200))
        .max_message_latency(LATENCY)
        .udp_capacity(1 << 14)
        .build();
    let disks: std::collections::BTreeMap<String, disk::NodeDisk> = nodes
        .iter()
        .map(|n| (n.clone(), disk::NodeDisk::default()))
        .collect();
    let directory = membership::Directory::default();
    let mut replaceable = std::collections::BTreeMap::new();
    for (id, name) in &members {
        directory.insert(*id, name);
        let identity = membership::Identity::founder(*id);
        let disk = disks.get(name).cloned().unwrap_or_default();
        replaceable.insert(
            name.clone(),
            membership::Host {
                identity: identity.clone(),
                disk: disk.clone(),
                dir: base.path().join(name),
            },
        );
        let spec = node::NodeSpec {
            disk,
            identity,
            initial_voters: members.iter().map(|(id, _)| *id).collect(),
            directory: directory.clone(),
            dir: base.path().join(name),
            groups: config.groups,
            seed: derive(config.seed, 100 + id),
            drop_rate: config.faults.drop_rate,
            tick: config.tick,
            election_ticks: config.election_ticks,
            record: record.clone(),
            boots: Arc::new(AtomicU64::new(0)),
        };
        sim.host(name.as_str(), move || node::run(spec.clone()));
    }
    // Names unique over the groups (group 0's as they were before there were several), so
    // the history is still checked key by key.
    let keys: Vec<(u64, Vec<u8>)> = (0..config.groups)
        .flat_map(|g| {
            (0..config.keys).map(move |k| {
                let name = if g == 0 {
                    format!("k{k}")
                } else {
                    format!("g{g}k{k}")
                };
                (g, name.into_bytes())
            })
        })
        .collect();
    for (i, name) in clients.iter().enumerate() {
        let spec = client::ClientSpec {
            index: i,
            nodes: nodes.clone(),
            keys: keys.clone(),
            seed: derive(config.seed, 200 + i as u64),
            until: end,
            record: record.clone(),
        };
        sim.client(name.as_str(), client::run(spec));
    }
    let replacements = membership::Replacements::default();
    if config.faults.membership {
        sim.client(
            "admin",
            membership::admin(membership::AdminSpec {
                hosts: replaceable
                    .iter()
                    .map(|(name, h)| (name.clone(), h.identity.clone()))
                    .collect(),
                groups: config.groups,
                replacements: replacements.clone(),
                seed: derive(config.seed, 300),
                until: config.duration,
                record: record.clone(),
            }),
        );
    }
    let hosts: Vec<String> = nodes.iter().chain(&clients).cloned().collect();
    let mut nemesis = Nemesis::new(
        config.faults.clone(),
        derive(config.seed, 1),
        nodes.clone(),
        hosts,
        disks,
        record.clone(),
    );
    let mut sim_error = None;
    loop {
        match sim.step() {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => {
                sim_error = Some(format!("the simulation failed: {e}"));
                break;
            }
        }
        let now = sim.elapsed();
        nemesis.act(&mut sim, now, now < config.duration);
        if config.faults.membership {
            let ms = u64::try_from(now.as_millis()).unwrap_or(u64::MAX);
            match replacements.act(&mut sim, &replaceable, &directory, &record, ms, |h| {
                nemesis.is_down(h)
            }) {
                Ok(n) => nemesis.counts.replacements += n,
                Err(e) => {
                    sim_error = Some(e);
                    break;
                }
            }
        }
    }
    drop(sim);
    if let Some(e) = nemesis.failure.take() {
        sim_error.get_or_insert(e);
    }
    if std::env::var_os("MANGO_SIM_VERBOSE").is_some() {
        eprintln!("seed {}: simulated {:?}, checking", config.seed, end);
    }
    let r = record.lock();
    if std::env::var_os("MANGO_SIM_VERBOSE").is_some() {
        r.logs.describe();
    }
    let (operations, completed) = r.history.counts();
    let report = Report {
        seed: config.seed,
        digest: r.digest,
        trace: r.trace.clone(),
        operations,
        completed,
        terms: r.elections.terms_with_leader(),
        groups: config.groups,
        groups_with_leader: r.elections.groups_with_leader(),
        groups_with_completed_ops: r.completed_by_group.values().filter(|n| **n > 0).count(),
        highest_applied: r.applied.highest(),
        applied: r.applied.count,
        log_snapshots: r.logs.len(),
        snapshots_installed: r.snapshots_installed,
        compacted_to: r.logs.highest_first_index(),
        store_hashes_compared: r.stores.compared,
        faults: nemesis.counts.clone(),
    };
    let checks = [
        r.elections.check(),
        r.logs.check(),
        r.applied.check(),
        r.stores.check(),
        r.history.check(),
    ];
    drop(r);
    if let Some(e) = sim_error {
        return Err(fail(e, Some(report)));
    }
    for c in checks {
        if let Err(e) = c {
            return Err(fail(e, Some(report)));
        }
    }
    if report.completed == 0 {
        return Err(fail(
            "no client operation completed: the cluster never made progress".into(),
            Some(report),
        ));
    }
    Ok(report)
}
