//! Metrics and health on every binary (`--listen-metrics-urls`), scraped from real processes:
//! 3 voters, a learner and the proxy. etcd's names are there and their values move with the
//! work done; learner lag and log-stream subscribers appear; `/version` parses as etcd's;
//! `/health` turns 503 "false" when a voter loses quorum and when NOSPACE is raised; every
//! metric the Grafana dashboard in `deploy/grafana/` queries is exported by some binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use mango_testkit::metrics::{families, http_get, sample, samples};
use mango_testkit::{Cluster, etcdctl, get, kv, put};

/// etcd's names every voter must export.
const VOTER_NAMES: &[&str] = &[
    "etcd_server_has_leader",
    "etcd_server_is_leader",
    "etcd_server_leader_changes_seen_total",
    "etcd_server_proposals_committed_total",
    "etcd_server_proposals_applied_total",
    "etcd_server_proposals_pending",
    "etcd_server_proposals_failed_total",
    "etcd_mvcc_db_total_size_in_bytes",
    "etcd_mvcc_db_total_size_in_use_in_bytes",
    "etcd_debugging_mvcc_keys_total",
    "etcd_disk_wal_fsync_duration_seconds",
    "etcd_disk_backend_commit_duration_seconds",
    "etcd_network_peer_round_trip_time_seconds",
    "etcd_server_quota_backend_bytes",
    "grpc_server_started_total",
    "grpc_server_handled_total",
    "mango_logstream_subscribers",
];

const LEARNER_NAMES: &[&str] = &[
    "mango_learner_applied_index",
    "mango_learner_upstream_commit_index",
    "mango_learner_lag_entries",
    "mango_learner_lag_seconds",
    "etcd_debugging_mvcc_keys_total",
    "grpc_server_started_total",
];

const PROXY_NAMES: &[&str] = &[
    "mango_proxy_reads_total",
    "mango_proxy_request_duration_seconds",
    "grpc_server_started_total",
    "grpc_server_handled_total",
];

fn page(port: &str) -> String {
    let (status, body) = http_get(port, "/metrics").expect("scrape");
    assert_eq!(status, 200, "{body}");
    body
}

fn value(port: &str, series: &str) -> f64 {
    let p = page(port);
    sample(&p, series).unwrap_or_else(|| panic!("no {series} on :{port}:\n{p}"))
}

/// Waits until `check` holds for the page at `port`.
fn wait_page(port: &str, what: &str, timeout: Duration, check: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        let p = page(port);
        if check(&p) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what} never held on :{port}:\n{p}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn check_version_and_health(port: &str) {
    let (status, body) = http_get(port, "/version").unwrap();
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).expect("/version is JSON");
    assert_eq!(v["etcdserver"], "3.4.23", "{body}");
    assert_eq!(v["etcdcluster"], "3.4.0", "{body}");
    for path in ["/livez", "/readyz"] {
        assert_eq!(http_get(port, path).unwrap().0, 200, "{path} on :{port}");
    }
}

fn wait_healthy(port: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = http_get(port, "/health").unwrap();
        if status == 200 {
            assert_eq!(body, r#"{"health":"true"}"#);
            return;
        }
        assert!(
            Instant::now() < deadline,
            "/health on :{port}: {status} {body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits for `/health` to answer 503 with `"health":"false"` and a reason containing `why`.
fn wait_unhealthy(port: &str, why: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = http_get(port, "/health").unwrap();
        if status == 503 {
            let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
            assert_eq!(v["health"], "false", "{body}");
            if v["reason"].as_str().is_some_and(|r| r.contains(why)) {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "/health on :{port} never said {why:?}: {status} {body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_binary_exports_etcd_names_and_values_move() {
    let mut d = Cluster::start_tiered(&[]);
    d.wait_leader();
    let upstream = d.voters[0].stream_addr();
    d.add_learner(&upstream, &[]);
    d.start_proxy(&[]);
    let proxy_metrics = d.proxy().metrics_addr();
    let proxy_metrics = proxy_metrics.as_str();
    let voter_addrs: Vec<String> = d.voters.iter().map(|v| v.metrics_addr()).collect();
    let voter_ports: Vec<&str> = voter_addrs.iter().map(String::as_str).collect();
    let learner_addr = d.learners[0].metrics_addr();
    let learner_port = learner_addr.as_str();
    let all: Vec<&str> = voter_ports
        .iter()
        .copied()
        .chain([learner_port, proxy_metrics])
        .collect();

    for &port in &all {
        check_version_and_health(port);
        wait_healthy(port);
    }

    // Voters: etcd's names, one leader, values that move with puts.
    let leaders: f64 = voter_ports
        .iter()
        .map(|p| value(p, "etcd_server_is_leader"))
        .sum();
    assert_eq!(leaders, 1.0, "exactly one voter leads");
    let before: Vec<f64> = voter_ports
        .iter()
        .map(|p| value(p, "etcd_server_proposals_committed_total"))
        .collect();
    let mut c = kv(&d.voters[0].endpoint()).await;
    for i in 0..20 {
        put(&mut c, &format!("m/{i}"), "v").await;
    }
    for (i, &port) in voter_ports.iter().enumerate() {
        wait_page(
            port,
            "committed and applied grew",
            Duration::from_secs(10),
            |p| {
                let committed = sample(p, "etcd_server_proposals_committed_total").unwrap_or(0.0);
                let applied = sample(p, "etcd_server_proposals_applied_total").unwrap_or(0.0);
                committed >= before[i] + 20.0 && applied >= before[i] + 20.0
            },
        );
        let p = page(port);
        let names = families(&p);
        for name in VOTER_NAMES {
            assert!(names.contains(*name), "voter :{port} lacks {name}:\n{p}");
        }
        assert_eq!(sample(&p, "etcd_server_has_leader"), Some(1.0));
        assert!(sample(&p, "etcd_server_leader_changes_seen_total").unwrap() >= 1.0);
        assert!(sample(&p, "etcd_debugging_mvcc_keys_total").unwrap() >= 20.0);
        assert!(sample(&p, "etcd_mvcc_db_total_size_in_bytes").unwrap() > 0.0);
        assert!(sample(&p, "etcd_disk_wal_fsync_duration_seconds_count").unwrap() > 0.0);
        assert!(sample(&p, "etcd_disk_backend_commit_duration_seconds_count").unwrap() >= 1.0);
        assert_eq!(
            sample(&p, "etcd_server_quota_backend_bytes"),
            Some(2_147_483_648.0)
        );
        // Every voter probes both peers.
        wait_page(
            port,
            "round trips to both peers",
            Duration::from_secs(15),
            |p| {
                samples(p)
                    .iter()
                    .filter(|(s, v)| {
                        s.starts_with("etcd_network_peer_round_trip_time_seconds_count{To=")
                            && *v > 0.0
                    })
                    .count()
                    == 2
            },
        );
    }
    let put_ok = "grpc_server_handled_total{grpc_code=\"OK\",grpc_method=\"Put\",\
                  grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"}";
    assert!(value(voter_ports[0], put_ok) >= 20.0);
    // The learner follows voter 0's log stream.
    wait_page(
        voter_ports[0],
        "a log-stream subscriber",
        Duration::from_secs(10),
        |p| sample(p, "mango_logstream_subscribers").unwrap_or(0.0) >= 1.0,
    );

    // The learner: its lag appears and closes.
    let committed = value(voter_ports[0], "etcd_server_proposals_committed_total");
    wait_page(
        learner_port,
        "the learner caught up",
        Duration::from_secs(10),
        |p| {
            sample(p, "mango_learner_applied_index").unwrap_or(0.0) >= committed
                && sample(p, "mango_learner_lag_entries") == Some(0.0)
                && sample(p, "mango_learner_lag_seconds").is_some_and(|s| s < 5.0)
        },
    );
    let p = page(learner_port);
    for name in LEARNER_NAMES {
        assert!(families(&p).contains(*name), "learner lacks {name}:\n{p}");
    }
    assert!(sample(&p, "etcd_debugging_mvcc_keys_total").unwrap() >= 20.0);

    // The proxy counts reads by level.
    let stale = "mango_proxy_reads_total{level=\"stale\"}";
    let linear = "mango_proxy_reads_total{level=\"linearizable\"}";
    let (s0, l0) = (value(proxy_metrics, stale), value(proxy_metrics, linear));
    let mut p = kv(&d.proxy_endpoint()).await;
    for _ in 0..3 {
        get(&mut p, "m/1", "stale").await.unwrap();
    }
    get(&mut p, "m/1", "linearizable").await.unwrap();
    assert_eq!(value(proxy_metrics, stale), s0 + 3.0);
    assert_eq!(value(proxy_metrics, linear), l0 + 1.0);
    let pp = page(proxy_metrics);
    for name in PROXY_NAMES {
        assert!(families(&pp).contains(*name), "proxy lacks {name}:\n{pp}");
    }

    // Every metric the dashboard queries is exported by some binary.
    let mut exported = BTreeSet::new();
    for &port in &all {
        let p = page(port);
        exported.extend(families(&p));
        exported.extend(
            samples(&p)
                .into_iter()
                .map(|(s, _)| s.split('{').next().unwrap_or_default().to_string()),
        );
    }
    let queried = dashboard_metrics();
    assert!(queried.len() >= 15, "the dashboard queries {queried:?}");
    let missing: Vec<&String> = queried.iter().filter(|m| !exported.contains(*m)).collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries {missing:?}, not exported"
    );

    // Quorum lost: the surviving voter reports no leader.
    d.kill(1);
    d.kill(2);
    wait_unhealthy(voter_ports[0], "no leader");
    assert_eq!(value(voter_ports[0], "etcd_server_has_leader"), 0.0);
    assert_eq!(http_get(voter_ports[0], "/livez").unwrap().0, 200);
    assert_eq!(http_get(voter_ports[0], "/readyz").unwrap().0, 503);
}

/// The metric names in every `expr` of `deploy/grafana/mango.json`.
fn dashboard_metrics() -> BTreeSet<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/grafana/mango.json");
    let text = std::fs::read_to_string(path).expect("the dashboard");
    let dash: serde_json::Value = serde_json::from_str(&text).expect("dashboard JSON");
    let mut exprs = Vec::new();
    for panel in dash["panels"].as_array().expect("panels") {
        for t in panel["targets"].as_array().expect("targets") {
            exprs.push(t["expr"].as_str().expect("expr").to_string());
        }
    }
    let mut names = BTreeSet::new();
    for e in exprs {
        let mut word = String::new();
        for ch in e.chars().chain([' ']) {
            if ch.is_ascii_alphanumeric() || ch == '_' || ch == ':' {
                word.push(ch);
                continue;
            }
            let metric = ["etcd_", "mango_", "grpc_"]
                .iter()
                .any(|p| word.starts_with(p));
            // Label names (grpc_code, grpc_method) are followed by = or !=, or sit in by (...).
            let is_label = matches!(ch, '=' | '!' | ',' | ')') && !word.ends_with("_bucket");
            if metric && !is_label {
                names.insert(word.clone());
            }
            word.clear();
        }
    }
    names
}

#[test]
fn health_turns_false_on_nospace() {
    let d = Cluster::start_with(3, &["--quota-backend-bytes", "200000"]);
    d.wait_leader();
    let port = d.voters[0].metrics_addr();
    wait_healthy(&port);
    let value = "x".repeat(20_000);
    let mut refused = false;
    for i in 0..200 {
        let out = etcdctl(&d.voters[0].endpoint(), &["put", &format!("k{i}"), &value]);
        if !out.status.success() {
            refused = true;
            break;
        }
    }
    assert!(refused, "the quota was never hit");
    for v in &d.voters {
        wait_unhealthy(&v.metrics_addr(), "NOSPACE");
    }
}
