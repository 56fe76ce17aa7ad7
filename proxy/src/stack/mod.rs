//! The tower service stack every forwarded call goes through, one layer per file.
//!
//! ```text
//! unary (KV, Lease, Cluster, Maintenance, Unlock, Proclaim, Resign, Leader):
//!   LoadShed → GlobalConcurrencyLimit → Latency → Timeout → Retry(Attempts) → Router
//! blocking calls (Lock, Campaign):
//!   StreamLimit → Retry(Attempts) → Router
//! stream opens (Snapshot, Observe, LeaseKeepAlive; Watch is answered by the proxy itself
//! and takes a stream permit directly):
//!   StreamLimit → Timeout → Retry(Attempts) → Router
//! ```
//!
//! - `LoadShed` over tower's `ConcurrencyLimit` (one semaphore of
//!   `--max-concurrent-requests` permits shared by every call): a request beyond the limit is
//!   refused at once with etcd's `ResourceExhausted` "etcdserver: too many requests" instead
//!   of queueing, and a permit is held until the answer, retries included ([`errors`]).
//! - [`latency`]: the per-route latency histograms (`/metrics`), retries and timeouts
//!   included, shed requests excluded.
//! - tower's `Timeout` (`--request-timeout-ms`) bounds a request with all its retries; at the
//!   deadline the client gets etcd's `Unavailable` "etcdserver: request timed out" (etcd's
//!   `ErrTimeout`).
//! - [`retry`]: tower's `Retry` with [`retry::Attempts`], the policy: idempotent reads on
//!   `Unavailable` or transport errors, writes only when provably not applied, each time on
//!   an upstream not tried yet, after a backoff.
//! - [`router`]: the bottom service: waits for a known leader if the route needs one, picks
//!   the upstream ([`crate::route::Proxy`]), counts its load, makes the call.
//! - [`limit`]: why streams have their own limit, and the layer holding it.
//!
//! The stacks are assembled per call (each layer is a few pointers; the semaphores are
//! shared), because each gRPC method's call is its own closure type.

pub mod errors;
pub mod latency;
pub mod limit;
pub mod retry;
pub mod router;
mod streams;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use tonic::metadata::MetadataMap;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::load_shed::LoadShedLayer;
use tower::retry::RetryLayer;
use tower::timeout::TimeoutLayer;
use tower::{ServiceBuilder, ServiceExt as _};

use crate::route::{Proxy, Route, passed};
use crate::upstream::{InFlight, Upstream};

pub use tower::BoxError;

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One client request on its way through the stack: the message, where it goes and what
/// the earlier attempts learnt.
#[derive(Clone)]
pub struct Forward<M> {
    /// Where it goes.
    pub route: Route,
    /// Any failure may be retried (else only a provably unapplied one).
    pub idempotent: bool,
    /// The metadata passed upstream.
    pub metadata: MetadataMap,
    /// The message, sent unchanged.
    pub message: M,
    /// The end of the time budget, if the call has one.
    pub deadline: Option<Instant>,
    /// Upstreams earlier attempts failed on.
    pub tried: Vec<Arc<Upstream>>,
    /// Attempts made before this one.
    pub attempt: u32,
}

impl<M> Forward<M> {
    /// The request `req` along `route`, due by `deadline`.
    pub fn new(route: Route, req: Request<M>, deadline: Option<Instant>) -> Self {
        let (md, _, message) = req.into_parts();
        Self {
            route,
            idempotent: route.idempotent(),
            metadata: passed(&md),
            message,
            deadline,
            tried: Vec::new(),
            attempt: 0,
        }
    }
}

/// An upstream's answer and what it holds while the client uses it: the upstream's load
/// and, for streams and blocking calls, the permit of their limit.
pub struct Answer<R> {
    /// The answer (a message, or the upstream's response stream).
    pub response: Response<R>,
    /// Counts on the answering upstream's load.
    pub load: InFlight,
    /// The stream limit's permit, if the call took one.
    pub permit: Option<OwnedSemaphorePermit>,
}

/// A failed attempt: the upstream's status and which upstream it was.
pub struct Failure {
    /// The status (from the upstream, or tonic's for a transport error).
    pub status: Status,
    /// The upstream tried; `None` if there was none to try.
    pub upstream: Option<Arc<Upstream>>,
    /// When the attempt started (a leader lookup after it only counts if newer).
    pub started: Instant,
}

impl std::fmt::Debug for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Failure")
            .field("status", &self.status)
            .field("upstream", &self.upstream.as_ref().map(|u| u.url.as_str()))
            .finish()
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.upstream {
            Some(u) => write!(f, "upstream {}: {}", u.url, self.status.message()),
            None => write!(f, "{}", self.status.message()),
        }
    }
}

impl std::error::Error for Failure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.status)
    }
}

impl Proxy {
    /// Forwards a unary request along `route` through the unary stack (see the module doc):
    /// shed beyond the limit, bounded by the request timeout, retried by [`retry::Attempts`].
    pub async fn unary<Req, Resp, F, Fut>(
        &self,
        route: Route,
        req: Request<Req>,
        call: F,
    ) -> Result<Response<Resp>, Status>
    where
        Req: Clone + Send + 'static,
        Resp: Send + 'static,
        F: Fn(Channel, Request<Req>) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = Result<Response<Resp>, Status>> + Send + 'static,
    {
        let deadline = Instant::now() + self.timeout();
        let stack = ServiceBuilder::new()
            .layer(LoadShedLayer::new())
            .layer(GlobalConcurrencyLimitLayer::with_semaphore(self.limit()))
            .layer(latency::LatencyLayer::new(self.clone()))
            .layer(TimeoutLayer::new(self.timeout()))
            .layer(RetryLayer::new(retry::Attempts::new(self.clone())))
            .service(router::Router::new(self.clone(), call));
        let answer = stack
            .oneshot(Forward::new(route, req, Some(deadline)))
            .await
            .map_err(|e| errors::to_status(e, self))?;
        Ok(Response::new(answer.response.into_inner()))
    }

    /// Like [`Proxy::unary`] but for calls that block by design (Lock, Campaign): not bounded
    /// by the request timeout, and counted by the stream limit rather than the unary one
    /// (see [`limit`]).
    pub async fn unary_blocking<Req, Resp, F, Fut>(
        &self,
        route: Route,
        req: Request<Req>,
        call: F,
    ) -> Result<Response<Resp>, Status>
    where
        Req: Clone + Send + 'static,
        Resp: Send + 'static,
        F: Fn(Channel, Request<Req>) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = Result<Response<Resp>, Status>> + Send + 'static,
    {
        let stack = ServiceBuilder::new()
            .layer(limit::StreamLimitLayer::new(self.streams()))
            .layer(RetryLayer::new(retry::Attempts::new(self.clone())))
            .service(router::Router::new(self.clone(), call));
        let answer = stack
            .oneshot(Forward::new(route, req, None))
            .await
            .map_err(|e| errors::to_status(e, self))?;
        Ok(Response::new(answer.response.into_inner()))
    }
}
