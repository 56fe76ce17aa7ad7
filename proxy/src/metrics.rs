//! The proxy's counters in Prometheus' text format, over plain HTTP on
//! `--listen-metrics-addr` (`GET /metrics`): routing, and the watch tier (upstream watches
//! open, client watches, joins, resumes, slow clients cut off).
//!
//! A deliberately tiny HTTP/1.1 responder (one request per connection, headers bounded) so
//! the proxy needs no HTTP server crate besides tonic's.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use crate::route::Proxy;
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

impl Sources {
    /// The counters as Prometheus text.
    pub fn render(&self) -> String {
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
        let mut out = String::new();
        for (name, kind, help, value) in rows.into_iter().chain(cache_rows) {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
            ));
        }
        let name = "mango_proxy_request_duration_seconds";
        out.push_str(&format!(
            "# HELP {name} Unary requests through the proxy by route, retries included.\n\
             # TYPE {name} histogram\n"
        ));
        for (route, h) in [("leader", &r.leader_latency), ("reads", &r.reads_latency)] {
            let mut cumulative = 0;
            for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
                cumulative += h.buckets[i].load(Ordering::Relaxed);
                out.push_str(&format!(
                    "{name}_bucket{{route=\"{route}\",le=\"{bound}\"}} {cumulative}\n"
                ));
            }
            cumulative += h.buckets[LATENCY_BUCKETS.len()].load(Ordering::Relaxed);
            out.push_str(&format!(
                "{name}_bucket{{route=\"{route}\",le=\"+Inf\"}} {cumulative}\n"
            ));
            let sum = h.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
            out.push_str(&format!("{name}_sum{{route=\"{route}\"}} {sum}\n"));
            out.push_str(&format!(
                "{name}_count{{route=\"{route}\"}} {}\n",
                h.count.load(Ordering::Relaxed)
            ));
        }
        out
    }
}

/// Serves `GET /metrics` on `listener` forever.
pub async fn serve(listener: TcpListener, sources: Sources) {
    loop {
        let Ok((conn, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let sources = sources.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(5), answer(conn, &sources)).await;
        });
    }
}

async fn answer(mut conn: TcpStream, sources: &Sources) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16 * 1024 {
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let line = String::from_utf8_lossy(buf.split(|&b| b == b'\r').next().unwrap_or(&[]));
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, body) = if method == "GET" && (path == "/metrics" || path == "/") {
        ("200 OK", sources.render())
    } else {
        ("404 Not Found", "not found: GET /metrics\n".to_string())
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await?;
    conn.write_all(body.as_bytes()).await?;
    conn.shutdown().await
}
