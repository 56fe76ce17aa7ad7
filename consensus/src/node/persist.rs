//! The persist thread: the only writer of the Raft log while the node runs, so that the Raft
//! thread never waits for the disk.
//!
//! The Raft thread stages each Ready's entries (readable through `GroupStorage` at once, see
//! [`LogStore::stage_pending`]), advances the Ready with `advance_append_async` and queues its
//! changes here as a [`Job`]. This thread takes every job queued, writes them as ONE
//! raft-engine write (one fsync: group commit across passes and groups), and reports the
//! Ready numbers back ([`Command::Persisted`]); only then does the Raft thread send the
//! Readies' persisted messages and call `on_persist_ready`. Jobs are written in the order
//! they were queued, which is the order raft-rs requires.

use std::fmt;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender};

use super::GroupId;
use super::handle::Command;
use crate::{LogStore, WriteBatch};

/// Jobs merged into one write at most.
const MAX_MERGE: usize = 1024;

/// The changes of one Ready pass, and the Readies they complete.
pub(crate) struct Job {
    pub batch: WriteBatch,
    pub sync: bool,
    /// The ticket its entries were staged under.
    pub ticket: u64,
    /// `(group, ready number)` of every Ready of the pass.
    pub readies: Vec<(GroupId, u64)>,
    /// Told once the job is written (the Raft thread waits on it before a snapshot).
    pub done: Option<std::sync::mpsc::Sender<()>>,
}

pub(crate) enum PersistWork {
    Job(Job),
    Stop,
}

/// Fault injection for tests: runs on the persist thread before every write, so a test can
/// hold the disk (e.g. block until released) and watch the Raft thread carry on, or fail the
/// write (an `Err` is reported as the write's error, as a dead disk's would be).
#[derive(Clone)]
pub struct PersistHook(pub Arc<dyn Fn() -> Result<(), String> + Send + Sync>);

impl fmt::Debug for PersistHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PersistHook")
    }
}

/// Writes jobs until told to stop (after writing everything queued before the stop) or until
/// a write fails, which is fatal to the node.
pub(crate) fn persist_loop<O>(
    log: LogStore,
    work: Receiver<PersistWork>,
    commands: Sender<Command<O>>,
    hook: Option<PersistHook>,
    observer: Option<super::Observer>,
) {
    while let Ok(PersistWork::Job(first)) = work.recv() {
        let mut jobs = vec![first];
        let mut stop = false;
        while jobs.len() < MAX_MERGE {
            match work.try_recv() {
                Ok(PersistWork::Job(job)) => jobs.push(job),
                Ok(PersistWork::Stop) => {
                    stop = true;
                    break;
                }
                Err(_) => break,
            }
        }
        match write_jobs(&log, jobs, hook.as_ref(), observer.as_ref()) {
            Ok((readies, done)) => {
                let _ = commands.send(Command::Persisted { readies });
                for d in done {
                    let _ = d.send(());
                }
            }
            Err(e) => {
                let _ = commands.send(Command::Fatal(e));
                return;
            }
        }
        if stop {
            return;
        }
    }
}

/// What a write completed: the Readies `(group, ready number)` and the waiters to tell
/// (after the Readies are reported).
pub(crate) type Written = (Vec<(GroupId, u64)>, Vec<std::sync::mpsc::Sender<()>>);

/// Writes `jobs` (in queue order) as one raft-engine write. Used by the persist thread and,
/// in a stepped node, inline.
pub(crate) fn write_jobs(
    log: &LogStore,
    jobs: Vec<Job>,
    hook: Option<&PersistHook>,
    observer: Option<&super::Observer>,
) -> Result<Written, String> {
    let mut batch = WriteBatch::new();
    let (mut sync, mut ticket) = (false, 0);
    let mut readies = Vec::new();
    let mut done = Vec::new();
    for job in jobs {
        batch.extend(job.batch);
        sync |= job.sync;
        ticket = ticket.max(job.ticket);
        readies.extend(job.readies);
        done.extend(job.done);
    }
    if let Some(hook) = hook {
        (hook.0)().map_err(|e| format!("persisting the raft log: {e}"))?;
    }
    let started = std::time::Instant::now();
    log.write_pending(batch, sync, ticket)
        .map_err(|e| format!("persisting the raft log: {e}"))?;
    if sync && let Some(o) = observer {
        o.0.log_synced(started.elapsed());
    }
    Ok((readies, done))
}
