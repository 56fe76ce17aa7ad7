//! The latency layer: per-route histograms of whole requests (retries and timeouts
//! included), served on `/metrics` as `mango_proxy_request_duration_seconds`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;
use tower::{Layer, Service};

use super::{BoxFuture, Forward};
use crate::route::Proxy;

/// Upper bounds of the latency buckets, in seconds (Prometheus' `le`).
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// A latency histogram: a count per bucket (not cumulative), the sum and the count.
#[derive(Default)]
pub struct Histogram {
    /// Requests per bucket of [`LATENCY_BUCKETS`], the last one past them all.
    pub buckets: [AtomicU64; 13],
    /// Microseconds, summed.
    pub sum_micros: AtomicU64,
    /// Requests.
    pub count: AtomicU64,
}

impl Histogram {
    /// Records one request that took `took`.
    pub fn observe(&self, took: Duration) {
        let secs = took.as_secs_f64();
        let i = LATENCY_BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }
}

/// Records each request's time in its route's histogram.
#[derive(Clone)]
pub struct LatencyLayer {
    proxy: Proxy,
}

impl LatencyLayer {
    /// The layer recording into `proxy`'s counters.
    pub fn new(proxy: Proxy) -> Self {
        Self { proxy }
    }
}

impl<S> Layer<S> for LatencyLayer {
    type Service = Latency<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Latency {
            inner,
            proxy: self.proxy.clone(),
        }
    }
}

/// See [`LatencyLayer`].
#[derive(Clone)]
pub struct Latency<S> {
    inner: S,
    proxy: Proxy,
}

impl<S, M> Service<Forward<M>> for Latency<S>
where
    S: Service<Forward<M>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Forward<M>) -> Self::Future {
        let route = req.route;
        let proxy = self.proxy.clone();
        let started = Instant::now();
        let answer = self.inner.call(req);
        Box::pin(async move {
            let out = answer.await;
            proxy.counters().latency(route).observe(started.elapsed());
            out
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_lands_in_its_bucket() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(300));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(9));
        assert_eq!(h.buckets[0].load(Ordering::Relaxed), 1);
        assert_eq!(h.buckets[3].load(Ordering::Relaxed), 1);
        assert_eq!(h.buckets[12].load(Ordering::Relaxed), 1);
        assert_eq!(h.count.load(Ordering::Relaxed), 3);
        assert_eq!(h.sum_micros.load(Ordering::Relaxed), 9_003_300);
    }
}
