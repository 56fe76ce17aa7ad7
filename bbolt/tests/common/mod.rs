//! A real single-node etcd for the tests (mango-testkit's), and etcdctl around it.
//!
//! Each etcd gets a loopback address of its own and a directory; it is killed (by its own
//! pid) when the handle drops. Tests skip, saying why, when `etcd` or `etcdctl` is not
//! installed.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

use mango_proto::mvccpb::KeyValue;
use mango_testkit::Cluster;
use mango_testkit::etcdctl::{etcdctl, etcdctl_ok, etcdctl_stdin};
pub use mango_testkit::etcdctl::{etcdctl_offline as ctl_offline, header_revision};
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

/// A running one-member etcd (mango-testkit's cluster of one real etcd, on a loopback
/// address of its own), killed on drop.
pub struct Etcd {
    /// The process.
    cluster: Cluster,
    /// `http://<ip>:2379`.
    pub endpoint: String,
    /// `http://<ip>:2380`.
    pub peer_url: String,
    /// The member name.
    pub name: String,
}

impl Etcd {
    /// A one-member etcd with its data and log under `dir`, not started: restore a snapshot
    /// into [`Etcd::data_dir`] (for its name and peer URL) first, then [`Etcd::start`].
    pub fn prepare(dir: &Path) -> Self {
        let cluster = Cluster::builder(1)
            .etcd()
            .names("r")
            .dir(dir)
            .build()
            .expect("a one-member etcd");
        let m = &cluster.voters[0];
        Self {
            endpoint: m.client_url(),
            peer_url: m.peer_url(),
            name: m.name.clone(),
            cluster,
        }
    }

    /// Where its data is.
    pub fn data_dir(&self) -> &Path {
        &self.cluster.voters[0].data_dir
    }

    /// Starts it (on a fresh data dir, or one `etcdctl snapshot restore` made with the same
    /// name and peer URL) and waits until it leads.
    pub fn start(mut self) -> Self {
        self.cluster.spawn(0);
        self.cluster.wait_leader();
        self
    }

    /// A fresh one-member etcd under `dir`.
    pub fn fresh(dir: &Path) -> Self {
        Self::prepare(&dir.join("etcd")).start()
    }

    /// etcd's log so far.
    pub fn log_text(&self) -> String {
        self.cluster.voters[0].log_text()
    }

    /// Runs etcdctl against this etcd.
    pub fn try_ctl(&self, args: &[&str]) -> Output {
        etcdctl(&self.endpoint, args)
    }

    /// Runs etcdctl against this etcd and returns its stdout; panics on failure.
    pub fn ctl(&self, args: &[&str]) -> String {
        etcdctl_ok(&self.endpoint, args)
    }

    /// `etcdctl txn` with `script` on its stdin.
    pub fn txn(&self, script: &str) -> String {
        let out = etcdctl_stdin(&self.endpoint, &["txn"], script.as_bytes());
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

/// The flags that make `name` a one-member cluster at `peer_url` (for a restore).
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
