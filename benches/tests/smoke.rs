//! Runs `mango-bench --smoke` (and its `learners` and `proxy` modes) end to end against real
//! etcd and real mango voters, learners and proxy (the debug builds next to this test's
//! binaries), and checks that Ctrl-C leaves no server behind.
//!
//! `cargo test -p mango-benches` builds only this package's binary: build the others first
//! with `cargo build -p mango-voter -p mango-learner -p mango-proxy -p mango-loadgen` (CI's
//! `cargo nextest run --workspace` builds them with the rest of the workspace).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BENCH: &str = env!("CARGO_BIN_EXE_mango-bench");

/// A binary of another package of the workspace, next to `mango-bench` in the target dir.
fn sibling(name: &str) -> PathBuf {
    let path = Path::new(BENCH)
        .parent()
        .expect("the bench binary is in a folder")
        .join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build -p mango-voter -p mango-learner -p mango-proxy -p \
         mango-loadgen` first (cargo test -p mango-benches builds only mango-bench)",
        path.display()
    );
    path
}

fn etcd() -> &'static str {
    let etcd = "/usr/bin/etcd";
    assert!(
        Path::new(etcd).is_file(),
        "{etcd} is missing: these tests run a real etcd 3.4 (apt-get install -y etcd-server)"
    );
    etcd
}

/// A fresh folder under the temp dir, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("mango-bench-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a scratch folder in the temp dir");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn bench(scratch: &Scratch, extra: &[&str]) -> Command {
    let mut cmd = Command::new(BENCH);
    cmd.arg("--smoke")
        .arg("--voter-bin")
        .arg(sibling("mango-voter"))
        .arg("--loadgen-bin")
        .arg(sibling("mango-loadgen"))
        .args(["--etcd-bin", etcd()])
        .arg("--out")
        .arg(scratch.0.join("report.md"))
        .arg("--work-dir")
        .arg(scratch.0.join("work"))
        .args(extra);
    cmd
}

/// Pids of processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc")
        .expect("/proc is readable")
        .flatten()
    {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if String::from_utf8_lossy(&cmdline).contains(needle) {
            found.push(pid);
        }
    }
    found
}

/// Waits up to 5 s for every server started under `dir` to be gone.
fn assert_no_server_left(dir: &Path) {
    let needle = dir.to_string_lossy().into_owned();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = processes_mentioning(&needle);
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "processes still running with {needle} in their command line: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn smoke_runs_every_workload_on_both_systems() {
    let scratch = Scratch::new("smoke");
    let started = Instant::now();
    let out = bench(&scratch, &[]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "mango-bench --smoke failed ({}):\n{stderr}\n{stdout}",
        out.status
    );
    eprintln!("smoke run took {:.1} s", started.elapsed().as_secs_f64());

    let md = std::fs::read_to_string(scratch.0.join("report.md")).unwrap();
    for needle in [
        "# mango vs etcd, ",
        "CPUs (nproc)",
        "fsync on in both: etcd default, mango Raft log fsynced before any entry is acknowledged (one fsync per log write, each write taking every Ready queued meanwhile)",
        "Rounds: 1",
        "smoke",
        "shares the",
        "| workload ",
        "| etcd ops/s | mango ops/s | ratio (mango/etcd) | etcd p99 ms | mango p99 ms |",
        "etcd CPU-s/1k ops | mango CPU-s/1k ops | etcd peak RSS MiB | mango peak RSS MiB |",
        "## Dataset load",
        "## Every run",
    ] {
        assert!(
            md.contains(needle),
            "{needle:?} missing from the report:\n{md}"
        );
    }
    // The table went to stdout too.
    assert!(stdout.contains("| put, 1 client "), "{stdout}");

    // Every workload has a row, and both systems served each one without an error.
    let rows: Vec<Vec<String>> = md
        .lines()
        .skip_while(|l| !l.starts_with("| workload "))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| l.split('|').map(|c| c.trim().to_owned()).collect())
        .collect();
    let names: Vec<&str> = rows.iter().map(|r| r[1].as_str()).collect();
    assert_eq!(
        names,
        [
            "put, 1 client",
            "put, 64 clients",
            "put, 256 clients",
            "range linearizable, 256 clients",
            "range serializable, 256 clients",
            "txn-put, 64 clients",
            "watch-latency, 20 watchers",
            "watch-latency, 40 watchers",
            "lease-keepalive, 64 clients",
            "dataset load, 500 keys",
        ]
    );
    for r in &rows {
        let etcd_ops: f64 = r[2]
            .parse()
            .unwrap_or_else(|_| panic!("etcd ops/s in {r:?}"));
        assert!(etcd_ops > 0.0, "{r:?}");
        let etcd_rss: f64 = r[9].parse().unwrap_or_else(|_| panic!("etcd RSS in {r:?}"));
        assert!(etcd_rss > 1.0, "{r:?}");
        assert!(r[11].contains(" / "), "errors column in {r:?}");
        // Every workload, watches and leases included, now runs on mango too.
        let mango_ops: f64 = r[3]
            .parse()
            .unwrap_or_else(|_| panic!("mango ops/s in {r:?}"));
        assert!(mango_ops > 0.0, "{r:?}");
        assert!(
            r[11].starts_with("0 / 0"),
            "no workload fails anywhere: {r:?}"
        );
    }
    assert_no_server_left(&scratch.0);
}

#[test]
fn smoke_learners_mode_measures_reads_on_voters_and_a_learner() {
    let scratch = Scratch::new("learners");
    let learner = sibling("mango-learner");
    let learner = learner.to_string_lossy();
    let out = bench(
        &scratch,
        &["learners", "--max-learners", "1", "--learner-bin", &learner],
    )
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "mango-bench --smoke learners failed ({}):\n{stderr}",
        out.status
    );
    let md = std::fs::read_to_string(scratch.0.join("report.md")).unwrap();
    for needle in [
        "# Reads on learners: mango vs etcd, ",
        "fsync on in both",
        "share the same",
        "| system, reads served by ",
        "leader CPU-ms / 1k reads",
        "## Every run",
    ] {
        assert!(
            md.contains(needle),
            "{needle:?} missing from the report:\n{md}"
        );
    }
    let rows: Vec<Vec<String>> = md
        .lines()
        .skip_while(|l| !l.starts_with("| system, reads served by "))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| l.split('|').map(|c| c.trim().to_owned()).collect())
        .collect();
    let names: Vec<String> = rows.iter().map(|r| format!("{}: {}", r[1], r[2])).collect();
    assert_eq!(
        names,
        [
            "etcd, 3 members: serializable",
            "etcd, 3 members: linearizable",
            "mango, 3 voters: stale",
            "mango, 3 voters: learner-linearizable",
            "mango, 1 learner: stale",
            "mango, 1 learner: learner-linearizable",
        ]
    );
    for r in &rows {
        let reads: f64 = r[3].parse().unwrap_or_else(|_| panic!("reads/s in {r:?}"));
        assert!(reads > 0.0, "{r:?}");
        let leader: f64 = r[5]
            .parse()
            .unwrap_or_else(|_| panic!("leader CPU in {r:?}"));
        assert!(leader >= 0.0, "{r:?}");
        assert_eq!(r[9], "0", "no errors and no notes: {r:?}");
    }
    // The learner's own CPU is measured only where a learner serves the reads.
    assert_eq!(rows[2][8], "–");
    assert!(rows[4][8].parse::<f64>().is_ok(), "{:?}", rows[4]);
    assert_no_server_left(&scratch.0);
}

#[test]
fn smoke_proxy_mode_compares_direct_and_proxied_runs() {
    let scratch = Scratch::new("proxy");
    let (learner, proxy) = (sibling("mango-learner"), sibling("mango-proxy"));
    let out = bench(&scratch, &["proxy", "--learner-bin"])
        .arg(&learner)
        .arg("--proxy-bin")
        .arg(&proxy)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "mango-bench --smoke proxy failed ({}):\n{stderr}",
        out.status
    );
    let md = std::fs::read_to_string(scratch.0.join("report.md")).unwrap();
    for needle in [
        "# mango-proxy as a sidecar: direct vs through the proxy, ",
        "fsync on: each voter's Raft log is fsynced before an entry is acknowledged",
        "share the same",
        "| workload ",
        "added p50 ms",
        "added p99 ms",
        "proxy CPU-ms / 1k req",
        "## Every run",
    ] {
        assert!(
            md.contains(needle),
            "{needle:?} missing from the report:\n{md}"
        );
    }
    let rows: Vec<Vec<String>> = md
        .lines()
        .skip_while(|l| !l.starts_with("| workload "))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| l.split('|').map(|c| c.trim().to_owned()).collect())
        .collect();
    let names: Vec<String> = rows
        .iter()
        .map(|r| format!("{}: {} / {}", r[1], r[2], r[3]))
        .collect();
    assert_eq!(
        names,
        [
            "put, 1 client: 3 voters / leader",
            "put, 64 clients: 3 voters / leader",
            "range linearizable, 64 clients: 3 voters / leader",
            "range stale, 64 clients: learner / learner",
        ]
    );
    for r in &rows {
        for (i, what) in [(4, "direct ops/s"), (5, "proxy ops/s"), (14, "proxy RSS")] {
            let x: f64 = r[i].parse().unwrap_or_else(|_| panic!("{what} in {r:?}"));
            assert!(x > 0.0, "{what} in {r:?}");
        }
        assert!(r[9].starts_with(['+', '-']), "added p50 in {r:?}");
        assert_eq!(r[15], "0 / 0", "no errors and no notes: {r:?}");
    }
    assert_no_server_left(&scratch.0);
}

#[test]
fn ctrl_c_kills_every_child() {
    let scratch = Scratch::new("sigint");
    let mut child = bench(&scratch, &["--only", "put-256"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the first etcd member has been started.
    let log = scratch.0.join("work/r1/put-256-clients/etcd/e1.log");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !log.exists() {
        assert!(Instant::now() < deadline, "no etcd started within 30 s");
        if let Some(status) = child.try_wait().unwrap() {
            panic!("mango-bench exited early: {status}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(!processes_mentioning(&scratch.0.to_string_lossy()).is_empty());
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("mango-bench did not exit within 15 s of SIGINT");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(130), "{status}");
    assert_no_server_left(&scratch.0);
}
