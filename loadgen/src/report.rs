//! The end-of-run summary: a readable block, or exactly one JSON line.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use crate::stats::Stats;

/// The results of a run, in the shape of the `--json` line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub workload: String,
    /// Successful requests (for watch-latency: events received, per watcher).
    pub ops: u64,
    pub seconds: f64,
    pub ops_per_sec: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    /// Failed requests by gRPC code name.
    pub errors: BTreeMap<String, u64>,
    /// This process's user + system CPU time over the whole run.
    pub client_cpu_seconds: f64,
}

/// Rounds to `places` decimals, so the JSON carries no float noise.
fn round(x: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (x * f).round() / f
}

impl Report {
    pub fn new(workload: &str, stats: &Stats, elapsed: Duration, cpu_seconds: f64) -> Self {
        let seconds = elapsed.as_secs_f64();
        let ops_per_sec = if seconds > 0.0 {
            stats.ops as f64 / seconds
        } else {
            0.0
        };
        Report {
            workload: workload.to_owned(),
            ops: stats.ops,
            seconds: round(seconds, 6),
            ops_per_sec: round(ops_per_sec, 1),
            p50_ms: round(stats.quantile_ms(0.5), 3),
            p90_ms: round(stats.quantile_ms(0.9), 3),
            p99_ms: round(stats.quantile_ms(0.99), 3),
            p999_ms: round(stats.quantile_ms(0.999), 3),
            max_ms: round(stats.max_ms(), 3),
            errors: stats.errors.clone(),
            client_cpu_seconds: round(cpu_seconds, 2),
        }
    }

    /// One line of JSON, without a trailing newline.
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self)
            .unwrap_or_else(|e| panic!("a struct of numbers and strings serializes: {e}"))
    }

    /// The readable summary.
    pub fn to_text(&self, setup: &str) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "Workload:    {} ({setup})", self.workload);
        let _ = writeln!(
            s,
            "Requests:    {} ok, {} failed",
            self.ops,
            self.errors.values().sum::<u64>()
        );
        let _ = writeln!(s, "Seconds:     {:.3}", self.seconds);
        let _ = writeln!(s, "Ops/s:       {:.1}", self.ops_per_sec);
        let _ = writeln!(
            s,
            "Latency ms:  p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
            self.p50_ms, self.p90_ms, self.p99_ms, self.p999_ms, self.max_ms
        );
        if self.errors.is_empty() {
            let _ = writeln!(s, "Errors:      none");
        } else {
            let list: Vec<String> = self
                .errors
                .iter()
                .map(|(code, n)| format!("{code} {n}"))
                .collect();
            let _ = writeln!(s, "Errors:      {}", list.join(", "));
        }
        let _ = write!(s, "Client CPU:  {:.2} s", self.client_cpu_seconds);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        let mut stats = Stats::new();
        for ms in 1..=1000 {
            stats.ok(Duration::from_micros(ms * 100));
        }
        stats.error(tonic::Code::Unavailable);
        stats.error(tonic::Code::Unavailable);
        stats.error(tonic::Code::Unavailable);
        Report::new("put", &stats, Duration::from_millis(2500), 1.234)
    }

    #[test]
    fn json_line_has_exactly_the_documented_shape() {
        let line = sample().to_json_line();
        assert!(!line.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        let obj = v.as_object().unwrap();
        let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        let mut expected = vec![
            "workload",
            "ops",
            "seconds",
            "ops_per_sec",
            "p50_ms",
            "p90_ms",
            "p99_ms",
            "p999_ms",
            "max_ms",
            "errors",
            "client_cpu_seconds",
        ];
        let mut got = keys.clone();
        got.sort_unstable();
        expected.sort_unstable();
        assert_eq!(got, expected);
        assert_eq!(v["workload"], "put");
        assert_eq!(v["ops"], 1000);
        assert_eq!(v["seconds"], 2.5);
        assert_eq!(v["ops_per_sec"], 400.0);
        assert_eq!(v["errors"]["Unavailable"], 3);
        assert_eq!(v["client_cpu_seconds"], 1.23);
        let p50 = v["p50_ms"].as_f64().unwrap();
        assert!((49.9..=50.1).contains(&p50), "{p50}");
        let max = v["max_ms"].as_f64().unwrap();
        assert!((99.9..=100.1).contains(&max), "{max}");
        // Fields come out in the documented order.
        assert!(line.starts_with(r#"{"workload":"put","ops":1000,"seconds":2.5,"#));
    }

    #[test]
    fn no_errors_is_an_empty_object_and_empty_runs_do_not_divide_by_zero() {
        let r = Report::new("range", &Stats::new(), Duration::ZERO, 0.0);
        let v: serde_json::Value = serde_json::from_str(&r.to_json_line()).unwrap();
        assert_eq!(v["errors"], serde_json::json!({}));
        assert_eq!(v["ops_per_sec"], 0.0);
    }

    #[test]
    fn text_summary_names_everything() {
        let t = sample().to_text("clients 1, conns 1, closed loop");
        for needle in [
            "put",
            "1000 ok, 3 failed",
            "2.500",
            "400.0",
            "p99.9",
            "Unavailable 3",
        ] {
            assert!(t.contains(needle), "{needle:?} missing from\n{t}");
        }
    }
}
