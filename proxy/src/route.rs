//! Where a request goes ([`Route`]) and the state routing needs ([`Proxy`]): the voters and
//! learners as [`Pool`]s, the leader as the voters' Status answers name it, the limits and
//! the counters. Forwarding itself (limits, timeout, retries, latency) is the tower stack
//! in [`crate::stack`].
//!
//! The leader is the voter whose own Status header id equals the leader its peers report at
//! the highest term; it is looked up every health interval, after a failed leader-bound
//! attempt that is retried, and when a response header shows a newer Raft term.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_stream::Stream;
use tonic::Status;
use tonic::metadata::MetadataMap;

use crate::stack::latency::Histogram;
use crate::upstream::{Pool, Upstream};

/// A stream of responses handed back to a client.
pub type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Metadata keys passed through to upstreams: the consistency level, etcd's auth token and
/// etcd's require-leader flag for watches.
const PASSED_METADATA: [&str; 4] = [
    mango_rpctypes::CONSISTENCY_HEADER,
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
    /// Whether any failure of a request on this route may be retried.
    pub fn idempotent(self) -> bool {
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
    /// Unary requests refused by the concurrency limit.
    pub shed: AtomicU64,
    /// Streams and blocking calls refused by the limit on them.
    pub streams_shed: AtomicU64,
    /// Time of unary requests routed to the leader, retries included.
    pub leader_latency: Histogram,
    /// Time of unary requests routed to the read pool, retries included.
    pub reads_latency: Histogram,
    /// Reads (Ranges and read-only Txns) by consistency level, in [`READ_LEVELS`] order.
    pub reads_by_level: [AtomicU64; 4],
}

/// The consistency levels reads are counted by, as the metric's `level` label.
pub const READ_LEVELS: [&str; 4] = ["linearizable", "learner-linearizable", "stale", "bounded"];

impl Counters {
    /// Counts one read at `level`.
    pub fn count_read(&self, level: mango_rpctypes::Consistency) {
        use mango_rpctypes::Consistency as C;
        let i = match level {
            C::Linearizable => 0,
            C::LearnerLinearizable => 1,
            C::Stale => 2,
            C::Bounded(_) => 3,
        };
        self.reads_by_level[i].fetch_add(1, Ordering::Relaxed);
    }
}

impl Counters {
    /// The latency histogram of `route`.
    pub fn latency(&self, route: Route) -> &Histogram {
        match route {
            Route::Leader { .. } => &self.leader_latency,
            Route::Reads => &self.reads_latency,
        }
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
    /// Unary requests in flight at most (`--max-concurrent-requests`).
    limit: Arc<Semaphore>,
    /// Streams and blocking calls open at most (`--max-concurrent-streams`).
    streams: Arc<Semaphore>,
    /// Its size.
    max_streams: usize,
    /// The time budget of one unary request, retries included.
    timeout: Duration,
    /// Failures in a row that eject an upstream.
    eject_after: u32,
    /// What went where.
    counters: Counters,
    /// Whether the voters report auth enabled (Status metadata), as of the last lookup.
    auth_enabled: std::sync::atomic::AtomicBool,
}

impl Proxy {
    /// A proxy over these voters and learners (`https://` ones reached over `upstream_tls`).
    pub fn new(
        voters: &[String],
        learners: &[String],
        upstream_tls: Option<&mango_tls::GrpcClientTls>,
        timeout: Duration,
        max_concurrent: usize,
        max_streams: usize,
        eject_after: u32,
    ) -> anyhow::Result<Self> {
        Ok(Self(Arc::new(Shared {
            voters: Pool::new(voters, upstream_tls)?,
            learners: Pool::new(learners, upstream_tls)?,
            leader: AtomicUsize::new(UNKNOWN),
            looked_up: tokio::sync::Mutex::new(Instant::now()),
            auth_enabled: std::sync::atomic::AtomicBool::new(false),
            term: AtomicU64::new(0),
            limit: Arc::new(Semaphore::new(max_concurrent.max(1))),
            streams: Arc::new(Semaphore::new(max_streams.max(1))),
            max_streams: max_streams.max(1),
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

    /// The permits of the unary concurrency limit.
    pub(crate) fn limit(&self) -> Arc<Semaphore> {
        self.0.limit.clone()
    }

    /// The permits of the limit on streams and blocking calls.
    pub(crate) fn streams(&self) -> Arc<Semaphore> {
        self.0.streams.clone()
    }

    /// Streams and blocking calls open now.
    pub fn streams_open(&self) -> usize {
        self.0
            .max_streams
            .saturating_sub(self.0.streams.available_permits())
    }

    /// The time budget of one unary request, retries included.
    pub(crate) fn timeout(&self) -> Duration {
        self.0.timeout
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
        let mut auth = false;
        for call in calls {
            let Ok((answer, u)) = call.await else {
                continue;
            };
            match answer {
                Ok((s, auth_on)) => {
                    u.succeeded();
                    auth |= auth_on;
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
        if self.0.auth_enabled.swap(auth, Ordering::Relaxed) != auth {
            tracing::info!(
                auth,
                "auth enabled changed: the stale-read cache is off while it is on"
            );
        }
        let old = self.0.leader.swap(index, Ordering::Relaxed);
        if old != index {
            tracing::info!(leader = ?self.leader_url(), "leader changed");
        }
        *last = Instant::now();
    }

    /// Whether the voters last reported auth enabled: the shared stale-read cache is not
    /// served then.
    pub fn auth_enabled(&self) -> bool {
        self.0.auth_enabled.load(Ordering::Relaxed)
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
    pub(crate) async fn await_leader(&self, deadline: Option<Instant>) {
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

    /// Whether `up` is one of the learners (else a voter).
    pub fn is_learner(&self, up: &Arc<Upstream>) -> bool {
        self.0.learners.members().iter().any(|l| Arc::ptr_eq(l, up))
    }

    /// Whether a learner is up: configured and not ejected by the health checks.
    pub fn learner_available(&self) -> bool {
        self.0.learners.members().iter().any(|l| !l.is_ejected())
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
    pub(crate) fn pick_again(
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

    /// Forgets the leader if it is `up` (an attempt on it failed), so the next lookup
    /// decides afresh.
    pub(crate) fn forget_leader(&self, up: &Arc<Upstream>) {
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
    }
}

/// The Status of one upstream, bounded by `timeout`, and whether it reports auth enabled.
pub(crate) async fn status(
    u: &Upstream,
    timeout: Duration,
) -> Result<(mango_proto::etcdserverpb::StatusResponse, bool), Status> {
    use mango_proto::etcdserverpb::StatusRequest;
    use mango_proto::etcdserverpb::maintenance_client::MaintenanceClient;
    let mut client = MaintenanceClient::new(u.channel());
    let response = tokio::time::timeout(timeout, client.status(StatusRequest {}))
        .await
        .map_err(|_| Status::deadline_exceeded("status timed out"))??;
    let auth = response
        .metadata()
        .get(mango_rpctypes::AUTH_ENABLED_HEADER)
        .is_some_and(|v| v == "true");
    Ok((response.into_inner(), auth))
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
