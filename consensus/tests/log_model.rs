//! Random sequences of appends, compactions, snapshots and reopens, checked
//! after every step against a model of raft's log: a vector of entries after
//! the last discarded `(index, term)`.

use proptest::prelude::*;
use protobuf::Message as _;
use raft::eraftpb::{Entry, HardState, SnapshotMetadata};
use raft::{GetEntriesContext, NO_LIMIT, Storage, StorageError};

use mango_consensus::{LogStore, LogStoreConfig, WriteBatch};

const GROUP: u64 = 9;

#[derive(Debug, Clone)]
enum Step {
    /// Append `len` entries at an index chosen by `at` in `[first, last + 1]`
    /// (or one past it, a gap, when `gap`), in a term `bump` above the highest.
    Append {
        at: u64,
        len: u64,
        bump: u64,
        gap: bool,
    },
    /// Commit everything, then compact to an index chosen by `at` in
    /// `[first - 1, last + 2]`.
    Compact { at: u64 },
    /// Apply a snapshot at `first - 2 + at`.
    Snapshot { at: u64, bump: u64 },
    /// Drop the store and open it again.
    Reopen,
    /// Read `[first + low, first + low + len)` with `max_size`.
    Read { low: u64, len: u64, max_size: u64 },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (any::<u64>(), 1..6u64, 0..2u64, prop::bool::weighted(0.1))
            .prop_map(|(at, len, bump, gap)| Step::Append { at, len, bump, gap }),
        2 => any::<u64>().prop_map(|at| Step::Compact { at }),
        1 => (0..25u64, 0..2u64).prop_map(|(at, bump)| Step::Snapshot { at, bump }),
        1 => Just(Step::Reopen),
        2 => (0..12u64, 0..12u64, prop_oneof![Just(NO_LIMIT), 0..400u64])
            .prop_map(|(low, len, max_size)| Step::Read { low, len, max_size }),
    ]
}

/// raft's log: entries after the last discarded one.
#[derive(Debug, Default)]
struct Model {
    truncated_index: u64,
    truncated_term: u64,
    entries: Vec<Entry>,
    max_term: u64,
    commit: u64,
}

impl Model {
    fn first(&self) -> u64 {
        self.truncated_index + 1
    }

    fn last(&self) -> u64 {
        self.truncated_index + self.entries.len() as u64
    }

    fn term(&self, index: u64) -> Result<u64, StorageError> {
        if index == self.truncated_index {
            Ok(self.truncated_term)
        } else if index < self.truncated_index {
            Err(StorageError::Compacted)
        } else if index > self.last() {
            Err(StorageError::Unavailable)
        } else {
            Ok(self.entries[(index - self.first()) as usize].term)
        }
    }
}

fn entry(index: u64, term: u64) -> Entry {
    Entry {
        index,
        term,
        data: vec![index as u8; (index % 7) as usize * 9].into(),
        ..Default::default()
    }
}

fn open(dir: &std::path::Path) -> LogStore {
    LogStore::open(LogStoreConfig::new(dir)).expect("open")
}

fn check(store: &LogStore, model: &Model) -> Result<(), TestCaseError> {
    let storage = store.group_storage(GROUP);
    prop_assert_eq!(Storage::first_index(&storage).ok(), Some(model.first()));
    prop_assert_eq!(Storage::last_index(&storage).ok(), Some(model.last()));
    let from = model.truncated_index.saturating_sub(2);
    for index in from..=model.last() + 2 {
        let got = Storage::term(&storage, index);
        let want = model.term(index).map_err(raft::Error::Store);
        prop_assert_eq!(got, want, "term({})", index);
    }
    let all = storage
        .entries(model.first(), model.last() + 1, None)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&all, &model.entries);
    Ok(())
}

fn run(steps: Vec<Step>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = open(dir.path());
    let mut model = Model::default();
    for step in steps {
        match step {
            Step::Append { at, len, bump, gap } => {
                let span = model.last() + 2 - model.first();
                let first = if gap {
                    model.last() + 2
                } else {
                    model.first() + at % span
                };
                let term = model.max_term + bump;
                let new: Vec<Entry> = (first..first + len).map(|i| entry(i, term)).collect();
                let mut batch = WriteBatch::new();
                batch.append(GROUP, new.clone());
                let result = store.write(batch, false);
                if gap {
                    prop_assert!(result.is_err(), "a gap must be refused");
                } else {
                    prop_assert!(result.is_ok(), "{:?}", result);
                    model.entries.truncate((first - model.first()) as usize);
                    model.entries.extend(new);
                    model.max_term = term;
                }
            }
            Step::Compact { at } => {
                let mut batch = WriteBatch::new();
                batch.set_hard_state(
                    GROUP,
                    HardState {
                        term: model.max_term,
                        commit: model.last(),
                        ..Default::default()
                    },
                );
                store.write(batch, false).expect("commit");
                model.commit = model.last();
                let index = model.truncated_index + at % (model.entries.len() as u64 + 4);
                let result = store.compact(GROUP, index);
                if index > model.last() + 1 {
                    prop_assert!(result.is_err(), "compacting past the log must fail");
                } else {
                    prop_assert!(result.is_ok(), "{:?}", result);
                    if index > model.first() {
                        let drop = (index - model.first()) as usize;
                        model.truncated_term = model.term(index - 1).expect("in log");
                        model.truncated_index = index - 1;
                        model.entries.drain(..drop);
                    }
                }
            }
            Step::Snapshot { at, bump } => {
                let index = (model.first() + at).saturating_sub(2);
                let term = model.max_term + bump;
                let mut batch = WriteBatch::new();
                batch.apply_snapshot(
                    GROUP,
                    SnapshotMetadata {
                        index,
                        term,
                        ..Default::default()
                    },
                );
                let result = store.write(batch, false);
                if index < model.first() || index < model.commit {
                    prop_assert!(result.is_err(), "an old snapshot must be refused");
                } else {
                    prop_assert!(result.is_ok(), "{:?}", result);
                    model.truncated_index = index;
                    model.truncated_term = term;
                    model.entries.clear();
                    model.max_term = term;
                    model.commit = index;
                }
            }
            Step::Reopen => {
                drop(store);
                store = open(dir.path());
            }
            Step::Read { low, len, max_size } => {
                let low = model.first() + low;
                let high = low + len;
                let got = Storage::entries(
                    &store.group_storage(GROUP),
                    low,
                    high,
                    max_size,
                    GetEntriesContext::empty(false),
                );
                if high > model.last() + 1 {
                    prop_assert_eq!(got, Err(raft::Error::Store(StorageError::Unavailable)));
                } else {
                    let start = (low - model.first()) as usize;
                    let mut want = model.entries[start..start + len as usize].to_vec();
                    raft::util::limit_size(&mut want, Some(max_size));
                    prop_assert!(
                        want.is_empty()
                            || want.len() == 1
                            || want
                                .iter()
                                .map(|e| u64::from(e.compute_size()))
                                .sum::<u64>()
                                <= max_size
                    );
                    prop_assert_eq!(got, Ok(want));
                }
            }
        }
        check(&store, &model)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn log_store_behaves_like_the_model(steps in prop::collection::vec(step(), 1..40)) {
        run(steps)?;
    }
}
