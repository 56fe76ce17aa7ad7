//! The store behind a fault switch ([`StoreFaults`]), applying as a voter does (batches not
//! synced, `sync` before the Raft log is compacted): a kill or a power loss never leaves a
//! store that fails to open or whose data disagrees with its applied index, and what was
//! synced is never lost.
#![allow(clippy::unwrap_used)]

mod common;

use mango_store::backend::redb_faults::StoreFaults;
use mango_store::{ApplyEntry, Store, StoreOptions};

const OPTIONS: StoreOptions = StoreOptions {
    durable_apply: false,
};

fn apply_puts(store: &Store, from: u64, to: u64) {
    let datas: Vec<Vec<u8>> = (from..=to)
        .map(|i| common::encode(0, common::put(&format!("k{i:04}"), "v")))
        .collect();
    let entries: Vec<ApplyEntry<'_>> = datas
        .iter()
        .zip(from..)
        .map(|(d, index)| ApplyEntry {
            index,
            term: 1,
            data: d,
        })
        .collect();
    store.apply(0, &entries).unwrap();
}

/// The applied index, and the keys present (which must be exactly k1..=applied).
fn reopen_and_check(path: &std::path::Path, faults: &StoreFaults) -> u64 {
    let store = Store::open_path_with_faults(path, OPTIONS, faults.clone()).unwrap();
    let view = store.read(0).unwrap();
    let applied = view.state().applied_index;
    let all = view
        .range(&mango_proto::etcdserverpb::RangeRequest {
            key: b"k".to_vec(),
            range_end: b"l".to_vec(),
            keys_only: true,
            ..Default::default()
        })
        .unwrap();
    let keys: Vec<Vec<u8>> = all.kvs.iter().map(|kv| kv.key.clone()).collect();
    let expected: Vec<Vec<u8>> = (1..=applied)
        .map(|i| format!("k{i:04}").into_bytes())
        .collect();
    assert_eq!(keys, expected, "data and applied index {applied} disagree");
    applied
}

#[test]
fn a_power_loss_goes_back_to_the_last_sync_and_a_kill_keeps_a_consistent_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let faults = StoreFaults::new();
    let store = Store::open_path_with_faults(&path, OPTIONS, faults.clone()).unwrap();
    for batch in 0..10 {
        apply_puts(&store, batch * 10 + 1, batch * 10 + 10);
    }
    store.sync(0).unwrap();
    for batch in 10..15 {
        apply_puts(&store, batch * 10 + 1, batch * 10 + 10);
    }

    // A kill: redb held the unsynced batches in memory, and a killed process cannot make
    // them durable on its way out (a clean close would: see the next test). The store is
    // whole at the last sync; the Raft log replays the rest.
    faults.kill();
    drop(store);
    faults.revive();
    assert_eq!(reopen_and_check(&path, &faults), 100);

    // More unsynced batches, then the power goes: back to the last sync.
    let store = Store::open_path_with_faults(&path, OPTIONS, faults.clone()).unwrap();
    let from = store.read(0).unwrap().state().applied_index + 1;
    apply_puts(&store, from, from + 30);
    faults.kill();
    drop(store);
    // redb keeps unsynced commits in its own cache, so there may be nothing to undo.
    faults.lose_unsynced().unwrap();
    faults.revive();
    let after_power_loss = reopen_and_check(&path, &faults);
    assert!(
        after_power_loss >= 100,
        "a synced batch was lost: applied {after_power_loss}"
    );
    assert!(
        after_power_loss < from + 30,
        "unsynced batches survived a power loss"
    );
}

#[test]
fn a_clean_close_makes_unsynced_batches_durable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let faults = StoreFaults::new();
    let store = Store::open_path_with_faults(&path, OPTIONS, faults.clone()).unwrap();
    apply_puts(&store, 1, 10);
    store.sync(0).unwrap();
    apply_puts(&store, 11, 20);
    drop(store);
    assert_eq!(reopen_and_check(&path, &faults), 20);
}
