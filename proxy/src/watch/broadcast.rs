//! One upstream watch and the client watches it serves ([`Broadcast`]), and the registry of
//! shared ones ([`Registry`]).
//!
//! Sharing follows etcd's grpc-proxy: a client watch joins a shared upstream watch when it has
//! the same key, range end, filters, prev_kv and passed-through metadata (auth token,
//! require-leader), does not ask for fragments, and starts at the current revision
//! (`start_revision` 0), or at a revision the shared watch has not reached yet (events before
//! it are not sent to that client). Any other watch (a historical start, a start the shared
//! watch already passed, fragments) gets an upstream watch of its own, with the same
//! machinery and one member.
//!
//! Each upstream watch is one Watch stream to a learner carrying one watch, asked for progress
//! notifications. The upstream's responses are posted to every member with the member's own
//! watch id, without waiting (see [`super::outbox`]). A member joining an upstream watch that
//! is already created gets a created response at once, with the revision it joined at
//! (`next_rev - 1`): it receives every event after it. When the last member leaves, the
//! upstream watch is cancelled and its stream closed. When the upstream stream breaks, the
//! watch is created again, on another learner if one is up, from the revision after the last
//! one delivered, so members see no gap and no duplicate; if that revision was compacted
//! meanwhile, the upstream's cancel with `compact_revision` reaches every member, as etcd's
//! would.
//!
//! Watches belong on learners; a voter only stands in while none is up. An upstream watch
//! on a voter checks every `MOVE_CHECK` (1 s) whether a learner is up again (not ejected by
//! the health checks) and if so moves there the same way: the voter's watch is cancelled
//! between two responses, and the watch is created on the learner from the revision after
//! the last one delivered (a learner still catching up holds the events back until it has
//! them: a watch may start at a future revision), so members see no gap and no duplicate.
//! A watch with fragments is never moved mid-way through a fragmented response.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use mango_proto::etcdserverpb::watch_client::WatchClient;
use mango_proto::etcdserverpb::watch_request::RequestUnion;
use mango_proto::etcdserverpb::{
    ResponseHeader, WatchCancelRequest, WatchCreateRequest, WatchProgressRequest, WatchRequest,
    WatchResponse,
};
use prost::Message as _;
use tokio::sync::{Notify, mpsc, oneshot};
use tonic::metadata::MetadataMap;
use tonic::{Extensions, Request, Status, Streaming};

use super::outbox::{Out, Outbox};
use crate::route::Proxy;
use crate::stack::retry::is_transport;

/// How long the upstream watch is tried again after its stream broke before its members'
/// watches are cancelled.
const RESUME_FOR: Duration = Duration::from_secs(15);

/// How often an upstream watch on a voter looks for a learner to move to.
const MOVE_CHECK: Duration = Duration::from_secs(1);

/// What makes two client watches the same upstream watch.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ShareKey {
    key: Vec<u8>,
    range_end: Vec<u8>,
    filters: Vec<i32>,
    prev_kv: bool,
    /// The passed-through metadata (auth token, require-leader), sorted.
    metadata: Vec<(String, Vec<u8>)>,
}

impl ShareKey {
    /// The key of a create request, or `None` if it cannot share (fragments).
    pub fn of(create: &WatchCreateRequest, metadata: &MetadataMap) -> Option<Self> {
        if create.fragment {
            return None;
        }
        let mut md: Vec<(String, Vec<u8>)> = metadata
            .iter()
            .filter_map(|kv| match kv {
                tonic::metadata::KeyAndValueRef::Ascii(k, v) => {
                    Some((k.as_str().to_string(), v.as_bytes().to_vec()))
                }
                tonic::metadata::KeyAndValueRef::Binary(_, _) => None,
            })
            .collect();
        md.sort();
        Some(Self {
            key: create.key.clone(),
            range_end: create.range_end.clone(),
            filters: create.filters.clone(),
            prev_kv: create.prev_kv,
            metadata: md,
        })
    }
}

/// Counters of the watch tier, read by the metrics endpoint and tests.
#[derive(Default)]
pub struct WatchCounters {
    /// Upstream watches existing now (shared or not, created or being created).
    pub upstream_watches: AtomicU64,
    /// Upstream watch creates sent, resumptions included.
    pub upstream_creates: AtomicU64,
    /// Upstream watches created again after their stream broke.
    pub resumes: AtomicU64,
    /// Upstream watches moved from a voter to a learner.
    pub moves: AtomicU64,
    /// Client watches existing now.
    pub client_watches: AtomicU64,
    /// Client watches that joined an upstream watch created for another client.
    pub joined: AtomicU64,
    /// Client streams cut off for not keeping up.
    pub slow_clients: AtomicU64,
}

/// One client watch in an upstream watch.
struct Member {
    /// The client's queue.
    outbox: Arc<Outbox>,
    /// The client's watch id.
    watch_id: i64,
    /// Sent progress notifications.
    progress_notify: bool,
    /// Events below this revision are not the client's (it asked to start later).
    min_rev: i64,
    /// Fired once the client has its created (or refusal) response: the client's stream
    /// handles its next request only then, so created responses come in request order.
    created: Option<oneshot::Sender<()>>,
}

struct State {
    /// Members by (client, watch id).
    members: HashMap<(u64, i64), Member>,
    /// The header of the upstream's created response, once it came.
    created: Option<ResponseHeader>,
    /// The revision after the last one whose events were all delivered (0: not created).
    next_rev: i64,
    /// No member is left or the upstream watch ended: nobody may join.
    closed: bool,
    /// Clients waiting for a progress revision.
    progress_waiters: Vec<oneshot::Sender<(ResponseHeader, i64)>>,
    /// The last header seen from the upstream.
    last_header: ResponseHeader,
}

/// One upstream watch and its members.
pub struct Broadcast {
    /// The key it is shared under, if shared.
    share: Option<ShareKey>,
    /// The create request sent upstream (its start revision is replaced when resuming).
    create: WatchCreateRequest,
    /// Metadata sent upstream.
    metadata: MetadataMap,
    state: Mutex<State>,
    /// Wakes the upstream task: closed, or a progress request wanted.
    wake: Notify,
}

/// Tells the member's client its created (or refusal) response is queued.
fn fire(m: &mut Member) {
    if let Some(c) = m.created.take() {
        let _ = c.send(());
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The shared upstream watches, by what they watch.
pub struct Registry {
    /// Where upstream watches go.
    proxy: Proxy,
    /// Shared upstream watches. Lock order: this map, then a broadcast's state.
    shared: Mutex<HashMap<ShareKey, Arc<Broadcast>>>,
    /// Counters.
    pub counters: WatchCounters,
    /// Client ids.
    next_client: AtomicU64,
}

impl Registry {
    /// An empty registry over `proxy`.
    pub fn new(proxy: Proxy) -> Arc<Self> {
        Arc::new(Self {
            proxy,
            shared: Mutex::new(HashMap::new()),
            counters: WatchCounters::default(),
            next_client: AtomicU64::new(1),
        })
    }

    /// A new client id.
    pub fn client_id(&self) -> u64 {
        self.next_client.fetch_add(1, Ordering::Relaxed)
    }

    /// The proxy (for reads of its own).
    pub fn proxy(&self) -> &Proxy {
        &self.proxy
    }

    /// Adds a client watch to a shared upstream watch, or to a new one; returns it and a
    /// receiver that fires once the client has its created response.
    pub fn join(
        self: &Arc<Self>,
        outbox: &Arc<Outbox>,
        watch_id: i64,
        create: &WatchCreateRequest,
        metadata: &MetadataMap,
    ) -> (Arc<Broadcast>, oneshot::Receiver<()>) {
        let (created_tx, created_rx) = oneshot::channel();
        let mut member = Member {
            outbox: outbox.clone(),
            watch_id,
            progress_notify: create.progress_notify,
            min_rev: create.start_revision,
            created: Some(created_tx),
        };
        self.counters.client_watches.fetch_add(1, Ordering::Relaxed);
        let share = ShareKey::of(create, metadata).filter(|_| create.start_revision >= 0);
        let Some(share) = share else {
            return (self.start(None, create, metadata, member), created_rx);
        };
        let mut map = lock(&self.shared);
        if let Some(b) = map.get(&share) {
            let mut st = lock(&b.state);
            let joins = !st.closed
                && (create.start_revision == 0
                    || (st.created.is_some() && create.start_revision >= st.next_rev));
            if joins {
                if st.created.is_some() {
                    let header = ResponseHeader {
                        revision: st.next_rev - 1,
                        ..st.last_header
                    };
                    let _ = outbox.post(WatchResponse {
                        header: Some(header),
                        watch_id,
                        created: true,
                        ..Default::default()
                    });
                    fire(&mut member);
                }
                st.members.insert((outbox.id, watch_id), member);
                self.counters.joined.fetch_add(1, Ordering::Relaxed);
                return (b.clone(), created_rx);
            }
        }
        if create.start_revision != 0 {
            drop(map);
            return (self.start(None, create, metadata, member), created_rx);
        }
        let b = self.start(Some(share.clone()), create, metadata, member);
        map.insert(share, b.clone());
        (b, created_rx)
    }

    fn start(
        self: &Arc<Self>,
        share: Option<ShareKey>,
        create: &WatchCreateRequest,
        metadata: &MetadataMap,
        member: Member,
    ) -> Arc<Broadcast> {
        let mut upstream_create = create.clone();
        upstream_create.watch_id = 0;
        if share.is_some() {
            // Asked of every shared watch; passed on to the members that want it.
            upstream_create.progress_notify = true;
        }
        let mut members = HashMap::new();
        members.insert((member.outbox.id, member.watch_id), member);
        let b = Arc::new(Broadcast {
            share,
            create: upstream_create,
            metadata: metadata.clone(),
            state: Mutex::new(State {
                members,
                created: None,
                next_rev: 0,
                closed: false,
                progress_waiters: Vec::new(),
                last_header: ResponseHeader::default(),
            }),
            wake: Notify::new(),
        });
        self.counters
            .upstream_watches
            .fetch_add(1, Ordering::Relaxed);
        let (me, task) = (self.clone(), b.clone());
        tokio::spawn(async move {
            task.run(&me).await;
            me.ended(&task);
            me.counters.upstream_watches.fetch_sub(1, Ordering::Relaxed);
        });
        b
    }

    /// Removes a client watch; returns whether it was still a member (else it had ended).
    /// The last member leaving closes the upstream watch.
    pub fn leave(&self, b: &Arc<Broadcast>, client: u64, watch_id: i64) -> bool {
        let mut map = lock(&self.shared);
        let mut st = lock(&b.state);
        let was = st.members.remove(&(client, watch_id)).is_some();
        if was {
            self.counters.client_watches.fetch_sub(1, Ordering::Relaxed);
        }
        if st.members.is_empty() && !st.closed {
            st.closed = true;
            Self::unshare(&mut map, b);
            b.wake.notify_one();
        }
        was
    }

    /// The upstream watch ended: nobody may join it any more.
    fn ended(&self, b: &Arc<Broadcast>) {
        let mut map = lock(&self.shared);
        let mut st = lock(&b.state);
        st.closed = true;
        let left = st.members.len() as u64;
        st.members.clear();
        st.progress_waiters.clear();
        self.counters
            .client_watches
            .fetch_sub(left, Ordering::Relaxed);
        Self::unshare(&mut map, b);
    }

    fn unshare(map: &mut HashMap<ShareKey, Arc<Broadcast>>, b: &Arc<Broadcast>) {
        if let Some(k) = &b.share
            && map.get(k).is_some_and(|x| Arc::ptr_eq(x, b))
        {
            map.remove(k);
        }
    }
}

/// Cancels the upstream watch `id` (if it was created) on its stream, briefly: the stream is
/// dropped next anyway.
async fn cancel_upstream(tx: &mpsc::Sender<WatchRequest>, id: Option<i64>) {
    if let Some(id) = id {
        let cancel = WatchRequest {
            request_union: Some(RequestUnion::CancelRequest(WatchCancelRequest {
                watch_id: id,
            })),
        };
        let _ = tokio::time::timeout(Duration::from_millis(500), tx.send(cancel)).await;
    }
}

/// How a pass over one upstream stream ended.
enum Ended {
    /// No member is left; the upstream watch was cancelled.
    Closed,
    /// The upstream cancelled or refused the watch; members were told.
    Cancelled,
    /// The stream failed; the watch may be created again.
    Broken(Status),
    /// The watch was on a voter and a learner is up: the voter's watch was cancelled, to be
    /// created again on a learner.
    Moved,
}

impl Broadcast {
    /// Asks the upstream for a progress revision for this watch; the answer is the
    /// upstream's header and the revision up to which every event was delivered to members.
    pub fn progress(&self) -> oneshot::Receiver<(ResponseHeader, i64)> {
        let (tx, rx) = oneshot::channel();
        let mut st = lock(&self.state);
        if !st.closed {
            st.progress_waiters.push(tx);
            self.wake.notify_one();
        }
        rx
    }

    /// Whether the client watch is still served by this upstream watch.
    pub fn is_member(&self, client: u64, watch_id: i64) -> bool {
        lock(&self.state).members.contains_key(&(client, watch_id))
    }

    /// The header of a cancel response sent by the proxy itself.
    pub fn header(&self) -> ResponseHeader {
        let st = lock(&self.state);
        ResponseHeader {
            revision: (st.next_rev - 1).max(0),
            ..st.last_header
        }
    }

    async fn run(self: &Arc<Self>, registry: &Registry) {
        let proxy = &registry.proxy;
        let mut tried = Vec::new();
        let mut broken_since: Option<tokio::time::Instant> = None;
        let mut attempt = 0u32;
        loop {
            let start = {
                let st = lock(&self.state);
                if st.closed {
                    return;
                }
                if st.created.is_some() {
                    st.next_rev
                } else {
                    self.create.start_revision
                }
            };
            let up = match proxy.pick_reads(&mut tried) {
                Ok(up) => up,
                Err(status) => {
                    self.cancel_all(status.message());
                    return;
                }
            };
            let _load = up.start();
            // Only a voter standing in for the learners looks for one to move to.
            let may_move = !proxy.is_learner(&up);
            let (tx, rx) = mpsc::channel(16);
            let create = WatchCreateRequest {
                start_revision: start,
                ..self.create.clone()
            };
            let _ = tx.try_send(WatchRequest {
                request_union: Some(RequestUnion::CreateRequest(create)),
            });
            registry
                .counters
                .upstream_creates
                .fetch_add(1, Ordering::Relaxed);
            let request = Request::from_parts(
                self.metadata.clone(),
                Extensions::default(),
                tokio_stream::wrappers::ReceiverStream::new(rx),
            );
            let opened = tokio::time::timeout(Duration::from_secs(3), async {
                WatchClient::new(up.channel())
                    .max_decoding_message_size(usize::MAX)
                    .watch(request)
                    .await
            })
            .await
            .unwrap_or_else(|_| Err(Status::unavailable("opening the upstream watch timed out")));
            let mut resumed = false;
            let ended = match opened {
                Ok(stream) => {
                    let mover = may_move.then_some(proxy);
                    self.pump(stream.into_inner(), &tx, &mut resumed, mover)
                        .await
                }
                Err(status) => Ended::Broken(status),
            };
            if resumed {
                // The upstream took the watch: the resume budget starts again.
                broken_since = None;
                attempt = 0;
            }
            let status = match ended {
                Ended::Closed | Ended::Cancelled => return,
                Ended::Moved => {
                    tracing::info!(upstream = %up.url, "upstream watch moving to a learner");
                    registry.counters.moves.fetch_add(1, Ordering::Relaxed);
                    tried.clear();
                    broken_since = None;
                    attempt = 0;
                    continue;
                }
                Ended::Broken(status) => status,
            };
            if is_transport(&status) || status.code() == tonic::Code::Unavailable {
                up.failed(proxy.eject_after());
            }
            let since = *broken_since.get_or_insert_with(tokio::time::Instant::now);
            if since.elapsed() > RESUME_FOR {
                self.cancel_all(&format!(
                    "mango-proxy: the watch could not be resumed upstream: {}",
                    status.message()
                ));
                return;
            }
            tracing::info!(upstream = %up.url, %status, "upstream watch broken: resuming");
            registry.counters.resumes.fetch_add(1, Ordering::Relaxed);
            tried = vec![up.clone()];
            tokio::time::sleep(Duration::from_millis((20u64 << attempt.min(4)).min(300))).await;
            attempt += 1;
        }
    }

    /// Passes the upstream's responses to the members until the stream ends or no member is
    /// left, or, with `mover` (the upstream is a voter), until a learner is up to move to.
    async fn pump(
        &self,
        mut stream: Streaming<WatchResponse>,
        tx: &mpsc::Sender<WatchRequest>,
        resumed: &mut bool,
        mover: Option<&Proxy>,
    ) -> Ended {
        let mut upstream_id: Option<i64> = None;
        let mut progress_sent = false;
        // In the middle of a fragmented response: not a point to move at.
        let mut mid_fragment = false;
        let mut move_check =
            tokio::time::interval_at(tokio::time::Instant::now() + MOVE_CHECK, MOVE_CHECK);
        // Progress requests that waited for a stream are sent on this one.
        self.wake.notify_one();
        loop {
            *resumed |= upstream_id.is_some();
            tokio::select! {
                msg = stream.message() => match msg {
                    Ok(Some(resp)) => {
                        mid_fragment = resp.fragment;
                        if let Some(ended) = self.deliver(resp, &mut upstream_id, &mut progress_sent) {
                            return ended;
                        }
                    }
                    Ok(None) => return Ended::Broken(Status::unavailable("the upstream ended the watch stream")),
                    Err(status) => return Ended::Broken(status),
                },
                () = self.wake.notified() => {
                    let (closed, wanted) = {
                        let st = lock(&self.state);
                        (st.closed, !st.progress_waiters.is_empty())
                    };
                    if closed {
                        cancel_upstream(tx, upstream_id).await;
                        return Ended::Closed;
                    }
                    if wanted && !progress_sent {
                        progress_sent = true;
                        let _ = tx.try_send(WatchRequest {
                            request_union: Some(RequestUnion::ProgressRequest(WatchProgressRequest {})),
                        });
                    }
                }
                _ = move_check.tick(), if mover.is_some() => {
                    // Between two responses, everything delivered is accounted in
                    // `next_rev`: the learner's watch starts right after it.
                    let learner_up = mover.is_some_and(Proxy::learner_available);
                    if learner_up && upstream_id.is_some() && !mid_fragment {
                        cancel_upstream(tx, upstream_id).await;
                        return Ended::Moved;
                    }
                }
            }
        }
    }

    /// Handles one upstream response; `Some` when the upstream watch is over.
    fn deliver(
        &self,
        resp: WatchResponse,
        upstream_id: &mut Option<i64>,
        progress_sent: &mut bool,
    ) -> Option<Ended> {
        let mut st = lock(&self.state);
        let header = resp.header.unwrap_or_default();
        st.last_header = header;
        if resp.created && upstream_id.is_none() {
            if resp.canceled {
                // Refused (an invalid request): each member gets the refusal as etcd words it.
                for m in st.members.values_mut() {
                    let refusal = if m.created.is_some() {
                        WatchResponse { ..resp.clone() }
                    } else {
                        WatchResponse {
                            watch_id: m.watch_id,
                            created: false,
                            ..resp.clone()
                        }
                    };
                    let _ = m.outbox.post(refusal);
                    fire(m);
                }
                return Some(Ended::Cancelled);
            }
            *upstream_id = Some(resp.watch_id);
            if st.created.is_none() {
                st.next_rev = if self.create.start_revision > 0 {
                    self.create.start_revision
                } else {
                    header.revision + 1
                };
                st.created = Some(header);
                for m in st.members.values_mut() {
                    let _ = m.outbox.post(WatchResponse {
                        header: Some(header),
                        watch_id: m.watch_id,
                        created: true,
                        ..Default::default()
                    });
                    fire(m);
                }
            }
            // A resumed watch's created response is the proxy's business only.
            return None;
        }
        if resp.watch_id == -1 {
            // The answer to a progress request: every event up to it was delivered.
            *progress_sent = false;
            st.next_rev = st.next_rev.max(header.revision + 1);
            for w in st.progress_waiters.drain(..) {
                let _ = w.send((header, header.revision));
            }
            return None;
        }
        if Some(resp.watch_id) != *upstream_id {
            return None;
        }
        if resp.canceled {
            for m in st.members.values_mut() {
                let _ = m.outbox.post(WatchResponse {
                    watch_id: m.watch_id,
                    ..resp.clone()
                });
            }
            return Some(Ended::Cancelled);
        }
        let Some(last) = resp.events.last() else {
            // A progress notification: nothing up to its revision is left to deliver.
            st.next_rev = st.next_rev.max(header.revision + 1);
            let shared = Arc::new(resp);
            let len = shared.encoded_len();
            for m in st.members.values().filter(|m| m.progress_notify) {
                let _ = m
                    .outbox
                    .post_sized(Out::Shared(shared.clone(), m.watch_id), len);
            }
            return None;
        };
        let last_rev = last.kv.as_ref().map_or(0, |kv| kv.mod_revision);
        let first_rev = resp.events[0].kv.as_ref().map_or(0, |kv| kv.mod_revision);
        if !resp.fragment {
            st.next_rev = st.next_rev.max(last_rev + 1);
        }
        let shared = Arc::new(resp);
        let len = shared.encoded_len();
        for m in st.members.values() {
            if m.min_rev <= first_rev {
                let _ = m
                    .outbox
                    .post_sized(Out::Shared(shared.clone(), m.watch_id), len);
            } else if m.min_rev <= last_rev {
                let mut own = (*shared).clone();
                own.watch_id = m.watch_id;
                own.events
                    .retain(|e| e.kv.as_ref().is_some_and(|kv| kv.mod_revision >= m.min_rev));
                let _ = m.outbox.post(own);
            }
        }
        None
    }

    /// Cancels every member's watch with `reason` (the upstream watch could not go on).
    fn cancel_all(&self, reason: &str) {
        let mut st = lock(&self.state);
        let header = ResponseHeader {
            revision: (st.next_rev - 1).max(0),
            ..st.last_header
        };
        for m in st.members.values_mut() {
            let created = m.created.is_some();
            let _ = m.outbox.post(WatchResponse {
                header: Some(header),
                watch_id: if created { -1 } else { m.watch_id },
                created,
                canceled: true,
                cancel_reason: reason.to_string(),
                ..Default::default()
            });
            fire(m);
        }
    }
}
