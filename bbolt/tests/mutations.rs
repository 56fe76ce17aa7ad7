//! Damaged files never panic or hang the reader: random byte mutations and truncations of
//! valid files (bbolt-generic and in etcd's layout) give typed errors or readable content,
//! and hand-made cycles are refused.

#![allow(clippy::unwrap_used)]

use std::sync::OnceLock;

use mango_bbolt::etcd::{EtcdSnapshot, status};
use mango_bbolt::{Bucket, Db, DbBuilder, ReadError, Value, WriteOptions, write_db};
use proptest::prelude::*;

/// A file with every structure the reader knows: inline and paged buckets, nested ones,
/// branch levels, overflow pages, and small pages (1 KiB) so that a mutation often lands in a
/// header rather than in a value.
fn generic_file() -> &'static [u8] {
    static FILE: OnceLock<Vec<u8>> = OnceLock::new();
    FILE.get_or_init(|| {
        let mut db = DbBuilder::new();
        db.bucket_mut("empty").unwrap();
        db.bucket_mut("inline").unwrap().put("k", "v").unwrap();
        let big = db.bucket_mut("big").unwrap();
        for i in 0..400u32 {
            big.put(i.to_be_bytes(), vec![b'x'; (i % 40) as usize])
                .unwrap();
        }
        big.put("huge", vec![1u8; 5000]).unwrap();
        let nested = big.bucket_mut("nested").unwrap();
        for i in 0..60u32 {
            nested.put(i.to_be_bytes(), "n").unwrap();
        }
        nested
            .bucket_mut("inner")
            .unwrap()
            .put("deep", "d")
            .unwrap();
        let opts = WriteOptions {
            page_size: 1024,
            ..WriteOptions::default()
        };
        write_db(&db, &opts).unwrap()
    })
}

/// A file in etcd's layout, so mutations reach the record decoders too.
fn etcd_file() -> &'static [u8] {
    static FILE: OnceLock<Vec<u8>> = OnceLock::new();
    FILE.get_or_init(|| {
        let mut db = DbBuilder::new();
        let keys = db.bucket_mut("key").unwrap();
        for main in 2..200i64 {
            let mut k = main.to_be_bytes().to_vec();
            k.push(b'_');
            k.extend_from_slice(&0i64.to_be_bytes());
            // mvccpb.KeyValue {key: "k", create_revision: r, mod_revision: r}
            let r = (main % 100) as u8;
            let v = vec![0x0a, 0x01, b'k', 0x10, r, 0x18, r];
            keys.put(k, v).unwrap();
        }
        let meta = db.bucket_mut("meta").unwrap();
        meta.put("consistent_index", 9u64.to_be_bytes()).unwrap();
        meta.put(
            "finishedCompactRev",
            [&5i64.to_be_bytes()[..], b"_", &[0; 8]].concat(),
        )
        .unwrap();
        db.bucket_mut("lease")
            .unwrap()
            .put(7i64.to_be_bytes(), [0x08, 0x07, 0x10, 0x3c])
            .unwrap();
        db.bucket_mut("members")
            .unwrap()
            .put("a", r#"{"id":10,"peerURLs":["http://x"]}"#)
            .unwrap();
        db.bucket_mut("auth")
            .unwrap()
            .put("authRevision", 1u64.to_be_bytes())
            .unwrap();
        db.bucket_mut("authUsers")
            .unwrap()
            .put("u", [0x0a, 0x01, b'u'])
            .unwrap();
        let opts = WriteOptions {
            page_size: 1024,
            ..WriteOptions::default()
        };
        write_db(&db, &opts).unwrap()
    })
}

/// Everything a caller might do with a file; only errors may come out.
fn exercise(bytes: Vec<u8>) {
    let Ok(db) = Db::from_bytes(bytes) else {
        return;
    };
    let _ = db.check();
    let _ = db.free_pages();
    let _ = db.bytes();
    walk(&db.root());
    for name in ["big", "inline", "empty", "key", "meta", "nested"] {
        if let Ok(Some(b)) = db.bucket(name.as_bytes()) {
            for key in [&7u32.to_be_bytes()[..], b"huge", b"nested", b"zz", b"\0"] {
                let _ = b.get(key);
            }
        }
    }
    let _ = EtcdSnapshot::from_db(&db);
    let _ = status(&db);
}

fn walk(bucket: &Bucket<'_>) {
    for entry in bucket.iter() {
        let Ok(entry) = entry else { return };
        if let Value::Bucket(child) = entry.value {
            walk(&child);
        }
    }
}

/// Mutations: mostly a few bytes flipped, often inside page and element headers (the first
/// 64 bytes of a page), sometimes a truncation.
fn mutated(original: &'static [u8]) -> impl Strategy<Value = Vec<u8>> {
    let len = original.len();
    let edits = prop::collection::vec((0..len, any::<u8>(), any::<bool>(), 0..64usize), 1..12);
    (edits, prop::option::weighted(0.1, 0..len)).prop_map(move |(edits, cut)| {
        let mut bytes = original.to_vec();
        for (pos, byte, in_header, offset) in edits {
            let at = if in_header {
                (pos / 1024) * 1024 + offset
            } else {
                pos
            };
            if let Some(b) = bytes.get_mut(at) {
                *b ^= byte.max(1);
            }
        }
        if let Some(cut) = cut {
            bytes.truncate(cut);
        }
        bytes
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1500))]

    #[test]
    fn mutated_generic_files_never_panic(bytes in mutated(generic_file())) {
        exercise(bytes);
    }

    #[test]
    fn mutated_etcd_files_never_panic(bytes in mutated(etcd_file())) {
        exercise(bytes);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..5000)) {
        exercise(bytes);
    }
}

#[test]
fn unmutated_files_read_cleanly() {
    for file in [generic_file(), etcd_file()] {
        let db = Db::from_bytes(file.to_vec()).unwrap();
        db.check().unwrap();
    }
    EtcdSnapshot::from_db(&Db::from_bytes(etcd_file().to_vec()).unwrap()).unwrap();
}

/// Sets the first child of branch page `id` to `child`.
fn patch_child(bytes: &mut [u8], page_size: usize, id: u64, child: u64) {
    let at = id as usize * page_size + 16 + 8;
    bytes[at..at + 8].copy_from_slice(&child.to_le_bytes());
}

#[test]
fn a_branch_pointing_at_itself_is_an_error_not_a_hang() {
    let mut bytes = generic_file().to_vec();
    let root = {
        let db = Db::from_bytes(bytes.clone()).unwrap();
        let big = db.bucket(b"big").unwrap().unwrap();
        assert!(!big.is_inline());
        big.root_page_id()
    };
    patch_child(&mut bytes, 1024, root, root);
    let db = Db::from_bytes(bytes).unwrap();
    let big = db.bucket(b"big").unwrap().unwrap();
    let err = big.iter().find_map(Result::err).unwrap();
    assert!(
        matches!(err, ReadError::PageReusedOrCycle(id) if id == root),
        "{err}"
    );
    assert!(matches!(big.get(b"\0"), Err(ReadError::TooDeep(_))));
    assert!(db.check().is_err());
}

#[test]
fn damaged_meta_falls_back_to_the_other_one() {
    let mut bytes = generic_file().to_vec();
    // Meta 0 has the higher txid; damage it and meta 1 is used, as bbolt does.
    bytes[16 + 40] ^= 0xff;
    let db = Db::from_bytes(bytes.clone()).unwrap();
    assert_eq!(db.meta().txid, 1);
    bytes[1024 + 16] ^= 0xff;
    assert!(matches!(
        Db::from_bytes(bytes),
        Err(ReadError::NoValidMeta { .. })
    ));
}
