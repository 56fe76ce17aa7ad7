//! etcd's layout without etcd: typed snapshots round-trip through the file, the trailing hash
//! is checked, and what etcd's layout forbids is refused.

#![allow(clippy::unwrap_used)]

use mango_bbolt::etcd::{
    Auth, Compaction, EtcdError, EtcdSnapshot, KeyRevision, Lease, Member, OtherEntry, Revision,
    key_revisions, status,
};
use mango_bbolt::sha::HashCheck;
use mango_bbolt::{Db, DbBuilder, WriteOptions, write_db};
use mango_proto::authpb::{Permission, Role, User, UserAddOptions};
use mango_proto::etcdserverpb::AlarmMember;
use mango_proto::mvccpb::KeyValue;

fn rev(main: i64, sub: i64, key: &str, tombstone: bool) -> KeyRevision {
    let kv = if tombstone {
        KeyValue {
            key: key.into(),
            ..Default::default()
        }
    } else {
        KeyValue {
            key: key.into(),
            create_revision: main,
            mod_revision: main,
            version: 1,
            value: b"v".to_vec(),
            lease: 0,
        }
    };
    KeyRevision {
        revision: Revision { main, sub },
        tombstone,
        kv,
    }
}

fn sample() -> EtcdSnapshot {
    EtcdSnapshot {
        revisions: vec![
            rev(2, 0, "a", false),
            rev(3, 0, "b", false),
            rev(3, 1, "a", true),
        ],
        leases: vec![Lease {
            id: 5,
            ttl: 60,
            remaining_ttl: 30,
        }],
        consistent_index: Some(17),
        compaction: Compaction {
            scheduled: Some(3),
            finished: Some(2),
        },
        members: vec![Member {
            id: 0x1f,
            peer_urls: vec!["http://p".into()],
            is_learner: true,
            ..Member::default()
        }],
        removed_members: vec![0x2a],
        cluster_version: Some("3.4.0".into()),
        alarms: vec![AlarmMember {
            member_id: 0x1f,
            alarm: 1,
        }],
        auth: Auth {
            enabled: true,
            revision: Some(4),
            users: vec![User {
                name: b"root".to_vec(),
                password: b"hash".to_vec(),
                roles: vec!["root".into()],
                options: Some(UserAddOptions { no_password: false }),
            }],
            roles: vec![Role {
                name: b"root".to_vec(),
                key_permission: vec![Permission {
                    perm_type: 2,
                    key: b"/".to_vec(),
                    range_end: b"\0".to_vec(),
                }],
            }],
        },
        other: vec![OtherEntry {
            bucket: b"meta".to_vec(),
            key: b"term".to_vec(),
            value: 3u64.to_be_bytes().to_vec(),
        }],
    }
}

#[test]
fn typed_snapshot_round_trips_through_the_file() {
    let snap = sample();
    let bytes = snap.to_bytes(true).unwrap();
    let (back, check) = EtcdSnapshot::from_file_bytes(bytes.clone()).unwrap();
    assert_eq!(check, HashCheck::Valid);
    assert_eq!(back, snap);
    assert_eq!(back.current_revision(), 3);
    let db = Db::from_bytes(bytes).unwrap();
    let streamed: Vec<KeyRevision> = key_revisions(&db).unwrap().map(Result::unwrap).collect();
    assert_eq!(streamed, snap.revisions);
    // 3 revisions, 1 lease, 4 meta keys, 1 member, 1 removed, version, alarm, 2 auth, user, role.
    assert_eq!(status(&db).unwrap().total_key, 16);
    assert_eq!(status(&db).unwrap().revision, 3);

    let (_, check) = EtcdSnapshot::from_file_bytes(snap.to_bytes(false).unwrap()).unwrap();
    assert_eq!(check, HashCheck::Missing);
}

#[test]
fn a_damaged_file_with_a_hash_is_refused() {
    let mut bytes = sample().to_bytes(true).unwrap();
    let n = bytes.len();
    bytes[n - 100] ^= 1;
    assert!(matches!(
        EtcdSnapshot::from_file_bytes(bytes),
        Err(EtcdError::HashMismatch)
    ));
}

#[test]
fn what_the_layout_forbids_is_refused() {
    let mut snap = sample();
    snap.revisions.push(rev(3, 1, "c", false));
    assert!(matches!(
        snap.to_bytes(false),
        Err(EtcdError::DuplicateRevision(_))
    ));

    let mut db = DbBuilder::new();
    db.bucket_mut("meta").unwrap();
    let bytes = write_db(&db, &WriteOptions::default()).unwrap();
    assert!(matches!(
        EtcdSnapshot::from_file_bytes(bytes),
        Err(EtcdError::MissingBucket("key"))
    ));

    let mut db = DbBuilder::new();
    db.bucket_mut("meta").unwrap();
    db.bucket_mut("key")
        .unwrap()
        .put("not-a-revision", "x")
        .unwrap();
    let bytes = write_db(&db, &WriteOptions::default()).unwrap();
    assert!(matches!(
        EtcdSnapshot::from_file_bytes(bytes),
        Err(EtcdError::BadKey { bucket: "key", .. })
    ));

    let mut db = DbBuilder::new();
    db.bucket_mut("meta").unwrap();
    db.bucket_mut("key").unwrap();
    db.bucket_mut("lease")
        .unwrap()
        .put(1i64.to_be_bytes(), [0x08, 0x02])
        .unwrap();
    let bytes = write_db(&db, &WriteOptions::default()).unwrap();
    assert!(matches!(
        EtcdSnapshot::from_file_bytes(bytes),
        Err(EtcdError::BadValue {
            bucket: "lease",
            ..
        })
    ));
}
