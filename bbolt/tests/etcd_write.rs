//! Files written by this crate in etcd's layout, handed to real etcd 3.4: `etcdctl snapshot
//! status` reports the right revision, key count and hash; `etcdctl snapshot restore` (with
//! the trailing SHA-256, or without it and `--skip-hash-check`) gives a data directory a
//! real etcd starts on and serves every key at every revision from.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use common::{Etcd, ctl_offline, etcd_installed, etcdctl_restore, etcdctl_status, granted_ttl};
use mango_bbolt::Db;
use mango_bbolt::etcd::{
    Auth, Compaction, EtcdSnapshot, KeyRevision, Lease, Member, Revision, status,
};
use mango_proto::mvccpb::KeyValue;

/// One operation of a transaction in the model.
enum Op<'a> {
    Put(&'a str, Vec<u8>, i64),
    Del(&'a str),
}

/// A small model of etcd's MVCC writes, producing the `key` bucket etcd would hold.
#[derive(Default)]
struct Model {
    /// The current main revision (etcd starts at 1).
    rev: i64,
    /// Live keys.
    live: BTreeMap<Vec<u8>, KeyValue>,
    /// Every change, in revision order.
    history: Vec<KeyRevision>,
}

impl Model {
    fn txn(&mut self, ops: &[Op<'_>]) {
        self.rev += 1;
        let mut sub = 0;
        for op in ops {
            let revision = Revision {
                main: self.rev,
                sub,
            };
            match op {
                Op::Put(key, value, lease) => {
                    let prev = self.live.get(key.as_bytes());
                    let kv = KeyValue {
                        key: key.as_bytes().to_vec(),
                        create_revision: prev.map_or(self.rev, |p| p.create_revision),
                        mod_revision: self.rev,
                        version: prev.map_or(1, |p| p.version + 1),
                        value: value.clone(),
                        lease: *lease,
                    };
                    self.live.insert(kv.key.clone(), kv.clone());
                    self.history.push(KeyRevision {
                        revision,
                        tombstone: false,
                        kv,
                    });
                }
                Op::Del(key) => {
                    if self.live.remove(key.as_bytes()).is_none() {
                        continue;
                    }
                    let kv = KeyValue {
                        key: key.as_bytes().to_vec(),
                        ..Default::default()
                    };
                    self.history.push(KeyRevision {
                        revision,
                        tombstone: true,
                        kv,
                    });
                }
            }
            sub += 1;
        }
    }

    fn put(&mut self, key: &str, value: &str) {
        self.txn(&[Op::Put(key, value.as_bytes().to_vec(), 0)]);
    }

    /// etcd's compaction: below `at`, each key keeps only its last revision, and not even
    /// that if it is a tombstone.
    fn compact(&mut self, at: i64) {
        let mut last: BTreeMap<Vec<u8>, Revision> = BTreeMap::new();
        for r in self.history.iter().filter(|r| r.revision.main <= at) {
            last.insert(r.kv.key.clone(), r.revision);
        }
        self.history.retain(|r| {
            r.revision.main > at || (last.get(&r.kv.key) == Some(&r.revision) && !r.tombstone)
        });
    }
}

const LEASE_ID: i64 = 0x7a5e_0000_0000_0042;

/// A snapshot with history, deletes, a txn, a lease with keys, bulk keys, a large value and a
/// compaction. Returns it with its compacted revision.
fn snapshot() -> (EtcdSnapshot, i64) {
    let mut m = Model {
        rev: 1,
        ..Model::default()
    };
    m.put("a", "1");
    m.put("b", "1");
    m.put("a", "2");
    m.txn(&[Op::Del("b"), Op::Put("c", b"x".to_vec(), 0)]);
    m.txn(&[
        Op::Put("l1", b"v".to_vec(), LEASE_ID),
        Op::Put("l2", b"v".to_vec(), LEASE_ID),
    ]);
    m.put("a", "3");
    for batch in 0..10 {
        let keys: Vec<String> = (0..100).map(|i| format!("bulk/{batch}/{i:03}")).collect();
        let ops: Vec<Op<'_>> = keys
            .iter()
            .map(|k| Op::Put(k, vec![b'v'; 150], 0))
            .collect();
        m.txn(&ops);
    }
    m.txn(&[Op::Put("big", vec![b'x'; 100_000], 0)]);
    let compacted = m.rev;
    m.compact(compacted);
    m.put("a", "4");
    m.txn(&[
        Op::Del("l2"),
        Op::Del("c"),
        Op::Put("b", b"back".to_vec(), 0),
    ]);
    m.put("bulk/0/000", "changed");
    let snap = EtcdSnapshot {
        revisions: m.history,
        leases: vec![Lease {
            id: LEASE_ID,
            ttl: 3600,
            remaining_ttl: 0,
        }],
        consistent_index: Some(1000),
        compaction: Compaction {
            scheduled: Some(compacted),
            finished: Some(compacted),
        },
        members: vec![Member {
            id: 0xabc,
            peer_urls: vec!["http://10.0.0.1:2380".into()],
            name: "old".into(),
            client_urls: vec!["http://10.0.0.1:2379".into()],
            ..Member::default()
        }],
        cluster_version: Some("3.4.0".into()),
        auth: Auth {
            revision: Some(1),
            ..Auth::default()
        },
        ..EtcdSnapshot::default()
    };
    (snap, compacted)
}

#[test]
fn etcd_reads_status_restores_and_serves_our_files() {
    if !etcd_installed() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (snap, compacted) = snapshot();
    let current = snap.current_revision();
    let file = dir.path().join("ours.db");
    snap.write(&file, true).unwrap();

    // snapshot status: bbolt opens it, its check passes, the numbers are the right ones.
    let theirs = etcdctl_status(&file);
    let db = Db::open(&file).unwrap();
    let ours = status(&db).unwrap();
    assert_eq!(theirs["revision"].as_i64(), Some(current));
    // Keys: revisions, the lease, 3 meta keys, a member, the cluster version, authRevision.
    let total = snap.revisions.len() as u64 + 1 + 3 + 1 + 1 + 1;
    assert_eq!(theirs["totalKey"].as_u64(), Some(total));
    assert_eq!(theirs["hash"].as_u64(), Some(u64::from(ours.hash)));
    assert_eq!(theirs["totalSize"].as_u64(), Some(db.size()));

    // snapshot restore, then a real etcd on the restored data.
    let etcd = Etcd::prepare(&dir.path().join("restored"));
    etcdctl_restore(&file, etcd.data_dir(), &etcd.name, &etcd.peer_url, false);
    let etcd = etcd.start();
    for rev in compacted..=current {
        assert_eq!(
            etcd.all_kvs_at(rev),
            snap.kvs_at(rev),
            "keys at revision {rev}"
        );
    }
    let below = etcd.try_ctl(&["get", "a", &format!("--rev={}", compacted - 1)]);
    assert!(String::from_utf8_lossy(&below.stderr).contains("compacted"));
    assert_eq!(granted_ttl(&etcd, LEASE_ID), 3600);
    let keys = etcd.ctl(&["lease", "timetolive", &format!("{LEASE_ID:x}"), "--keys"]);
    assert!(keys.contains("l1"), "lease keys: {keys}");
    // The store goes on from our revision.
    assert_eq!(etcd.put("after", "restore", &[]), current + 1);
    drop(etcd);

    // Without the hash: refused unless --skip-hash-check, as for a copied data directory.
    let bare = dir.path().join("bare.db");
    snap.write(&bare, false).unwrap();
    let data = dir.path().join("refused");
    let out = ctl_offline(&[
        "snapshot",
        "restore",
        bare.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing hash"));
    let etcd = Etcd::prepare(&dir.path().join("skipped"));
    etcdctl_restore(&bare, etcd.data_dir(), &etcd.name, &etcd.peer_url, true);
    let etcd = etcd.start();
    assert_eq!(etcd.all_kvs_at(0), snap.kvs_at(current));
}
