//! What a learner reports on `--listen-metrics-urls`: how far it is behind (`mango_learner_*`:
//! applied index, the upstream's commit index, lag in entries and in seconds), the store's
//! size and keys under etcd's names, and log-stream subscribers it serves onward; `/health`
//! is 503 while it hears nothing from upstream, or an alarm is raised.

use std::sync::Arc;
use std::time::{Duration, Instant};

use mango_boot::http::Observed;
use mango_boot::prom::Text;
use mango_proto::etcdserverpb::RangeRequest;

use crate::log::LearnerLog;

/// Without a stamp from upstream for this long, the learner is not following (stamps come
/// every 100 ms while idle).
pub const FOLLOW_TIMEOUT: Duration = Duration::from_secs(5);

const GROUP: u64 = 0;

/// The learner as its metrics endpoint sees it.
pub struct LearnerObserved(pub Arc<LearnerLog>);

impl Observed for LearnerObserved {
    fn metrics(&self, out: &mut Text) {
        let log = &self.0;
        let view = log.store().read(GROUP).ok();
        let applied = view.as_ref().map_or(0, |v| v.state().applied_index);
        let fresh = log.freshness();
        let commit = fresh.map_or(0, |f| f.commit);
        let now = Instant::now();
        out.gauge(
            "mango_learner_applied_index",
            "The last log index this learner applied.",
            applied as f64,
        );
        out.gauge(
            "mango_learner_upstream_commit_index",
            "The commit index the newest stamp from upstream named.",
            commit as f64,
        );
        out.gauge(
            "mango_learner_lag_entries",
            "Committed entries this learner has not applied yet.",
            commit.saturating_sub(applied) as f64,
        );
        // Never current yet: as far behind as the process has run, shown as +Inf.
        let lag = log.known_current_at().map_or(f64::INFINITY, |at| {
            now.saturating_duration_since(at).as_secs_f64()
        });
        out.gauge(
            "mango_learner_lag_seconds",
            "Seconds since this learner's applied state was last known to be current.",
            lag,
        );
        let following = fresh.is_some_and(|f| now.saturating_duration_since(f.at) < FOLLOW_TIMEOUT);
        out.gauge(
            "mango_learner_following",
            "Whether a stamp arrived from upstream recently. 1 if so, 0 otherwise.",
            if following { 1.0 } else { 0.0 },
        );
        let size = log.store().size().unwrap_or_default();
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
        let all = RangeRequest {
            key: vec![0],
            range_end: vec![0],
            count_only: true,
            ..Default::default()
        };
        let keys = view
            .as_ref()
            .and_then(|v| v.range(&all).ok())
            .map_or(0, |r| r.count);
        out.gauge(
            "etcd_debugging_mvcc_keys_total",
            "Total number of keys.",
            keys as f64,
        );
        out.gauge(
            "mango_logstream_subscribers",
            "Log-stream subscriptions (learners following) served by this learner now.",
            mango_logstream::subscribers() as f64,
        );
    }

    fn unhealthy(&self) -> Option<String> {
        let log = &self.0;
        if let Some(a) = log
            .store()
            .read(GROUP)
            .ok()
            .and_then(|v| v.alarms().ok())
            .and_then(|a| a.into_iter().next())
        {
            let name = if a.alarm == 1 { "NOSPACE" } else { "CORRUPT" };
            return Some(format!("alarm activated: {name}"));
        }
        match log.freshness() {
            None => Some("not following: no stamp from upstream yet".into()),
            Some(f) if f.at.elapsed() >= FOLLOW_TIMEOUT => Some(format!(
                "not following: no stamp from upstream for {}s",
                f.at.elapsed().as_secs()
            )),
            Some(_) => None,
        }
    }
}
