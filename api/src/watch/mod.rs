//! etcd's Watch service: one bidirectional stream carrying many watches (etcd's
//! `v3rpc/watch.go`). The stream's task reads create, cancel and progress requests, keeps the
//! stream's watch ids, and turns what the [`hub`] delivers into responses (with etcd's
//! fragmentation of large ones). The hub does the rest: placing watchers, reading the store,
//! fan-out, catch-up, progress; [`handle`] is how streams talk to it.
//!
//! Guarantees, as etcd's: events come in revision order, each revision once, with no gap, all
//! events of a revision in one response (unless the watcher asked for fragments); a watch can
//! resume from any revision not compacted, and one below the compacted revision is cancelled
//! with `compact_revision` set.

mod handle;
mod hub;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use mango_proto::etcdserverpb::watch_create_request::FilterType;
use mango_proto::etcdserverpb::watch_request::RequestUnion;
use mango_proto::etcdserverpb::watch_server::Watch;
use mango_proto::etcdserverpb::{WatchCreateRequest, WatchRequest, WatchResponse};
use mango_store::KeyRange;
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

use self::handle::{Command, Delivery, Hub, HubConfig, WatchSpec, WatcherKey};
use crate::auth::Credentials;
use crate::node::EtcdNode;

/// Responses buffered between a stream's task and gRPC (the hub's queue bounds the rest).
const OUTGOING: usize = 4;

/// The Watch service over a node.
pub struct WatchService<N> {
    /// The node: headers and the views the hub reads.
    node: Arc<N>,
    /// Responses above this many bytes are split when the watcher allows it (etcd's
    /// `--max-request-bytes` plus its gRPC overhead allowance).
    fragment_bytes: usize,
    /// How the hub runs.
    config: HubConfig,
    /// The node's hub, started by the first stream.
    hub: OnceLock<Hub>,
}

impl<N: EtcdNode> WatchService<N> {
    /// A Watch service over `node`: responses larger than `fragment_bytes` are split for
    /// watchers that ask for fragments; watchers that ask for progress notifications get one
    /// every `progress_interval` without events.
    pub fn new(node: Arc<N>, fragment_bytes: usize, progress_interval: Duration) -> Self {
        Self {
            node,
            fragment_bytes,
            config: HubConfig {
                progress_interval,
                ..HubConfig::default()
            },
            hub: OnceLock::new(),
        }
    }

    fn hub(&self) -> Hub {
        self.hub
            .get_or_init(|| {
                let node = self.node.clone();
                Hub::start(
                    Arc::new(move || node.read_view()),
                    self.node.revision_updates(),
                    self.config,
                )
            })
            .clone()
    }
}

#[tonic::async_trait]
impl<N: EtcdNode> Watch for WatchService<N> {
    type WatchStream = ReceiverStream<Result<WatchResponse, Status>>;

    async fn watch(
        &self,
        request: tonic::Request<Streaming<WatchRequest>>,
    ) -> Result<tonic::Response<Self::WatchStream>, Status> {
        let credentials = Credentials::of(&request, self.node.auth_config());
        let incoming = request.into_inner();
        let (tx, rx) = mpsc::channel(OUTGOING);
        let stream = WatchStream {
            node: self.node.clone(),
            credentials,
            hub: self.hub(),
            fragment_bytes: self.fragment_bytes,
            tx,
            ids: HashMap::new(),
            watches: HashMap::new(),
            next_id: 0,
            progress_pending: false,
        };
        tokio::spawn(stream.run(incoming));
        Ok(tonic::Response::new(ReceiverStream::new(rx)))
    }
}

/// One watch of a stream, as its client knows it.
struct Watching {
    /// The client's id for it.
    watch_id: i64,
    /// Whether large responses may be split.
    fragment: bool,
}

/// A stream's task: its client's requests in, the hub's deliveries out.
struct WatchStream<N> {
    /// Headers and current revisions.
    node: Arc<N>,
    /// What the client authenticated the stream with, resolved at each create (a token may
    /// expire while the stream lives).
    credentials: Credentials,
    /// The node's hub.
    hub: Hub,
    /// The size above which fragmenting watchers' responses are split.
    fragment_bytes: usize,
    /// Responses to the client; closed when the client goes away.
    tx: mpsc::Sender<Result<WatchResponse, Status>>,
    /// Watch ids in use, to the hub's keys.
    ids: HashMap<i64, WatcherKey>,
    /// The hub's keys of this stream's watches.
    watches: HashMap<WatcherKey, Watching>,
    /// The next id to try for a create that names none (etcd counts from 0, skipping ids in use).
    next_id: i64,
    /// A progress request is with the hub; more are answered by its reply.
    progress_pending: bool,
}

/// The client went away.
struct Gone;

/// A status as grpc-go's `error.Error()` prints it (etcd puts that in a watch's
/// `cancel_reason`).
fn grpc_error_text(status: &tonic::Status) -> String {
    format!(
        "rpc error: code = {:?} desc = {}",
        status.code(),
        status.message()
    )
}

impl<N: EtcdNode> WatchStream<N> {
    async fn run(mut self, mut incoming: Streaming<WatchRequest>) {
        let (stream, mut inbox) = self.hub.open();
        let mut reading = true;
        loop {
            let step = tokio::select! {
                request = incoming.message(), if reading => match request {
                    Ok(Some(request)) => self.request(stream, request).await,
                    // Half-closed: etcd keeps sending events until the client goes away.
                    Ok(None) => {
                        reading = false;
                        Ok(())
                    }
                    Err(_) => Err(Gone),
                },
                delivery = inbox.recv() => match delivery {
                    Some(d) => self.deliver(d).await,
                    None => Err(Gone),
                },
                _ = self.tx.closed() => Err(Gone),
            };
            if step.is_err() {
                break;
            }
        }
        self.hub.send(Command::Close { stream });
    }

    async fn send(&self, response: WatchResponse) -> Result<(), Gone> {
        self.tx.send(Ok(response)).await.map_err(|_| Gone)
    }

    /// The node's current revision (the header of control responses, as etcd's).
    fn current_revision(&self) -> i64 {
        self.node.read_view().map(|v| v.revision()).unwrap_or(0)
    }

    async fn request(&mut self, stream: u64, request: WatchRequest) -> Result<(), Gone> {
        match request.request_union {
            Some(RequestUnion::CreateRequest(create)) => self.create(stream, create).await,
            Some(RequestUnion::CancelRequest(cancel)) => {
                // etcd answers a cancel of an unknown id with nothing.
                let Some(key) = self.ids.remove(&cancel.watch_id) else {
                    return Ok(());
                };
                self.watches.remove(&key);
                self.hub.send(Command::Unregister { key });
                self.send(WatchResponse {
                    header: Some(self.node.header(self.current_revision())),
                    watch_id: cancel.watch_id,
                    canceled: true,
                    ..Default::default()
                })
                .await
            }
            Some(RequestUnion::ProgressRequest(_)) => {
                if !self.progress_pending {
                    self.progress_pending = true;
                    self.hub.send(Command::Progress { stream });
                }
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Whether the stream's caller may read what `create` watches (etcd's
    /// `isWatchPermitted`: any failure, an invalid token included, is a refusal).
    async fn permitted(&self, create: &WatchCreateRequest) -> bool {
        let Ok(caller) = self.credentials.resolve(&*self.node).await else {
            return false;
        };
        let Ok(view) = self.node.read_view() else {
            return false;
        };
        if !view.auth().enabled() {
            return true;
        }
        // etcd's normalisation before the check: an empty key is "\0".
        let key: &[u8] = if create.key.is_empty() {
            &[0]
        } else {
            &create.key
        };
        caller.check_range(&view, key, &create.range_end).is_ok()
    }

    async fn create(&mut self, stream: u64, create: WatchCreateRequest) -> Result<(), Gone> {
        if !self.permitted(&create).await {
            let denied = tonic::Status::from(mango_rpctypes::PERMISSION_DENIED);
            return self.refuse(&grpc_error_text(&denied)).await;
        }
        let spec = match spec(&create) {
            Ok(spec) => spec,
            Err(reason) => return self.refuse(reason).await,
        };
        let watch_id = if create.watch_id == 0 {
            while self.ids.contains_key(&self.next_id) {
                self.next_id += 1;
            }
            self.next_id += 1;
            self.next_id - 1
        } else if self.ids.contains_key(&create.watch_id) {
            return self
                .refuse(mango_rpctypes::DUPLICATE_WATCH_ID.message)
                .await;
        } else {
            create.watch_id
        };
        let key = self.hub.next_id();
        let revision = match self.hub.register(stream, key, spec).await {
            Ok(revision) => revision,
            Err(e) => return self.refuse(&e.to_string()).await,
        };
        self.ids.insert(watch_id, key);
        self.watches.insert(
            key,
            Watching {
                watch_id,
                fragment: create.fragment,
            },
        );
        self.send(WatchResponse {
            header: Some(self.node.header(revision)),
            watch_id,
            created: true,
            ..Default::default()
        })
        .await
    }

    /// etcd's answer to a create it refuses: created and cancelled at once, id -1.
    async fn refuse(&self, reason: &str) -> Result<(), Gone> {
        self.send(WatchResponse {
            header: Some(self.node.header(self.current_revision())),
            watch_id: -1,
            created: true,
            canceled: true,
            cancel_reason: reason.to_string(),
            ..Default::default()
        })
        .await
    }

    async fn deliver(&mut self, delivery: Delivery) -> Result<(), Gone> {
        match delivery {
            Delivery::Events {
                key,
                revision,
                events,
            } => {
                // Deliveries for a watch cancelled meanwhile are dropped.
                let Some(w) = self.watches.get(&key) else {
                    return Ok(());
                };
                let response = WatchResponse {
                    header: Some(self.node.header(revision)),
                    watch_id: w.watch_id,
                    events,
                    ..Default::default()
                };
                if w.fragment {
                    for part in fragments(response, self.fragment_bytes) {
                        self.send(part).await?;
                    }
                    Ok(())
                } else {
                    self.send(response).await
                }
            }
            Delivery::Progress {
                key: Some(key),
                revision,
            } => {
                let Some(w) = self.watches.get(&key) else {
                    return Ok(());
                };
                self.send(WatchResponse {
                    header: Some(self.node.header(revision)),
                    watch_id: w.watch_id,
                    ..Default::default()
                })
                .await
            }
            Delivery::Progress {
                key: None,
                revision,
            } => {
                self.progress_pending = false;
                // Not about any one watch: clients pass it to every watch of the stream.
                self.send(WatchResponse {
                    header: Some(self.node.header(revision)),
                    watch_id: -1,
                    ..Default::default()
                })
                .await
            }
            Delivery::Compacted {
                key,
                compact_revision,
            } => {
                let Some(w) = self.watches.remove(&key) else {
                    return Ok(());
                };
                self.ids.remove(&w.watch_id);
                // etcd's compacted response carries no revision of its own.
                self.send(WatchResponse {
                    header: Some(self.node.header(0)),
                    watch_id: w.watch_id,
                    canceled: true,
                    compact_revision,
                    ..Default::default()
                })
                .await
            }
        }
    }
}

/// A create request as the hub takes it, with etcd's conventions: an empty key is `"\0"`
/// (the smallest key), a range end of `"\0"` means every key from `key` on, and a range end
/// not after the key is refused.
fn spec(create: &WatchCreateRequest) -> Result<WatchSpec, &'static str> {
    let key = if create.key.is_empty() {
        vec![0]
    } else {
        create.key.clone()
    };
    let end = &create.range_end;
    if !end.is_empty() && end.as_slice() != [0] && key.as_slice() >= end.as_slice() {
        return Err(mango_rpctypes::EMPTY_WATCHER_RANGE.message);
    }
    let has = |f: FilterType| create.filters.contains(&(f as i32));
    Ok(WatchSpec {
        range: KeyRange::new(key, end.clone()),
        start_revision: create.start_revision,
        prev_kv: create.prev_kv,
        no_put: has(FilterType::Noput),
        no_delete: has(FilterType::Nodelete),
        progress_notify: create.progress_notify,
    })
}

/// etcd's `sendFragments`: a response of at least `limit` bytes with two or more events is
/// split into responses of under `limit` bytes each (one event at least), all but the last
/// marked `fragment`.
fn fragments(response: WatchResponse, limit: usize) -> Vec<WatchResponse> {
    if response.encoded_len() < limit || response.events.len() < 2 {
        return vec![response];
    }
    let mut template = response;
    let events = std::mem::take(&mut template.events);
    template.fragment = true;
    let base = template.encoded_len();
    let mut parts = Vec::new();
    let mut current = Vec::new();
    let mut size = base;
    for event in events {
        let n = prost::encoding::message::encoded_len(11, &event);
        if !current.is_empty() && size + n >= limit {
            parts.push(std::mem::take(&mut current));
            size = base;
        }
        size += n;
        current.push(event);
    }
    parts.push(current);
    let last = parts.len() - 1;
    parts
        .into_iter()
        .enumerate()
        .map(|(i, events)| WatchResponse {
            events,
            fragment: i != last,
            ..template.clone()
        })
        .collect()
}
