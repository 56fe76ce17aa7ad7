//! The proxy's counters on `--listen-metrics-urls` (mango-boot's endpoint): routing, reads
//! by consistency level, the watch tier (upstream watches open, client watches, joins,
//! resumes, slow clients cut off), the stale cache and latency; `/health` is unhealthy while
//! no leader is known among the voters.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use mango_boot::http::Observed;
use mango_boot::prom::Text;

use crate::route::{Proxy, READ_LEVELS};
use crate::stack::latency::LATENCY_BUCKETS;
use crate::watch::broadcast::Registry;

/// What the endpoint reports.
#[derive(Clone)]
pub struct Sources {
    /// Routing counters.
    pub proxy: Proxy,
    /// Watch counters.
    pub watches: Arc<Registry>,
    /// The stale-read cache, if on.
    pub cache: Option<Arc<crate::cache::StaleCache>>,
}

impl Observed for Sources {
    fn metrics(&self, out: &mut Text) {
        let r = self.proxy.counters();
        let w = &self.watches.counters;
        let rows: [(&str, &str, &str, u64); 13] = [
            (
                "mango_proxy_to_leader_total",
                "counter",
                "Requests and streams sent to the leader.",
                r.to_leader.load(Ordering::Relaxed),
            ),
            (
                "mango_proxy_to_reads_total",
                "counter",
                "Requests and streams sent to the read pool.",
                r.to_reads.load(Ordering::Relaxed),
            ),
            (
                "mango_proxy_retries_total",
                "counter",
                "Attempts repeated after a failure.",
                r.retries.load(Ordering::Relaxed),
            ),
            (
                "mango_proxy_shed_total",
                "counter",
                "Unary requests refused by the concurrency limit.",
                r.shed.load(Ordering::Relaxed),
            ),
            (
                "mango_proxy_streams_shed_total",
                "counter",
                "Streams and blocking calls refused by the stream limit.",
                r.streams_shed.load(Ordering::Relaxed),
            ),
            (
                "mango_proxy_streams_open",
                "gauge",
                "Client streams and blocking calls open now.",
                self.proxy.streams_open() as u64,
            ),
            (
                "mango_proxy_upstream_watches",
                "gauge",
                "Upstream watches open on learners now.",
                w.upstream_watches.load(Ordering::Relaxed),
            ),
            (
                "mango_proxy_upstream_watch_creates_total",
                "counter",
                "Upstream watch creates sent, resumptions included.",
                w.upstream_creates.load(Ordering::Relaxed),
            ),
            (
                "mango_proxy_upstream_watch_resumes_total",
                "counter",
                "Upstream watches created again after their stream broke.",
                w.resumes.load(Ordering::Relaxed),
            ),
            (
                "mango_proxy_upstream_watch_moves_total",
                "counter",
                "Upstream watches moved from a voter to a learner once one was up.",
                w.moves.load(Ordering::Relaxed),
            ),
            (
                "mango_proxy_client_watches",
                "gauge",
                "Client watches open now.",
                w.client_watches.load(Ordering::Relaxed),
            ),
            (
                "mango_proxy_watch_joins_total",
                "counter",
                "Client watches that joined an upstream watch opened for another.",
                w.joined.load(Ordering::Relaxed),
            ),
            (
                "mango_proxy_slow_watch_clients_total",
                "counter",
                "Client watch streams closed for not keeping up.",
                w.slow_clients.load(Ordering::Relaxed),
            ),
        ];
        let (hits, misses) = self.cache.as_ref().map_or((0, 0), |c| {
            (
                c.hits.load(Ordering::Relaxed),
                c.misses.load(Ordering::Relaxed),
            )
        });
        let cache_rows = [
            (
                "mango_proxy_stale_cache_hits_total",
                "counter",
                "Stale reads answered from the cache.",
                hits,
            ),
            (
                "mango_proxy_stale_cache_misses_total",
                "counter",
                "Stale reads the cache could not answer.",
                misses,
            ),
        ];
        for (name, kind, help, value) in rows.into_iter().chain(cache_rows) {
            out.single(name, kind, help, value as f64);
        }
        let name = "mango_proxy_reads_total";
        out.family(
            name,
            "counter",
            "Reads (Ranges, read-only Txns) by consistency level.",
        );
        for (level, n) in READ_LEVELS.iter().zip(&r.reads_by_level) {
            out.sample(name, &[("level", level)], n.load(Ordering::Relaxed) as f64);
        }
        out.gauge(
            "mango_proxy_has_leader",
            "Whether the proxy knows the voters' leader. 1 if it does, 0 otherwise.",
            if self.proxy.leader_url().is_some() {
                1.0
            } else {
                0.0
            },
        );
        let name = "mango_proxy_request_duration_seconds";
        out.family(
            name,
            "histogram",
            "Unary requests through the proxy by route, retries included.",
        );
        for (route, h) in [("leader", &r.leader_latency), ("reads", &r.reads_latency)] {
            let mut cumulative = 0;
            for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
                cumulative += h.buckets[i].load(Ordering::Relaxed);
                let le = bound.to_string();
                out.sample(
                    &format!("{name}_bucket"),
                    &[("route", route), ("le", &le)],
                    cumulative as f64,
                );
            }
            cumulative += h.buckets[LATENCY_BUCKETS.len()].load(Ordering::Relaxed);
            out.sample(
                &format!("{name}_bucket"),
                &[("route", route), ("le", "+Inf")],
                cumulative as f64,
            );
            let sum = h.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
            out.sample(&format!("{name}_sum"), &[("route", route)], sum);
            let count = h.count.load(Ordering::Relaxed) as f64;
            out.sample(&format!("{name}_count"), &[("route", route)], count);
        }
    }

    fn unhealthy(&self) -> Option<String> {
        self.proxy
            .leader_url()
            .is_none()
            .then(|| "no leader known among the voters".to_string())
    }
}
