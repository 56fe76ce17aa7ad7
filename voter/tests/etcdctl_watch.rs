//! `etcdctl watch` against a fresh etcd 3.4 and a fresh 3-voter mango: the same watchers (live
//! ones started on the empty store, historical ones started after the writes, some below a
//! compaction) see the same writes, and their outputs must be identical once cluster and
//! member ids and raft terms are normalised. Both stores start empty, so revisions match.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use harness::Cluster;
use harness::etcd::Etcd;
use harness::proxy::ProxyProc;
use serde_json::Value;

/// A background `etcdctl watch`, its output collected as it comes.
struct Watching {
    args: Vec<String>,
    child: Child,
    out: Arc<Mutex<Vec<u8>>>,
    err: Arc<Mutex<Vec<u8>>>,
}

fn collect(mut from: impl Read + Send + 'static) -> Arc<Mutex<Vec<u8>>> {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let to = buf.clone();
    std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = from.read(&mut chunk) {
            if n == 0 {
                break;
            }
            to.lock().unwrap().extend_from_slice(&chunk[..n]);
        }
    });
    buf
}

fn watch(endpoints: &str, args: &[&str]) -> Watching {
    let mut child = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoints}"))
        .arg("watch")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("etcdctl is installed");
    let out = collect(child.stdout.take().unwrap());
    let err = collect(child.stderr.take().unwrap());
    Watching {
        args: args.iter().map(|s| s.to_string()).collect(),
        child,
        out,
        err,
    }
}

/// Runs a one-shot etcdctl command; its transcript lines.
fn run(endpoints: &str, args: &[&str], stdin: Option<&str>) -> Vec<String> {
    let mut child = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoints}"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("etcdctl is installed");
    if let Some(input) = stdin {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
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

/// Waits until no watcher's output changed for a while, then stops them all; their
/// transcripts (a watcher that ended by itself shows its exit status).
fn settle(watchers: Vec<Watching>) -> Vec<String> {
    let size = |ws: &[Watching]| -> usize {
        ws.iter()
            .map(|w| w.out.lock().unwrap().len() + w.err.lock().unwrap().len())
            .sum()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = size(&watchers);
    let mut quiet_since = Instant::now();
    while Instant::now() < deadline && quiet_since.elapsed() < Duration::from_millis(1500) {
        std::thread::sleep(Duration::from_millis(100));
        let now = size(&watchers);
        if now != last {
            last = now;
            quiet_since = Instant::now();
        }
    }
    let mut t = Vec::new();
    for mut w in watchers {
        let status = match w.child.try_wait().unwrap() {
            Some(s) => format!("  exit {}", s.code().unwrap_or(-1)),
            None => {
                let _ = w.child.kill();
                let _ = w.child.wait();
                "  (still watching)".to_string()
            }
        };
        // Let the readers take the last bytes.
        std::thread::sleep(Duration::from_millis(50));
        t.push(format!("$ etcdctl watch {}", w.args.join(" ")));
        t.extend(norm(&String::from_utf8_lossy(&w.out.lock().unwrap()), "  "));
        t.extend(norm(
            &String::from_utf8_lossy(&w.err.lock().unwrap()),
            "  ! ",
        ));
        t.push(status);
    }
    t
}

/// Gives fresh watchers time to be created before anything is written.
fn started(watchers: Vec<Watching>) -> Vec<Watching> {
    std::thread::sleep(Duration::from_millis(700));
    watchers
}

/// The whole scenario on `endpoints`; the transcript.
fn scenario(endpoints: &str) -> Vec<String> {
    let live = started(
        [
            &["foo", "--prefix"][..],
            &["foo", "--prefix", "--prev-kv", "-w", "json"],
            &["a"],
            &["", "--prefix", "-w", "json"],
            &["a", "c", "--prev-kv"],
            &["c", "a"],
            &["foo/1", "--rev=1"],
        ]
        .iter()
        .map(|args| watch(endpoints, args))
        .collect(),
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
    let historical = started(
        [
            &["foo", "--prefix", "--rev=2"][..],
            &["a", "--rev=3", "--prev-kv"],
            &["", "--prefix", "--rev=5", "-w", "json"],
            &["b", "--rev=10"],
            &["b", "--rev=20"],
        ]
        .iter()
        .map(|args| watch(endpoints, args))
        .collect(),
    );
    t.extend(run(endpoints, &["put", "b", "late"], None)); // 11
    t.extend(settle(historical));
    t.extend(run(endpoints, &["compact", "6"], None));
    let compacted = started(
        [
            &["foo", "--prefix", "--rev=3"][..],
            &["foo", "--prefix", "--rev=3", "-w", "json"],
            &["foo", "--prefix", "--rev=6"],
        ]
        .iter()
        .map(|args| watch(endpoints, args))
        .collect(),
    );
    t.extend(settle(compacted));
    t
}

/// The same watch scenario through `mango-proxy` (watches coalesced there) prints the same.
#[test]
fn etcdctl_watch_through_the_proxy_matches_etcd() {
    let etcd = Etcd::start();
    let mango = Cluster::start(3);
    mango.wait_leader(std::time::Duration::from_secs(20));
    let proxy = ProxyProc::start(&mango);
    let expected = scenario(&etcd.endpoint);
    let got = scenario(&proxy.endpoint);
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
    let etcd = Etcd::start();
    let mango = Cluster::start(3);
    let expected = scenario(&etcd.endpoint);
    let got = scenario(&mango.endpoints());
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
