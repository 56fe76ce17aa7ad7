//! Reading what a real etcd 3.4 saves: history, versions, leases, compaction, members, auth,
//! compared with what etcd itself answers; then writing it back gives etcd the same file
//! content (`etcdctl snapshot status` reports the same hash).

#![allow(clippy::unwrap_used)]

mod common;

use common::{Etcd, etcd_installed, etcdctl_status, granted_ttl, header_revision};
use mango_bbolt::etcd::{EtcdSnapshot, Revision, status};
use mango_bbolt::sha::HashCheck;
use mango_bbolt::{Db, DbBuilder, WriteOptions, write_db};
use serde_json::Value as Json;

/// Writes keys as a real cluster would: several revisions per key, deletes, a lease with
/// keys, a multi-op txn, bulk keys over many pages, a value over several pages, a
/// compaction, more writes after it, and auth users and roles. Returns (compacted revision,
/// first lease id, second lease id).
fn populate(etcd: &Etcd) -> (i64, i64, i64) {
    etcd.put("a", "1", &[]);
    etcd.put("b", "1", &[]);
    etcd.put("a", "2", &[]);
    etcd.put("c", "x", &[]);
    etcd.ctl(&["del", "b"]);
    let grant: Json =
        serde_json::from_str(&etcd.ctl(&["lease", "grant", "600", "-w", "json"])).unwrap();
    let lease = grant["ID"].as_i64().unwrap();
    let hex = format!("{lease:x}");
    etcd.put("l1", "v", &["--lease", &hex]);
    etcd.put("l2", "v", &["--lease", &hex]);
    // Compares (none), success ops, failure ops: three changes in one revision.
    etcd.txn("\nput t1 v1\nput t2 v2\ndel c\n\n\n");
    etcd.put("a", "3", &[]);
    let compact_at = etcd.put("b", "again", &[]);
    for batch in 0..4 {
        let ops: String = (0..100)
            .map(|i| format!("put bulk/{batch}/{i:03} {}\n", "v".repeat(200)))
            .collect();
        etcd.txn(&format!("\n{ops}\n\n"));
    }
    etcd.put("big", &"x".repeat(20_000), &[]);
    etcd.ctl(&["compact", &compact_at.to_string(), "--physical"]);
    etcd.put("a", "4", &[]);
    etcd.ctl(&["del", "l2"]);
    let grant: Json =
        serde_json::from_str(&etcd.ctl(&["lease", "grant", "300", "-w", "json"])).unwrap();
    let lease2 = grant["ID"].as_i64().unwrap();
    etcd.ctl(&["user", "add", "u1", "--new-user-password=pw"]);
    etcd.ctl(&["role", "add", "r1"]);
    etcd.ctl(&["role", "grant-permission", "r1", "readwrite", "/foo"]);
    etcd.ctl(&["user", "grant-role", "u1", "r1"]);
    (compact_at, lease, lease2)
}

#[test]
fn reads_a_real_etcd_snapshot_and_writes_it_back() {
    if !etcd_installed() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::fresh(dir.path());
    let (compacted, lease, lease2) = populate(&etcd);
    let current = header_revision(&etcd.ctl(&["get", "a", "-w", "json"]));
    let file = dir.path().join("snap.db");
    etcd.ctl(&["snapshot", "save", file.to_str().unwrap()]);

    let bytes = std::fs::read(&file).unwrap();
    let (snap, hash) = EtcdSnapshot::from_file_bytes(bytes.clone()).unwrap();
    assert_eq!(hash, HashCheck::Valid);
    let db = Db::from_bytes(bytes).unwrap();
    db.check().unwrap();

    // Our status is etcdctl's, field for field.
    let theirs = etcdctl_status(&file);
    let ours = status(&db).unwrap();
    assert_eq!(theirs["hash"].as_u64(), Some(u64::from(ours.hash)));
    assert_eq!(theirs["revision"].as_i64(), Some(ours.revision));
    assert_eq!(theirs["totalKey"].as_u64(), Some(ours.total_key));
    assert_eq!(theirs["totalSize"].as_u64(), Some(ours.total_size));
    assert_eq!(ours.revision, current);
    assert_eq!(snap.current_revision(), current);

    // Every key at every revision etcd still serves: value, versions, create/mod revision,
    // lease, exactly as etcd answers.
    assert_eq!(snap.compaction.finished, Some(compacted));
    assert_eq!(snap.compaction.scheduled, Some(compacted));
    for rev in compacted..=current {
        assert_eq!(
            snap.kvs_at(rev),
            etcd.all_kvs_at(rev),
            "keys at revision {rev}"
        );
    }
    assert!(snap.kvs_at(current).len() > 400);
    // The history spans many pages (a branch root), one value several pages.
    let keys = db.bucket(b"key").unwrap().unwrap();
    assert!(!keys.is_inline() && keys.root_page_id() > 0);
    let big = snap
        .kvs_at(current)
        .into_iter()
        .find(|kv| kv.key == b"big")
        .unwrap();
    assert_eq!(big.value.len(), 20_000);
    let below = etcd.try_ctl(&["get", "a", &format!("--rev={}", compacted - 1)]);
    assert!(String::from_utf8_lossy(&below.stderr).contains("compacted"));
    // Compaction removed what it made unreachable: only live keys' last revisions remain
    // below it, and no tombstone.
    assert!(
        snap.revisions
            .iter()
            .filter(|r| r.revision.main < compacted)
            .all(|r| !r.tombstone)
    );
    assert!(!snap.revisions.iter().any(|r| r.revision.main == 4));
    // The txn's changes share a main revision, with subs in order.
    let txn_rev = snap
        .revisions
        .iter()
        .find(|r| r.kv.key == b"t1")
        .unwrap()
        .revision;
    let t2 = snap
        .revisions
        .iter()
        .find(|r| r.kv.key == b"t2")
        .unwrap()
        .revision;
    assert_eq!(
        t2,
        Revision {
            main: txn_rev.main,
            sub: txn_rev.sub + 1
        }
    );
    // A tombstone after compaction: l2's delete.
    let l2 = snap.revisions.iter().rfind(|r| r.kv.key == b"l2").unwrap();
    assert!(l2.tombstone && l2.kv.mod_revision == 0 && l2.kv.value.is_empty());

    // Leases with their TTLs.
    let ids: Vec<i64> = snap.leases.iter().map(|l| l.id).collect();
    let mut expected = vec![lease, lease2];
    expected.sort_unstable_by_key(|id| id.to_be_bytes());
    assert_eq!(ids, expected);
    for l in &snap.leases {
        assert_eq!(l.ttl, granted_ttl(&etcd, l.id));
    }
    let l1 = snap
        .kvs_at(current)
        .into_iter()
        .find(|kv| kv.key == b"l1")
        .unwrap();
    assert_eq!(l1.lease, lease);

    // Cluster and auth state.
    assert!(snap.consistent_index.is_some_and(|i| i > 0));
    assert_eq!(snap.members.len(), 1);
    assert_eq!(snap.members[0].name, etcd.name);
    assert_eq!(
        snap.members[0].peer_urls,
        std::slice::from_ref(&etcd.peer_url)
    );
    assert_eq!(
        snap.members[0].client_urls,
        std::slice::from_ref(&etcd.endpoint)
    );
    assert_eq!(snap.cluster_version.as_deref(), Some("3.4.0"));
    assert!(!snap.auth.enabled);
    assert!(snap.auth.revision.is_some_and(|r| r > 1));
    assert_eq!(snap.auth.users.len(), 1);
    assert_eq!(snap.auth.users[0].name, b"u1");
    assert_eq!(snap.auth.users[0].roles, ["r1"]);
    assert_eq!(snap.auth.roles.len(), 1);
    assert_eq!(snap.auth.roles[0].key_permission[0].key, b"/foo");
    assert!(snap.other.is_empty());

    // Written back, typed or verbatim, etcd sees the same content: same hash, keys, revision.
    let typed = dir.path().join("typed.db");
    snap.write(&typed, true).unwrap();
    let raw = dir.path().join("raw.db");
    let copy = write_db(&DbBuilder::from_db(&db).unwrap(), &WriteOptions::default()).unwrap();
    std::fs::write(&raw, copy).unwrap();
    for path in [&typed, &raw] {
        let again = etcdctl_status(path);
        for field in ["hash", "revision", "totalKey"] {
            assert_eq!(again[field], theirs[field], "{field} of {}", path.display());
        }
    }
    assert_eq!(EtcdSnapshot::read(&typed).unwrap(), snap);
}
