//! The writer's files read back with the reader: same content, and bbolt's consistency check
//! passes (what `etcdctl snapshot status` runs before anything else).

#![allow(clippy::unwrap_used)]

use mango_bbolt::{BucketBuilder, Db, DbBuilder, Item, Value, WriteOptions, write_db};
use proptest::prelude::*;

fn round_trip(db: &DbBuilder, opts: &WriteOptions) -> Db {
    let bytes = write_db(db, opts).unwrap();
    assert_eq!(bytes.len() % opts.page_size, 0);
    let read = Db::from_bytes(bytes).unwrap();
    read.check().unwrap();
    assert_eq!(DbBuilder::from_db(&read).unwrap(), *db);
    read
}

#[test]
fn empty_database() {
    let read = round_trip(&DbBuilder::new(), &WriteOptions::default());
    assert_eq!(read.meta().high_water, 4);
    assert!(read.root().iter().next().is_none());
}

#[test]
fn many_keys_large_values_and_nested_buckets() {
    let mut db = DbBuilder::new();
    db.bucket_mut("empty").unwrap();
    let small = db.bucket_mut("small").unwrap();
    small.put("a", "1").unwrap();
    small.sequence = 42;
    let big = db.bucket_mut("big").unwrap();
    for i in 0..20_000u32 {
        big.put(format!("key-{i:08}"), format!("value-{i}"))
            .unwrap();
    }
    let large = db.bucket_mut("large").unwrap();
    large.put("huge", vec![7u8; 100_000]).unwrap();
    large.put("after", "x").unwrap();
    large.put("long-key".repeat(4000), "v").unwrap();
    let nested = db.bucket_mut("nested").unwrap();
    nested.put("plain", "p").unwrap();
    let inner = nested.bucket_mut("inner").unwrap();
    for i in 0..500u32 {
        inner.put(i.to_be_bytes(), vec![1u8; 50]).unwrap();
    }
    inner.bucket_mut("deepest").unwrap().put("k", "v").unwrap();

    let read = round_trip(&db, &WriteOptions::default());
    let big = read.bucket(b"big").unwrap().unwrap();
    assert!(!big.is_inline());
    assert_eq!(
        big.get_value(b"key-00012345").unwrap(),
        Some(b"value-12345".as_slice())
    );
    assert_eq!(big.get_value(b"key-0001234").unwrap(), None);
    assert_eq!(big.get_value(b"zzz").unwrap(), None);
    assert_eq!(big.get_value(b"\0").unwrap(), None);
    let small = read.bucket(b"small").unwrap().unwrap();
    assert!(small.is_inline());
    assert_eq!(small.sequence(), 42);
    assert!(read.bucket(b"empty").unwrap().unwrap().is_inline());
    let large = read.bucket(b"large").unwrap().unwrap();
    assert_eq!(
        large.get_value(b"huge").unwrap().map(<[u8]>::len),
        Some(100_000)
    );
    let inner = read
        .bucket(b"nested")
        .unwrap()
        .unwrap()
        .bucket(b"inner")
        .unwrap()
        .unwrap();
    assert_eq!(
        inner.get_value(&42u32.to_be_bytes()).unwrap(),
        Some([1u8; 50].as_slice())
    );
    assert!(inner.bucket(b"deepest").unwrap().unwrap().is_inline());
}

#[test]
fn other_page_sizes_and_fill() {
    let mut db = DbBuilder::new();
    let b = db.bucket_mut("b").unwrap();
    for i in 0..3000u32 {
        b.put(i.to_be_bytes(), vec![i as u8; (i % 300) as usize])
            .unwrap();
    }
    for (page_size, fill_percent) in [(1024, 50), (16384, 90), (65536, 100)] {
        let opts = WriteOptions {
            page_size,
            fill_percent,
            ..WriteOptions::default()
        };
        let read = round_trip(&db, &opts);
        assert_eq!(read.page_size(), page_size);
    }
}

#[test]
fn branch_levels_with_huge_keys_terminate() {
    let mut db = DbBuilder::new();
    let b = db.bucket_mut("b").unwrap();
    for i in 0..50u8 {
        let mut key = vec![i; 32_768];
        key[0] = i;
        b.put(key, "v").unwrap();
    }
    round_trip(&db, &WriteOptions::default());
}

fn arb_bucket(depth: u32) -> BoxedStrategy<BucketBuilder> {
    let values = prop::collection::btree_map(
        prop::collection::vec(any::<u8>(), 1..40),
        prop_oneof![
            8 => prop::collection::vec(any::<u8>(), 0..200),
            1 => prop::collection::vec(any::<u8>(), 3000..9000),
        ],
        0..300,
    );
    let children = if depth == 0 {
        Just(Vec::new()).boxed()
    } else {
        prop::collection::vec(
            (
                prop::collection::vec(any::<u8>(), 1..10),
                arb_bucket(depth - 1),
            ),
            0..3,
        )
        .boxed()
    };
    (values, children, any::<u64>())
        .prop_map(|(values, children, sequence)| {
            let mut b = BucketBuilder::new();
            b.sequence = sequence;
            for (k, v) in values {
                b.put(k, v).unwrap();
            }
            for (name, child) in children {
                if !matches!(
                    b.iter().find(|(k, _)| *k == name.as_slice()),
                    Some((_, Item::Value(_)))
                ) {
                    *b.bucket_mut(name).unwrap() = child;
                }
            }
            b
        })
        .boxed()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn random_databases_round_trip(buckets in prop::collection::vec(
        (prop::collection::vec(any::<u8>(), 1..12), arb_bucket(2)), 0..4)) {
        let mut db = DbBuilder::new();
        for (name, bucket) in buckets {
            *db.bucket_mut(name).unwrap() = bucket;
        }
        let read = round_trip(&db, &WriteOptions::default());
        // Lookups by key agree with iteration.
        for entry in read.root().iter() {
            let entry = entry.unwrap();
            let Value::Bucket(b) = entry.value else { panic!("root holds only buckets") };
            for e in b.iter() {
                let e = e.unwrap();
                let got = b.get(e.key).unwrap().unwrap();
                prop_assert_eq!(got.key, e.key);
            }
        }
    }
}
