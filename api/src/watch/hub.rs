//! The watch hub: one task per node that reads each newly applied revision range once from the
//! store and fans its events out to the watchers of every stream (etcd's `watchableStore`).
//!
//! Watchers are either *synced* (they have seen everything up to the hub's revision and get new
//! revisions as they are applied, one response per revision) or *unsynced* (historical watches,
//! and watchers whose stream fell behind). Each stream has a bounded queue (messages and bytes);
//! when a synced watcher's next response does not fit, the watcher moves to the unsynced group
//! with the first revision it missed, and catches up from the store in bounded batches as its
//! stream drains, rejoining the synced group when it reaches the hub's revision. So the hub
//! never waits for a client, apply never waits for the hub (it only publishes a revision), and
//! memory per stream is bounded; every watcher still sees every revision once, in order.
//!
//! Invariant: a watcher's `next_rev` is the first revision it has not been sent. Unsynced
//! watchers are served from the store up to `rev` (the hub's revision), synced ones from the
//! fan-out past it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use mango_proto::mvccpb::event::EventType;
use mango_proto::mvccpb::{Event, KeyValue};
use mango_store::backend::redb::RedbSnapshot;
use mango_store::{EventBatch, ReadView, StoreError};
use prost::Message;
use tokio::sync::{Notify, mpsc, watch};

use super::handle::{Command, Delivery, HubConfig, StreamId, ViewSource, WatchSpec, WatcherKey};
use crate::node::NodeError;

/// A stream as the hub sees it.
struct StreamState {
    /// Its queue.
    tx: mpsc::Sender<(Delivery, usize)>,
    /// Bytes in its queue.
    bytes: Arc<AtomicUsize>,
    /// Its watchers.
    watchers: HashSet<WatcherKey>,
    /// A progress request waits for room in the queue.
    progress_wanted: bool,
}

/// A watcher as the hub sees it.
struct Watcher {
    /// Its stream.
    stream: StreamId,
    /// What it asked for.
    spec: WatchSpec,
    /// The first revision not yet sent to it.
    next_rev: i64,
    /// In the synced group.
    synced: bool,
    /// No event was sent since the last progress tick.
    progress_due: bool,
}

impl Watcher {
    fn wants(&self, e: &Event) -> bool {
        let put = e.r#type == EventType::Put as i32;
        !(put && self.spec.no_put || !put && self.spec.no_delete)
            && e.kv
                .as_ref()
                .is_some_and(|kv| self.spec.range.contains(&kv.key))
    }
}

/// Why a delivery was not queued.
enum Refused {
    /// The queue is full: try again later.
    Full,
    /// The stream is gone.
    Closed,
}

/// The hub's state, owned by its task.
pub(super) struct HubTask {
    /// Where it reads.
    view: ViewSource,
    /// Its configuration.
    config: HubConfig,
    /// Every revision up to this one has been fanned out to synced watchers.
    rev: i64,
    /// Open streams.
    streams: HashMap<StreamId, StreamState>,
    /// Every watcher.
    watchers: HashMap<WatcherKey, Watcher>,
    /// Synced single-key watchers by key.
    by_key: HashMap<Vec<u8>, HashSet<WatcherKey>>,
    /// Synced range watchers.
    ranges: HashSet<WatcherKey>,
    /// Unsynced watchers.
    unsynced: HashSet<WatcherKey>,
}

/// The bytes a delivery is counted as: its events, plus a little for the envelope.
fn cost(events: &[Event]) -> usize {
    16 + events.iter().map(Message::encoded_len).sum::<usize>()
}

impl HubTask {
    /// A hub at the revision `view` is at now, with no streams.
    pub(super) fn new(view: ViewSource, config: HubConfig) -> Self {
        Self {
            rev: view().map(|v| v.revision()).unwrap_or(1),
            view,
            config,
            streams: HashMap::new(),
            watchers: HashMap::new(),
            by_key: HashMap::new(),
            ranges: HashSet::new(),
            unsynced: HashSet::new(),
        }
    }

    pub(super) async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut revisions: watch::Receiver<i64>,
        kick: Arc<Notify>,
    ) {
        let mut sync_tick = tokio::time::interval(self.config.sync_interval);
        sync_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let interval = self.config.progress_interval.max(Duration::from_millis(1));
        let mut progress_tick =
            tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        progress_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut node_gone = false;
        let mut busy = false;
        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    Some(c) => self.command(c),
                    None => return,
                },
                changed = revisions.changed(), if !node_gone => node_gone = changed.is_err(),
                _ = kick.notified() => {}
                _ = sync_tick.tick() => {}
                _ = progress_tick.tick() => self.progress_notify(),
                // More catching up to do: go round again after letting others run.
                _ = tokio::task::yield_now(), if busy => {}
            }
            if let Err(e) = self.fan_out() {
                tracing::warn!(error = %e, "watch hub could not read new revisions");
            }
            busy = match self.catch_up() {
                Ok(more) => more,
                Err(e) => {
                    tracing::warn!(error = %e, "watch hub could not catch watchers up");
                    false
                }
            };
            self.serve_progress_requests();
        }
    }

    fn view(&self) -> Result<Arc<ReadView<RedbSnapshot>>, NodeError> {
        (self.view)()
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Open { stream, tx, bytes } => {
                self.streams.insert(
                    stream,
                    StreamState {
                        tx,
                        bytes,
                        watchers: HashSet::new(),
                        progress_wanted: false,
                    },
                );
            }
            Command::Register {
                stream,
                key,
                spec,
                reply,
            } => {
                let _ = reply.send(self.register(stream, key, spec));
            }
            Command::Unregister { key } => self.remove(key),
            Command::Progress { stream } => {
                if let Some(s) = self.streams.get_mut(&stream) {
                    s.progress_wanted = true;
                }
            }
            Command::Close { stream } => self.close(stream),
            Command::Stats { reply } => {
                let unsynced = self.unsynced.len();
                let _ = reply.send((self.watchers.len() - unsynced, unsynced));
            }
        }
    }

    /// etcd's placement of a new watcher: from the next revision (start 0) or a future one,
    /// synced with a minimum revision; from a past one, unsynced.
    fn register(
        &mut self,
        stream: StreamId,
        key: WatcherKey,
        spec: WatchSpec,
    ) -> Result<i64, NodeError> {
        let current = self.view()?.revision();
        let Some(s) = self.streams.get_mut(&stream) else {
            return Err(NodeError::Stopped);
        };
        s.watchers.insert(key);
        let start = spec.start_revision;
        let synced = start == 0 || start > current;
        let watcher = Watcher {
            stream,
            next_rev: if synced {
                start.max(current + 1)
            } else {
                start
            },
            spec,
            synced: false,
            progress_due: true,
        };
        self.watchers.insert(key, watcher);
        if synced {
            self.join_synced(key);
        } else {
            self.unsynced.insert(key);
        }
        Ok(current)
    }

    fn join_synced(&mut self, key: WatcherKey) {
        let Some(w) = self.watchers.get_mut(&key) else {
            return;
        };
        w.synced = true;
        self.unsynced.remove(&key);
        if w.spec.range.is_single() {
            self.by_key
                .entry(w.spec.range.key.clone())
                .or_default()
                .insert(key);
        } else {
            self.ranges.insert(key);
        }
    }

    fn leave_synced(&mut self, key: WatcherKey) {
        let Some(w) = self.watchers.get_mut(&key) else {
            return;
        };
        if !w.synced {
            return;
        }
        w.synced = false;
        if w.spec.range.is_single() {
            if let Some(set) = self.by_key.get_mut(&w.spec.range.key) {
                set.remove(&key);
                if set.is_empty() {
                    self.by_key.remove(&w.spec.range.key);
                }
            }
        } else {
            self.ranges.remove(&key);
        }
    }

    fn remove(&mut self, key: WatcherKey) {
        self.leave_synced(key);
        self.unsynced.remove(&key);
        if let Some(w) = self.watchers.remove(&key)
            && let Some(s) = self.streams.get_mut(&w.stream)
        {
            s.watchers.remove(&key);
        }
    }

    fn close(&mut self, stream: StreamId) {
        if let Some(s) = self.streams.remove(&stream) {
            for key in s.watchers {
                self.leave_synced(key);
                self.unsynced.remove(&key);
                self.watchers.remove(&key);
            }
        }
    }

    /// Queues `delivery` on `stream` if it fits the queue's bounds.
    fn push(&self, stream: StreamId, delivery: Delivery, n: usize) -> Result<(), Refused> {
        let Some(s) = self.streams.get(&stream) else {
            return Err(Refused::Closed);
        };
        let queued = s.bytes.load(Ordering::Acquire);
        if queued > 0 && queued.saturating_add(n) > self.config.queue_bytes {
            return Err(Refused::Full);
        }
        s.bytes.fetch_add(n, Ordering::AcqRel);
        match s.tx.try_send((delivery, n)) {
            Ok(()) => Ok(()),
            Err(e) => {
                s.bytes.fetch_sub(n, Ordering::AcqRel);
                match e {
                    mpsc::error::TrySendError::Full(_) => Err(Refused::Full),
                    mpsc::error::TrySendError::Closed(_) => Err(Refused::Closed),
                }
            }
        }
    }

    /// Whether `stream`'s queue has room for a catch-up batch.
    fn has_room(&self, stream: StreamId) -> bool {
        self.streams.get(&stream).is_some_and(|s| {
            s.tx.capacity() > 0 && s.bytes.load(Ordering::Acquire) <= self.config.queue_bytes / 2
        })
    }

    /// The events of `batch` (already in revision order) that watcher `w` wants from its
    /// next revision on, with previous key-values if it asked for them.
    fn pick(
        &self,
        view: &ReadView<RedbSnapshot>,
        w: &Watcher,
        events: &[Event],
        prev: &mut HashMap<usize, Option<KeyValue>>,
        offset: usize,
    ) -> Result<Vec<Event>, StoreError> {
        let mut out = Vec::new();
        for (i, e) in events.iter().enumerate() {
            let Some(kv) = &e.kv else { continue };
            if kv.mod_revision < w.next_rev || !w.wants(e) {
                continue;
            }
            let mut e = e.clone();
            if w.spec.prev_kv {
                let p = match prev.get(&(offset + i)) {
                    Some(p) => p.clone(),
                    None => {
                        let p = view.prev_kv(&kv.key, kv.mod_revision)?;
                        prev.insert(offset + i, p.clone());
                        p
                    }
                };
                e.prev_kv = p;
            }
            out.push(e);
        }
        Ok(out)
    }

    /// Reads the revisions applied since the last call and sends them to synced watchers,
    /// one response per watcher and revision.
    fn fan_out(&mut self) -> Result<(), NodeError> {
        let view = self.view()?;
        if self.ranges.is_empty() && self.by_key.is_empty() {
            // Nobody to send to: unsynced watchers read what they need themselves.
            self.rev = self.rev.max(view.revision());
            return Ok(());
        }
        while self.rev < view.revision() {
            let batch = match view.events(self.rev, view.revision(), None, self.config.batch) {
                Ok(batch) => batch,
                Err(StoreError::Compacted) => {
                    // The node jumped past compacted revisions (a snapshot was installed):
                    // synced watchers cannot be served from the log; catch-up cancels them.
                    let synced: Vec<WatcherKey> = self
                        .watchers
                        .iter()
                        .filter(|(_, w)| w.synced)
                        .map(|(k, _)| *k)
                        .collect();
                    for key in synced {
                        self.fall_behind(key, self.rev + 1);
                    }
                    self.rev = view.revision();
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            };
            self.deliver_synced(&view, &batch)?;
            self.rev = batch.through;
        }
        Ok(())
    }

    /// Moves a synced watcher to the unsynced group, `missed` being the first revision it
    /// was not sent.
    fn fall_behind(&mut self, key: WatcherKey, missed: i64) {
        self.leave_synced(key);
        if let Some(w) = self.watchers.get_mut(&key) {
            w.next_rev = w.next_rev.max(missed);
            self.unsynced.insert(key);
        }
    }

    fn deliver_synced(
        &mut self,
        view: &ReadView<RedbSnapshot>,
        batch: &EventBatch,
    ) -> Result<(), NodeError> {
        let mut prev = HashMap::new();
        let mut start = 0;
        for run in batch.events.chunk_by(|a, b| {
            a.kv.as_ref().map(|k| k.mod_revision) == b.kv.as_ref().map(|k| k.mod_revision)
        }) {
            let revision = run
                .first()
                .and_then(|e| e.kv.as_ref())
                .map_or(self.rev, |kv| kv.mod_revision);
            // The synced watchers any event of this revision may concern, in a stable order.
            let mut keys: Vec<WatcherKey> = self.ranges.iter().copied().collect();
            for e in run {
                if let Some(set) = e.kv.as_ref().and_then(|kv| self.by_key.get(&kv.key)) {
                    keys.extend(set.iter().copied());
                }
            }
            keys.sort_unstable();
            keys.dedup();
            for key in keys {
                let Some(w) = self.watchers.get(&key) else {
                    continue;
                };
                if !w.synced || revision < w.next_rev {
                    continue;
                }
                let events = self.pick(view, w, run, &mut prev, start)?;
                if events.is_empty() {
                    continue;
                }
                let stream = w.stream;
                let n = cost(&events);
                let delivery = Delivery::Events {
                    key,
                    revision,
                    events,
                };
                match self.push(stream, delivery, n) {
                    Ok(()) => {
                        if let Some(w) = self.watchers.get_mut(&key) {
                            w.next_rev = revision + 1;
                            w.progress_due = false;
                        }
                    }
                    Err(Refused::Full) => self.fall_behind(key, revision),
                    Err(Refused::Closed) => self.close(stream),
                }
            }
            start += run.len();
        }
        Ok(())
    }

    /// One round of catching unsynced watchers up: one bounded read from the lowest revision
    /// any of them (with room in its queue) needs, shared by all of them. Returns whether
    /// more rounds could make progress now.
    fn catch_up(&mut self) -> Result<bool, NodeError> {
        let ready: Vec<WatcherKey> = self
            .unsynced
            .iter()
            .copied()
            .filter(|k| {
                self.watchers
                    .get(k)
                    .is_some_and(|w| self.has_room(w.stream))
            })
            .collect();
        if ready.is_empty() {
            return Ok(false);
        }
        let view = self.view()?;
        let compacted = view.state().compact_revision;
        let mut reading = Vec::new();
        for key in ready {
            let Some(w) = self.watchers.get(&key) else {
                continue;
            };
            let stream = w.stream;
            if w.next_rev < compacted {
                let delivery = Delivery::Compacted {
                    key,
                    compact_revision: compacted,
                };
                match self.push(stream, delivery, 16) {
                    Ok(()) => self.remove(key),
                    Err(Refused::Full) => {}
                    Err(Refused::Closed) => self.close(stream),
                }
            } else if w.next_rev > self.rev {
                self.join_synced(key);
            } else {
                reading.push(key);
            }
        }
        let Some(from) = reading
            .iter()
            .filter_map(|k| self.watchers.get(k).map(|w| w.next_rev))
            .min()
        else {
            return Ok(false);
        };
        let batch = match view.events(from - 1, self.rev, None, self.config.batch) {
            Ok(batch) => batch,
            // Compacted since the check above cannot happen within one view; retry later.
            Err(StoreError::Compacted) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        let mut prev = HashMap::new();
        for key in reading {
            let Some(w) = self.watchers.get(&key) else {
                continue;
            };
            if w.next_rev > batch.through {
                continue;
            }
            let events = self.pick(&view, w, &batch.events, &mut prev, 0)?;
            let stream = w.stream;
            let sent = if events.is_empty() {
                true
            } else {
                let n = cost(&events);
                let delivery = Delivery::Events {
                    key,
                    revision: batch.through,
                    events,
                };
                match self.push(stream, delivery, n) {
                    Ok(()) => true,
                    Err(Refused::Full) => false,
                    Err(Refused::Closed) => {
                        self.close(stream);
                        false
                    }
                }
            };
            if sent && let Some(w) = self.watchers.get_mut(&key) {
                w.next_rev = batch.through + 1;
                if w.next_rev > self.rev {
                    self.join_synced(key);
                }
            }
        }
        Ok(!self.unsynced.is_empty())
    }

    /// Every progress interval: an empty response to each synced watcher that asked for
    /// progress notifications and was sent no event since the last one.
    fn progress_notify(&mut self) {
        let due: Vec<(WatcherKey, StreamId)> = self
            .watchers
            .iter_mut()
            .filter(|(_, w)| w.spec.progress_notify)
            .filter_map(|(k, w)| {
                let send = w.synced && w.progress_due;
                w.progress_due = true;
                send.then_some((*k, w.stream))
            })
            .collect();
        for (key, stream) in due {
            let delivery = Delivery::Progress {
                key: Some(key),
                revision: self.rev,
            };
            // A full queue means the watcher is about to fall behind: no progress to report.
            let _ = self.push(stream, delivery, 16);
        }
    }

    /// Answers streams' progress requests with the revision every watcher of the stream has
    /// been sent everything up to.
    fn serve_progress_requests(&mut self) {
        let wanted: Vec<StreamId> = self
            .streams
            .iter()
            .filter(|(_, s)| s.progress_wanted)
            .map(|(id, _)| *id)
            .collect();
        for stream in wanted {
            let Some(s) = self.streams.get(&stream) else {
                continue;
            };
            let revision = s
                .watchers
                .iter()
                .filter_map(|k| self.watchers.get(k))
                .filter(|w| !w.synced)
                .map(|w| w.next_rev - 1)
                .fold(self.rev, i64::min);
            let delivery = Delivery::Progress {
                key: None,
                revision,
            };
            match self.push(stream, delivery, 16) {
                Ok(()) => {
                    if let Some(s) = self.streams.get_mut(&stream) {
                        s.progress_wanted = false;
                    }
                }
                Err(Refused::Full) => {}
                Err(Refused::Closed) => self.close(stream),
            }
        }
    }
}
