//! `mangoctl snapshot status` and `restore` as a user runs them: status prints what etcdctl
//! prints for the same file in every format; a damaged, truncated or foreign file is refused
//! with a one-line error and a non-zero exit, and leaves no data folder behind.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

use mango_proto::mvccpb::KeyValue;
use mango_store::mango_bbolt::etcd::{Compaction, EtcdSnapshot, KeyRevision, Lease, Revision};

fn mangoctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mangoctl"))
        .args(args)
        .output()
        .unwrap()
}

fn etcdctl_installed() -> bool {
    let ok = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("SKIPPED: etcdctl is not installed (apt-get install etcd-client)");
    }
    ok
}

/// A small snapshot: puts, an overwrite, a delete, a leased key, a compaction.
fn snapshot() -> EtcdSnapshot {
    let put = |main: i64, key: &str, create: i64, version: i64, lease: i64| KeyRevision {
        revision: Revision { main, sub: 0 },
        tombstone: false,
        kv: KeyValue {
            key: key.into(),
            value: format!("v{main}").into(),
            create_revision: create,
            mod_revision: main,
            version,
            lease,
        },
    };
    let mut del = put(5, "b", 0, 0, 0);
    del.tombstone = true;
    del.kv = KeyValue {
        key: b"b".to_vec(),
        ..Default::default()
    };
    EtcdSnapshot {
        revisions: vec![
            put(2, "a", 2, 1, 0),
            put(3, "b", 3, 1, 0),
            put(4, "a", 2, 2, 0),
            del,
            put(6, "l", 6, 1, 7),
        ],
        leases: vec![Lease {
            id: 7,
            ttl: 60,
            remaining_ttl: 0,
        }],
        consistent_index: Some(9),
        compaction: Compaction {
            scheduled: Some(3),
            finished: Some(3),
        },
        ..Default::default()
    }
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn status_prints_what_etcdctl_prints() {
    if !etcdctl_installed() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s.db");
    write(&file, &snapshot().to_bytes(true).unwrap());
    for format in ["simple", "json", "table"] {
        let ours = mangoctl(&["snapshot", "status", file.to_str().unwrap(), "-w", format]);
        assert!(ours.status.success(), "{ours:?}");
        let theirs = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["snapshot", "status", file.to_str().unwrap(), "-w", format])
            .output()
            .unwrap();
        assert!(theirs.status.success(), "{theirs:?}");
        assert_eq!(
            String::from_utf8_lossy(&ours.stdout),
            String::from_utf8_lossy(&theirs.stdout),
            "-w {format}"
        );
    }
}

fn restore_args<'a>(file: &'a str, data_dir: &'a str) -> Vec<&'a str> {
    vec![
        "snapshot",
        "restore",
        file,
        "--name",
        "m1",
        "--initial-cluster",
        "m1=http://127.0.0.1:1,m2=http://127.0.0.1:2",
        "--initial-cluster-token",
        "t",
        "--initial-advertise-peer-urls",
        "http://127.0.0.1:1",
        "--data-dir",
        data_dir,
    ]
}

#[test]
fn a_good_file_restores_into_a_data_folder() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s.db");
    write(&file, &snapshot().to_bytes(true).unwrap());
    let data = dir.path().join("m1.data");
    let out = mangoctl(&restore_args(
        file.to_str().unwrap(),
        data.to_str().unwrap(),
    ));
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("revision 6") && text.contains("1 leases"),
        "{text}"
    );
    for f in ["member/db", "member/id", "member/cluster_id", "member/snap"] {
        assert!(data.join(f).exists(), "{f} missing");
    }
    // A second restore into the same folder is refused, and leaves it alone.
    let again = mangoctl(&restore_args(
        file.to_str().unwrap(),
        data.to_str().unwrap(),
    ));
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists"));
    assert!(data.join("member/db").exists());
}

#[test]
fn damaged_files_are_refused_and_leave_no_data_folder() {
    let dir = tempfile::tempdir().unwrap();
    let good = snapshot().to_bytes(true).unwrap();
    let mut flipped = good.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x5a;
    let mut bad_page = snapshot().to_bytes(false).unwrap();
    // Damage a page (not a meta page) and append a hash that matches the damage, so only
    // the structure can tell.
    let page = 4096 * 3 + 20;
    assert!(bad_page.len() > page, "{} bytes", bad_page.len());
    bad_page[page] ^= 0xff;
    mango_store::mango_bbolt::sha::append_sha256(&mut bad_page);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("truncated", good[..good.len() / 2].to_vec(), ""),
        ("flipped", flipped, "sha256"),
        (
            "no-hash",
            snapshot().to_bytes(false).unwrap(),
            "missing hash",
        ),
        ("garbage", b"not a snapshot at all".repeat(500), ""),
        ("empty", Vec::new(), ""),
        ("bad-page", bad_page, ""),
    ];
    for (name, bytes, says) in cases {
        let file = dir.path().join(format!("{name}.db"));
        write(&file, &bytes);
        let data = dir.path().join(format!("{name}.data"));
        let out = mangoctl(&restore_args(
            file.to_str().unwrap(),
            data.to_str().unwrap(),
        ));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}: restored: {out:?}");
        assert!(err.starts_with("mangoctl: "), "{name}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{name}: {err}");
        assert!(err.contains(says), "{name}: {err}");
        assert!(!err.contains("panicked"), "{name}: {err}");
        assert!(!data.exists(), "{name}: a data folder was left");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".restoring"))
            .collect();
        assert!(leftovers.is_empty(), "{name}: {leftovers:?}");
        if name != "no-hash" {
            let status = mangoctl(&["snapshot", "status", file.to_str().unwrap()]);
            assert!(!status.status.success(), "{name}: status {status:?}");
            assert!(!String::from_utf8_lossy(&status.stderr).contains("panicked"));
        }
    }
}
