//! Runs every workload of the built `mango-loadgen` against a real single-node etcd 3.4 and
//! checks the JSON line it prints, and that the writes really landed.

use std::process::{Command, Output};

use mango_testkit::{Cluster, Host};
use serde_json::Value;

const LOADGEN: &str = env!("CARGO_BIN_EXE_mango-loadgen");

/// A single-node etcd (mango-testkit's, on a loopback address of its own); killed (by pid)
/// on drop, also when a test panics.
struct Etcd {
    cluster: Cluster,
    endpoint: String,
}

impl Etcd {
    fn start() -> Etcd {
        let cluster = Cluster::etcd(1);
        let endpoint = cluster.endpoints();
        Etcd { cluster, endpoint }
    }

    fn etcdctl(&self, args: &[&str]) -> Output {
        mango_testkit::etcdctl(&self.cluster.endpoints(), args)
    }

    /// The number of keys with `prefix` (Range count, as etcdctl reports it in JSON).
    fn count(&self, prefix: &str) -> u64 {
        let out = self.etcdctl(&[
            "get",
            prefix,
            "--prefix",
            "--keys-only",
            "--limit=1",
            "-w",
            "json",
        ]);
        assert!(out.status.success(), "etcdctl get failed: {out:?}");
        let v: Value = serde_json::from_slice(&out.stdout).expect("etcdctl prints JSON");
        v["count"].as_u64().unwrap_or(0)
    }

    /// Runs the load generator against this etcd with `--json`; returns its one JSON line.
    fn loadgen(&self, args: &[&str]) -> Value {
        let out = Command::new(LOADGEN)
            .args(["--endpoints", &self.endpoint, "--json"])
            .args(args)
            .output()
            .expect("mango-loadgen runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "mango-loadgen {args:?} failed: {out:?}"
        );
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "exactly one JSON line expected, got {stdout:?}"
        );
        serde_json::from_str(lines[0]).expect("valid JSON")
    }
}

/// Asserts a clean run: the workload's name, `ops` requests, no errors, sane figures.
fn assert_clean(v: &Value, workload: &str, ops: u64) {
    assert_eq!(v["workload"], workload, "{v}");
    assert_eq!(v["ops"].as_u64(), Some(ops), "{v}");
    assert_eq!(v["errors"], serde_json::json!({}), "{v}");
    for field in [
        "seconds",
        "ops_per_sec",
        "p50_ms",
        "p90_ms",
        "p99_ms",
        "p999_ms",
        "max_ms",
        "client_cpu_seconds",
    ] {
        let x = v[field].as_f64().unwrap_or(-1.0);
        assert!(x >= 0.0, "{field} = {x} in {v}");
    }
    let (p50, p99, max) = (
        v["p50_ms"].as_f64().unwrap_or(0.0),
        v["p99_ms"].as_f64().unwrap_or(0.0),
        v["max_ms"].as_f64().unwrap_or(0.0),
    );
    assert!(p50 > 0.0 && p50 <= p99 && p99 <= max, "{v}");
    assert!(v["ops_per_sec"].as_f64().unwrap_or(0.0) > 0.0, "{v}");
}

#[test]
fn every_workload_runs_cleanly_against_etcd() {
    let etcd = Etcd::start();

    // put: 200 sequential keys land as 200 keys.
    let v = etcd.loadgen(&[
        "put",
        "--total",
        "200",
        "--sequential-keys",
        "--key-space-size",
        "200",
        "--clients",
        "4",
    ]);
    assert_clean(&v, "put", 200);
    assert_eq!(etcd.count("00000"), 200, "every put landed");

    // put, open loop: 100 requests at 500/s take about 0.2 s.
    let v = etcd.loadgen(&[
        "put",
        "--total",
        "100",
        "--rate",
        "500",
        "--clients",
        "4",
        "--conns",
        "2",
    ]);
    assert_clean(&v, "put", 100);
    let secs = v["seconds"].as_f64().unwrap_or(0.0);
    assert!((0.19..2.0).contains(&secs), "open loop ran {secs}s");

    // range: linearizable and serializable, a prefix with a limit, and mango's levels
    // (metadata only, which etcd ignores).
    for consistency in ["l", "s", "stale", "learner-linearizable", "bounded=100"] {
        let v = etcd.loadgen(&[
            "range",
            "00000",
            "--prefix",
            "--limit",
            "10",
            "--consistency",
            consistency,
            "--total",
            "100",
            "--clients",
            "2",
        ]);
        assert_clean(&v, "range", 100);
    }
    let v = etcd.loadgen(&["range", "00000007", "--total", "50"]);
    assert_clean(&v, "range", 50);

    // txn-put: multi-put transactions on distinct keys.
    let v = etcd.loadgen(&[
        "txn-put",
        "--txn-ops",
        "4",
        "--key-space-size",
        "200",
        "--total",
        "100",
        "--clients",
        "4",
    ]);
    assert_clean(&v, "txn-put", 100);

    // txn-mixed: reads and writes.
    let v = etcd.loadgen(&[
        "txn-mixed",
        "--rw-ratio",
        "2",
        "--key-space-size",
        "200",
        "--consistency",
        "s",
        "--total",
        "150",
        "--clients",
        "3",
    ]);
    assert_clean(&v, "txn-mixed", 150);

    // watch-latency: every watcher sees every put.
    let v = etcd.loadgen(&[
        "watch-latency",
        "--streams",
        "2",
        "--watchers-per-stream",
        "3",
        "--put-total",
        "30",
        "--put-rate",
        "200",
    ]);
    assert_clean(&v, "watch-latency", 2 * 3 * 30);

    // lease-keepalive: round trips on keep-alive streams; leases are revoked afterwards.
    let v = etcd.loadgen(&["lease-keepalive", "--total", "200", "--clients", "4"]);
    assert_clean(&v, "lease-keepalive", 200);
    let leases = etcd.etcdctl(&["lease", "list"]);
    let listed = String::from_utf8_lossy(&leases.stdout);
    assert!(listed.contains("found 0 leases"), "{listed}");

    // --duration bounds a run by time.
    let v = etcd.loadgen(&["put", "--duration", "0.5", "--key-space-size", "200"]);
    let secs = v["seconds"].as_f64().unwrap_or(0.0);
    assert!((0.45..3.0).contains(&secs), "ran {secs}s");
    assert!(v["ops"].as_u64().unwrap_or(0) > 0, "{v}");
    assert_eq!(v["errors"], serde_json::json!({}), "{v}");
}

#[test]
fn unreachable_endpoint_exits_1_with_a_clear_message() {
    // An address of our own that nothing listens on.
    let nobody = Host::reserve();
    let out = Command::new(LOADGEN)
        .args([
            "--endpoints",
            &nobody.client_endpoint(),
            "put",
            "--total",
            "1",
        ])
        .output()
        .expect("mango-loadgen runs");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot connect to"), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn usage_errors_exit_2() {
    let out = Command::new(LOADGEN)
        .args(["put", "--key-size", "2", "--key-space-size", "1000"])
        .output()
        .expect("mango-loadgen runs");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--key-size"), "{stderr}");
}
