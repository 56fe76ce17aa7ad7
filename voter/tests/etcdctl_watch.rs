//! `etcdctl watch` against a fresh etcd 3.4 and a fresh 3-voter mango: the same watchers (live
//! ones started on the empty store, historical ones started after the writes, some below a
//! compaction) see the same writes, and their outputs must be identical once cluster and
//! member ids and raft terms are normalised. Both stores start empty, so revisions match.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use mango_testkit::etcdctl::{Background, etcdctl_stdin};
use mango_testkit::metrics::metric;
use mango_testkit::{Cluster, wait_until};
use serde_json::Value;

/// A background `etcdctl watch`.
struct Watching {
    args: Vec<String>,
    etcdctl: Background,
}

fn watch(endpoints: &str, args: &[&str]) -> Watching {
    let mut all = vec!["watch"];
    all.extend_from_slice(args);
    Watching {
        args: args.iter().map(|s| s.to_string()).collect(),
        etcdctl: Background::spawn(endpoints, &all),
    }
}

/// Runs a one-shot etcdctl command; its transcript lines.
fn run(endpoints: &str, args: &[&str], stdin: Option<&str>) -> Vec<String> {
    let out = etcdctl_stdin(endpoints, args, stdin.unwrap_or_default().as_bytes());
    let mut t = vec![format!("$ etcdctl {}", args.join(" "))];
    t.extend(norm(&String::from_utf8_lossy(&out.stdout), "  "));
    t.extend(norm(&String::from_utf8_lossy(&out.stderr), "  ! "));
    t.push(format!("  exit {}", out.status.code().unwrap_or(-1)));
    t
}

/// Output lines with ids and terms replaced (JSON lines) and a prefix.
fn norm(text: &str, prefix: &str) -> Vec<String> {
    text.lines()
        .map(|l| match serde_json::from_str::<Value>(l) {
            Ok(mut v) => {
                if let Some(h) = v.get_mut("Header").and_then(Value::as_object_mut) {
                    for k in ["cluster_id", "member_id", "raft_term"] {
                        if h.contains_key(k) {
                            h.insert(k.into(), Value::String(format!("<{k}>")));
                        }
                    }
                }
                format!("{prefix}{v}")
            }
            Err(_) => format!("{prefix}{l}"),
        })
        .collect()
}

/// How long the watchers' output must stay unchanged to count as complete: a duplicate or a
/// late event would show within it.
const QUIET: Duration = Duration::from_millis(1500);

/// Waits until no watcher's output changed for [`QUIET`], then stops them all; their
/// transcripts (a watcher that ended by itself shows its exit status).
fn settle(watchers: Vec<Watching>) -> Vec<String> {
    let size = |ws: &[Watching]| -> usize { ws.iter().map(|w| w.etcdctl.output_len()).sum() };
    let mut last = size(&watchers);
    let mut quiet_since = Instant::now();
    wait_until(
        Duration::from_secs(10),
        "the watchers' output to settle",
        || {
            let now = size(&watchers);
            if now != last {
                last = now;
                quiet_since = Instant::now();
            }
            quiet_since.elapsed() >= QUIET
        },
    );
    let mut t = Vec::new();
    for w in watchers {
        let (status, out, err) = w.etcdctl.finish();
        let status = match status {
            Some(s) => format!("  exit {}", s.code().unwrap_or(-1)),
            None => "  (still watching)".to_string(),
        };
        t.push(format!("$ etcdctl watch {}", w.args.join(" ")));
        t.extend(norm(&out, "  "));
        t.extend(norm(&err, "  ! "));
        t.push(status);
    }
    t
}

/// Where a scenario runs: the endpoints, and whether it is a real etcd (which counts its
/// watchers on its metrics page).
struct Side {
    endpoints: String,
    etcd: bool,
}

/// Starts the live watchers, created before anything is written (or they would miss it).
/// etcd counts its watchers (`watchers` of them valid: an empty range like `c a` is
/// refused), so there the wait is on that count; mango's voters expose no such count (and
/// the proxy counts a client's watch before its upstream watch exists), so there the margin
/// etcdctl needs to start and create its watches stays.
fn live_watchers(side: &Side, watches: &[&[&str]], watchers: u64) -> Vec<Watching> {
    let started = watches
        .iter()
        .map(|args| watch(&side.endpoints, args))
        .collect();
    if side.etcd {
        wait_until(
            Duration::from_secs(10),
            format_args!("etcd to count {watchers} watchers"),
            || metric(&side.endpoints, "etcd_debugging_mvcc_watcher_total") == watchers,
        );
    } else {
        std::thread::sleep(Duration::from_millis(700));
    }
    started
}

/// Waits until `watchers[i]` printed something for each `i` in `which`: its history came in a
/// response of its own, so a write after it comes in the next (not in the same, as when the
/// write is quicker).
fn history_printed(watchers: &[Watching], which: &[usize]) {
    wait_until(
        Duration::from_secs(10),
        "the watchers from a revision to print their history",
        || {
            which
                .iter()
                .all(|&i| !watchers[i].etcdctl.stdout().is_empty())
        },
    );
}

/// The whole scenario on `side`; the transcript.
fn scenario(side: &Side) -> Vec<String> {
    let endpoints = side.endpoints.as_str();
    let live = live_watchers(
        side,
        &[
            &["foo", "--prefix"],
            &["foo", "--prefix", "--prev-kv", "-w", "json"],
            &["a"],
            &["", "--prefix", "-w", "json"],
            &["a", "c", "--prev-kv"],
            &["c", "a"],
            &["foo/1", "--rev=1"],
        ],
        6,
    );
    let mut t = Vec::new();
    let txn = "\nput foo/3 c\nput a 2\ndel b\n\n\n";
    for (args, stdin) in [
        (&["put", "foo/1", "a"][..], None),  // 2
        (&["put", "foo/2", "b"], None),      // 3
        (&["put", "a", "1"], None),          // 4
        (&["put", "foo/1", "aa"], None),     // 5
        (&["put", "b", "x"], None),          // 6
        (&["del", "foo/2"], None),           // 7
        (&["txn"], Some(txn)),               // 8
        (&["del", "foo", "--prefix"], None), // 9
        (&["put", "foo/1", "new"], None),    // 10
    ] {
        t.extend(run(endpoints, args, stdin));
    }
    t.extend(settle(live));
    let historical: Vec<Watching> = [
        &["foo", "--prefix", "--rev=2"][..],
        &["a", "--rev=3", "--prev-kv"],
        &["", "--prefix", "--rev=5", "-w", "json"],
        // Nothing of b's between 10 and the next write, nothing from 20: the same output
        // whenever these are created.
        &["b", "--rev=10"],
        &["b", "--rev=20"],
    ]
    .iter()
    .map(|args| watch(endpoints, args))
    .collect();
    history_printed(&historical, &[0, 1, 2]);
    t.extend(run(endpoints, &["put", "b", "late"], None)); // 11
    t.extend(settle(historical));
    t.extend(run(endpoints, &["compact", "6"], None));
    // Nothing is written after these: no need to wait for them to be created.
    let compacted: Vec<Watching> = [
        &["foo", "--prefix", "--rev=3"][..],
        &["foo", "--prefix", "--rev=3", "-w", "json"],
        &["foo", "--prefix", "--rev=6"],
    ]
    .iter()
    .map(|args| watch(endpoints, args))
    .collect();
    t.extend(settle(compacted));
    t
}

fn etcd_side(etcd: &Cluster) -> Side {
    Side {
        endpoints: etcd.endpoints(),
        etcd: true,
    }
}

fn mango_side(endpoints: String) -> Side {
    Side {
        endpoints,
        etcd: false,
    }
}

/// The same watch scenario through `mango-proxy` (watches coalesced there) prints the same.
#[test]
fn etcdctl_watch_through_the_proxy_matches_etcd() {
    let etcd = Cluster::etcd(1);
    let mut mango = Cluster::start(3);
    mango.start_proxy(&[]);
    let expected = scenario(&etcd_side(&etcd));
    let got = scenario(&mango_side(mango.proxy_endpoint()));
    if let Some(i) = (0..expected.len().max(got.len())).find(|&i| expected.get(i) != got.get(i)) {
        let from = i.saturating_sub(8);
        panic!(
            "watch transcripts differ at line {i}\n--- etcd 3.4:\n{}\n--- mango through the proxy:\n{}",
            expected[from..(i + 8).min(expected.len())].join("\n"),
            got[from..(i + 8).min(got.len())].join("\n")
        );
    }
}

#[test]
fn etcdctl_watch_matches_etcd() {
    let etcd = Cluster::etcd(1);
    let mango = Cluster::start(3);
    let expected = scenario(&etcd_side(&etcd));
    let got = scenario(&mango_side(mango.endpoints()));
    let dir = std::env::var_os("MANGO_COMPAT_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| mango.path().to_path_buf());
    let _ = std::fs::write(dir.join("etcd.watch"), expected.join("\n") + "\n");
    let _ = std::fs::write(dir.join("mango.watch"), got.join("\n") + "\n");
    if let Some(i) = (0..expected.len().max(got.len())).find(|&i| expected.get(i) != got.get(i)) {
        let from = i.saturating_sub(8);
        panic!(
            "watch transcripts differ at line {i}\n--- etcd 3.4:\n{}\n--- mango:\n{}",
            expected[from..(i + 8).min(expected.len())].join("\n"),
            got[from..(i + 8).min(got.len())].join("\n")
        );
    }
}
