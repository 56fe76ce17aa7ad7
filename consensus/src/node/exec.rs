//! Where the Raft loop's two kinds of slow work run: writing the log and applying entries.
//!
//! A threaded node ([`start`](super::start)) runs each on its own thread, so the Raft thread
//! never waits for the disk or the state machine. A [`SteppedNode`](super::SteppedNode) runs
//! both inline, in the caller's thread, and queues their reports (`Persisted`, `Applied`)
//! for its next step exactly as the threads would have sent them: the loop's logic, and the
//! order in which it sees the reports relative to its own Readies, is the same; only the
//! concurrency is gone, which is what a deterministic simulator needs.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;

use super::StateMachine;
use super::apply::{ApplyWork, apply_item};
use super::handle::{Command, Shared};
use super::persist::{Job, PersistHook, PersistWork, write_jobs};
use crate::LogStore;

pub(crate) enum Exec<S: StateMachine> {
    Threads {
        /// Work for the apply thread, in commit order.
        apply_tx: mpsc::Sender<ApplyWork<S::Output>>,
        /// The apply thread (joined on stop).
        apply_thread: Option<JoinHandle<()>>,
        /// Work for the persist thread, in Ready order.
        persist_tx: mpsc::Sender<PersistWork>,
        /// The persist thread (joined on stop).
        persist_thread: Option<JoinHandle<()>>,
    },
    Inline {
        sm: Box<S>,
        log: LogStore,
        shared: Arc<Shared>,
        hook: Option<PersistHook>,
        /// Reports for the loop's next step, in the order the threads would have sent them.
        reports: VecDeque<Command<S::Output>>,
    },
}

impl<S: StateMachine> Exec<S> {
    /// Queues committed entries (or a restore) for the state machine.
    pub(crate) fn apply(&mut self, work: ApplyWork<S::Output>) -> Result<(), String> {
        match self {
            Exec::Threads { apply_tx, .. } => apply_tx
                .send(work)
                .map_err(|_| "the apply thread stopped".to_string()),
            Exec::Inline {
                sm,
                shared,
                reports,
                ..
            } => {
                if let Some(cmd) = apply_item(sm.as_mut(), work, shared)? {
                    reports.push_back(cmd);
                }
                Ok(())
            }
        }
    }

    /// Queues a job for the log writer.
    pub(crate) fn persist(&mut self, job: Job) -> Result<(), String> {
        match self {
            Exec::Threads { persist_tx, .. } => persist_tx
                .send(PersistWork::Job(job))
                .map_err(|_| "the persist thread stopped".to_string()),
            Exec::Inline {
                log, hook, reports, ..
            } => {
                let (readies, done) = write_jobs(log, vec![job], hook.as_ref(), None)?;
                reports.push_back(Command::Persisted { readies });
                for d in done {
                    let _ = d.send(());
                }
                Ok(())
            }
        }
    }

    /// The next queued report of inline work (none for threads: they send theirs).
    pub(crate) fn next_report(&mut self) -> Option<Command<S::Output>> {
        match self {
            Exec::Threads { .. } => None,
            Exec::Inline { reports, .. } => reports.pop_front(),
        }
    }

    /// Stops the threads after everything queued is written and applied.
    pub(crate) fn stop(&mut self) {
        if let Exec::Threads {
            apply_tx,
            apply_thread,
            persist_tx,
            persist_thread,
        } = self
        {
            // Whatever was queued is written before the persist thread ends.
            let _ = persist_tx.send(PersistWork::Stop);
            if let Some(t) = persist_thread.take() {
                let _ = t.join();
            }
            let _ = apply_tx.send(ApplyWork::Stop);
            if let Some(t) = apply_thread.take() {
                let _ = t.join();
            }
        }
    }
}
