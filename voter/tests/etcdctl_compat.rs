//! etcdctl compatibility: the same etcdctl script runs against a fresh single-node etcd 3.4
//! (`/usr/bin/etcd`) and a fresh 3-voter mango cluster, and the transcripts (stdout, stderr and
//! exit status of every command) must be identical once what legitimately differs is
//! normalised: member and cluster ids, names and URLs, raft terms and indexes, endpoints and
//! ports, database sizes and hashes, timings and client-side log noise. Both clusters start
//! empty, so revisions must match exactly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use mango_testkit::etcdctl::etcdctl_stdin;
use mango_testkit::{Cluster, etcdctl, wait_until};
use serde_json::Value;

// ---------------------------------------------------------------------------------------------
// The script.

/// Where a step runs on the mango side (etcd has one endpoint).
#[derive(Clone, Copy, PartialEq)]
enum Scope {
    /// Every voter's endpoint: the client picks one, followers forward.
    All,
    /// One follower's endpoint: for commands that print one line per endpoint.
    One,
}

/// Step-specific normalisation on top of the generic one.
#[derive(Clone, Copy, PartialEq)]
enum Norm {
    None,
    /// `endpoint status` table: `ep, id, version, size, is leader, is learner, term, index,
    /// applied index, errors`.
    StatusTable,
    /// `endpoint hashkv` table: `ep, hash`.
    HashTable,
    /// `member list` (table or JSON): member fields become placeholders and equal members
    /// collapse into one, since etcd has one member and mango three.
    Members,
}

struct Step {
    args: Vec<String>,
    stdin: Option<Vec<u8>>,
    scope: Scope,
    norm: Norm,
}

fn step(args: &[&str]) -> Step {
    Step {
        args: args.iter().map(|s| s.to_string()).collect(),
        stdin: None,
        scope: Scope::All,
        norm: Norm::None,
    }
}

impl Step {
    fn stdin(mut self, input: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(input.into());
        self
    }
    fn one(mut self) -> Self {
        self.scope = Scope::One;
        self
    }
    fn norm(mut self, norm: Norm) -> Self {
        self.norm = norm;
        self
    }
}

/// A value a little over etcd's default `--max-request-bytes` (1.5 MiB).
fn too_large() -> Vec<u8> {
    vec![b'x'; 1536 * 1024 + 1024]
}

/// The input of `etcdctl txn`: compares, success ops and failure ops, each section ended by
/// an empty line.
fn txn(compares: &[&str], success: &[&str], failure: &[&str]) -> String {
    [compares, success, failure]
        .iter()
        .map(|section| section.iter().map(|l| format!("{l}\n")).collect::<String>() + "\n")
        .collect()
}

/// A txn with one operation more than etcd's default `--max-txn-ops` (128).
fn too_many_ops() -> String {
    let puts: Vec<String> = (0..129).map(|i| format!("put many{i} v")).collect();
    let puts: Vec<&str> = puts.iter().map(String::as_str).collect();
    txn(&[], &puts, &[])
}

/// The script. The numbers in comments are the store's revision after the step.
fn script() -> Vec<Step> {
    let sorts = ["KEY", "VERSION", "CREATE", "MODIFY", "VALUE"];
    let mut s = vec![
        // rev 1: empty.
        step(&["get", "", "--prefix", "-w", "json"]),
        step(&["put", "a", "1"]),                                 // 2
        step(&["put", "b", "2"]),                                 // 3
        step(&["put", "c", "3"]),                                 // 4
        step(&["put", "a", "10", "--prev-kv"]),                   // 5
        step(&["put", "new", "v", "--prev-kv"]),                  // 6: no previous value
        step(&["put", "foo/1", "z"]),                             // 7
        step(&["put", "foo/2", "y"]),                             // 8
        step(&["put", "foo/3", "x"]),                             // 9
        step(&["put", "fop", "w"]),                               // 10
        step(&["put", "b", "20"]),                                // 11
        step(&["put", "foo/2", "y2", "--prev-kv", "-w", "json"]), // 12
        step(&["put", "empty", ""]),                              // 13
        step(&["put", "ключ", "значение"]),                       // 14
        step(&["put", "missing", "--ignore-value"]),              // key not found
        step(&["put", "b", "--ignore-value"]),                    // 15: keeps "20"
        step(&["put", "", "v"]),                                  // key is not provided
        step(&["put", "withlease", "v", "--lease=1234abcd"]),     // lease not found
        // Reads.
        step(&["get", "a"]),
        step(&["get", "a", "-w", "json"]),
        step(&["get", "a", "-w", "fields"]),
        step(&["get", "nope"]),
        step(&["get", "nope", "-w", "json"]),
        step(&["get", ""]),
        step(&["get", "foo", "--prefix"]),
        step(&["get", "foo/", "--prefix", "-w", "json"]),
        step(&["get", "a", "c"]),
        step(&["get", "a", "c", "-w", "json"]),
        step(&["get", "c", "a"]),
        step(&["get", "", "--prefix", "--limit=3"]),
        step(&["get", "", "--prefix", "--limit=3", "-w", "json"]),
        step(&[
            "get",
            "foo",
            "--prefix",
            "--limit=1",
            "--keys-only",
            "-w",
            "json",
        ]),
        step(&["get", "", "--prefix", "--keys-only"]),
        step(&["get", "foo", "--prefix", "--print-value-only"]),
        step(&["get", "a", "--print-value-only"]),
        step(&["get", "--from-key", "c"]),
        step(&["get", "--from-key", "foo/2", "--limit=2", "-w", "json"]),
        step(&["get", "--from-key", ""]),
        step(&["get", "a", "--rev=1"]),
        step(&["get", "a", "--rev=2"]),
        step(&["get", "a", "--rev=4"]),
        step(&["get", "a", "--rev=5", "-w", "json"]),
        step(&["get", "", "--prefix", "--rev=8", "-w", "json"]),
        step(&["get", "foo/2", "--rev=6"]),
        step(&["get", "a", "c", "--rev=3", "--keys-only"]),
    ];
    for by in sorts {
        for order in ["ASCEND", "DESCEND"] {
            s.push(step(&[
                "get",
                "",
                "--prefix",
                &format!("--sort-by={by}"),
                &format!("--order={order}"),
            ]));
        }
    }
    s.extend([
        step(&[
            "get",
            "",
            "--prefix",
            "--sort-by=MODIFY",
            "--order=DESCEND",
            "--limit=2",
            "-w",
            "json",
        ]),
        step(&["get", "foo", "--prefix", "--order=DESCEND", "--keys-only"]),
        step(&[
            "get",
            "",
            "--prefix",
            "--sort-by=VALUE",
            "--keys-only",
            "--limit=4",
        ]),
        // Deletes.
        step(&["del", "nope"]),
        step(&["del", "nope", "-w", "json"]),
        step(&["del", ""]),                               // key is not provided
        step(&["del", "c"]),                              // 16
        step(&["del", "a", "--prev-kv"]),                 // 17
        step(&["del", "foo", "--prefix"]),                // 18
        step(&["del", "fop", "--prev-kv", "-w", "json"]), // 19
        step(&["put", "x1", "1"]),                        // 20
        step(&["put", "x2", "2"]),                        // 21
        step(&["put", "x3", "3"]),                        // 22
        step(&["del", "x1", "x3", "--prev-kv"]),          // 23: x1 and x2
        step(&["del", "--from-key", "zzz"]),              // 24: "ключ" sorts after "zzz"
        step(&["get", "", "--prefix", "-w", "json"]),
        step(&["get", "a", "--rev=16"]),
        // Txn, interactive: success branch.
        step(&["put", "k", "v"]), // 25
        step(&["txn", "-i"]).stdin(txn(
            &[r#"value("k") = "v""#, r#"mod("k") > "3""#],
            &["put k v2", "put ok yes", "get k"],
            &["put k nope"],
        )), // 26
        // Failure branch.
        step(&["txn", "-i"]).stdin(txn(
            &[r#"value("k") = "v""#],
            &["put k never"],
            &["put failed yes", "get k", "del nothing"],
        )), // 27
        // JSON output, more compares.
        step(&["txn", "-i", "-w", "json"]).stdin(txn(
            &[
                r#"version("k") = "2""#,
                r#"create("k") < "100""#,
                r#"value("ok") != "no""#,
            ],
            &["get k", "del ok --prev-kv"],
            &["put never x"],
        )), // 28
        step(&["txn", "-i", "-w", "json"]).stdin(txn(
            &[r#"mod("k") < "3""#],
            &["put never x"],
            &["get k --rev=25", "get failed", "get k --rev=24"],
        )),
        // Non-interactive form (no prompts); a value compare on a missing key is false.
        step(&["txn"]).stdin(txn(
            &[r#"value("absent") = """#],
            &["put t 1"],
            &["put t 2"],
        )), // 29
        step(&["txn"]).stdin(txn(
            &[r#"version("absent") = "0""#],
            &["get k", "get t"],
            &[],
        )),
        // Errors.
        step(&["txn", "-i"]).stdin(txn(&[], &["put d 1", "put d 2"], &[])),
        step(&["txn", "-i"]).stdin(txn(&[], &["put d 1", "del d"], &[])),
        step(&["txn"]).stdin(too_many_ops()),
        step(&["get", "k", "--rev=1000"]),
        step(&["get", "k", "--rev=29"]),
        step(&["put", "big"]).stdin(too_large()),
        step(&["get", "big"]),
        step(&["get", "d"]),
        // Compaction.
        step(&["compact", "1000"]),
        step(&["compact", "20"]),
        step(&["get", "b", "--rev=19"]),
        step(&["get", "b", "--rev=20", "-w", "json"]),
        step(&["get", "", "--prefix", "--rev=21", "--keys-only"]),
        step(&["compact", "20"]),
        step(&["compact", "15"]),
        step(&["compact", "24", "--physical"]),
        step(&["get", "x2", "--rev=23"]),
        step(&["get", "", "--prefix", "-w", "json"]),
        step(&["txn", "-i"]).stdin(txn(&[], &["get k --rev=3"], &[])),
        // Cluster and maintenance. `endpoint health` and the like print one line per
        // endpoint, so they ask one mango voter (and see `endpoint_health_of_every_voter_at_once`).
        step(&["member", "list"]).norm(Norm::Members),
        step(&["member", "list", "-w", "json"]).norm(Norm::Members),
        step(&["endpoint", "status"]).one().norm(Norm::StatusTable),
        step(&["endpoint", "status", "-w", "json"]).one(),
        step(&["endpoint", "health"]).one(),
        step(&["endpoint", "health", "-w", "json"]).one(),
        step(&["endpoint", "hashkv"]).one().norm(Norm::HashTable),
        step(&["endpoint", "hashkv", "-w", "json"]).one(),
        step(&["defrag"]).one(),
        step(&["get", "", "--prefix"]),
        step(&["put", "after", "defrag"]), // 30
        step(&["endpoint", "status", "-w", "json"]).one(),
    ]);
    s
}

// ---------------------------------------------------------------------------------------------
// Running and normalising.

fn run_step(endpoints: &str, step: &Step) -> (String, String, i32) {
    let args: Vec<&str> = step.args.iter().map(String::as_str).collect();
    let out = etcdctl_stdin(endpoints, &args, step.stdin.as_deref().unwrap_or_default());
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code().unwrap_or(-1),
    )
}

/// JSON fields whose values legitimately differ between two clusters.
const VOLATILE: &[&str] = &[
    "cluster_id",
    "member_id",
    "raft_term",
    "leader",
    "raftIndex",
    "raftTerm",
    "raftAppliedIndex",
    "dbSize",
    "dbSizeInUse",
    "Endpoint",
    "endpoint",
    "hash",
    "took",
    // etcdctl's own log lines on stderr.
    "ts",
    "target",
];

fn norm_json(v: &mut Value, norm: Norm) {
    match v {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                let member_field = norm == Norm::Members
                    && ["ID", "name", "peerURLs", "clientURLs"].contains(&k.as_str());
                if VOLATILE.contains(&k.as_str()) || member_field {
                    *v = Value::String(format!("<{k}>"));
                } else {
                    norm_json(v, norm);
                }
            }
            if norm == Norm::Members
                && let Some(Value::Array(members)) = map.get_mut("members")
            {
                members.dedup();
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|v| norm_json(v, norm)),
        _ => {}
    }
}

/// Replaces every loopback `127.a.b.c:<port>` with `<ep>` (each process of a test has a
/// loopback address of its own).
fn norm_endpoints(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(i) = rest.find("127.") {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let addr_len = tail
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ':'))
            .unwrap_or(tail.len());
        let addr = &tail[..addr_len];
        let is_endpoint = addr.split_once(':').is_some_and(|(ip, port)| {
            ip.parse::<std::net::Ipv4Addr>().is_ok()
                && !port.is_empty()
                && port.chars().all(|c| c.is_ascii_digit())
        });
        if is_endpoint {
            out.push_str("<ep>");
            rest = &tail[addr_len..];
        } else {
            out.push_str("127.");
            rest = &tail["127.".len()..];
        }
    }
    out.push_str(rest);
    out
}

fn norm_line(line: &str, norm: Norm) -> String {
    let t = line.trim_start();
    if (t.starts_with('{') || t.starts_with('['))
        && let Ok(mut v) = serde_json::from_str::<Value>(t)
    {
        norm_json(&mut v, norm);
        return v.to_string();
    }
    // `-w fields`.
    for f in ["\"ClusterID\" : ", "\"MemberID\" : ", "\"RaftTerm\" : "] {
        if line.starts_with(f) {
            return format!("{f}<n>");
        }
    }
    // `endpoint health`: "<ep> is healthy: successfully committed proposal: took = 1.2ms".
    let line = match line.find("took = ") {
        Some(i) => format!("{}took = <t>", &line[..i]),
        None => line.to_string(),
    };
    let line = norm_endpoints(&line);
    let mut fields: Vec<String> = line.split(", ").map(str::to_string).collect();
    match norm {
        Norm::StatusTable if fields.len() >= 9 => {
            // ep, id, version, db size, is leader, is learner, term, index, applied, errors
            for i in [1, 3, 4, 6, 7, 8] {
                fields[i] = "<n>".into();
            }
        }
        Norm::HashTable if fields.len() == 2 => fields[1] = "<hash>".into(),
        Norm::Members if fields.len() == 6 => {
            // id, status, name, peer urls, client urls, is learner
            for i in [0, 2, 3, 4] {
                fields[i] = format!("<{i}>");
            }
        }
        _ => {}
    }
    fields.join(", ")
}

fn norm_text(text: &str, norm: Norm) -> Vec<String> {
    let mut lines: Vec<String> = text.lines().map(|l| norm_line(l, norm)).collect();
    if norm == Norm::Members {
        lines.dedup();
    }
    lines
}

fn render(step: &Step, (stdout, stderr, code): &(String, String, i32)) -> Vec<String> {
    let mut t = vec![format!("$ etcdctl {}", step.args.join(" "))];
    if let Some(input) = &step.stdin {
        if input.len() > 200 {
            t.push(format!("  < {} bytes", input.len()));
        } else {
            for l in String::from_utf8_lossy(input).lines() {
                t.push(format!("  < {l}"));
            }
        }
    }
    t.extend(
        norm_text(stdout, step.norm)
            .into_iter()
            .map(|l| format!("  {l}")),
    );
    t.extend(
        norm_text(stderr, step.norm)
            .into_iter()
            .map(|l| format!("  ! {l}")),
    );
    t.push(format!("  exit {code}"));
    t
}

/// A line diff (longest common subsequence), with a few lines of context.
fn diff(a: &[String], b: &[String]) -> String {
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut ops = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            ops.push((' ', &a[i]));
            i += 1;
            j += 1;
        } else if j < m && (i == n || lcs[i][j + 1] >= lcs[i + 1][j]) {
            ops.push(('+', &b[j]));
            j += 1;
        } else {
            ops.push(('-', &a[i]));
            i += 1;
        }
    }
    const CONTEXT: usize = 4;
    let changed: Vec<usize> = (0..ops.len()).filter(|&k| ops[k].0 != ' ').collect();
    let mut out = String::new();
    let mut last_shown: Option<usize> = None;
    for k in 0..ops.len() {
        let near = changed
            .iter()
            .any(|&c| k + CONTEXT >= c && k <= c + CONTEXT);
        if !near {
            continue;
        }
        if last_shown.is_none_or(|l| l + 1 != k) {
            // Name the command the hunk belongs to.
            let command = ops[..=k].iter().rev().find(|(_, l)| l.starts_with("$ "));
            out.push_str(&format!("@@ {}\n", command.map_or("", |(_, l)| l.as_str())));
        }
        out.push_str(&format!("{} {}\n", ops[k].0, ops[k].1));
        last_shown = Some(k);
    }
    out
}

fn run_script(steps: &[Step], all: &str, one: &str) -> Vec<String> {
    let mut transcript = Vec::new();
    for s in steps {
        let endpoints = if s.scope == Scope::All { all } else { one };
        transcript.extend(render(s, &run_step(endpoints, s)));
    }
    transcript
}

fn save(dir: &Path, name: &str, transcript: &[String]) {
    let _ = std::fs::write(dir.join(name), transcript.join("\n") + "\n");
}

/// Waits until every member has published its name and client URLs (the voters do so right
/// after they start, as etcd members do; until then a member shows without client URLs, or as
/// "unstarted"); returns `member list`.
fn wait_started(c: &Cluster) -> String {
    wait_until(
        Duration::from_secs(10),
        "every member to publish its name and client URLs",
        || {
            let list = c.etcdctl(&["member", "list"]);
            let published = list.lines().all(|l| {
                let fields: Vec<&str> = l.split(", ").collect();
                fields.len() == 6 && fields[1] == "started" && !fields[4].is_empty()
            });
            if published { Ok(list) } else { Err(list) }
        },
    )
}

/// Runs `steps` on a fresh etcd and a fresh 3-voter mango; panics with a diff if the
/// normalised transcripts differ.
fn compare(steps: &[Step]) {
    let etcd = Cluster::etcd(1);
    let mango = Cluster::start(3);
    let leader = mango.wait_leader();
    let follower = mango.voters[(leader + 1) % 3].endpoint();
    wait_started(&mango);

    let expected = run_script(steps, &etcd.endpoints(), &etcd.endpoints());
    let got = run_script(steps, &mango.endpoints(), &follower);
    // MANGO_COMPAT_DIR=<dir> keeps both transcripts for reading.
    let dir = std::env::var_os("MANGO_COMPAT_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| mango.path().to_path_buf());
    save(&dir, "etcd.transcript", &expected);
    save(&dir, "mango.transcript", &got);
    if expected != got {
        panic!(
            "etcdctl transcripts differ (- etcd 3.4, + mango):\n{}",
            diff(&expected, &got)
        );
    }
}

#[test]
fn etcdctl_transcript_matches_etcd() {
    compare(&script());
}

/// The same script through `mango-proxy` (every command, the per-endpoint ones included, at
/// the proxy's one endpoint) prints what etcd prints.
#[test]
fn etcdctl_transcript_through_the_proxy_matches_etcd() {
    let steps = script();
    let etcd = Cluster::etcd(1);
    let mut mango = Cluster::start(3);
    wait_started(&mango);
    mango.start_proxy(&[]);
    let expected = run_script(&steps, &etcd.endpoints(), &etcd.endpoints());
    let proxy = mango.proxy_endpoint();
    let got = run_script(&steps, &proxy, &proxy);
    let dir = std::env::var_os("MANGO_COMPAT_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| mango.path().to_path_buf());
    save(&dir, "etcd.transcript", &expected);
    save(&dir, "proxy.transcript", &got);
    if expected != got {
        panic!(
            "etcdctl transcripts differ (- etcd 3.4, + mango through mango-proxy):\n{}",
            diff(&expected, &got)
        );
    }
}

#[test]
fn diff_names_the_command_of_each_hunk() {
    let etcd: Vec<String> = ["$ etcdctl put a 1", "  OK", "  exit 0"]
        .map(String::from)
        .to_vec();
    let mut mango = etcd.clone();
    mango[1] = "  NOPE".into();
    let d = diff(&etcd, &mango);
    assert!(d.contains("@@ $ etcdctl put a 1\n"), "{d}");
    assert!(d.contains("-   OK\n") && d.contains("+   NOPE\n"), "{d}");
}

/// etcd has one member, mango three: the shapes were compared above; here the counts.
#[test]
fn member_list_has_one_line_per_voter() {
    let mango = Cluster::start(3);
    let list = wait_started(&mango);
    assert_eq!(list.lines().count(), 3, "{list}");
    for v in &mango.voters {
        let line = list
            .lines()
            .find(|l| l.contains(&v.peer_url()))
            .unwrap_or_else(|| panic!("{} missing from\n{list}", v.name));
        let fields: Vec<&str> = line.split(", ").collect();
        assert_eq!(fields.len(), 6, "{line}");
        // `%x`, as etcd prints it: no leading zeros.
        let id = u64::from_str_radix(fields[0], 16).unwrap_or_else(|_| panic!("hex id: {line}"));
        assert_eq!(format!("{id:x}"), fields[0], "{line}");
        assert_eq!(
            fields[1..],
            [
                "started",
                &v.name,
                &v.peer_url(),
                &format!("http://{}", v.endpoint()),
                "false"
            ],
            "{line}"
        );
    }
    // Every voter agrees on the hash of the data.
    let hashes = mango.etcdctl(&["endpoint", "hashkv"]);
    let hashes: Vec<&str> = hashes
        .lines()
        .filter_map(|l| l.split(", ").nth(1))
        .collect();
    assert_eq!(hashes.len(), 3);
    assert!(hashes.windows(2).all(|w| w[0] == w[1]), "{hashes:?}");
}

/// `endpoint health` over every voter sends one linearizable read to each at the same time.
/// Regression: each voter used to number its ReadIndex contexts with its own counter from 1,
/// so reads from two voters carried the same context and raft-rs's `ReadOnly::add_request`
/// silently dropped the second, which then waited out the request timeout. Contexts now name
/// the node, and unanswered reads are issued again.
#[test]
fn endpoint_health_of_every_voter_at_once() {
    let mango = Cluster::start(3);
    for round in 0..10 {
        let out = etcdctl(
            &mango.endpoints(),
            &["endpoint", "health", "--command-timeout=3s"],
        );
        assert!(
            out.status.success(),
            "round {round}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
