//! A real single-node etcd on loopback for the tests, and etcdctl around it.
//!
//! Each etcd gets free ports and its own temporary directory; it is killed (by its own pid)
//! when the handle drops. Tests skip, saying why, when `etcd` or `etcdctl` is not installed.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use mango_proto::mvccpb::KeyValue;
use serde_json::Value as Json;

/// Whether etcd and etcdctl are installed; prints the reason to skip when not.
pub fn etcd_installed() -> bool {
    for (bin, arg) in [("etcd", "--version"), ("etcdctl", "version")] {
        let ok = Command::new(bin)
            .env("ETCDCTL_API", "3")
            .arg(arg)
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            eprintln!(
                "SKIPPED: `{bin}` is not installed (Debian: apt-get install etcd-server etcd-client)"
            );
            return false;
        }
    }
    true
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    l.local_addr().expect("local addr").port()
}

/// A running etcd.
pub struct Etcd {
    /// The process; killed on drop.
    child: Child,
    /// `http://127.0.0.1:<client port>`.
    pub endpoint: String,
    /// `http://127.0.0.1:<peer port>`.
    pub peer_url: String,
    /// The member name.
    pub name: String,
    /// Where its log goes.
    log: PathBuf,
}

/// The flags that make `name` a one-member cluster on loopback.
pub fn cluster_flags(name: &str, peer_url: &str) -> Vec<String> {
    vec![
        "--name".into(),
        name.into(),
        "--initial-cluster".into(),
        format!("{name}={peer_url}"),
        "--initial-advertise-peer-urls".into(),
        peer_url.into(),
    ]
}

impl Etcd {
    /// Starts etcd on `data_dir` (fresh, or restored by `etcdctl snapshot restore` with the
    /// same name and peer URL) and waits until it answers.
    pub fn start(data_dir: &Path, name: &str, peer_url: &str) -> Self {
        let endpoint = format!("http://127.0.0.1:{}", free_port());
        let log = data_dir.with_extension("log");
        let log_file = std::fs::File::create(&log).expect("log file");
        let child = Command::new("etcd")
            .args(cluster_flags(name, peer_url))
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen-peer-urls", peer_url])
            .args([
                "--listen-client-urls",
                &endpoint,
                "--advertise-client-urls",
                &endpoint,
            ])
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("spawn etcd");
        let etcd = Self {
            child,
            endpoint,
            peer_url: peer_url.into(),
            name: name.into(),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !etcd.try_ctl(&["endpoint", "health"]).status.success() {
            assert!(
                Instant::now() < deadline,
                "etcd did not start:\n{}",
                etcd.log_text()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        etcd
    }

    /// A fresh one-member etcd under `dir`.
    pub fn fresh(dir: &Path) -> Self {
        let peer = format!("http://127.0.0.1:{}", free_port());
        Self::start(&dir.join("etcd-data"), "n1", &peer)
    }

    /// etcd's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs etcdctl against this etcd.
    pub fn try_ctl(&self, args: &[&str]) -> Output {
        ctl_with_stdin(&self.endpoint, args, None)
    }

    /// Runs etcdctl against this etcd and returns its stdout; panics on failure.
    pub fn ctl(&self, args: &[&str]) -> String {
        let out = self.try_ctl(args);
        assert!(
            out.status.success(),
            "etcdctl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    }

    /// `etcdctl txn` with `script` on its stdin.
    pub fn txn(&self, script: &str) -> String {
        let out = ctl_with_stdin(&self.endpoint, &["txn"], Some(script));
        assert!(
            out.status.success(),
            "txn failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    }

    /// `etcdctl put` returning the revision of the write.
    pub fn put(&self, key: &str, value: &str, extra: &[&str]) -> i64 {
        let mut args = vec!["put", key, value, "-w", "json"];
        args.extend_from_slice(extra);
        header_revision(&self.ctl(&args))
    }

    /// Every key at revision `rev` (0: the current one), as etcd answers.
    pub fn all_kvs_at(&self, rev: i64) -> Vec<KeyValue> {
        let rev = format!("--rev={rev}");
        let json: Json =
            serde_json::from_str(&self.ctl(&["get", "", "--prefix", &rev, "-w", "json"]))
                .expect("get json");
        json["kvs"]
            .as_array()
            .map(|a| a.iter().map(kv_from_json).collect())
            .unwrap_or_default()
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// etcdctl (API v3) at `endpoint`, with optional stdin.
pub fn ctl_with_stdin(endpoint: &str, args: &[&str], stdin: Option<&str>) -> Output {
    use std::io::Write;
    let mut child = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg("--endpoints")
        .arg(endpoint)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn etcdctl");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).expect("write stdin");
    }
    drop(input);
    child.wait_with_output().expect("etcdctl output")
}

/// etcdctl without an endpoint (snapshot status, snapshot restore).
pub fn ctl_offline(args: &[&str]) -> Output {
    Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(args)
        .output()
        .expect("run etcdctl")
}

/// The header revision of an etcdctl JSON answer.
pub fn header_revision(json: &str) -> i64 {
    let v: Json = serde_json::from_str(json).expect("json");
    v["header"]["revision"].as_i64().expect("header.revision")
}

fn kv_from_json(v: &Json) -> KeyValue {
    let int = |f: &str| v[f].as_i64().unwrap_or(0);
    let bytes = |f: &str| v[f].as_str().map(base64_decode).unwrap_or_default();
    KeyValue {
        key: bytes("key"),
        create_revision: int("create_revision"),
        mod_revision: int("mod_revision"),
        version: int("version"),
        value: bytes("value"),
        lease: int("lease"),
    }
}

/// Standard base64 (etcdctl's JSON encodes keys and values so).
pub fn base64_decode(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes() {
        let d = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => continue,
        };
        acc = (acc << 6) | u32::from(d);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// What `etcdctl snapshot status -w json` says of a file.
pub fn etcdctl_status(file: &Path) -> Json {
    let out = ctl_offline(&[
        "snapshot",
        "status",
        file.to_str().expect("path"),
        "-w",
        "json",
    ]);
    assert!(
        out.status.success(),
        "snapshot status failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("status json")
}

/// Restores `file` into `data_dir` for a member `name` at `peer_url`.
pub fn etcdctl_restore(
    file: &Path,
    data_dir: &Path,
    name: &str,
    peer_url: &str,
    skip_hash_check: bool,
) {
    let mut args = vec![
        "snapshot".to_string(),
        "restore".into(),
        file.to_str().expect("path").into(),
        "--data-dir".into(),
        data_dir.to_str().expect("path").into(),
    ];
    args.extend(cluster_flags(name, peer_url));
    if skip_hash_check {
        args.push("--skip-hash-check".into());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = ctl_offline(&args);
    assert!(
        out.status.success(),
        "snapshot restore failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Granted TTL of a lease, from `etcdctl lease timetolive`.
pub fn granted_ttl(etcd: &Etcd, id: i64) -> i64 {
    let hex = format!("{id:x}");
    let v: Json = serde_json::from_str(&etcd.ctl(&["lease", "timetolive", &hex, "-w", "json"]))
        .expect("json");
    v["granted-ttl"].as_i64().expect("granted-ttl")
}
