//! Applying committed entries: the apply thread of a threaded node, and the same steps run
//! inline by a [`SteppedNode`](super::SteppedNode).
//!
//! The Raft loop hands committed entries over in commit order ([`ApplyWork`]); they are
//! applied to the [`StateMachine`] in that order, each proposer is answered with its entry's
//! output, the applied index is published to handles, and the loop is told how far apply got
//! (`Command::Applied`), so raft-rs can advance its applied index. Applying never holds up the
//! log's fsync: the loop goes on appending and replicating meanwhile.

use std::sync::mpsc;

use raft::eraftpb::{Entry, Snapshot};
use tokio::sync::oneshot;

use super::handle::{Command, Shared};
use super::{GroupId, RaftError, StateMachine};

/// Entries merged into one state-machine batch at most.
const MAX_APPLY_MERGE: usize = 4096;

pub(crate) type Reply<T> = oneshot::Sender<Result<T, RaftError>>;

/// Work for the apply step.
pub(crate) enum ApplyWork<O> {
    /// Committed entries of a group, in order, with the waiters of this node's proposals
    /// among them (by entry index).
    Entries {
        group: GroupId,
        entries: Vec<Entry>,
        waiters: Vec<(u64, Reply<O>)>,
    },
    /// Restore a snapshot; answer when done.
    Restore {
        group: GroupId,
        snapshot: Box<Snapshot>,
        done: mpsc::Sender<Result<(), String>>,
    },
    Stop,
}

/// The apply thread: applies work in order until told to stop or until applying fails
/// (fatal: the loop is told and stops).
pub(crate) fn apply_loop<S: StateMachine>(
    mut sm: S,
    work: mpsc::Receiver<ApplyWork<S::Output>>,
    shared: std::sync::Arc<Shared>,
    commands: mpsc::Sender<Command<S::Output>>,
) {
    let mut carried: Option<ApplyWork<S::Output>> = None;
    loop {
        let item = match carried.take() {
            Some(item) => item,
            None => match work.recv() {
                Ok(item) => item,
                Err(_) => return,
            },
        };
        // Entries of the same group queued behind this one apply in the same state-machine
        // batch (one store transaction): when apply falls behind, its batches grow.
        let item = match item {
            ApplyWork::Entries {
                group,
                mut entries,
                mut waiters,
            } => {
                while entries.len() < MAX_APPLY_MERGE {
                    match work.try_recv() {
                        Ok(ApplyWork::Entries {
                            group: g,
                            entries: more,
                            waiters: more_waiters,
                        }) if g == group => {
                            entries.extend(more);
                            waiters.extend(more_waiters);
                        }
                        Ok(other) => {
                            carried = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                ApplyWork::Entries {
                    group,
                    entries,
                    waiters,
                }
            }
            ApplyWork::Stop => return,
            other => other,
        };
        match apply_item(&mut sm, item, &shared) {
            Ok(Some(cmd)) => {
                let _ = commands.send(cmd);
            }
            Ok(None) => {}
            Err(e) => {
                let _ = commands.send(Command::Fatal(e));
                return;
            }
        }
    }
}

/// Applies one piece of work: answers its waiters and publishes the applied index. Returns
/// the report for the Raft loop, if any. An `Err` is fatal to the node.
pub(crate) fn apply_item<S: StateMachine>(
    sm: &mut S,
    item: ApplyWork<S::Output>,
    shared: &Shared,
) -> Result<Option<Command<S::Output>>, String> {
    match item {
        ApplyWork::Stop => Ok(None),
        ApplyWork::Restore {
            group,
            snapshot,
            done,
        } => {
            let result = sm.restore(group, &snapshot);
            let index = snapshot.get_metadata().get_index();
            if result.is_ok() {
                publish_applied(shared, group, index);
            }
            let _ = done.send(result);
            Ok(None)
        }
        ApplyWork::Entries {
            group,
            entries,
            waiters,
        } => {
            let outputs = sm.apply(group, &entries)?;
            if outputs.len() != entries.len() {
                return Err(format!(
                    "state machine answered {} outputs for {} entries",
                    outputs.len(),
                    entries.len()
                ));
            }
            let mut waiters = waiters.into_iter().peekable();
            for (entry, output) in entries.iter().zip(outputs) {
                if waiters
                    .peek()
                    .is_some_and(|(index, _)| *index == entry.index)
                    && let Some((_, w)) = waiters.next()
                {
                    let _ = w.send(Ok(output));
                }
            }
            let Some(last) = entries.last().map(|e| e.index) else {
                return Ok(None);
            };
            publish_applied(shared, group, last);
            Ok(Some(Command::Applied { group, index: last }))
        }
    }
}

/// Raises the applied index handles see for `group` to `index`.
fn publish_applied(shared: &Shared, group: GroupId, index: u64) {
    if let Some(g) = shared.groups.get(&group) {
        g.applied.send_if_modified(|a| {
            let changed = *a < index;
            *a = (*a).max(index);
            changed
        });
    }
}
