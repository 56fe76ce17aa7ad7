//! Backup and restore through etcd 3.4's snapshot file: a snapshot saved with `etcdctl
//! snapshot save` from real etcd, or from mango, restored (`mango_voter::restore`, what
//! `mangoctl snapshot restore` runs) into the data folders of a new 3-voter mango cluster
//! that then serves the same history. A file saved from mango also passes `etcdctl snapshot
//! status` and restores into a real etcd.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use mango_testkit::Cluster;
use mango_voter::restore::{RestoreOptions, restore};
use serde_json::Value;

/// The `--initial-cluster` of `c`'s voters.
fn initial_cluster(c: &Cluster) -> String {
    c.voters
        .iter()
        .map(|v| format!("{}={}", v.name, v.peer_url()))
        .collect::<Vec<_>>()
        .join(",")
}

/// Restores `file` into every voter's data folder of a new 3-voter mango cluster, then
/// starts them (`--initial-cluster-state new`).
fn restore_and_start(file: &Path, token: &str) -> Cluster {
    let mut c = Cluster::builder(3).token(token).build().unwrap();
    let initial = initial_cluster(&c);
    let mut revision = None;
    for v in &c.voters {
        let restored = restore(&RestoreOptions {
            snapshot: file.to_path_buf(),
            name: v.name.clone(),
            initial_cluster: initial.clone(),
            initial_cluster_token: token.into(),
            initial_advertise_peer_urls: vec![v.peer_url()],
            data_dir: v.data_dir.clone(),
            skip_hash_check: false,
        })
        .expect("restore");
        // Every member holds the same state.
        assert!(revision.is_none_or(|r| r == restored.revision));
        revision = Some(restored.revision);
    }
    for i in 0..3 {
        c.spawn(i);
    }
    c.wait_leader();
    c
}

fn etcdctl(endpoint: &str, args: &[&str]) -> String {
    mango_testkit::etcdctl_ok(endpoint, args)
}

/// Every key at `rev` (0: the head) as etcdctl prints them in JSON, without the header.
fn kvs_at(endpoint: &str, rev: i64) -> Value {
    let rev = format!("--rev={rev}");
    let out = etcdctl(endpoint, &["get", "", "--prefix", &rev, "-w", "json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    v.get("kvs").cloned().unwrap_or(Value::Array(vec![]))
}

fn head_revision(endpoint: &str) -> i64 {
    let out = etcdctl(endpoint, &["get", "none", "-w", "json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    v["header"]["revision"].as_i64().unwrap()
}

fn save(endpoint: &str, file: &Path) {
    etcdctl(endpoint, &["snapshot", "save", file.to_str().unwrap()]);
}

/// Puts, overwrites, deletes, a lease with a key, and a compaction in the middle; returns
/// the lease id (hex) and the compacted revision.
fn write_history(endpoint: &str) -> (String, i64) {
    for (k, v) in [("a", "1"), ("b", "1"), ("a", "2"), ("c", "1")] {
        etcdctl(endpoint, &["put", k, v]);
    }
    etcdctl(endpoint, &["del", "b"]);
    let grant = etcdctl(endpoint, &["lease", "grant", "600"]);
    // "lease 694d7b1a5e7b8a0c granted with TTL(600s)"
    let lease = grant.split_whitespace().nth(1).unwrap().to_string();
    etcdctl(
        endpoint,
        &["put", "leased", "x", &format!("--lease={lease}")],
    );
    etcdctl(endpoint, &["put", "a", "3"]);
    let compacted = head_revision(endpoint);
    etcdctl(endpoint, &["compaction", &compacted.to_string()]);
    for (k, v) in [("d", "1"), ("a", "4"), ("c", "2")] {
        etcdctl(endpoint, &["put", k, v]);
    }
    etcdctl(endpoint, &["del", "d"]);
    etcdctl(endpoint, &["put", "e", "1"]);
    (lease, compacted)
}

fn assert_same_history(source: &str, restored: &str, compacted: i64) {
    let head = head_revision(source);
    assert_eq!(head_revision(restored), head, "head revision");
    let live = kvs_at(source, 0);
    assert!(live.as_array().is_some_and(|kvs| kvs.len() >= 4), "{live}");
    for rev in compacted..=head {
        assert_eq!(
            kvs_at(source, rev),
            kvs_at(restored, rev),
            "range over all keys at revision {rev}"
        );
    }
    let below =
        mango_testkit::etcdctl(restored, &["get", "a", &format!("--rev={}", compacted - 1)]);
    assert!(!below.status.success());
    assert!(
        String::from_utf8_lossy(&below.stderr).contains("required revision has been compacted"),
        "{}",
        String::from_utf8_lossy(&below.stderr)
    );
}

#[test]
fn an_etcd_snapshot_becomes_a_mango_cluster_with_the_same_history_and_leases() {
    let etcd = Cluster::etcd(1);
    let etcd_endpoint = etcd.voters[0].endpoint();
    let (lease, compacted) = write_history(&etcd_endpoint);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("etcd.db");
    save(&etcd_endpoint, &file);

    let c = restore_and_start(&file, "restored-from-etcd");
    let mango = c.voters[0].endpoint();
    assert_same_history(&etcd_endpoint, &mango, compacted);
    // Every member serves it, from its own state.
    for v in &c.voters {
        assert_eq!(kvs_at(&v.endpoint(), 0), kvs_at(&etcd_endpoint, 0));
    }
    // The lease is there with its TTL and its key.
    let list = etcdctl(&mango, &["lease", "list"]);
    assert!(list.contains(&lease), "{list}");
    let ttl = etcdctl(&mango, &["lease", "timetolive", &lease, "--keys"]);
    assert!(
        ttl.contains("granted with TTL(600s)") && ttl.contains("leased"),
        "{ttl}"
    );
    // The cluster goes on from the restored revision.
    let head = head_revision(&etcd_endpoint);
    etcdctl(&mango, &["put", "after", "1"]);
    assert_eq!(head_revision(&mango), head + 1);
}

/// A real etcd started on a data folder made by `etcdctl snapshot restore` from `file`.
fn etcd_from_snapshot(file: &Path) -> Cluster {
    let token = "etcd-from-mango";
    let mut etcd = Cluster::builder(1)
        .etcd()
        .names("e")
        .token(token)
        .build()
        .unwrap();
    let e = &etcd.voters[0];
    let out = Command::new(mango_testkit::etcdctl::etcdctl_bin())
        .env("ETCDCTL_API", "3")
        .args(["snapshot", "restore", file.to_str().unwrap()])
        .args([
            "--name",
            &e.name,
            "--initial-cluster",
            &initial_cluster(&etcd),
        ])
        .args(["--initial-cluster-token", token])
        .args(["--initial-advertise-peer-urls", &e.peer_url()])
        .arg("--data-dir")
        .arg(&e.data_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "etcdctl snapshot restore: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    etcd.spawn(0);
    etcd.wait_leader();
    etcd
}

fn hashkv(endpoint: &str) -> (u64, i64) {
    let out = etcdctl(endpoint, &["endpoint", "hashkv", "-w", "json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    let r = &v[0]["HashKV"];
    (
        r["hash"].as_u64().unwrap(),
        r["header"]["revision"].as_i64().unwrap(),
    )
}

#[test]
fn a_mango_snapshot_passes_etcdctl_and_restores_into_mango_and_etcd() {
    let source = Cluster::start(3);
    let endpoint = source.voters[0].endpoint();
    let (lease, compacted) = write_history(&endpoint);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mango.db");
    save(&endpoint, &file);
    let head = head_revision(&endpoint);

    // etcdctl reads it: its revision is mango's, its hash and key count what mango-bbolt
    // computes for the same file.
    let status = etcdctl(
        &endpoint,
        &["snapshot", "status", file.to_str().unwrap(), "-w", "json"],
    );
    let status: Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["revision"].as_i64(), Some(head), "{status}");
    let db = mango_store::mango_bbolt::Db::open(&file).unwrap();
    let ours = mango_store::mango_bbolt::etcd::status(&db).unwrap();
    assert_eq!(status["hash"].as_u64(), Some(u64::from(ours.hash)));
    assert_eq!(status["totalKey"].as_u64(), Some(ours.total_key));
    assert_eq!(status["totalSize"].as_u64(), Some(ours.total_size));

    // Real etcd starts from it and answers the same ranges.
    let etcd = etcd_from_snapshot(&file);
    assert_same_history(&endpoint, &etcd.voters[0].endpoint(), compacted);

    // A new mango cluster from it: same hash and revision as the source.
    let restored = restore_and_start(&file, "restored-from-mango");
    let source_hash = hashkv(&endpoint);
    assert_eq!(source_hash.1, head);
    for v in &restored.voters {
        assert_eq!(hashkv(&v.endpoint()), source_hash, "{}", v.name);
    }
    assert_same_history(&endpoint, &restored.voters[1].endpoint(), compacted);
    let list = etcdctl(&restored.voters[2].endpoint(), &["lease", "list"]);
    assert!(list.contains(&lease), "{list}");
}
