//! Snapshots: streamed out in bounded chunks, installed whole or not at all.
#![allow(clippy::unwrap_used)]

mod common;

use common::{apply_one, compact, del, put, temp_store};
use mango_proto::etcdserverpb::RangeRequest;
use mango_store::Store;

fn everything(store: &Store) -> Vec<mango_proto::mvccpb::KeyValue> {
    let view = store.read(0).unwrap();
    let all = RangeRequest {
        key: vec![0],
        range_end: vec![0],
        ..Default::default()
    };
    view.range(&all).unwrap().kvs
}

fn stream(store: &Store, chunk: usize) -> (Vec<u8>, usize) {
    let mut reader = store.snapshot_reader(0).unwrap();
    let (mut bytes, mut chunks) = (Vec::new(), 0);
    while let Some(c) = reader.next_chunk(chunk).unwrap() {
        // A chunk may overshoot by one record, never more.
        assert!(
            c.len() < chunk + 1024,
            "chunk of {} bytes for a limit of {chunk}",
            c.len()
        );
        bytes.extend_from_slice(&c);
        chunks += 1;
    }
    (bytes, chunks)
}

fn filled() -> (tempfile::TempDir, Store) {
    let (dir, store) = temp_store();
    for i in 0..300 {
        apply_one(&store, put(&format!("key/{i:04}"), &"v".repeat(i % 50))).unwrap();
    }
    for i in 0..100 {
        apply_one(&store, put(&format!("key/{:04}", i * 3), "again")).unwrap();
    }
    apply_one(&store, del("key/0100", "key/0150")).unwrap();
    apply_one(&store, compact(200)).unwrap();
    (dir, store)
}

#[test]
fn snapshot_roundtrip_restores_state_history_and_applied_index() {
    let (_d1, source) = filled();
    let (bytes, chunks) = stream(&source, 4096);
    assert!(chunks > 5, "expected many small chunks, got {chunks}");

    let (_d2, target) = temp_store();
    apply_one(&target, put("stale", "data")).unwrap();
    let state = target.install_snapshot(0, &mut bytes.as_slice()).unwrap();
    assert_eq!(state, source.read(0).unwrap().state());
    assert_eq!(everything(&target), everything(&source));
    // History came along: an old revision reads the same on both.
    let old = RangeRequest {
        key: vec![0],
        range_end: vec![0],
        revision: 250,
        ..Default::default()
    };
    assert_eq!(
        target.read(0).unwrap().range(&old).unwrap(),
        source.read(0).unwrap().range(&old).unwrap()
    );
    // The installed store goes on applying where the source left off.
    let next = source.read(0).unwrap().state().applied_index + 1;
    assert_eq!(target.read(0).unwrap().state().applied_index + 1, next);
}

#[test]
fn corrupt_or_truncated_snapshot_changes_nothing() {
    let (_d1, source) = filled();
    let (bytes, _) = stream(&source, 1 << 20);
    let (_d2, target) = temp_store();
    apply_one(&target, put("mine", "kept")).unwrap();
    let before = everything(&target);

    let truncated = &bytes[..bytes.len() / 2];
    assert!(target.install_snapshot(0, &mut &truncated[..]).is_err());
    let mut flipped = bytes.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x40;
    assert!(target.install_snapshot(0, &mut flipped.as_slice()).is_err());
    let mut trailing = bytes.clone();
    trailing.push(7);
    assert!(
        target
            .install_snapshot(0, &mut trailing.as_slice())
            .is_err()
    );

    assert_eq!(everything(&target), before);
    // And the untouched stream still installs.
    target.install_snapshot(0, &mut bytes.as_slice()).unwrap();
    assert_eq!(everything(&target), everything(&source));
}
