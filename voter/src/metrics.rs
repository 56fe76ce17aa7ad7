//! What a voter reports on `--listen-metrics-urls`: etcd's metric names for what etcd
//! measures (Raft state and proposals, the backend's size and keys, the disk's fsync and
//! commit latencies, peer round trips, the quota), `mango_*` for the log stream; and its
//! `/health` (no leader, or an alarm raised: 503 as etcd).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mango_boot::http::Observed;
use mango_boot::prom::{DISK_BUCKETS, Histogram, RTT_BUCKETS, Text};
use mango_consensus::node::{GroupId, NodeObserver};
use mango_proto::etcdserverpb::RangeRequest;

use crate::node::VoterNode;

/// The counters and histograms the voter's parts update as they run.
#[derive(Debug)]
pub struct VoterMetrics {
    /// New leaders seen by this member (etcd counts the first one too).
    pub leader_changes: AtomicU64,
    /// Proposals waiting for their outcome now.
    pub proposals_pending: AtomicI64,
    /// Proposals that ended in an error (timeout, no leader, refused).
    pub proposals_failed: AtomicU64,
    /// Synced writes of the Raft log (etcd's WAL fsync).
    pub wal_fsync: Histogram,
    /// Store write transactions, one per applied batch (etcd's backend commit).
    pub backend_commit: Arc<Histogram>,
    /// Round trips of the peer probe, by peer id.
    pub peer_rtt: Mutex<BTreeMap<u64, Histogram>>,
}

impl Default for VoterMetrics {
    fn default() -> Self {
        Self {
            leader_changes: AtomicU64::new(0),
            proposals_pending: AtomicI64::new(0),
            proposals_failed: AtomicU64::new(0),
            wal_fsync: Histogram::new(&DISK_BUCKETS),
            backend_commit: Arc::new(Histogram::new(&DISK_BUCKETS)),
            peer_rtt: Mutex::new(BTreeMap::new()),
        }
    }
}

impl VoterMetrics {
    /// Records one probe's round trip to `peer`.
    pub fn peer_round_trip(&self, peer: u64, rtt: Duration) {
        let mut map = self.peer_rtt.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(peer)
            .or_insert_with(|| Histogram::new(&RTT_BUCKETS))
            .observe(rtt);
    }

    /// Counts a proposal as pending until the guard drops; `failed` marks it failed.
    pub fn pending(&self) -> PendingGuard<'_> {
        self.proposals_pending.fetch_add(1, Ordering::Relaxed);
        PendingGuard(self)
    }
}

/// A proposal in flight (see [`VoterMetrics::pending`]).
pub struct PendingGuard<'a>(&'a VoterMetrics);

impl PendingGuard<'_> {
    /// The proposal failed.
    pub fn failed(&self) {
        self.0.proposals_failed.fetch_add(1, Ordering::Relaxed);
    }
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.0.proposals_pending.fetch_sub(1, Ordering::Relaxed);
    }
}

impl NodeObserver for VoterMetrics {
    fn log_synced(&self, took: Duration) {
        self.wal_fsync.observe(took);
    }

    fn leader_changed(&self, _group: GroupId, _leader: u64) {
        self.leader_changes.fetch_add(1, Ordering::Relaxed);
    }
}

/// The voter as its metrics endpoint sees it.
pub struct VoterObserved(pub Arc<VoterNode>);

const GROUP: u64 = 0;

impl Observed for VoterObserved {
    fn metrics(&self, out: &mut Text) {
        let node = &self.0;
        let m = &node.metrics;
        let raft = node.raft.status(GROUP).unwrap_or_default();
        let flag = |b: bool| if b { 1.0 } else { 0.0 };
        out.gauge(
            "etcd_server_has_leader",
            "Whether or not a leader exists. 1 is existence, 0 is not.",
            flag(raft.leader != 0),
        );
        out.gauge(
            "etcd_server_is_leader",
            "Whether or not this member is a leader. 1 if is, 0 otherwise.",
            flag(raft.leader != 0 && raft.leader == node.member_id),
        );
        out.counter(
            "etcd_server_leader_changes_seen_total",
            "The number of leader changes seen.",
            m.leader_changes.load(Ordering::Relaxed),
        );
        // etcd's own types: committed and applied are gauges despite the _total suffix.
        out.gauge(
            "etcd_server_proposals_committed_total",
            "The total number of consensus proposals committed.",
            raft.commit as f64,
        );
        out.gauge(
            "etcd_server_proposals_applied_total",
            "The total number of consensus proposals applied.",
            raft.applied as f64,
        );
        out.gauge(
            "etcd_server_proposals_pending",
            "The current number of pending proposals to commit.",
            m.proposals_pending.load(Ordering::Relaxed) as f64,
        );
        out.counter(
            "etcd_server_proposals_failed_total",
            "The total number of failed proposals seen.",
            m.proposals_failed.load(Ordering::Relaxed),
        );
        out.gauge(
            "etcd_server_quota_backend_bytes",
            "Current backend storage quota size in bytes.",
            node.quota_bytes as f64,
        );
        let size = node.store.size().unwrap_or_default();
        out.gauge(
            "etcd_mvcc_db_total_size_in_bytes",
            "Total size of the underlying database physically allocated in bytes.",
            size.file_bytes as f64,
        );
        out.gauge(
            "etcd_mvcc_db_total_size_in_use_in_bytes",
            "Total size of the underlying database logically in use in bytes.",
            size.in_use_bytes as f64,
        );
        out.gauge(
            "etcd_debugging_mvcc_keys_total",
            "Total number of keys.",
            live_keys(&node.store) as f64,
        );
        out.histogram(
            "etcd_disk_wal_fsync_duration_seconds",
            "The latency distributions of fsync called by WAL.",
            &m.wal_fsync,
        );
        out.histogram(
            "etcd_disk_backend_commit_duration_seconds",
            "The latency distributions of commit called by backend.",
            &m.backend_commit,
        );
        out.family(
            "etcd_network_peer_round_trip_time_seconds",
            "histogram",
            "Round-Trip-Time histogram between peers",
        );
        {
            let rtt = m.peer_rtt.lock().unwrap_or_else(|p| p.into_inner());
            for (peer, h) in rtt.iter() {
                let to = format!("{peer:x}");
                out.histogram_samples(
                    "etcd_network_peer_round_trip_time_seconds",
                    &[("To", &to)],
                    h,
                );
            }
        }
        out.gauge(
            "mango_raft_log_last_index",
            "The last index of this member's Raft log.",
            raft.last_index as f64,
        );
        out.gauge(
            "mango_logstream_subscribers",
            "Log-stream subscriptions (learners following) served by this member now.",
            mango_logstream::subscribers() as f64,
        );
    }

    fn unhealthy(&self) -> Option<String> {
        let node = &self.0;
        let alarms = node.active_alarms();
        if let Some(a) = alarms.first() {
            return Some(format!(
                "alarm activated: {}",
                crate::node::alarm_name(a.alarm)
            ));
        }
        let raft = node.raft.status(GROUP).unwrap_or_default();
        if raft.leader == 0 {
            return Some("no leader".into());
        }
        None
    }
}

/// Keys at the head revision (etcd's `keys_total`: its index's size), counted from the
/// store's live table.
fn live_keys(store: &mango_store::Store) -> i64 {
    let all = RangeRequest {
        key: vec![0],
        range_end: vec![0],
        count_only: true,
        ..Default::default()
    };
    store
        .read(GROUP)
        .ok()
        .and_then(|v| v.range(&all).ok())
        .map_or(0, |r| r.count)
}
