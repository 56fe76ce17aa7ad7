//! Per-client results: a latency histogram (microseconds), successes, and errors by gRPC code.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;

/// Highest latency the histogram tracks exactly: one hour, in microseconds. Longer ones are
/// clamped to it.
const MAX_US: u64 = 3_600_000_000;

/// What one client (or, after merging, the whole run) observed.
#[derive(Debug, Clone)]
pub struct Stats {
    /// Latencies of successful requests, in microseconds.
    pub hist: Histogram<u64>,
    /// Successful requests.
    pub ops: u64,
    /// Failed requests by gRPC code name (`Unavailable`, `DeadlineExceeded`, ...).
    pub errors: BTreeMap<String, u64>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats::new()
    }
}

impl Stats {
    pub fn new() -> Self {
        // 3 significant digits over 1 µs ..= 1 h: about 0.1% error, a few tens of KiB.
        let hist = Histogram::new_with_bounds(1, MAX_US, 3)
            .unwrap_or_else(|e| panic!("constant histogram bounds are valid: {e}"));
        Stats {
            hist,
            ops: 0,
            errors: BTreeMap::new(),
        }
    }

    /// Records one successful request.
    pub fn ok(&mut self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.hist.saturating_record(us.clamp(1, MAX_US));
        self.ops += 1;
    }

    /// Records one failed request.
    pub fn error(&mut self, code: tonic::Code) {
        self.error_named(&format!("{code:?}"), 1);
    }

    /// Records `n` failures under a name.
    pub fn error_named(&mut self, name: &str, n: u64) {
        if n > 0 {
            *self.errors.entry(name.to_owned()).or_default() += n;
        }
    }

    /// Folds another client's results into these.
    pub fn merge(&mut self, other: &Stats) {
        // Same bounds on both sides, so adding cannot fail.
        if let Err(e) = self.hist.add(&other.hist) {
            panic!("histograms with equal bounds always merge: {e}");
        }
        self.ops += other.ops;
        for (code, n) in &other.errors {
            *self.errors.entry(code.clone()).or_default() += n;
        }
    }

    /// The latency at quantile `q` (0..=1), in milliseconds; 0 when nothing was recorded.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.hist.is_empty() {
            return 0.0;
        }
        self.hist.value_at_quantile(q) as f64 / 1000.0
    }

    /// The highest latency, in milliseconds.
    pub fn max_ms(&self) -> f64 {
        if self.hist.is_empty() {
            return 0.0;
        }
        self.hist.max() as f64 / 1000.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_adds_counts_errors_and_latencies() {
        let mut a = Stats::new();
        let mut b = Stats::new();
        for ms in 1..=50 {
            a.ok(Duration::from_millis(ms));
        }
        for ms in 51..=100 {
            b.ok(Duration::from_millis(ms));
        }
        a.error(tonic::Code::Unavailable);
        b.error(tonic::Code::Unavailable);
        b.error(tonic::Code::DeadlineExceeded);
        a.merge(&b);
        assert_eq!(a.ops, 100);
        assert_eq!(a.hist.len(), 100);
        assert_eq!(a.errors.get("Unavailable"), Some(&2));
        assert_eq!(a.errors.get("DeadlineExceeded"), Some(&1));
        assert_eq!(a.errors.values().sum::<u64>(), 3);
        // HDR precision is 3 significant digits.
        let p50 = a.quantile_ms(0.5);
        assert!((49.9..=50.1).contains(&p50), "{p50}");
        let p99 = a.quantile_ms(0.99);
        assert!((98.9..=99.1).contains(&p99), "{p99}");
        let max = a.max_ms();
        assert!((99.9..=100.1).contains(&max), "{max}");
    }

    #[test]
    fn extremes_are_clamped_not_lost() {
        let mut s = Stats::new();
        s.ok(Duration::ZERO);
        s.ok(Duration::from_secs(10 * 3600));
        assert_eq!(s.ops, 2);
        assert_eq!(s.hist.len(), 2);
        assert!(s.max_ms() >= 3_599_000.0);
    }

    #[test]
    fn empty_stats_report_zero() {
        let s = Stats::default();
        assert_eq!(s.quantile_ms(0.99), 0.0);
        assert_eq!(s.max_ms(), 0.0);
        assert!(s.errors.is_empty());
    }
}
