//! raft-rs's storage contract, checked against a real engine on a temporary
//! directory.

use std::path::Path;
use std::sync::Arc;

use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, NO_LIMIT, Storage, StorageError};

use crate::{LogStore, LogStoreConfig, LogStoreError, WriteBatch};

fn open(dir: &Path) -> LogStore {
    LogStore::open(LogStoreConfig::new(dir)).expect("open log store")
}

fn entry(index: u64, term: u64) -> Entry {
    Entry {
        index,
        term,
        data: format!("entry {index} of term {term}").into_bytes().into(),
        ..Default::default()
    }
}

fn entries(indexes: std::ops::RangeInclusive<u64>, term: u64) -> Vec<Entry> {
    indexes.map(|index| entry(index, term)).collect()
}

fn append(store: &LogStore, group: u64, new: Vec<Entry>) {
    let mut batch = WriteBatch::new();
    batch.append(group, new);
    store.write(batch, true).expect("append");
}

fn hard_state(term: u64, vote: u64, commit: u64) -> HardState {
    HardState {
        term,
        vote,
        commit,
        ..Default::default()
    }
}

fn set_hard_state(store: &LogStore, group: u64, hs: HardState) {
    let mut batch = WriteBatch::new();
    batch.set_hard_state(group, hs);
    store.write(batch, true).expect("set hard state");
}

fn snapshot_metadata(index: u64, term: u64, voters: Vec<u64>) -> SnapshotMetadata {
    SnapshotMetadata {
        index,
        term,
        conf_state: Some(ConfState::from((voters, vec![]))).into(),
        ..Default::default()
    }
}

fn raft_entries(
    storage: &impl Storage,
    low: u64,
    high: u64,
    max_size: u64,
) -> raft::Result<Vec<Entry>> {
    storage.entries(low, high, max_size, GetEntriesContext::empty(false))
}

fn compacted() -> raft::Error {
    raft::Error::Store(StorageError::Compacted)
}

fn unavailable() -> raft::Error {
    raft::Error::Store(StorageError::Unavailable)
}

#[test]
fn a_new_group_is_empty() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let storage = store.group_storage(1);
    let state = storage.initial_state().expect("initial state");
    assert_eq!(state.hard_state, HardState::default());
    assert_eq!(state.conf_state, ConfState::default());
    assert_eq!(Storage::first_index(&storage), Ok(1));
    assert_eq!(Storage::last_index(&storage), Ok(0));
    assert_eq!(Storage::term(&storage, 0), Ok(0));
    assert_eq!(Storage::term(&storage, 1), Err(unavailable()));
    assert_eq!(raft_entries(&storage, 1, 1, NO_LIMIT), Ok(vec![]));
    assert_eq!(raft_entries(&storage, 1, 2, NO_LIMIT), Err(unavailable()));
    assert!(store.groups().is_empty());
}

#[test]
fn appended_entries_read_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let storage = store.group_storage(1);
    append(&store, 1, entries(1..=3, 1));
    append(&store, 1, entries(4..=5, 2));
    assert_eq!(Storage::first_index(&storage), Ok(1));
    assert_eq!(Storage::last_index(&storage), Ok(5));
    let mut all = entries(1..=3, 1);
    all.extend(entries(4..=5, 2));
    assert_eq!(raft_entries(&storage, 1, 6, NO_LIMIT), Ok(all.clone()));
    assert_eq!(
        raft_entries(&storage, 2, 4, NO_LIMIT),
        Ok(all[1..3].to_vec())
    );
    assert_eq!(
        (0..=5)
            .map(|i| Storage::term(&storage, i))
            .collect::<Vec<_>>(),
        [Ok(0), Ok(1), Ok(1), Ok(1), Ok(2), Ok(2)]
    );
    assert_eq!(store.groups(), vec![1]);
}

#[test]
fn append_replaces_the_conflicting_suffix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let storage = store.group_storage(1);
    append(&store, 1, entries(1..=5, 1));
    // A new leader of term 2 overwrites from index 3; 4 and 5 disappear.
    append(&store, 1, entries(3..=3, 2));
    assert_eq!(Storage::last_index(&storage), Ok(3));
    let mut want = entries(1..=2, 1);
    want.extend(entries(3..=3, 2));
    assert_eq!(raft_entries(&storage, 1, 4, NO_LIMIT), Ok(want));
    assert_eq!(Storage::term(&storage, 3), Ok(2));
    assert_eq!(Storage::term(&storage, 4), Err(unavailable()));
    // Overwriting from the first index replaces everything.
    append(&store, 1, entries(1..=2, 3));
    assert_eq!(
        raft_entries(&storage, 1, 3, NO_LIMIT),
        Ok(entries(1..=2, 3))
    );
    assert_eq!(Storage::last_index(&storage), Ok(2));
}

#[test]
fn appends_breaking_the_log_are_refused_and_write_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    append(&store, 1, entries(1..=5, 1));
    set_hard_state(&store, 1, hard_state(1, 1, 5));
    store.compact(1, 3).expect("compact");

    let refused = |new: Vec<Entry>| {
        let mut batch = WriteBatch::new();
        batch.append(1, new);
        store.write(batch, true).expect_err("refused")
    };
    assert!(matches!(
        refused(entries(7..=8, 1)),
        LogStoreError::LogGap {
            index: 7,
            last_index: 5,
            ..
        }
    ));
    assert!(matches!(
        refused(entries(2..=8, 2)),
        LogStoreError::OverwriteCompacted {
            index: 2,
            first_index: 3,
            ..
        }
    ));
    assert!(matches!(
        refused(vec![entry(6, 1), entry(8, 1)]),
        LogStoreError::NonContiguousEntries { index: 8, .. }
    ));
    let storage = store.group_storage(1);
    assert_eq!(Storage::last_index(&storage), Ok(5));
    assert_eq!(
        raft_entries(&storage, 3, 6, NO_LIMIT),
        Ok(entries(3..=5, 1))
    );
}

#[test]
fn entries_outside_the_log_are_compacted_or_unavailable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    append(&store, 1, entries(1..=6, 1));
    set_hard_state(&store, 1, hard_state(1, 1, 6));
    store.compact(1, 4).expect("compact");
    let storage = store.group_storage(1);
    assert_eq!(raft_entries(&storage, 3, 5, NO_LIMIT), Err(compacted()));
    assert_eq!(raft_entries(&storage, 4, 8, NO_LIMIT), Err(unavailable()));
    assert_eq!(
        raft_entries(&storage, 4, 7, NO_LIMIT),
        Ok(entries(4..=6, 1))
    );
    assert_eq!(raft_entries(&storage, 7, 7, NO_LIMIT), Ok(vec![]));
    assert!(matches!(
        storage.entries(5, 4, None),
        Err(LogStoreError::InvalidRange {
            low: 5,
            high: 4,
            ..
        })
    ));
}

#[test]
fn max_size_follows_raft_limit_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    // Entries of different sizes, enough to span several raft-engine fetches.
    let all: Vec<Entry> = (1..=600u64)
        .map(|index| Entry {
            index,
            term: 1,
            data: vec![7; (index % 13) as usize * 10].into(),
            ..Default::default()
        })
        .collect();
    append(&store, 1, all.clone());
    let storage = store.group_storage(1);
    let total: u64 = all.iter().map(|e| u64::from(e.compute_size())).sum();
    for max in [
        0,
        1,
        10,
        100,
        1_000,
        5_000,
        20_000,
        total - 1,
        total,
        NO_LIMIT,
    ] {
        for (low, high) in [(1, 601), (1, 2), (100, 400), (599, 601)] {
            let mut want = all[(low - 1) as usize..(high - 1) as usize].to_vec();
            raft::util::limit_size(&mut want, Some(max));
            let got = raft_entries(&storage, low, high, max).expect("entries");
            assert_eq!(got.len(), want.len(), "max {max} range [{low}, {high})");
            assert_eq!(got, want);
        }
    }
}

#[test]
fn term_is_answerable_at_the_boundaries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    append(&store, 1, entries(1..=3, 1));
    append(&store, 1, entries(4..=6, 2));
    set_hard_state(&store, 1, hard_state(2, 1, 6));
    store.compact(1, 5).expect("compact");
    let storage = store.group_storage(1);
    assert_eq!(Storage::first_index(&storage), Ok(5));
    assert_eq!(Storage::term(&storage, 3), Err(compacted()));
    assert_eq!(Storage::term(&storage, 4), Ok(2), "first_index - 1");
    assert_eq!(Storage::term(&storage, 6), Ok(2), "last_index");
    assert_eq!(Storage::term(&storage, 7), Err(unavailable()));
}

#[test]
fn compaction_rules() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    append(&store, 1, entries(1..=5, 1));
    set_hard_state(&store, 1, hard_state(1, 1, 3));
    assert!(matches!(
        store.compact(1, 5),
        Err(LogStoreError::CompactUncommitted {
            index: 5,
            commit: 3,
            ..
        })
    ));
    set_hard_state(&store, 1, hard_state(1, 1, 5));
    assert!(matches!(
        store.compact(1, 7),
        Err(LogStoreError::CompactBeyondLog {
            index: 7,
            last_index: 5,
            ..
        })
    ));
    store.compact(1, 3).expect("compact");
    store
        .compact(1, 2)
        .expect("compacting below the first index does nothing");
    let storage = store.group_storage(1);
    assert_eq!(Storage::first_index(&storage), Ok(3));
    // Compacting the whole log leaves first = last + 1 and the last term known.
    store.compact(1, 6).expect("compact all");
    assert_eq!(Storage::first_index(&storage), Ok(6));
    assert_eq!(Storage::last_index(&storage), Ok(5));
    assert_eq!(Storage::term(&storage, 5), Ok(1));
    append(&store, 1, entries(6..=6, 2));
    assert_eq!(
        raft_entries(&storage, 6, 7, NO_LIMIT),
        Ok(entries(6..=6, 2))
    );
}

#[test]
fn compaction_stops_after_the_raft_loops_applied_index() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    append(&store, 1, entries(1..=10, 1));
    set_hard_state(&store, 1, hard_state(1, 1, 10));
    // The state machine is at 9, raft-rs has seen only 4 applied.
    store.note_raft_applied(1, 4);
    store.compact(1, 9).expect("compact");
    let storage = store.group_storage(1);
    assert_eq!(
        Storage::first_index(&storage),
        Ok(5),
        "entries after 4 must stay"
    );
    store.note_raft_applied(1, 8);
    store.compact(1, 9).expect("compact");
    assert_eq!(Storage::first_index(&storage), Ok(9));
    // Another group is not held back.
    append(&store, 2, entries(1..=3, 1));
    set_hard_state(&store, 2, hard_state(1, 1, 3));
    store.compact(2, 3).expect("compact");
    assert_eq!(Storage::first_index(&store.group_storage(2)), Ok(3));
}

#[test]
fn applying_a_snapshot_resets_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    append(&store, 1, entries(1..=10, 1));
    set_hard_state(&store, 1, hard_state(1, 2, 4));
    let storage = store.group_storage(1);

    // A snapshot inside the log still discards the entries above it.
    let mut batch = WriteBatch::new();
    batch.apply_snapshot(1, snapshot_metadata(7, 3, vec![1, 2, 3]));
    store.write(batch, true).expect("apply snapshot");
    assert_eq!(Storage::first_index(&storage), Ok(8));
    assert_eq!(Storage::last_index(&storage), Ok(7));
    assert_eq!(Storage::term(&storage, 7), Ok(3));
    assert_eq!(Storage::term(&storage, 8), Err(unavailable()));
    assert_eq!(raft_entries(&storage, 7, 8, NO_LIMIT), Err(compacted()));
    let state = storage.initial_state().expect("initial state");
    assert_eq!(state.hard_state, hard_state(3, 2, 7));
    assert_eq!(state.conf_state, ConfState::from((vec![1, 2, 3], vec![])));
    assert_eq!(
        store.snapshot_metadata(1).expect("metadata"),
        Some(snapshot_metadata(7, 3, vec![1, 2, 3]))
    );

    // A snapshot beyond the log, followed by entries in the same batch.
    let mut batch = WriteBatch::new();
    batch.apply_snapshot(1, snapshot_metadata(20, 4, vec![1, 2]));
    batch.append(1, entries(21..=22, 4));
    batch.set_hard_state(1, hard_state(4, 0, 21));
    store.write(batch, true).expect("snapshot and entries");
    assert_eq!(Storage::first_index(&storage), Ok(21));
    assert_eq!(Storage::last_index(&storage), Ok(22));
    assert_eq!(Storage::term(&storage, 20), Ok(4));
    assert_eq!(
        raft_entries(&storage, 21, 23, NO_LIMIT),
        Ok(entries(21..=22, 4))
    );

    // Older than the log: refused.
    let mut batch = WriteBatch::new();
    batch.apply_snapshot(1, snapshot_metadata(15, 4, vec![1]));
    assert!(matches!(
        store.write(batch, true),
        Err(LogStoreError::SnapshotOutOfDate {
            index: 15,
            first_index: 21,
            ..
        })
    ));
    // Below the persisted commit: raft never rolls committed entries back.
    let mut batch = WriteBatch::new();
    batch.set_commit(1, 22);
    store.write(batch, true).expect("commit");
    let mut batch = WriteBatch::new();
    batch.apply_snapshot(1, snapshot_metadata(21, 4, vec![1]));
    assert!(matches!(
        store.write(batch, true),
        Err(LogStoreError::SnapshotOutOfDate {
            index: 21,
            first_index: 21,
            commit: 22,
            ..
        })
    ));
}

#[test]
fn hard_state_commit_must_stay_inside_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    append(&store, 1, entries(1..=3, 1));
    let mut batch = WriteBatch::new();
    batch.set_hard_state(1, hard_state(1, 1, 4));
    assert!(matches!(
        store.write(batch, true),
        Err(LogStoreError::CommitOutOfRange {
            commit: 4,
            last_index: 3,
            ..
        })
    ));
    // Order inside a batch does not matter: the check sees the final log.
    let mut batch = WriteBatch::new();
    batch.set_hard_state(1, hard_state(1, 1, 4));
    batch.append(1, entries(4..=4, 1));
    store
        .write(batch, true)
        .expect("commit covered by the batch");
    // set_commit changes only the commit.
    let mut batch = WriteBatch::new();
    batch.set_commit(1, 2);
    store.write(batch, true).expect("set commit");
    assert_eq!(
        store.hard_state(1).expect("hard state"),
        hard_state(1, 1, 2)
    );
}

#[test]
fn reopening_keeps_everything() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = open(dir.path());
        let mut batch = WriteBatch::new();
        batch.set_conf_state(1, ConfState::from((vec![1, 2, 3], vec![4])));
        batch.append(1, entries(1..=8, 1));
        batch.append(1, entries(9..=12, 2));
        batch.set_hard_state(1, hard_state(2, 3, 11));
        batch.apply_snapshot(2, snapshot_metadata(50, 5, vec![7]));
        batch.append(2, entries(51..=52, 5));
        batch.set_hard_state(2, hard_state(5, 7, 52));
        store.write(batch, true).expect("write");
        store.compact(1, 6).expect("compact");
        // A GroupStorage handle keeps the engine open; drop it too.
        let _storage = store.group_storage(1);
    }
    let store = open(dir.path());
    assert_eq!(store.groups(), vec![1, 2]);

    let one = store.group_storage(1);
    let state = one.initial_state().expect("initial state");
    assert_eq!(state.hard_state, hard_state(2, 3, 11));
    assert_eq!(state.conf_state, ConfState::from((vec![1, 2, 3], vec![4])));
    assert_eq!(Storage::first_index(&one), Ok(6));
    assert_eq!(Storage::last_index(&one), Ok(12));
    assert_eq!(Storage::term(&one, 5), Ok(1));
    assert_eq!(Storage::term(&one, 12), Ok(2));
    let mut want = entries(6..=8, 1);
    want.extend(entries(9..=12, 2));
    assert_eq!(raft_entries(&one, 6, 13, NO_LIMIT), Ok(want));

    let two = store.group_storage(2);
    assert_eq!(Storage::first_index(&two), Ok(51));
    assert_eq!(Storage::last_index(&two), Ok(52));
    assert_eq!(Storage::term(&two, 50), Ok(5));
    assert_eq!(two.hard_state().expect("hard state"), hard_state(5, 7, 52));
    assert_eq!(
        two.conf_state().expect("conf state"),
        ConfState::from((vec![7], vec![]))
    );
    assert_eq!(
        two.snapshot_metadata().expect("metadata"),
        Some(snapshot_metadata(50, 5, vec![7]))
    );
    // The reopened log keeps accepting appends where it left off.
    append(&store, 1, entries(13..=13, 3));
    assert_eq!(Storage::term(&one, 13), Ok(3));
}

#[test]
fn groups_do_not_see_each_other() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let mut batch = WriteBatch::new();
    batch.append(1, entries(1..=5, 1));
    batch.append(2, entries(1..=2, 7));
    batch.set_hard_state(2, hard_state(7, 2, 2));
    store.write(batch, true).expect("write");
    append(&store, 1, entries(3..=3, 2));
    store.compact(2, 3).expect("compact group 2");

    let one = store.group_storage(1);
    let two = store.group_storage(2);
    assert_eq!(Storage::last_index(&one), Ok(3));
    assert_eq!(Storage::first_index(&one), Ok(1));
    assert_eq!(Storage::term(&one, 2), Ok(1));
    assert_eq!(one.hard_state().expect("hard state"), HardState::default());
    assert_eq!(Storage::last_index(&two), Ok(2));
    assert_eq!(Storage::first_index(&two), Ok(3));
    assert_eq!(Storage::term(&two, 2), Ok(7));
    assert_eq!(raft_entries(&two, 1, 3, NO_LIMIT), Err(compacted()));
    assert_eq!(Storage::last_index(&store.group_storage(3)), Ok(0));
}

#[test]
fn a_batch_across_groups_is_all_or_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    append(&store, 2, entries(1..=2, 1));

    // Valid for groups 1 and 3, a gap for group 2: nothing is written.
    let mut batch = WriteBatch::new();
    batch.append(1, entries(1..=3, 1));
    batch.set_hard_state(1, hard_state(1, 1, 3));
    batch.append(2, entries(5..=5, 1));
    batch.append(3, entries(1..=1, 1));
    assert!(matches!(
        store.write(batch, true),
        Err(LogStoreError::LogGap { group: 2, .. })
    ));
    assert_eq!(store.groups(), vec![2]);
    assert_eq!(Storage::last_index(&store.group_storage(1)), Ok(0));
    assert_eq!(
        store.hard_state(1).expect("hard state"),
        HardState::default()
    );

    // The same batch without the gap is written whole, and survives reopening.
    let mut batch = WriteBatch::new();
    batch.append(1, entries(1..=3, 1));
    batch.set_hard_state(1, hard_state(1, 1, 3));
    batch.append(2, entries(3..=3, 1));
    batch.append(3, entries(1..=1, 1));
    store.write(batch, true).expect("write");
    drop(store);
    let store = open(dir.path());
    assert_eq!(store.groups(), vec![1, 2, 3]);
    for (group, last) in [(1, 3), (2, 3), (3, 1)] {
        assert_eq!(Storage::last_index(&store.group_storage(group)), Ok(last));
    }
}

#[test]
fn snapshot_comes_from_the_provider() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let temporarily_unavailable = || {
        Err(raft::Error::Store(
            StorageError::SnapshotTemporarilyUnavailable,
        ))
    };

    let without = store.group_storage(1);
    assert_eq!(without.snapshot(0, 2), temporarily_unavailable());

    let provider = Arc::new(|group: u64, _request: u64, to: u64| {
        let mut snapshot = Snapshot::default();
        snapshot.set_data(format!("group {group} for {to}").into_bytes().into());
        snapshot.set_metadata(snapshot_metadata(10, 2, vec![1, 2]));
        Some(snapshot)
    });
    let with = store.group_storage(1).with_snapshot_provider(provider);
    let snapshot = with.snapshot(5, 2).expect("snapshot");
    assert_eq!(snapshot.get_data(), b"group 1 for 2");
    assert_eq!(snapshot.get_metadata().index, 10);
    // Older than the requested index: raft must retry later.
    assert_eq!(with.snapshot(11, 2), temporarily_unavailable());

    let not_ready = store
        .group_storage(1)
        .with_snapshot_provider(Arc::new(|_: u64, _: u64, _: u64| None));
    assert_eq!(not_ready.snapshot(0, 2), temporarily_unavailable());
}

#[test]
fn purge_reports_groups_to_compact_and_frees_space() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogStoreConfig {
        target_file_size: 4 << 10,
        purge_threshold: 16 << 10,
        batch_compression_threshold: 0,
        ..LogStoreConfig::new(dir.path())
    };
    let store = LogStore::open(config).expect("open");
    let big = |index: u64| Entry {
        index,
        term: 1,
        data: vec![index as u8; 512].into(),
        ..Default::default()
    };
    // Group 1 writes a lot early and is never compacted; group 2 keeps
    // writing and compacts as it goes.
    append(&store, 1, (1..=64).map(big).collect());
    set_hard_state(&store, 1, hard_state(1, 1, 64));
    for index in 1..=200 {
        append(&store, 2, vec![big(index)]);
        set_hard_state(&store, 2, hard_state(1, 2, index));
        store.compact(2, index).expect("compact");
    }
    let before = store.used_bytes();
    let to_compact = store.purge_expired_files().expect("purge");
    assert_eq!(to_compact, vec![1]);
    store.compact(1, 65).expect("compact group 1");
    store.purge_expired_files().expect("purge");
    assert!(
        store.used_bytes() < before,
        "{} >= {before}",
        store.used_bytes()
    );
    let two = store.group_storage(2);
    assert_eq!(raft_entries(&two, 200, 201, NO_LIMIT), Ok(vec![big(200)]));
    assert_eq!(Storage::term(&store.group_storage(1), 64), Ok(1));
}

#[test]
fn pending_entries_read_before_their_write_lands_and_shadow_the_engine() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let storage = store.group_storage(1);
    append(&store, 1, entries(1..=5, 1));

    // Staged for write 1: readable at once, engine untouched.
    store.stage_pending(1, &entries(6..=8, 1), 1);
    assert_eq!(storage.last_index().expect("last"), 8);
    assert_eq!(Storage::term(&storage, 7).expect("term"), 1);
    assert_eq!(
        raft_entries(&storage, 4, 9, NO_LIMIT).expect("entries"),
        entries(4..=8, 1)
    );
    assert_eq!(
        store.group_storage(1).entries(1, 9, None).expect("e").len(),
        8
    );
    assert_eq!(Storage::term(&storage, 9).unwrap_err(), unavailable());

    // A conflicting append at 4 (write 2) shadows the engine's 4..=5 and the pending 6..=8.
    store.stage_pending(1, &entries(4..=4, 2), 2);
    assert_eq!(storage.last_index().expect("last"), 4);
    assert_eq!(
        raft_entries(&storage, 1, 5, NO_LIMIT).expect("entries")[3],
        entry(4, 2)
    );
    assert_eq!(Storage::term(&storage, 5).unwrap_err(), unavailable());

    // A size limit cutting inside the engine's part returns that part only.
    let one = u64::from(entry(1, 1).compute_size());
    assert_eq!(
        raft_entries(&storage, 1, 5, one).expect("entries"),
        entries(1..=1, 1)
    );

    // Write 1 lands (6..=8 of term 1): the pending 4 of term 2 still shadows it.
    let mut first = WriteBatch::new();
    first.append(1, entries(6..=8, 1));
    store.write_pending(first, true, 1).expect("write 1");
    assert_eq!(storage.last_index().expect("last"), 4);
    assert_eq!(Storage::term(&storage, 4).expect("term"), 2);

    // Write 2 lands: the engine now holds exactly what was read.
    let mut second = WriteBatch::new();
    second.append(1, entries(4..=4, 2));
    store.write_pending(second, true, 2).expect("write 2");
    assert_eq!(storage.last_index().expect("last"), 4);
    let mut expect = entries(1..=3, 1);
    expect.push(entry(4, 2));
    assert_eq!(
        raft_entries(&storage, 1, 5, NO_LIMIT).expect("entries"),
        expect
    );

    // Reopened, the engine agrees.
    drop((storage, store));
    let store = open(dir.path());
    assert_eq!(
        raft_entries(&store.group_storage(1), 1, 5, NO_LIMIT).expect("entries"),
        expect
    );
}
