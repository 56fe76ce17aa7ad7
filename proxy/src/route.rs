//! The routing core shared by every service: where a request goes ([`Route`]), the leader as
//! the voters' Status answers name it, the concurrency limit, and forwarding with timeouts and
//! retries ([`Proxy::unary`], [`Proxy::server_stream`], [`Proxy::bidi`]).
//!
//! Retries. An idempotent read is retried, with backoff, on another upstream after a transport
//! error or an `Unavailable` answer, within the request's time budget. A write is retried only
//! when the failure proves it was never applied: the connection was refused (nothing was
//! sent), or the voter answered "etcdserver: no leader" (raft-rs drops a proposal made with no
//! leader). Any other failure of a write (a reset connection, "leader changed", a timeout) is
//! returned to the client as is: the write may or may not have been applied, and only the
//! client can decide whether repeating it is safe, as with etcd itself.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_stream::{Stream, StreamExt as _};
use tonic::metadata::MetadataMap;
use tonic::transport::Channel;
use tonic::{Extensions, Request, Response, Status, Streaming};

use crate::upstream::{Pool, Upstream};

/// A stream of responses handed back to a client.
pub type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Metadata keys passed through to upstreams: the consistency level, etcd's auth token and
/// etcd's require-leader flag for watches.
const PASSED_METADATA: [&str; 4] = [
    mango_api::CONSISTENCY_HEADER,
    "token",
    "authorization",
    "hasleader",
];

/// No leader index known.
const UNKNOWN: usize = usize::MAX;

/// Where a request goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// The Raft leader (any voter if none is known: a follower forwards proposals and does
    /// ReadIndex itself). `idempotent` says whether any failure may be retried.
    Leader {
        /// Safe to repeat (a read); else retried only when it provably was not applied.
        idempotent: bool,
    },
    /// A learner, least loaded first; the voters if there are no learners or all are down.
    Reads,
}

impl Route {
    fn idempotent(self) -> bool {
        match self {
            Route::Leader { idempotent } => idempotent,
            Route::Reads => true,
        }
    }
}

/// Counters of what went where, for logs and tests.
#[derive(Default)]
pub struct Counters {
    /// Requests and streams sent to the leader (or a voter standing in).
    pub to_leader: AtomicU64,
    /// Requests and streams sent to the read pool.
    pub to_reads: AtomicU64,
    /// Attempts repeated after a failure.
    pub retries: AtomicU64,
    /// Requests refused by the concurrency limit.
    pub shed: AtomicU64,
    /// Time of unary requests routed to the leader, retries included.
    pub leader_latency: Histogram,
    /// Time of unary requests routed to the read pool, retries included.
    pub reads_latency: Histogram,
}

/// Upper bounds of the latency buckets, in seconds (Prometheus' `le`).
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// A latency histogram: a count per bucket (not cumulative), the sum and the count.
#[derive(Default)]
pub struct Histogram {
    /// Requests per bucket of [`LATENCY_BUCKETS`], the last one past them all.
    pub buckets: [AtomicU64; 13],
    /// Microseconds, summed.
    pub sum_micros: AtomicU64,
    /// Requests.
    pub count: AtomicU64,
}

impl Histogram {
    /// Records one request that took `took`.
    pub fn observe(&self, took: Duration) {
        let secs = took.as_secs_f64();
        let i = LATENCY_BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }
}

/// The proxy's shared state: a cheap-to-clone handle.
#[derive(Clone)]
pub struct Proxy(Arc<Shared>);

struct Shared {
    /// The voters: leader-bound requests, and reads when no learner can serve.
    voters: Pool,
    /// The learners (may be empty).
    learners: Pool,
    /// Index of the leader in `voters`, or `UNKNOWN`.
    leader: AtomicUsize,
    /// When the leader was last looked up; serialises lookups so a burst of failures costs
    /// one round of Status calls.
    looked_up: tokio::sync::Mutex<Instant>,
    /// The highest Raft term seen in any response: a higher one means an election happened.
    term: AtomicU64,
    /// Unary requests in flight at most.
    limit: Arc<Semaphore>,
    /// The time budget of one unary request, retries included.
    timeout: Duration,
    /// Failures in a row that eject an upstream.
    eject_after: u32,
    /// What went where.
    counters: Counters,
}

impl Proxy {
    /// A proxy over these voters and learners.
    pub fn new(
        voters: &[String],
        learners: &[String],
        timeout: Duration,
        max_concurrent: usize,
        eject_after: u32,
    ) -> anyhow::Result<Self> {
        Ok(Self(Arc::new(Shared {
            voters: Pool::new(voters)?,
            learners: Pool::new(learners)?,
            leader: AtomicUsize::new(UNKNOWN),
            looked_up: tokio::sync::Mutex::new(Instant::now()),
            term: AtomicU64::new(0),
            limit: Arc::new(Semaphore::new(max_concurrent.max(1))),
            timeout,
            eject_after,
            counters: Counters::default(),
        })))
    }

    /// What went where.
    pub fn counters(&self) -> &Counters {
        &self.0.counters
    }

    /// The leader's client URL, if known.
    pub fn leader_url(&self) -> Option<String> {
        let i = self.0.leader.load(Ordering::Relaxed);
        self.0.voters.members().get(i).map(|u| u.url.clone())
    }

    /// Takes a slot of the concurrency limit, or refuses as etcd does when overloaded.
    pub fn admit(&self) -> Result<OwnedSemaphorePermit, Status> {
        self.0.limit.clone().try_acquire_owned().map_err(|_| {
            self.0.counters.shed.fetch_add(1, Ordering::Relaxed);
            Status::resource_exhausted("etcdserver: too many requests")
        })
    }

    /// Notes the Raft term of a response header; a newer term than any seen means a new
    /// election, so the leader is looked up again in the background.
    pub fn saw_term(&self, term: u64) {
        if term > self.0.term.fetch_max(term, Ordering::Relaxed) && term > 0 {
            let me = self.clone();
            tokio::spawn(async move { me.find_leader(Instant::now()).await });
        }
    }

    /// Asks every voter for its Status (health check and leader lookup in one), and every
    /// learner for its own (health check).
    pub async fn check_all(&self, timeout: Duration) {
        let learners = self
            .0
            .learners
            .members()
            .iter()
            .map(|u| {
                let u = u.clone();
                let eject_after = self.0.eject_after;
                tokio::spawn(async move {
                    match status(&u, timeout).await {
                        Ok(_) => u.succeeded(),
                        Err(_) => u.failed(eject_after),
                    }
                })
            })
            .collect::<Vec<_>>();
        self.find_leader(Instant::now() - Duration::from_millis(1))
            .await;
        for l in learners {
            let _ = l.await;
        }
    }

    /// Looks the leader up with one round of Status calls to the voters, unless a lookup
    /// finished after `since`.
    pub async fn find_leader(&self, since: Instant) {
        let mut last = self.0.looked_up.lock().await;
        if *last > since {
            return;
        }
        let calls = self
            .0
            .voters
            .members()
            .iter()
            .map(|u| {
                let u = u.clone();
                tokio::spawn(async move { (status(&u, Duration::from_millis(500)).await, u) })
            })
            .collect::<Vec<_>>();
        // The leader named by the answer with the highest term.
        let mut best: Option<(u64, u64)> = None;
        for call in calls {
            let Ok((answer, u)) = call.await else {
                continue;
            };
            match answer {
                Ok(s) => {
                    u.succeeded();
                    if let Some(h) = &s.header {
                        u.set_member_id(h.member_id);
                    }
                    if s.leader != 0 && best.is_none_or(|(term, _)| s.raft_term > term) {
                        best = Some((s.raft_term, s.leader));
                    }
                }
                Err(_) => u.failed(self.0.eject_after),
            }
        }
        let index = best
            .and_then(|(term, id)| {
                self.0.term.fetch_max(term, Ordering::Relaxed);
                self.0
                    .voters
                    .members()
                    .iter()
                    .position(|u| u.member_id() == id && !u.is_ejected())
            })
            .unwrap_or(UNKNOWN);
        let old = self.0.leader.swap(index, Ordering::Relaxed);
        if old != index {
            tracing::info!(leader = ?self.leader_url(), "leader changed");
        }
        *last = Instant::now();
    }

    /// Whether a leader is known (and not ejected).
    fn leader_known(&self) -> bool {
        let i = self.0.leader.load(Ordering::Relaxed);
        self.0
            .voters
            .members()
            .get(i)
            .is_some_and(|l| !l.is_ejected())
    }

    /// For leader-bound requests: when no leader is known, looks it up again with backoff
    /// until one is, or until `deadline` (at most 3 s from now) is near, rather than send a
    /// write to a follower that may itself be waiting for an election. After that, any voter
    /// is tried.
    async fn await_leader(&self, deadline: Option<Instant>) {
        let now = Instant::now();
        let cap = now + Duration::from_secs(3);
        let until = deadline.map_or(cap, |d| d.min(cap));
        let mut wait = Duration::from_millis(20);
        while !self.leader_known() {
            self.find_leader(Instant::now()).await;
            if self.leader_known() || Instant::now() + wait >= until {
                return;
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_millis(200));
        }
    }

    /// An upstream for a read-tier stream the proxy opens itself (a coalesced watch): a
    /// learner, the less loaded of two, else a voter; members in `tried` only once every
    /// member was tried.
    pub fn pick_reads(&self, tried: &mut Vec<Arc<Upstream>>) -> Result<Arc<Upstream>, Status> {
        self.pick_again(Route::Reads, tried)
    }

    /// Failures in a row that eject an upstream.
    pub fn eject_after(&self) -> u32 {
        self.0.eject_after
    }

    fn pick(&self, route: Route, tried: &[Arc<Upstream>]) -> Option<Arc<Upstream>> {
        let untried = |u: &Arc<Upstream>| !tried.iter().any(|t| Arc::ptr_eq(t, u));
        match route {
            Route::Leader { .. } => {
                self.0.counters.to_leader.fetch_add(1, Ordering::Relaxed);
                let leader = self
                    .0
                    .voters
                    .members()
                    .get(self.0.leader.load(Ordering::Relaxed));
                match leader {
                    Some(l) if untried(l) && !l.is_ejected() => Some(l.clone()),
                    _ => self.0.voters.pick(tried),
                }
            }
            Route::Reads => {
                self.0.counters.to_reads.fetch_add(1, Ordering::Relaxed);
                let learner_up = self
                    .0
                    .learners
                    .members()
                    .iter()
                    .any(|u| untried(u) && !u.is_ejected());
                if learner_up || self.0.voters.is_empty() {
                    self.0.learners.pick(tried)
                } else {
                    self.0.voters.pick(tried)
                }
            }
        }
    }

    /// Picks an upstream for `route`, forgetting what was tried once everything was.
    fn pick_again(
        &self,
        route: Route,
        tried: &mut Vec<Arc<Upstream>>,
    ) -> Result<Arc<Upstream>, Status> {
        if let Some(u) = self.pick(route, tried) {
            return Ok(u);
        }
        tried.clear();
        self.pick(route, tried)
            .ok_or_else(|| Status::unavailable("mango-proxy: no upstream configured"))
    }

    /// Bookkeeping after a failed attempt: ejection, leader lookup. Returns whether to try
    /// again and how long to wait first.
    async fn after_failure(
        &self,
        route: Route,
        up: &Arc<Upstream>,
        status: &Status,
        attempt: u32,
        started: Instant,
        deadline: Instant,
    ) -> Option<Duration> {
        if is_transport(status) {
            up.failed(self.0.eject_after);
        }
        let retry = if route.idempotent() {
            retryable_read(status)
        } else {
            not_applied(status)
        };
        let backoff = backoff(attempt);
        let max_attempts = if route.idempotent() { 4 } else { 12 };
        if !retry || attempt + 1 >= max_attempts || Instant::now() + backoff >= deadline {
            return None;
        }
        if matches!(route, Route::Leader { .. }) {
            let leader = self.0.leader.load(Ordering::Relaxed);
            if self
                .0
                .voters
                .members()
                .get(leader)
                .is_some_and(|l| Arc::ptr_eq(l, up))
            {
                let _ = self.0.leader.compare_exchange(
                    leader,
                    UNKNOWN,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
            }
            self.find_leader(started).await;
        }
        self.0.counters.retries.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(upstream = %up.url, %status, attempt, "retrying");
        Some(backoff)
    }

    /// Forwards a unary request along `route` with `call`, within the time budget, retrying
    /// as the module doc says. The concurrency limit applies.
    pub async fn unary<Req, Resp, F, Fut>(
        &self,
        route: Route,
        req: Request<Req>,
        call: F,
    ) -> Result<Response<Resp>, Status>
    where
        Req: Clone,
        F: Fn(Channel, Request<Req>) -> Fut,
        Fut: Future<Output = Result<Response<Resp>, Status>>,
    {
        let _permit = self.admit()?;
        let started = Instant::now();
        let deadline = started + self.0.timeout;
        let answer = self.unary_until(route, req, Some(deadline), call).await;
        let histogram = match route {
            Route::Leader { .. } => &self.0.counters.leader_latency,
            Route::Reads => &self.0.counters.reads_latency,
        };
        histogram.observe(started.elapsed());
        answer
    }

    /// Like [`Proxy::unary`] but not bounded by the request timeout nor counted by the
    /// limit: for calls that block by design (Lock, Campaign).
    pub async fn unary_blocking<Req, Resp, F, Fut>(
        &self,
        route: Route,
        req: Request<Req>,
        call: F,
    ) -> Result<Response<Resp>, Status>
    where
        Req: Clone,
        F: Fn(Channel, Request<Req>) -> Fut,
        Fut: Future<Output = Result<Response<Resp>, Status>>,
    {
        self.unary_until(route, req, None, call).await
    }

    async fn unary_until<Req, Resp, F, Fut>(
        &self,
        route: Route,
        req: Request<Req>,
        deadline: Option<Instant>,
        call: F,
    ) -> Result<Response<Resp>, Status>
    where
        Req: Clone,
        F: Fn(Channel, Request<Req>) -> Fut,
        Fut: Future<Output = Result<Response<Resp>, Status>>,
    {
        let (md, _, msg) = req.into_parts();
        let md = passed(&md);
        let mut tried = Vec::new();
        let mut attempt = 0;
        loop {
            let started = Instant::now();
            if matches!(route, Route::Leader { .. }) {
                self.await_leader(deadline).await;
            }
            let up = self.pick_again(route, &mut tried)?;
            let load = up.start();
            let out = Request::from_parts(md.clone(), Extensions::default(), msg.clone());
            let answer = match deadline {
                Some(d) => tokio::time::timeout_at(d, call(up.channel(), out))
                    .await
                    .unwrap_or_else(|_| Err(Status::unavailable("etcdserver: request timed out"))),
                None => call(up.channel(), out).await,
            };
            drop(load);
            let status = match answer {
                Ok(resp) => {
                    up.succeeded();
                    return Ok(Response::new(resp.into_inner()));
                }
                Err(status) => status,
            };
            let far = started + Duration::from_secs(3600);
            let Some(wait) = self
                .after_failure(
                    route,
                    &up,
                    &status,
                    attempt,
                    started,
                    deadline.unwrap_or(far),
                )
                .await
            else {
                return Err(unavailable_if_transport(status, &up));
            };
            tried.push(up);
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    /// Forwards a server-streaming call; failures to open it are retried as for a unary
    /// call of the same route, the stream itself is passed through.
    pub async fn server_stream<Req, Resp, F, Fut>(
        &self,
        route: Route,
        req: Request<Req>,
        call: F,
    ) -> Result<Response<BoxStream<Resp>>, Status>
    where
        Req: Clone,
        Resp: Send + 'static,
        F: Fn(Channel, Request<Req>) -> Fut,
        Fut: Future<Output = Result<Response<Streaming<Resp>>, Status>>,
    {
        let deadline = Instant::now() + self.0.timeout;
        let (md, _, msg) = req.into_parts();
        let md = passed(&md);
        let mut tried = Vec::new();
        let mut attempt = 0;
        loop {
            let started = Instant::now();
            if matches!(route, Route::Leader { .. }) {
                self.await_leader(deadline.into()).await;
            }
            let up = self.pick_again(route, &mut tried)?;
            let load = up.start();
            let out = Request::from_parts(md.clone(), Extensions::default(), msg.clone());
            let answer = tokio::time::timeout_at(deadline, call(up.channel(), out))
                .await
                .unwrap_or_else(|_| Err(Status::unavailable("etcdserver: request timed out")));
            match answer {
                Ok(resp) => {
                    up.succeeded();
                    let stream = resp.into_inner().map(move |item| {
                        let _held = &load;
                        item
                    });
                    return Ok(Response::new(Box::pin(stream)));
                }
                Err(status) => {
                    drop(load);
                    let Some(wait) = self
                        .after_failure(route, &up, &status, attempt, started, deadline)
                        .await
                    else {
                        return Err(status);
                    };
                    tried.push(up);
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
            }
        }
    }

    /// Forwards a bidirectional stream (Watch, LeaseKeepAlive) to one upstream of `route`:
    /// the client's messages are pumped to it and its answers passed back, until either side
    /// ends. Opening is retried on another upstream when it provably failed to connect; once
    /// open, an upstream failure ends the client's stream with the error (etcd clients
    /// reopen their watches and keep-alives).
    pub async fn bidi<Req, Resp, F, Fut>(
        &self,
        route: Route,
        req: Request<Streaming<Req>>,
        call: F,
    ) -> Result<Response<BoxStream<Resp>>, Status>
    where
        Req: Send + 'static,
        Resp: Send + 'static,
        F: Fn(Channel, Request<tokio_stream::wrappers::ReceiverStream<Req>>) -> Fut,
        Fut: Future<Output = Result<Response<Streaming<Resp>>, Status>>,
    {
        let deadline = Instant::now() + self.0.timeout;
        let (md, _, mut incoming) = req.into_parts();
        let md = passed(&md);
        let mut tried = Vec::new();
        let mut attempt = 0;
        loop {
            let started = Instant::now();
            if matches!(route, Route::Leader { .. }) {
                self.await_leader(deadline.into()).await;
            }
            let up = self.pick_again(route, &mut tried)?;
            let load = up.start();
            let (tx, rx) = tokio::sync::mpsc::channel::<Req>(64);
            let out = Request::from_parts(
                md.clone(),
                Extensions::default(),
                tokio_stream::wrappers::ReceiverStream::new(rx),
            );
            let answer = tokio::time::timeout_at(deadline, call(up.channel(), out))
                .await
                .unwrap_or_else(|_| Err(Status::unavailable("etcdserver: request timed out")));
            match answer {
                Ok(resp) => {
                    up.succeeded();
                    tokio::spawn(async move {
                        loop {
                            tokio::select! {
                                msg = incoming.message() => match msg {
                                    Ok(Some(m)) => {
                                        if tx.send(m).await.is_err() {
                                            break;
                                        }
                                    }
                                    _ => break,
                                },
                                () = tx.closed() => break,
                            }
                        }
                    });
                    let eject_after = self.0.eject_after;
                    let stream = resp.into_inner().map(move |item| {
                        if let Err(s) = &item
                            && is_transport(s)
                        {
                            load.upstream().failed(eject_after);
                        }
                        item
                    });
                    return Ok(Response::new(Box::pin(stream)));
                }
                Err(status) => {
                    drop(load);
                    // Nothing of the client's stream was consumed, so any open failure may
                    // be retried on another upstream.
                    let Some(wait) = self
                        .after_failure(Route::Reads, &up, &status, attempt, started, deadline)
                        .await
                    else {
                        return Err(status);
                    };
                    tried.push(up);
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
            }
        }
    }
}

/// The Status of one upstream, bounded by `timeout`.
async fn status(
    u: &Upstream,
    timeout: Duration,
) -> Result<mango_proto::etcdserverpb::StatusResponse, Status> {
    use mango_proto::etcdserverpb::StatusRequest;
    use mango_proto::etcdserverpb::maintenance_client::MaintenanceClient;
    let mut client = MaintenanceClient::new(u.channel());
    tokio::time::timeout(timeout, client.status(StatusRequest {}))
        .await
        .map_err(|_| Status::deadline_exceeded("status timed out"))?
        .map(Response::into_inner)
}

/// The metadata passed through to upstreams.
pub fn passed(md: &MetadataMap) -> MetadataMap {
    let mut out = MetadataMap::new();
    for key in PASSED_METADATA {
        if let Some(v) = md.get(key) {
            out.insert(key, v.clone());
        }
    }
    out
}

/// Backoff before attempt `attempt + 1`: 20 ms doubling, at most 400 ms.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis((20u64 << attempt.min(5)).min(400))
}

/// The failure happened in the transport (connecting, a broken connection), not as an
/// answer of the upstream's etcd server.
pub fn is_transport(status: &Status) -> bool {
    use std::error::Error as _;
    status.source().is_some()
        || status.message().contains("transport error")
        || status.message().contains("connection")
}

/// A transport failure as etcd clients expect it: `Unavailable` (tonic reports a reset
/// connection as `Unknown`), naming the upstream. An upstream's own answer is kept as is.
fn unavailable_if_transport(status: Status, up: &Upstream) -> Status {
    if is_transport(&status) && status.code() != tonic::Code::Unavailable {
        Status::unavailable(format!(
            "mango-proxy: upstream {}: {}",
            up.url,
            status.message()
        ))
    } else {
        status
    }
}

/// Whether the request never reached the upstream: the connection was refused.
fn connection_refused(status: &Status) -> bool {
    use std::error::Error as _;
    let mut source: Option<&(dyn std::error::Error + 'static)> = status.source();
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return true;
        }
        if e.to_string().contains("tcp connect error") {
            return true;
        }
        source = e.source();
    }
    false
}

/// Whether a failed write provably was not applied, so it may be sent again.
pub fn not_applied(status: &Status) -> bool {
    connection_refused(status)
        || (status.code() == tonic::Code::Unavailable
            && status.message() == "etcdserver: no leader")
}

/// Whether a failed read may be tried again elsewhere.
fn retryable_read(status: &Status) -> bool {
    status.code() == tonic::Code::Unavailable || is_transport(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_refused_connection_is_provably_not_applied() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(1);
        let u =
            Upstream::new(&format!("http://127.0.0.1:{port}")).unwrap_or_else(|e| panic!("{e}"));
        let Err(err) = status(&u, Duration::from_secs(2)).await else {
            panic!("nothing listens there");
        };
        assert!(is_transport(&err), "{err:?}");
        assert!(not_applied(&err), "{err:?}");
        assert!(retryable_read(&err));
        let answered = Status::unavailable("etcdserver: leader changed");
        assert!(!not_applied(&answered) && !is_transport(&answered));
        assert!(not_applied(&Status::unavailable("etcdserver: no leader")));
        assert_eq!(backoff(0), Duration::from_millis(20));
        assert_eq!(backoff(30), Duration::from_millis(400));
    }

    #[tokio::test]
    async fn the_limit_sheds_with_etcds_error() {
        let p =
            Proxy::new(&[], &[], Duration::from_secs(1), 1, 1).unwrap_or_else(|e| panic!("{e}"));
        let held = p.admit();
        assert!(held.is_ok());
        let Err(refused) = p.admit() else {
            panic!("over the limit");
        };
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert_eq!(refused.message(), "etcdserver: too many requests");
        drop(held);
        assert!(p.admit().is_ok());
        assert_eq!(p.counters().shed.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn latency_lands_in_its_bucket() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(300));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(9));
        assert_eq!(h.buckets[0].load(Ordering::Relaxed), 1);
        assert_eq!(h.buckets[3].load(Ordering::Relaxed), 1);
        assert_eq!(h.buckets[12].load(Ordering::Relaxed), 1);
        assert_eq!(h.count.load(Ordering::Relaxed), 3);
        assert_eq!(h.sum_micros.load(Ordering::Relaxed), 9_003_300);
    }
}
