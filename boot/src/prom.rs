//! Prometheus' text exposition format (version 0.0.4), written by hand: a [`Text`] encoder
//! that writes families of counters, gauges and histograms, and the atomic [`Histogram`]
//! the binaries observe durations into. A metrics stack (metrics, prometheus) would bring
//! registries and macros for what is a few dozen lines here; the values live where they are
//! measured (the Raft node, the store, the proxy) and each binary renders them at scrape.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// etcd's WAL fsync and backend commit buckets: 1 ms doubling 14 times (to 8.192 s).
pub const DISK_BUCKETS: [f64; 14] = [
    0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096,
    8.192,
];

/// etcd's peer round-trip buckets: 0.1 ms doubling 16 times (to 3.2768 s).
pub const RTT_BUCKETS: [f64; 16] = [
    0.0001, 0.0002, 0.0004, 0.0008, 0.0016, 0.0032, 0.0064, 0.0128, 0.0256, 0.0512, 0.1024, 0.2048,
    0.4096, 0.8192, 1.6384, 3.2768,
];

/// A histogram of durations over fixed upper bounds (seconds), updated with relaxed atomics
/// from any thread; readers see each field at some recent value (Prometheus tolerates that).
#[derive(Debug)]
pub struct Histogram {
    /// Upper bounds in seconds, ascending.
    bounds: &'static [f64],
    /// Observations per bucket (not cumulative); the last one is above every bound.
    buckets: Vec<AtomicU64>,
    /// Sum of observations in nanoseconds.
    sum_nanos: AtomicU64,
}

impl Histogram {
    /// An empty histogram over `bounds` (seconds, ascending).
    pub fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
        }
    }

    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = self
            .bounds
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(self.bounds.len());
        if let Some(b) = self.buckets.get(i) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }
}

/// One label set: `(name, value)` pairs.
pub type Labels<'a> = &'a [(&'a str, &'a str)];

/// Writes metric families as Prometheus text. Write each family's samples together, after
/// its [`Text::family`] header.
#[derive(Debug, Default)]
pub struct Text {
    out: String,
}

impl Text {
    /// An empty page.
    pub fn new() -> Self {
        Self::default()
    }

    /// The `# HELP` and `# TYPE` lines of a family (`kind`: counter, gauge or histogram).
    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    /// One sample line.
    pub fn sample(&mut self, name: &str, labels: Labels<'_>, value: f64) {
        self.out.push_str(name);
        write_labels(&mut self.out, labels, None);
        let _ = writeln!(self.out, " {}", number(value));
    }

    /// A family of one sample without labels.
    pub fn single(&mut self, name: &str, kind: &str, help: &str, value: f64) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    /// A gauge without labels.
    pub fn gauge(&mut self, name: &str, help: &str, value: f64) {
        self.single(name, "gauge", help, value);
    }

    /// A counter without labels.
    pub fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.single(name, "counter", help, value as f64);
    }

    /// The samples of one histogram (after a `family(name, "histogram", ..)` header).
    pub fn histogram_samples(&mut self, name: &str, labels: Labels<'_>, h: &Histogram) {
        let mut cumulative = 0u64;
        for (i, bound) in h.bounds.iter().enumerate() {
            cumulative += h.buckets.get(i).map_or(0, |b| b.load(Ordering::Relaxed));
            self.bucket(name, labels, &number(*bound), cumulative);
        }
        cumulative += h
            .buckets
            .get(h.bounds.len())
            .map_or(0, |b| b.load(Ordering::Relaxed));
        self.bucket(name, labels, "+Inf", cumulative);
        let sum = h.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        self.sample(&format!("{name}_sum"), labels, sum);
        self.sample(&format!("{name}_count"), labels, cumulative as f64);
    }

    /// A histogram family of one unlabelled histogram.
    pub fn histogram(&mut self, name: &str, help: &str, h: &Histogram) {
        self.family(name, "histogram", help);
        self.histogram_samples(name, &[], h);
    }

    fn bucket(&mut self, name: &str, labels: Labels<'_>, le: &str, value: u64) {
        let _ = write!(self.out, "{name}_bucket");
        write_labels(&mut self.out, labels, Some(le));
        let _ = writeln!(self.out, " {value}");
    }

    /// The page.
    pub fn finish(self) -> String {
        self.out
    }
}

/// A value as Prometheus writes it (integers without a fraction).
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}

fn write_labels(out: &mut String, labels: Labels<'_>, le: Option<&str>) {
    if labels.is_empty() && le.is_none() {
        return;
    }
    out.push('{');
    let mut first = true;
    let all = labels.iter().copied().chain(le.map(|le| ("le", le)));
    for (k, v) in all {
        if !first {
            out.push(',');
        }
        first = false;
        let _ = write!(out, "{k}=\"");
        for c in v.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push('}');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_render_in_the_text_format() {
        let h = Histogram::new(&DISK_BUCKETS);
        h.observe(Duration::from_micros(1500));
        h.observe(Duration::from_secs(20));
        let mut t = Text::new();
        t.gauge("g", "A gauge.", 1.0);
        t.family("c_total", "counter", "A counter.");
        t.sample("c_total", &[("a", "x\"y")], 3.0);
        t.histogram("h_seconds", "A histogram.", &h);
        let page = t.finish();
        assert!(page.contains("# TYPE g gauge\ng 1\n"), "{page}");
        assert!(page.contains("c_total{a=\"x\\\"y\"} 3\n"), "{page}");
        assert!(
            page.contains("h_seconds_bucket{le=\"0.001\"} 0\n"),
            "{page}"
        );
        assert!(
            page.contains("h_seconds_bucket{le=\"0.002\"} 1\n"),
            "{page}"
        );
        assert!(page.contains("h_seconds_bucket{le=\"+Inf\"} 2\n"), "{page}");
        assert!(page.contains("h_seconds_count 2\n"), "{page}");
        assert!(page.contains("h_seconds_sum 20.0015\n"), "{page}");
        assert_eq!(h.count(), 2);
    }
}
