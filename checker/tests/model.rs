//! Property tests: histories produced by a real linearizable register (each operation takes
//! effect at a random instant inside its interval) are accepted; a read of a value nobody
//! wrote, or a stale read after a write completed, is rejected.
#![allow(clippy::unwrap_used)]

use mango_checker::{CheckError, Op, Operation, Value, check_register};
use proptest::prelude::*;

/// (client, call, length, effect offset in 0..=length, is write, value)
fn ops() -> impl Strategy<Value = Vec<(usize, u64, u64, u64, bool, u8)>> {
    prop::collection::vec(
        (
            0usize..4,
            0u64..200,
            1u64..40,
            0u64..40,
            any::<bool>(),
            0u8..4,
        ),
        1..40,
    )
}

/// Runs the ops against a register at their effect instants; returns the history.
fn run(spec: &[(usize, u64, u64, u64, bool, u8)]) -> Vec<Operation> {
    let mut by_effect: Vec<(u64, usize)> = spec
        .iter()
        .enumerate()
        .map(|(i, &(_, call, len, off, _, _))| {
            (call * 100 + off.min(len) * 100 + i as u64 % 100, i)
        })
        .collect();
    by_effect.sort();
    let mut state: Value = None;
    let mut observed: Vec<Value> = vec![None; spec.len()];
    for (_, i) in by_effect {
        let (_, _, _, _, is_write, v) = spec[i];
        if is_write {
            state = Some(vec![v]);
        } else {
            observed[i] = state.clone();
        }
    }
    spec.iter()
        .enumerate()
        .map(|(i, &(client, call, len, _, is_write, v))| Operation {
            client,
            call: call * 100,
            ret: Some((call + len) * 100 + 99),
            op: if is_write {
                Op::Write(Some(vec![v]))
            } else {
                Op::Read(observed[i].clone())
            },
        })
        .collect()
}

proptest! {
    #[test]
    fn linearizable_runs_are_accepted(spec in ops()) {
        let history = run(&spec);
        prop_assert!(check_register(&history, &None).is_ok());
    }

    #[test]
    fn a_read_of_a_value_never_written_is_rejected(spec in ops(), at in any::<prop::sample::Index>()) {
        let mut history = run(&spec);
        let reads: Vec<usize> = (0..history.len())
            .filter(|&i| matches!(history[i].op, Op::Read(_)))
            .collect();
        prop_assume!(!reads.is_empty());
        let i = reads[at.index(reads.len())];
        history[i].op = Op::Read(Some(vec![99]));
        prop_assert!(matches!(
            check_register(&history, &None),
            Err(CheckError::NotLinearizable(_))
        ));
    }
}

#[test]
fn a_stale_read_after_a_completed_overwrite_is_rejected() {
    let mut history = run(&[(0, 0, 1, 0, true, 1), (1, 10, 1, 0, true, 2)]);
    history.push(Operation {
        client: 2,
        call: 2000,
        ret: Some(2100),
        op: Op::Read(Some(vec![1])),
    });
    assert!(matches!(
        check_register(&history, &None),
        Err(CheckError::NotLinearizable(_))
    ));
}
