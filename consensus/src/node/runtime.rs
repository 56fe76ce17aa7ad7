//! The Raft loop: one thread drives every group of the node (see the module doc of `node`).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Instant;

use arc_swap::ArcSwap;
use protobuf::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeV2, Entry, EntryType, Message, MessageType};
use raft::{Config, RawNode, ReadOnlyOption, SnapshotStatus, StateRole};
use tokio::sync::watch;

use super::apply::{ApplyWork, Reply, apply_loop};
use super::exec::Exec;
use super::handle::{Command, GroupStatus, PeerProgress, RaftHandle, Shared, SharedGroup};
use super::persist::{Job, persist_loop};
use super::recover::commit_up_to_applied;
use super::repair::repair_batched_appends;
use super::{GroupId, NodeConfig, RaftError, StateMachine, Transport};
use crate::{GroupStorage, LogStore, SnapshotProvider, WriteBatch};

/// A group to run, and how to bootstrap it on first start.
#[derive(Clone, Debug)]
pub struct GroupBootstrap {
    /// The group id.
    pub group: GroupId,
    /// The voters of a new cluster. Empty when the group already has state, or when this node
    /// joins an existing cluster (the leader then sends it the log or a snapshot).
    pub initial_voters: Vec<u64>,
}

/// How long a ReadIndex may go unanswered before it is issued again.
const READ_RETRY: std::time::Duration = std::time::Duration::from_millis(300);

/// One group inside the loop.
struct Group<O> {
    raw: RawNode<GroupStorage>,
    /// Proposals of this node waiting for their entry to apply, by sequence number (ordered,
    /// so failing them all answers in one order: a simulation replays the same).
    waiters: BTreeMap<u64, Reply<O>>,
    /// Reads that arrived since the last ReadIndex was issued.
    reads_pending: Vec<Reply<u64>>,
    /// Reads waiting for the ReadIndex with this sequence number, and when it was issued.
    /// raft-rs drops a ReadIndex silently (e.g. at a leader that has not yet committed in its
    /// term), so batches that wait too long are issued again.
    reads_inflight: BTreeMap<u64, (Instant, Vec<Reply<u64>>)>,
    /// The leader as of the last Ready (reads fail when it changes).
    leader: u64,
    /// Persisted messages of Readies whose changes are still being written, by Ready number.
    held: VecDeque<(u64, Vec<Message>)>,
    /// Ticks of this group so far.
    ticks: u64,
    /// While leading: the tick at which each member was last seen active (raft-rs clears its
    /// own flags every election timeout, so they alone would blink).
    last_active: BTreeMap<u64, u64>,
}

pub(crate) struct Runtime<S: StateMachine, T> {
    config: NodeConfig,
    log: LogStore,
    groups: BTreeMap<GroupId, Group<S::Output>>,
    /// Where applying and log writes run: their own threads, or inline.
    pub(crate) exec: Exec<S>,
    /// When the groups tick next.
    next_tick: Instant,
    /// The ticket entries staged now are written under; grows with every job.
    ticket: u64,
    /// Jobs queued for the persist thread and not yet reported written.
    inflight: usize,
    transport: T,
    shared: Arc<Shared>,
    pub(crate) rx: Receiver<Command<S::Output>>,
    /// Sequence numbers for proposals and read contexts.
    next_seq: u64,
    /// Why the loop stops, when a fatal report (failed apply or log write) stops it.
    fatal: Option<String>,
    logger: slog::Logger,
}

/// The Raft loop's thread: it ends with `None` when stopped as asked, with the reason after a
/// fatal error.
pub type RaftThread = JoinHandle<Option<String>>;

/// Starts the Raft loop on its own thread, with the transport `make_transport` builds from the
/// node's handle. Returns the handle and the thread, which ends when the loop stops: with
/// `None` after [`RaftHandle::stop`], with the reason after a fatal error (a failed log
/// write, a failed apply). A server MUST treat the latter as the end of the process.
pub fn start<S: StateMachine, T: Transport>(
    config: NodeConfig,
    log: LogStore,
    groups: Vec<GroupBootstrap>,
    sm: S,
    make_transport: impl FnOnce(RaftHandle<S::Output>) -> T,
    provider: Option<Arc<dyn SnapshotProvider>>,
    logger: slog::Logger,
) -> Result<(RaftHandle<S::Output>, RaftThread), RaftError> {
    let opened = open(&config, &log, groups, &sm, provider, &logger)?;
    let handle = opened.handle.clone();
    let (apply_tx, apply_rx) = mpsc::channel();
    let apply_thread = {
        let (shared, commands) = (opened.shared.clone(), handle.tx.clone());
        std::thread::Builder::new()
            .name("apply".into())
            .spawn(move || apply_loop(sm, apply_rx, shared, commands))
            .map_err(|e| RaftError::Raft(format!("spawning the apply thread: {e}")))?
    };
    let (persist_tx, persist_rx) = mpsc::channel();
    let persist_thread = {
        let (log, commands, hook) = (log.clone(), handle.tx.clone(), config.persist_hook.clone());
        let observer = config.observer.clone();
        std::thread::Builder::new()
            .name("raft-persist".into())
            .spawn(move || persist_loop(log, persist_rx, commands, hook, observer))
            .map_err(|e| RaftError::Raft(format!("spawning the persist thread: {e}")))?
    };
    let exec = Exec::<S>::Threads {
        apply_tx,
        apply_thread: Some(apply_thread),
        persist_tx,
        persist_thread: Some(persist_thread),
    };
    let transport = make_transport(handle.clone());
    let runtime = Runtime::new(config, log, opened, exec, transport, logger, Instant::now());
    let thread = std::thread::Builder::new()
        .name("raft".into())
        .spawn(move || runtime.run())
        .map_err(|e| RaftError::Raft(format!("spawning the raft thread: {e}")))?;
    Ok((handle, thread))
}

/// The groups of a node, opened from its log, with the handle that reaches them.
pub(crate) struct Opened<O> {
    groups: BTreeMap<GroupId, Group<O>>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) handle: RaftHandle<O>,
    rx: Receiver<Command<O>>,
    /// Where this run's sequence numbers start (see [`LogStore::next_boot`]).
    first_seq: u64,
}

/// Opens every group from the log (bootstrapping new ones) and makes the command queue.
pub(crate) fn open<S: StateMachine>(
    config: &NodeConfig,
    log: &LogStore,
    groups: Vec<GroupBootstrap>,
    sm: &S,
    provider: Option<Arc<dyn SnapshotProvider>>,
    logger: &slog::Logger,
) -> Result<Opened<S::Output>, RaftError> {
    let err = |e: crate::LogStoreError| RaftError::Raft(e.to_string());
    // Sequence numbers of proposals and reads carry the run in their top 24 bits, so an
    // entry proposed before a restart (still in flight, or replayed from the log) never
    // answers a waiter of this run that happens to have the same number.
    let boot = match groups.iter().map(|g| g.group).min() {
        Some(group) => log.next_boot(group).map_err(err)?,
        None => 0,
    };
    let first_seq = (boot & 0xff_ffff) << 40;
    let mut shared_groups = HashMap::new();
    let mut running = BTreeMap::new();
    for boot in groups {
        let fresh = log.hard_state(boot.group).map_err(err)?.get_term() == 0
            && log
                .conf_state(boot.group)
                .map_err(err)?
                .get_voters()
                .is_empty();
        if fresh && !boot.initial_voters.is_empty() {
            // Every initial voter starts from the same snapshot at index 1 holding the initial
            // configuration (raft-rs's bootstrap), so the log starts at 2 and a member that
            // joins later always gets a state-machine snapshot (with the member registry and
            // anything else bootstrapped outside the log) rather than entries from 1.
            let mut batch = WriteBatch::new();
            let mut meta = raft::eraftpb::SnapshotMetadata::default();
            meta.set_index(1);
            meta.set_term(1);
            meta.mut_conf_state()
                .set_voters(boot.initial_voters.clone());
            batch.apply_snapshot(boot.group, meta);
            log.write(batch, true).map_err(err)?;
        }
        let applied = commit_up_to_applied(log, boot.group, sm.applied_index(boot.group))?;
        let mut storage = log.group_storage(boot.group);
        if let Some(p) = &provider {
            storage = storage.with_snapshot_provider(p.clone());
        }
        let raft_config = Config {
            id: config.id,
            election_tick: config.election_ticks,
            heartbeat_tick: config.heartbeat_ticks,
            applied,
            max_size_per_msg: config.max_size_per_msg,
            max_inflight_msgs: config.max_inflight_msgs,
            check_quorum: true,
            pre_vote: true,
            read_only_option: ReadOnlyOption::Safe,
            // Merge appends to a follower that are still queued into one message.
            batch_append: true,
            ..Default::default()
        };
        let raw = RawNode::new(&raft_config, storage, logger)
            .map_err(|e| RaftError::Raft(format!("starting group {}: {e}", boot.group)))?;
        log.note_raft_applied(boot.group, raw.raft.raft_log.applied);
        let (applied, _) = watch::channel(raw.raft.raft_log.applied);
        shared_groups.insert(
            boot.group,
            SharedGroup {
                status: ArcSwap::from_pointee(GroupStatus::default()),
                applied,
            },
        );
        running.insert(
            boot.group,
            Group {
                raw,
                waiters: BTreeMap::new(),
                reads_pending: Vec::new(),
                reads_inflight: BTreeMap::new(),
                leader: 0,
                held: VecDeque::new(),
                ticks: 0,
                last_active: BTreeMap::new(),
            },
        );
    }
    let shared = Arc::new(Shared {
        id: config.id,
        groups: shared_groups,
    });
    let (tx, rx) = mpsc::channel();
    let handle = RaftHandle {
        tx,
        shared: shared.clone(),
    };
    Ok(Opened {
        groups: running,
        shared,
        handle,
        rx,
        first_seq,
    })
}

/// The proposal context: this node's id, then a sequence number.
fn context(node: u64, seq: u64) -> Vec<u8> {
    let mut c = Vec::with_capacity(16);
    c.extend_from_slice(&node.to_be_bytes());
    c.extend_from_slice(&seq.to_be_bytes());
    c
}

/// The sequence number of an entry this node proposed.
fn own_seq(node: u64, context: &[u8]) -> Option<u64> {
    if context.len() != 16 || context[..8] != node.to_be_bytes() {
        return None;
    }
    Some(u64::from_be_bytes(context[8..].try_into().ok()?))
}

impl<S: StateMachine, T: Transport> Runtime<S, T> {
    pub(crate) fn new(
        config: NodeConfig,
        log: LogStore,
        opened: Opened<S::Output>,
        exec: Exec<S>,
        transport: T,
        logger: slog::Logger,
        now: Instant,
    ) -> Self {
        let runtime = Self {
            next_tick: now + config.tick,
            config,
            log,
            groups: opened.groups,
            exec,
            ticket: 1,
            inflight: 0,
            transport,
            shared: opened.shared,
            rx: opened.rx,
            next_seq: opened.first_seq,
            fatal: None,
            logger,
        };
        runtime.publish_status();
        runtime
    }

    /// The threaded loop: wait for a command or the next tick, take what is queued, turn.
    /// Returns why it stopped when that was not asked for.
    fn run(mut self) -> Option<String> {
        let fatal = loop {
            let wait = self.next_tick.saturating_duration_since(Instant::now());
            let first = match self.rx.recv_timeout(wait) {
                Ok(cmd) => Some(cmd),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break None,
            };
            if !self.take_commands(first) {
                break self.fatal.take();
            }
            if let Err(e) = self.turn(Instant::now()) {
                slog::crit!(self.logger, "raft loop stopping on a fatal error"; "error" => %e);
                break Some(e);
            }
        };
        self.shut_down();
        fatal
    }

    /// Handles `first` and up to a batch of queued commands (inline work's reports first).
    /// False when the loop must stop.
    pub(crate) fn take_commands(&mut self, first: Option<Command<S::Output>>) -> bool {
        let mut next = first;
        for _ in 0..=self.config.max_batch {
            let cmd = match next.take() {
                Some(cmd) => cmd,
                None => match self.exec.next_report() {
                    Some(cmd) => cmd,
                    None => match self.rx.try_recv() {
                        Ok(cmd) => cmd,
                        Err(_) => break,
                    },
                },
            };
            match cmd {
                Command::Stop => return false,
                Command::Fatal(e) => {
                    slog::crit!(self.logger, "raft loop stopping on a fatal error"; "error" => %e);
                    self.fatal = Some(e);
                    return false;
                }
                cmd => self.handle(cmd),
            }
        }
        true
    }

    /// One turn after taking commands: tick if due, issue reads, one Ready pass, publish the
    /// status. An `Err` is fatal.
    pub(crate) fn turn(&mut self, now: Instant) -> Result<(), String> {
        if now >= self.next_tick {
            self.next_tick = now + self.config.tick;
            let timeouts = self.config.election_timeouts.clone();
            for g in self.groups.values_mut() {
                if let Some(t) = &timeouts {
                    redraw_election_timeout(&mut g.raw, t);
                }
                g.ticks += 1;
                if g.raw.raft.state == StateRole::Leader {
                    let ticks = g.ticks;
                    for (id, pr) in g.raw.raft.prs().iter() {
                        if pr.recent_active {
                            g.last_active.insert(*id, ticks);
                        }
                    }
                } else if !g.last_active.is_empty() {
                    g.last_active.clear();
                }
                g.raw.tick();
                g.waiters.retain(|_, w| !w.is_closed());
            }
        }
        self.issue_reads(now);
        self.ready_pass()?;
        self.publish_status();
        Ok(())
    }

    /// Fails every waiting request and stops the worker threads (after they finish what is
    /// queued).
    pub(crate) fn shut_down(&mut self) {
        self.fail_all(RaftError::Stopped);
        self.exec.stop();
    }

    fn fail_all(&mut self, err: RaftError) {
        for g in self.groups.values_mut() {
            for (_, w) in std::mem::take(&mut g.waiters) {
                let _ = w.send(Err(err.clone()));
            }
            for w in g.reads_pending.drain(..) {
                let _ = w.send(Err(err.clone()));
            }
            for (_, (_, ws)) in std::mem::take(&mut g.reads_inflight) {
                for w in ws {
                    let _ = w.send(Err(err.clone()));
                }
            }
        }
    }

    fn seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    /// Proposes through `propose` (an entry or a configuration change) with this node's
    /// context, and parks `reply` until the entry applies.
    fn propose(
        &mut self,
        group: GroupId,
        reply: Reply<S::Output>,
        propose: impl FnOnce(&mut RawNode<GroupStorage>, Vec<u8>) -> raft::Result<()>,
    ) {
        let node = self.config.id;
        let seq = self.seq();
        let Some(g) = self.groups.get_mut(&group) else {
            let _ = reply.send(Err(RaftError::UnknownGroup(group)));
            return;
        };
        if g.raw.raft.leader_id == 0 {
            let _ = reply.send(Err(RaftError::NoLeader));
            return;
        }
        match propose(&mut g.raw, context(node, seq)) {
            Ok(()) => {
                g.waiters.insert(seq, reply);
            }
            Err(raft::Error::ProposalDropped) => {
                let _ = reply.send(Err(RaftError::Dropped));
            }
            Err(e) => {
                let _ = reply.send(Err(RaftError::Raft(e.to_string())));
            }
        }
    }

    fn handle(&mut self, cmd: Command<S::Output>) {
        match cmd {
            Command::Propose { group, data, reply } => {
                self.propose(group, reply, |raw, ctx| raw.propose(ctx, data));
            }
            Command::ConfChange {
                group,
                change,
                reply,
            } => {
                self.propose(group, reply, |raw, ctx| {
                    raw.propose_conf_change(ctx, change)
                });
            }
            Command::ReadIndex { group, reply } => match self.groups.get_mut(&group) {
                None => {
                    let _ = reply.send(Err(RaftError::UnknownGroup(group)));
                }
                Some(g) if g.raw.raft.leader_id == 0 => {
                    let _ = reply.send(Err(RaftError::NoLeader));
                }
                Some(g) => g.reads_pending.push(reply),
            },
            Command::Step { group, message } => {
                if let Some(g) = self.groups.get_mut(&group) {
                    if let Some(why) = would_abort(&g.raw.raft, &message) {
                        slog::warn!(self.logger, "dropped a peer message raft-rs would abort on";
                            "group" => group, "from" => message.get_from(), "why" => why);
                    } else if let Err(e) = g.raw.step(*message) {
                        slog::debug!(self.logger, "step failed"; "group" => group, "error" => %e);
                    }
                }
            }
            Command::TransferLeader { group, to } => {
                if let Some(g) = self.groups.get_mut(&group) {
                    g.raw.transfer_leader(to);
                }
            }
            Command::Unreachable { group, to } => {
                if let Some(g) = self.groups.get_mut(&group) {
                    g.raw.report_unreachable(to);
                }
            }
            Command::SnapshotDone { group, to, ok } => {
                if let Some(g) = self.groups.get_mut(&group) {
                    let status = if ok {
                        SnapshotStatus::Finish
                    } else {
                        SnapshotStatus::Failure
                    };
                    g.raw.report_snapshot(to, status);
                }
            }
            Command::Applied { group, index } => {
                if let Some(g) = self.groups.get_mut(&group)
                    && index > g.raw.raft.raft_log.applied
                {
                    g.raw.advance_apply_to(index);
                    self.log.note_raft_applied(group, index);
                }
            }
            Command::Persisted { readies } => {
                self.inflight = self.inflight.saturating_sub(1);
                for (group, number) in readies {
                    self.persisted(group, number);
                }
            }
            Command::Fatal(_) | Command::Stop => {}
        }
    }

    /// Every Ready of `group` up to `number` is durable: tell Raft, and send the messages
    /// that waited for it.
    fn persisted(&mut self, group: GroupId, number: u64) {
        let Some(g) = self.groups.get_mut(&group) else {
            return;
        };
        g.raw.on_persist_ready(number);
        while g.held.front().is_some_and(|(n, _)| *n <= number) {
            if let Some((_, msgs)) = g.held.pop_front() {
                self.transport.send(group, msgs);
            }
        }
    }

    /// Queues `batch` (entries staged under the current ticket) for the persist thread;
    /// with `wait`, returns once it (and so everything queued before) is written.
    fn submit(
        &mut self,
        batch: WriteBatch,
        sync: bool,
        readies: Vec<(GroupId, u64)>,
        wait: bool,
    ) -> Result<(), String> {
        let (done, written) = if wait {
            let (tx, rx) = mpsc::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let job = Job {
            batch,
            sync,
            ticket: self.ticket,
            readies,
            done,
        };
        self.ticket += 1;
        self.inflight += 1;
        self.exec.persist(job)?;
        if let Some(written) = written {
            written
                .recv()
                .map_err(|_| "the persist thread stopped".to_string())?;
        }
        Ok(())
    }

    /// One ReadIndex per group for every read that arrived since the last one; batches that
    /// got no answer within `READ_RETRY` are issued again (their callers gave up if closed).
    fn issue_reads(&mut self, now: Instant) {
        let node = self.config.id;
        let ids: Vec<GroupId> = self.groups.keys().copied().collect();
        for id in ids {
            let Some(g) = self.groups.get_mut(&id) else {
                continue;
            };
            let stale: Vec<u64> = g
                .reads_inflight
                .iter()
                .filter(|(_, (at, _))| now.duration_since(*at) >= READ_RETRY)
                .map(|(seq, _)| *seq)
                .collect();
            for seq in stale {
                if let Some((_, mut waiting)) = g.reads_inflight.remove(&seq) {
                    waiting.retain(|w| !w.is_closed());
                    g.reads_pending.extend(waiting);
                }
            }
            if g.reads_pending.is_empty() || g.raw.raft.leader_id == 0 {
                continue;
            }
            self.next_seq += 1;
            let seq = self.next_seq;
            // The context names this node too: the leader keeps one pending read per
            // context and drops a second with the same bytes, from whichever node.
            g.raw.read_index(context(node, seq));
            let waiting = std::mem::take(&mut g.reads_pending);
            g.reads_inflight.insert(seq, (now, waiting));
        }
    }

    fn ready_pass(&mut self) -> Result<(), String> {
        let ids: Vec<GroupId> = self
            .groups
            .iter()
            .filter(|(_, g)| g.raw.has_ready())
            .map(|(id, _)| *id)
            .collect();
        if ids.is_empty() {
            return Ok(());
        }
        let mut batch = WriteBatch::new();
        let mut sync = false;
        let mut readies = Vec::with_capacity(ids.len());
        for &id in &ids {
            let Some(g) = self.groups.get_mut(&id) else {
                continue;
            };
            let mut rd = g.raw.ready();
            if let Some(ss) = rd.ss() {
                if ss.leader_id != g.leader
                    || ss.raft_state != StateRole::Leader && g.raw.raft.leader_id == self.config.id
                {
                    for (_, (_, ws)) in std::mem::take(&mut g.reads_inflight) {
                        for w in ws {
                            let _ = w.send(Err(RaftError::LeaderChanged));
                        }
                    }
                }
                if ss.leader_id != 0
                    && ss.leader_id != g.leader
                    && let Some(o) = &self.config.observer
                {
                    o.0.leader_changed(id, ss.leader_id);
                }
                g.leader = ss.leader_id;
            }
            // A leader's messages go out before its own write (Raft thesis 10.2.1).
            let mut msgs = rd.take_messages();
            repair_batched_appends(&g.raw.raft.raft_log, &mut msgs);
            self.transport.send(id, msgs);
            for rs in rd.take_read_states() {
                let Some(seq) = own_seq(self.config.id, &rs.request_ctx) else {
                    continue;
                };
                if let Some((_, ws)) = g.reads_inflight.remove(&seq) {
                    for w in ws {
                        let _ = w.send(Ok(rs.index));
                    }
                }
            }
            if !rd.snapshot().is_empty() {
                // Queue what this pass collected so far, then install synchronously.
                let collected = std::mem::take(&mut batch);
                let sync_so_far = std::mem::replace(&mut sync, false);
                self.submit(collected, sync_so_far, std::mem::take(&mut readies), true)?;
                self.install_snapshot(id, rd)?;
                continue;
            }
            // Committed entries are at most the persisted index: applying never runs ahead
            // of the local log.
            let committed = rd.take_committed_entries();
            apply_entries(self.config.id, id, g, &mut self.exec, &self.log, committed)?;
            let entries = rd.take_entries();
            // Readable by Raft before `advance_append_async` forgets them.
            self.log.stage_pending(id, &entries, self.ticket);
            batch.append(id, entries);
            if let Some(hs) = rd.hs() {
                batch.set_hard_state(id, hs.clone());
            }
            sync |= rd.must_sync();
            let number = rd.number();
            let msgs = rd.take_persisted_messages();
            if !msgs.is_empty() {
                g.held.push_back((number, msgs));
            }
            g.raw.advance_append_async(rd);
            readies.push((id, number));
        }
        if readies.is_empty() {
            return Ok(());
        }
        if batch.is_empty() && self.inflight == 0 {
            // Nothing to write and nothing being written: these Readies are durable already.
            for (id, number) in readies {
                self.persisted(id, number);
            }
            return Ok(());
        }
        // The report is handled at the top of the next iteration (it is queued by then).
        self.submit(batch, sync, readies, self.config.wait_for_persist)
    }

    /// Installs the snapshot of `rd` (every earlier write has landed): the state machine
    /// first (a crash in between leaves the store ahead of the log, never behind its first
    /// index), in order after every entry handed to it before, then the log.
    fn install_snapshot(&mut self, id: GroupId, mut rd: raft::Ready) -> Result<(), String> {
        let snapshot_index = rd.snapshot().get_metadata().get_index();
        let (done, result) = mpsc::channel();
        let work = ApplyWork::Restore {
            group: id,
            snapshot: Box::new(rd.snapshot().clone()),
            done,
        };
        self.exec.apply(work)?;
        result
            .recv()
            .map_err(|_| "the apply thread stopped".to_string())??;
        let mut batch = WriteBatch::new();
        batch.apply_snapshot(id, rd.snapshot().get_metadata().clone());
        batch.append(id, rd.take_entries());
        if let Some(hs) = rd.hs() {
            batch.set_hard_state(id, hs.clone());
        }
        self.log
            .write(batch, true)
            .map_err(|e| format!("persisting the raft log: {e}"))?;
        let Some(g) = self.groups.get_mut(&id) else {
            return Ok(());
        };
        let committed = rd.take_committed_entries();
        apply_entries(self.config.id, id, g, &mut self.exec, &self.log, committed)?;
        let number = rd.number();
        let msgs = rd.take_persisted_messages();
        g.raw.advance_append_async(rd);
        self.persisted(id, number);
        // The state machine is at the snapshot now (restoring was waited for), and raft-rs
        // must know: its applied index is where it reads entries from (when it campaigns),
        // and the log now starts after the snapshot.
        if let Some(g) = self.groups.get_mut(&id)
            && snapshot_index > g.raw.raft.raft_log.applied
        {
            g.raw.advance_apply_to(snapshot_index);
            self.log.note_raft_applied(id, snapshot_index);
        }
        self.transport.send(id, msgs);
        Ok(())
    }

    fn publish_status(&self) {
        let election_ticks = u64::try_from(self.config.election_ticks).unwrap_or(u64::MAX);
        for (id, g) in &self.groups {
            let Some(shared) = self.shared.groups.get(id) else {
                continue;
            };
            let raft = &g.raw.raft;
            let cs = raft.prs().conf().to_conf_state();
            let status = GroupStatus {
                leader: raft.leader_id,
                term: raft.term,
                commit: raft.raft_log.committed,
                applied: raft.raft_log.applied,
                last_index: raft.raft_log.last_index(),
                voters: cs.get_voters().to_vec(),
                learners: cs.get_learners().to_vec(),
                progress: if raft.state == StateRole::Leader {
                    let mut p: Vec<PeerProgress> = raft
                        .prs()
                        .iter()
                        .filter(|(id, _)| **id != raft.id)
                        .map(|(id, pr)| PeerProgress {
                            id: *id,
                            matched: pr.matched,
                            recent_active: pr.recent_active
                                || g.last_active.get(id).is_some_and(|t| {
                                    g.ticks.saturating_sub(*t) <= 2 * election_ticks
                                }),
                        })
                        .collect();
                    p.sort_unstable_by_key(|p| p.id);
                    p
                } else {
                    Vec::new()
                },
                leader_contact_age: if raft.state == StateRole::Leader {
                    std::time::Duration::ZERO
                } else {
                    self.config.tick * u32::try_from(raft.election_elapsed).unwrap_or(u32::MAX)
                },
            };
            if **shared.status.load() != status {
                shared.status.store(Arc::new(status));
            }
        }
    }
}

/// Hands committed entries to the apply thread. A configuration change takes effect in Raft
/// here, at its place in the log, and its conf state is written (synced) before the state
/// machine sees the change, so a restart never finds the store ahead of the log's conf state;
/// the state machine gets it too, in order, with everything else.
fn apply_entries<S: StateMachine>(
    node: u64,
    id: GroupId,
    g: &mut Group<S::Output>,
    exec: &mut Exec<S>,
    log: &crate::LogStore,
    entries: Vec<Entry>,
) -> Result<(), String> {
    if entries.is_empty() {
        return Ok(());
    }
    let mut batch = WriteBatch::new();
    let mut waiters = Vec::new();
    for entry in &entries {
        if let Some(seq) = own_seq(node, &entry.context)
            && let Some(w) = g.waiters.remove(&seq)
        {
            waiters.push((entry.index, w));
        }
        let kind = entry.get_entry_type();
        if kind == EntryType::EntryNormal {
            continue;
        }
        let data = &entry.data;
        let result = if kind == EntryType::EntryConfChange {
            ConfChange::parse_from_bytes(data)
                .map_err(|e| e.to_string())
                .and_then(|cc| g.raw.apply_conf_change(&cc).map_err(|e| e.to_string()))
        } else {
            ConfChangeV2::parse_from_bytes(data)
                .map_err(|e| e.to_string())
                .and_then(|cc| g.raw.apply_conf_change(&cc).map_err(|e| e.to_string()))
        };
        match result {
            Ok(cs) => {
                step_down_if_removed(node, &mut g.raw, &cs);
                batch.set_conf_state(id, cs);
            }
            Err(e) => {
                return Err(format!(
                    "applying a configuration change at {}: {e}",
                    entry.index
                ));
            }
        }
    }
    if !batch.is_empty() {
        log.write(batch, true)
            .map_err(|e| format!("persisting a conf state: {e}"))?;
    }
    exec.apply(ApplyWork::Entries {
        group: id,
        entries,
        waiters,
    })
}

/// A leader that a configuration change removed (or made a learner) stops leading at once.
/// raft-rs 0.7 leaves it leading (`post_conf_change` returns early, "untested"), with its own
/// progress gone from the tracker, so the next append response it handles panics in
/// `maybe_commit` (an `unwrap` on its own progress). Stepping down in the same term keeps its
/// vote; it is no longer promotable, so it never campaigns, and the remaining voters elect a
/// leader of their own after an election timeout. Found by the simulator (seed 840 with held
/// links and membership changes).
fn step_down_if_removed(node: u64, raw: &mut RawNode<GroupStorage>, cs: &raft::eraftpb::ConfState) {
    let voter = cs.voters.contains(&node) || cs.voters_outgoing.contains(&node);
    if raw.raft.state == StateRole::Leader && !voter {
        let term = raw.raft.term;
        raw.raft.become_follower(term, raft::INVALID_ID);
    }
}

/// Sets the election timeout of a group whose election clock was just reset (raft-rs draws
/// it from its thread's RNG) from `timeouts` instead, so that a simulation derives it from its
/// seed. raft-rs only compares the timeout on a tick, so redrawing before each tick whenever
/// the clock stands at zero replaces every draw it made (and redraws after heartbeats too,
/// which is harmless: the value stays within raft's range).
fn redraw_election_timeout(raw: &mut RawNode<GroupStorage>, timeouts: &super::ElectionTimeouts) {
    if raw.raft.election_elapsed != 0 {
        return;
    }
    let min = raw.raft.election_timeout();
    // raft-rs's default range: [election_tick, 2 * election_tick).
    let drawn = (timeouts.0)(min, 2 * min);
    if (min..2 * min).contains(&drawn) {
        raw.raft.set_randomized_election_timeout(drawn);
    }
}

/// Why raft-rs would stop the process on `m` (its `fatal!`) instead of refusing it, if it
/// would: a heartbeat whose commit index is beyond this node's log, an append that rewrites a
/// committed entry. A correct leader never sends either (it sends a follower at most the
/// index that follower acknowledged); from the network they are refused, never stepped.
fn would_abort<T: raft::Storage>(raft: &raft::Raft<T>, m: &Message) -> Option<&'static str> {
    let log = &raft.raft_log;
    match m.get_msg_type() {
        MessageType::MsgHeartbeat if m.get_commit() > log.last_index() => {
            Some("a heartbeat commits beyond the log")
        }
        MessageType::MsgAppend => {
            let conflict = m.get_entries().iter().any(|e| {
                e.get_index() <= log.committed
                    && log.term(e.get_index()).is_ok_and(|t| t != e.get_term())
            });
            conflict.then_some("an append rewrites a committed entry")
        }
        _ => None,
    }
}
