//! The log store through a power loss ([`DiskFaults`]): what was written with `sync` survives,
//! what was written without it may be lost, and either way the store opens again with a
//! consistent log (raft-engine finds a zeroed tail and drops it).

use mango_consensus::{DiskFaults, LogStore, LogStoreConfig, WriteBatch};
use raft::eraftpb::{Entry, HardState};

fn entries(from: u64, to: u64, term: u64) -> Vec<Entry> {
    (from..=to)
        .map(|index| Entry {
            index,
            term,
            data: format!("entry {index}").into_bytes().into(),
            ..Default::default()
        })
        .collect()
}

fn append(store: &LogStore, from: u64, to: u64, sync: bool) {
    let mut batch = WriteBatch::new();
    batch.append(0, entries(from, to, 1));
    batch.set_hard_state(
        0,
        HardState {
            term: 1,
            vote: 1,
            commit: 0,
            ..Default::default()
        },
    );
    store.write(batch, sync).expect("write");
}

fn open(dir: &std::path::Path, faults: &DiskFaults) -> LogStore {
    LogStore::open(LogStoreConfig {
        disk_faults: Some(faults.clone()),
        ..LogStoreConfig::new(dir)
    })
    .expect("open")
}

#[test]
fn synced_entries_survive_a_power_loss_and_unsynced_ones_are_dropped_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let faults = DiskFaults::new();
    let store = open(dir.path(), &faults);
    append(&store, 1, 20, true);
    append(&store, 21, 30, false);
    assert!(
        faults.unsynced_bytes() > 0,
        "the unsynced write left no bytes to lose"
    );
    faults.kill();
    drop(store);
    let lost = faults.lose_unsynced().expect("power loss");
    assert!(lost > 0);
    faults.revive();

    let store = open(dir.path(), &faults);
    let log = store.group_storage(0);
    assert_eq!(
        log.last_index().expect("last"),
        20,
        "synced entries lost or unsynced kept"
    );
    let read = log.entries(1, 21, None);
    assert_eq!(read.expect("entries"), entries(1, 20, 1));
    // The log goes on from there.
    append(&store, 21, 25, true);
    assert_eq!(log.last_index().expect("last"), 25);
}

#[test]
fn a_kill_without_power_loss_keeps_unsynced_entries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let faults = DiskFaults::new();
    let store = open(dir.path(), &faults);
    append(&store, 1, 10, true);
    append(&store, 11, 15, false);
    faults.kill();
    drop(store);
    faults.revive();
    let store = open(dir.path(), &faults);
    assert_eq!(store.group_storage(0).last_index().expect("last"), 15);
}
