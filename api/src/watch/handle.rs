//! The hub's interface: its configuration, what a watcher asks for, what the hub delivers, a
//! stream's bounded queue, the requests the task takes, and the handle that sends them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use mango_proto::mvccpb::Event;
use mango_store::backend::redb::RedbSnapshot;
use mango_store::{EventLimits, KeyRange, ReadView};
use tokio::sync::{Notify, mpsc, oneshot, watch};

use super::hub::HubTask;
use crate::node::NodeError;

/// Where the hub reads: the node's latest applied view.
pub(crate) type ViewSource =
    Arc<dyn Fn() -> Result<Arc<ReadView<RedbSnapshot>>, NodeError> + Send + Sync>;

/// Identifies a stream within one hub.
pub(crate) type StreamId = u64;
/// Identifies a watcher within one hub (unlike watch ids, never reused).
pub(crate) type WatcherKey = u64;

/// How the hub works; the defaults are etcd's where etcd has one.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HubConfig {
    /// Empty progress responses to watchers that asked for them and saw no event meanwhile
    /// (etcd's 10 minutes).
    pub progress_interval: Duration,
    /// How often unsynced watchers are served even without a wake-up (etcd's 100 ms).
    pub sync_interval: Duration,
    /// Bytes of events a stream's queue may hold (one message is always allowed).
    pub queue_bytes: usize,
    /// Messages a stream's queue may hold.
    pub queue_len: usize,
    /// Bounds on one read from the store.
    pub batch: EventLimits,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            progress_interval: Duration::from_secs(600),
            sync_interval: Duration::from_millis(100),
            queue_bytes: 4 << 20,
            queue_len: 128,
            batch: EventLimits::default(),
        }
    }
}

/// What a watcher asked for.
#[derive(Clone, Debug, Default)]
pub(crate) struct WatchSpec {
    /// The keys watched.
    pub range: KeyRange,
    /// The first revision wanted; 0 (or below the head) per etcd's rules in `register`.
    pub start_revision: i64,
    /// Attach each event's previous key-value.
    pub prev_kv: bool,
    /// Drop put events.
    pub no_put: bool,
    /// Drop delete events.
    pub no_delete: bool,
    /// Send empty progress responses every progress interval without events.
    pub progress_notify: bool,
}

/// What the hub sends a stream.
#[derive(Debug)]
pub(crate) enum Delivery {
    /// Events of one watcher: every event it wants up to and including `revision`.
    Events {
        /// The watcher.
        key: WatcherKey,
        /// The revision the response covers up to (its header revision).
        revision: i64,
        /// The events, in revision order.
        events: Vec<Event>,
    },
    /// A progress response: everything up to `revision` has been sent.
    Progress {
        /// The watcher (progress notify), or `None` for the stream's progress request.
        key: Option<WatcherKey>,
        /// The revision.
        revision: i64,
    },
    /// The watcher wanted revisions that have been compacted; it is gone from the hub.
    Compacted {
        /// The watcher.
        key: WatcherKey,
        /// The compacted revision.
        compact_revision: i64,
    },
}

/// A stream's side of its queue.
pub(crate) struct Inbox {
    /// Deliveries with the bytes each was counted as.
    rx: mpsc::Receiver<(Delivery, usize)>,
    /// Bytes queued, shared with the hub.
    bytes: Arc<AtomicUsize>,
    /// Wakes the hub when the queue drains, so unsynced watchers catch up at once.
    kick: Arc<Notify>,
    /// The queue's byte budget.
    budget: usize,
}

impl Inbox {
    /// Deliveries and bytes waiting in the queue.
    #[cfg(test)]
    pub(crate) fn queued(&self) -> (usize, usize) {
        (self.rx.len(), self.bytes.load(Ordering::Acquire))
    }

    /// The next delivery; `None` once the hub dropped the stream.
    pub(crate) async fn recv(&mut self) -> Option<Delivery> {
        let (delivery, n) = self.rx.recv().await?;
        let before = self.bytes.fetch_sub(n, Ordering::AcqRel);
        let after = before.saturating_sub(n);
        if after == 0 || (before > self.budget / 2 && after <= self.budget / 2) {
            self.kick.notify_one();
        }
        Some(delivery)
    }
}

/// Requests to the hub task.
pub(crate) enum Command {
    /// A new stream and the sending side of its queue.
    Open {
        stream: StreamId,
        tx: mpsc::Sender<(Delivery, usize)>,
        bytes: Arc<AtomicUsize>,
    },
    /// A new watcher; the reply is the revision the created response reports.
    Register {
        stream: StreamId,
        key: WatcherKey,
        spec: WatchSpec,
        reply: oneshot::Sender<Result<i64, NodeError>>,
    },
    /// A watcher cancelled by its client.
    Unregister { key: WatcherKey },
    /// The stream asked for a progress response.
    Progress { stream: StreamId },
    /// The stream ended.
    Close { stream: StreamId },
    /// How many watchers are synced and unsynced (for tests and diagnostics).
    #[cfg_attr(not(test), allow(dead_code))]
    Stats {
        reply: oneshot::Sender<(usize, usize)>,
    },
}

/// A handle on a running hub; cheap to clone. The hub stops when every handle is gone.
#[derive(Clone)]
pub(crate) struct Hub {
    /// Requests to the hub task.
    commands: mpsc::UnboundedSender<Command>,
    /// Wakes the hub when a stream's queue drains.
    kick: Arc<Notify>,
    /// Numbering of streams and watchers.
    ids: Arc<AtomicU64>,
    /// The configuration the task runs with.
    config: HubConfig,
}

impl Hub {
    /// Starts a hub reading from `view`, woken by `revisions` (the applied revision).
    pub(crate) fn start(
        view: ViewSource,
        revisions: watch::Receiver<i64>,
        config: HubConfig,
    ) -> Self {
        let (commands, rx) = mpsc::unbounded_channel();
        let kick = Arc::new(Notify::new());
        let task = HubTask::new(view, config);
        tokio::spawn(task.run(rx, revisions, kick.clone()));
        Self {
            commands,
            kick,
            ids: Arc::new(AtomicU64::new(1)),
            config,
        }
    }

    /// A fresh stream or watcher key.
    pub(crate) fn next_id(&self) -> u64 {
        self.ids.fetch_add(1, Ordering::Relaxed)
    }

    /// Opens a stream: its id and the receiving side of its queue.
    pub(crate) fn open(&self) -> (StreamId, Inbox) {
        let stream = self.next_id();
        let (tx, rx) = mpsc::channel(self.config.queue_len.max(1));
        let bytes = Arc::new(AtomicUsize::new(0));
        self.send(Command::Open {
            stream,
            tx,
            bytes: bytes.clone(),
        });
        let inbox = Inbox {
            rx,
            bytes,
            kick: self.kick.clone(),
            budget: self.config.queue_bytes,
        };
        (stream, inbox)
    }

    /// Adds a watcher to `stream`; returns the revision its created response reports.
    pub(crate) async fn register(
        &self,
        stream: StreamId,
        key: WatcherKey,
        spec: WatchSpec,
    ) -> Result<i64, NodeError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Register {
            stream,
            key,
            spec,
            reply,
        });
        rx.await.map_err(|_| NodeError::Stopped)?
    }

    /// Sends a request to the task (which outlives every handle's requests).
    pub(crate) fn send(&self, command: Command) {
        // Fails only once the task ended, when there is nobody left to tell.
        let _ = self.commands.send(command);
    }

    /// How many watchers are synced and unsynced.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) async fn stats(&self) -> Option<(usize, usize)> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Stats { reply });
        rx.await.ok()
    }
}
