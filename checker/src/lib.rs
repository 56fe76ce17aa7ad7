//! History checkers for the robustness tests.
//!
//! [`check_register`] decides whether a concurrent history of writes and reads of ONE key is
//! linearizable: whether the operations can be put in one order, each taking effect at an
//! instant between its call and its return, such that every read returns the last value
//! written before it (or none). Keys are independent registers, so a store's history is
//! checked key by key (linearizability is compositional).
//!
//! The search is Wing & Gong's, with the memoisation of Lowe (and porcupine): walk the events
//! in time order, try to linearize each call whose operation is still pending, backtrack when
//! a return is reached whose operation could not be placed, and never revisit a (set of
//! linearized operations, register value) pair.
//!
//! Unknown outcomes (a client timed out, the connection broke) are kept as such: a write with
//! no return may take effect at any instant after its call, or never; a read with no return
//! says nothing and should be left out of the history.
//!
//! [`lease::check_leases`] checks leases from a recorded history: a leased key is never gone
//! while its lease was certainly held, and never back once gone.

pub mod lease;

use std::collections::{BTreeMap, HashSet};

/// A value of the register (`None`: the key does not exist).
pub type Value = Option<Vec<u8>>;

/// What an operation did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Set the register (`None`: delete the key).
    Write(Value),
    /// Read it, observing this value.
    Read(Value),
}

/// One operation of a client: when it was called, when it returned (`None`: unknown outcome),
/// in any monotonic unit (e.g. nanoseconds since the test began).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    /// Which client (for messages only).
    pub client: usize,
    /// Invocation time.
    pub call: u64,
    /// Completion time, if the client learned the outcome.
    pub ret: Option<u64>,
    /// The operation and, for a read, what it observed.
    pub op: Op,
}

/// Why a history is not linearizable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The longest prefix of operations (indexes into the history, in the order found) that
    /// could be linearized before the search got stuck.
    pub longest: Vec<usize>,
    /// The first operation (by call time) outside that prefix: one that could not be placed.
    pub stuck_at: usize,
}

#[derive(Clone, Copy)]
struct Event {
    op: usize,
    is_call: bool,
    time: u64,
}

/// A small deterministic generator (xorshift64) for test clients' choices: each client
/// seeds its own, so a run's mix of operations is repeatable.
#[derive(Clone, Debug)]
pub struct Xorshift(pub u64);

impl Xorshift {
    /// The next value; the state must not be 0.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// The length of a Jepsen-style run in seconds: `MANGO_JEPSEN_SECS`, else `default`.
pub fn jepsen_secs(default: u64) -> u64 {
    std::env::var("MANGO_JEPSEN_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Readies a history in which every write writes a value of its own (e.g. `c<client>-<n>`)
/// for the search, without changing its verdict:
/// - a write with an unknown outcome whose value no read observed is dropped. Such a write
///   changes nothing: a linearization of the rest is one of the whole (the write never took
///   effect), and in a linearization of the whole it took effect only where no read saw it,
///   so leaving it out keeps every read right.
/// - a write with an unknown outcome whose value a read observed gets a return: the earliest
///   return of such a read. The write must take effect before any read that saw its value
///   (values are unique), so no linearization is lost, and the write stops being open to the
///   end of the history.
///
/// Without this, each unknown write stays pending to the end and the search grows
/// exponentially with their number: a 8 s run with a hundred failed puts on one key never
/// finished.
pub fn bound_unknown_writes(ops: &[Operation]) -> Vec<Operation> {
    let mut first_seen: BTreeMap<&Value, u64> = BTreeMap::new();
    for o in ops {
        if let (Op::Read(v), Some(ret)) = (&o.op, o.ret) {
            let at = first_seen.entry(v).or_insert(ret);
            *at = (*at).min(ret);
        }
    }
    ops.iter()
        .filter_map(|o| match (&o.op, o.ret) {
            // A delete's value (none) is not its own: it stays as it is.
            (Op::Write(_), Some(_)) | (Op::Write(None), None) | (Op::Read(_), _) => Some(o.clone()),
            (Op::Write(v @ Some(_)), None) => first_seen.get(v).map(|&seen| Operation {
                // A read that returned before the write was called is a violation either
                // way; `max` keeps the call before the return for the search.
                ret: Some(seen.max(o.call)),
                ..o.clone()
            }),
        })
        .collect()
}

/// How many steps [`check_register`] takes before it gives up: tens of seconds at most.
pub const STEP_BUDGET: u64 = 50_000_000;

/// Why [`check_register`] did not accept a history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckError {
    /// No linearization exists.
    NotLinearizable(Violation),
    /// The search took more than its budget of steps: no verdict. A test should fail on this
    /// too, with a history small enough (or unknown writes bounded by
    /// [`bound_unknown_writes`]) to be checked.
    GaveUp {
        /// Steps taken.
        steps: u64,
        /// The longest prefix linearized before it gave up.
        longest: usize,
    },
}

impl CheckError {
    /// A message naming the operation the search could not place in `history` (the history
    /// that was checked).
    pub fn explain(&self, history: &[Operation]) -> String {
        match self {
            CheckError::NotLinearizable(v) => format!(
                "not linearizable: {:?} cannot be placed after {} linearized operations",
                history.get(v.stuck_at),
                v.longest.len()
            ),
            CheckError::GaveUp { .. } => self.to_string(),
        }
    }
}

impl std::fmt::Display for CheckError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CheckError::NotLinearizable(v) => write!(
                f,
                "not linearizable: operation {} cannot be placed after {} linearized operations",
                v.stuck_at,
                v.longest.len()
            ),
            CheckError::GaveUp { steps, longest } => write!(
                f,
                "the checker gave up after {steps} steps ({longest} operations linearized): \
                 the history is too concurrent to decide"
            ),
        }
    }
}

/// Checks one key's history, starting from `initial`, within [`STEP_BUDGET`] steps.
pub fn check_register(history: &[Operation], initial: &Value) -> Result<(), CheckError> {
    check_register_within(history, initial, STEP_BUDGET)
}

/// [`check_register`] with a budget of `max_steps` steps of the search.
pub fn check_register_within(
    history: &[Operation],
    initial: &Value,
    max_steps: u64,
) -> Result<(), CheckError> {
    let n = history.len();
    if n == 0 {
        return Ok(());
    }
    let mut events: Vec<Event> = Vec::with_capacity(2 * n);
    for (i, o) in history.iter().enumerate() {
        events.push(Event {
            op: i,
            is_call: true,
            time: o.call,
        });
        events.push(Event {
            op: i,
            is_call: false,
            time: o.ret.unwrap_or(u64::MAX),
        });
    }
    // Time order; at equal times calls first (the more permissive reading of a tie).
    events.sort_by_key(|e| (e.time, !e.is_call, e.op));
    // A doubly linked list over `events`, with a head sentinel at index `len`.
    let len = events.len();
    let head = len;
    let mut next: Vec<usize> = (1..=len).chain([len]).collect();
    let mut prev: Vec<usize> = std::iter::once(head).chain(0..len).collect();
    next[head] = 0;
    prev[0] = head;
    next[len - 1] = usize::MAX;
    // Where each op's call and return events sit.
    let mut call_at = vec![0; n];
    let mut ret_at = vec![0; n];
    for (idx, e) in events.iter().enumerate() {
        if e.is_call {
            call_at[e.op] = idx;
        } else {
            ret_at[e.op] = idx;
        }
    }
    let unlink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, i: usize| {
        let (p, q) = (prev[i], next[i]);
        next[p] = q;
        if q != usize::MAX {
            prev[q] = p;
        }
    };
    let relink = |next: &mut Vec<usize>, prev: &mut Vec<usize>, i: usize| {
        let (p, q) = (prev[i], next[i]);
        next[p] = i;
        if q != usize::MAX {
            prev[q] = i;
        }
    };

    let words = n.div_ceil(64);
    let mut linearized = vec![0u64; words];
    let mut seen: HashSet<(Vec<u64>, Value)> = HashSet::new();
    let mut state: Value = initial.clone();
    // (op, state before it)
    let mut stack: Vec<(usize, Value)> = Vec::new();
    let mut longest: Vec<usize> = Vec::new();
    let mut entry = next[head];
    let mut steps: u64 = 0;
    while next[head] != usize::MAX {
        steps += 1;
        if steps > max_steps {
            return Err(CheckError::GaveUp {
                steps: max_steps,
                longest: longest.len(),
            });
        }
        if entry == usize::MAX {
            // Cannot happen: a return event always precedes the end of the list.
            break;
        }
        let e = events[entry];
        if e.is_call {
            let o = &history[e.op];
            let after = match &o.op {
                Op::Write(v) => Some(v.clone()),
                Op::Read(v) if v == &state => Some(state.clone()),
                Op::Read(_) => None,
            };
            if let Some(after) = after {
                linearized[e.op / 64] |= 1 << (e.op % 64);
                if seen.insert((linearized.clone(), after.clone())) {
                    stack.push((e.op, std::mem::replace(&mut state, after)));
                    unlink(&mut next, &mut prev, call_at[e.op]);
                    unlink(&mut next, &mut prev, ret_at[e.op]);
                    if stack.len() > longest.len() {
                        longest = stack.iter().map(|(op, _)| *op).collect();
                    }
                    entry = next[head];
                    continue;
                }
                linearized[e.op / 64] &= !(1 << (e.op % 64));
            }
            entry = next[entry];
        } else {
            // A return whose operation is not linearized yet: undo the last choice.
            let Some((op, before)) = stack.pop() else {
                // The first operation (by call) the longest prefix could not place.
                let stuck_at = (0..n)
                    .filter(|i| !longest.contains(i))
                    .min_by_key(|&i| history[i].call)
                    .unwrap_or(e.op);
                return Err(CheckError::NotLinearizable(Violation { longest, stuck_at }));
            };
            linearized[op / 64] &= !(1 << (op % 64));
            state = before;
            relink(&mut next, &mut prev, ret_at[op]);
            relink(&mut next, &mut prev, call_at[op]);
            entry = next[call_at[op]];
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(client: usize, call: u64, ret: Option<u64>, v: &str) -> Operation {
        Operation {
            client,
            call,
            ret,
            op: Op::Write(Some(v.as_bytes().to_vec())),
        }
    }

    fn r(client: usize, call: u64, ret: u64, v: Option<&str>) -> Operation {
        Operation {
            client,
            call,
            ret: Some(ret),
            op: Op::Read(v.map(|v| v.as_bytes().to_vec())),
        }
    }

    #[test]
    fn sequential_histories() {
        let ok = [
            w(0, 0, Some(1), "a"),
            r(0, 2, 3, Some("a")),
            r(1, 4, 5, Some("a")),
        ];
        assert!(check_register(&ok, &None).is_ok());
        let stale = [
            w(0, 0, Some(1), "a"),
            w(0, 2, Some(3), "b"),
            r(1, 4, 5, Some("a")),
        ];
        assert!(check_register(&stale, &None).is_err());
        let from_nothing = [r(0, 0, 1, None), w(0, 2, Some(3), "a")];
        assert!(check_register(&from_nothing, &None).is_ok());
        assert!(check_register(&[r(0, 0, 1, Some("x"))], &None).is_err());
    }

    #[test]
    fn concurrent_operations_may_take_effect_in_either_order() {
        // Writes of a and b overlap; reads after both see one then must keep seeing it.
        let h = [
            w(0, 0, Some(10), "a"),
            w(1, 1, Some(9), "b"),
            r(2, 11, 12, Some("a")),
            r(2, 13, 14, Some("a")),
        ];
        assert!(check_register(&h, &None).is_ok());
        let flip = [
            w(0, 0, Some(10), "a"),
            w(1, 1, Some(9), "b"),
            r(2, 11, 12, Some("a")),
            r(2, 13, 14, Some("b")),
        ];
        assert!(check_register(&flip, &None).is_err());
        // A read concurrent with a write may see either value.
        let during = [
            w(0, 0, Some(10), "a"),
            r(1, 5, 6, None),
            r(2, 7, 8, Some("a")),
        ];
        assert!(check_register(&during, &None).is_ok());
        // But not go back after seeing the new one.
        let back = [
            w(0, 0, Some(10), "a"),
            r(1, 5, 6, Some("a")),
            r(2, 7, 8, None),
        ];
        assert!(check_register(&back, &None).is_err());
    }

    #[test]
    fn bounding_drops_unread_unknown_writes_and_ends_read_ones_at_the_first_read() {
        let history = [
            w(0, 0, Some(1), "a"),
            w(1, 2, None, "lost"),
            w(2, 3, None, "seen"),
            r(3, 9, 10, Some("seen")),
            r(4, 5, 6, Some("seen")),
        ];
        let bounded = bound_unknown_writes(&history);
        assert_eq!(
            bounded,
            vec![
                history[0].clone(),
                w(2, 3, Some(6), "seen"),
                history[3].clone(),
                history[4].clone()
            ]
        );
        assert!(check_register(&bounded, &None).is_ok());
        // A stale read stays a violation after bounding.
        let stale = [history.to_vec(), vec![r(3, 11, 12, Some("a"))]].concat();
        assert!(matches!(
            check_register(&bound_unknown_writes(&stale), &None),
            Err(CheckError::NotLinearizable(_))
        ));
        // An unknown delete is kept as it is.
        let delete = Operation {
            client: 5,
            call: 20,
            ret: None,
            op: Op::Write(None),
        };
        assert_eq!(
            bound_unknown_writes(std::slice::from_ref(&delete)),
            vec![delete]
        );
    }

    /// Many failed puts during an outage, none of them seen: the raw history makes the search
    /// try every subset of them; bounded, it is checked at once.
    #[test]
    fn bounded_unknown_writes_keep_the_search_small() {
        let mut history = vec![w(0, 0, Some(1), "a")];
        for i in 0..24u64 {
            history.push(w(1, 10 + 10 * i, None, &format!("lost{i}")));
            history.push(r(2, 15 + 10 * i, 16 + 10 * i, Some("a")));
        }
        let budget = 1_000_000;
        assert!(matches!(
            check_register_within(&history, &None, budget),
            Err(CheckError::GaveUp { .. })
        ));
        assert!(check_register_within(&bound_unknown_writes(&history), &None, budget).is_ok());
    }

    #[test]
    fn unknown_writes_may_take_effect_late_or_never() {
        let never = [w(0, 0, None, "a"), r(1, 5, 6, None), r(1, 7, 8, None)];
        assert!(check_register(&never, &None).is_ok());
        let late = [
            w(0, 0, None, "a"),
            r(1, 5, 6, None),
            r(1, 100, 101, Some("a")),
        ];
        assert!(check_register(&late, &None).is_ok());
        // Once seen it stays (nothing else wrote).
        let flicker = [w(0, 0, None, "a"), r(1, 5, 6, Some("a")), r(1, 7, 8, None)];
        assert!(check_register(&flicker, &None).is_err());
        // It cannot take effect before it was called.
        let early = [r(1, 0, 1, Some("a")), w(0, 2, None, "a")];
        assert!(check_register(&early, &None).is_err());
    }

    #[test]
    fn a_violation_names_where_the_search_got_stuck() {
        let stale = [
            w(0, 0, Some(1), "a"),
            w(0, 2, Some(3), "b"),
            r(1, 4, 5, Some("a")),
        ];
        let Err(CheckError::NotLinearizable(v)) = check_register(&stale, &None) else {
            panic!("a stale read must be a violation");
        };
        assert_eq!(v.stuck_at, 2);
        assert_eq!(v.longest, vec![0, 1]);
    }
}
