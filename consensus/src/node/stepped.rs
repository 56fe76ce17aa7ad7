//! [`SteppedNode`]: the same Raft loop as [`start`](super::start), driven by its caller one
//! step at a time, with the caller's clock, and with no thread of its own.
//!
//! Applying and log writes run inline (see `exec`), so a step does all of the node's work for
//! the commands queued at that moment and returns. A deterministic simulator runs many such
//! nodes in one thread, each step at a simulated instant; given the same inputs in the same
//! order, the node does the same thing. Two sources of nondeterminism stay outside: raft-rs
//! draws election timeouts from its thread's RNG (set
//! [`NodeConfig::election_timeouts`](super::NodeConfig) to replace every draw), and whatever
//! the state machine and transport do themselves.

use std::sync::Arc;
use std::time::Instant;

use super::exec::Exec;
use super::runtime::{GroupBootstrap, Runtime, open};
use super::{NodeConfig, RaftError, RaftHandle, StateMachine, Transport};
use crate::{LogStore, SnapshotProvider};

/// A Raft node that runs only inside [`SteppedNode::step`].
pub struct SteppedNode<S: StateMachine, T: Transport> {
    runtime: Runtime<S, T>,
    /// Set once a stop command or a fatal error ended the loop.
    stopped: bool,
}

/// A stepped node and the handle that reaches it.
pub type Started<S, T> = (RaftHandle<<S as StateMachine>::Output>, SteppedNode<S, T>);

/// Opens the node's groups like [`start`](super::start), but runs nothing: the caller calls
/// [`SteppedNode::step`]. `now` is the caller's clock at start (the first tick is one tick
/// later).
#[allow(clippy::too_many_arguments)]
pub fn start_stepped<S: StateMachine, T: Transport>(
    config: NodeConfig,
    log: LogStore,
    groups: Vec<GroupBootstrap>,
    sm: S,
    make_transport: impl FnOnce(RaftHandle<S::Output>) -> T,
    provider: Option<Arc<dyn SnapshotProvider>>,
    logger: slog::Logger,
    now: Instant,
) -> Result<Started<S, T>, RaftError> {
    let opened = open(&config, &log, groups, &sm, provider, &logger)?;
    let handle = opened.handle.clone();
    let exec = Exec::Inline {
        sm: Box::new(sm),
        log: log.clone(),
        shared: opened.shared.clone(),
        hook: config.persist_hook.clone(),
        reports: Default::default(),
    };
    let transport = make_transport(handle.clone());
    let runtime = Runtime::new(config, log, opened, exec, transport, logger, now);
    Ok((
        handle,
        SteppedNode {
            runtime,
            stopped: false,
        },
    ))
}

impl<S: StateMachine, T: Transport> SteppedNode<S, T> {
    /// Handles the commands queued now (up to the configured batch) and the reports of the
    /// previous step's inline work, then ticks if a tick is due at `now`, issues reads and
    /// runs one Ready pass (writing and applying inline). Returns false once the node has
    /// stopped (after [`RaftHandle::stop`] or a fatal error, which is returned as `Err`).
    pub fn step(&mut self, now: Instant) -> Result<bool, String> {
        if self.stopped {
            return Ok(false);
        }
        if !self.runtime.take_commands(None) {
            self.stop();
            return Ok(false);
        }
        if let Err(e) = self.runtime.turn(now) {
            self.stop();
            return Err(e);
        }
        Ok(true)
    }

    /// Stops the node: every waiting request fails with [`RaftError::Stopped`].
    pub fn stop(&mut self) {
        if !self.stopped {
            self.stopped = true;
            self.runtime.shut_down();
        }
    }
}

impl<S: StateMachine, T: Transport> Drop for SteppedNode<S, T> {
    fn drop(&mut self) {
        self.stop();
    }
}
