//! The retry policy ([`Attempts`], for tower's `Retry`) and the failure classification
//! behind it.
//!
//! An idempotent read is retried, with backoff, on another upstream after a transport error
//! or an `Unavailable` answer (at most 4 attempts), within the request's time budget. A
//! write is retried (at most 12 attempts) only when the failure proves it was never applied:
//! the connection was refused (nothing was sent), or the voter answered "etcdserver: no
//! leader" (raft-rs drops a proposal made with no leader). Any other failure of a write (a
//! reset connection, "leader changed", a timeout) is returned to the client as is: the
//! write may or may not have been applied, and only the client can decide whether repeating
//! it is safe, as with etcd itself. Before retrying a leader-bound request, the leader is
//! forgotten if it was the upstream that failed, and looked up again.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;
use tonic::Status;
use tower::retry::Policy;

use super::{Answer, BoxFuture, Failure, Forward};
use crate::route::{Proxy, Route};

/// The policy: see the module doc. Per-request state (what was tried, how often) lives in
/// the [`Forward`] the retry layer keeps a clone of.
#[derive(Clone)]
pub struct Attempts {
    proxy: Proxy,
}

impl Attempts {
    /// The policy over `proxy`'s leader lookups and counters.
    pub fn new(proxy: Proxy) -> Self {
        Self { proxy }
    }
}

impl<M: Clone, R> Policy<Forward<M>, Answer<R>, Failure> for Attempts {
    type Future = BoxFuture<'static, ()>;

    fn retry(
        &mut self,
        req: &mut Forward<M>,
        result: &mut Result<Answer<R>, Failure>,
    ) -> Option<Self::Future> {
        let failure = result.as_ref().err()?;
        // No upstream to try: nothing else to try either.
        let up = failure.upstream.clone()?;
        let deadline = req
            .deadline
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        let wait = decide(
            req.idempotent,
            &failure.status,
            req.attempt,
            Instant::now(),
            deadline,
        )?;
        tracing::debug!(upstream = %up.url, status = %failure.status, attempt = req.attempt, "retrying");
        req.tried.push(up.clone());
        req.attempt += 1;
        self.proxy
            .counters()
            .retries
            .fetch_add(1, Ordering::Relaxed);
        let proxy = self.proxy.clone();
        let leader_bound = matches!(req.route, Route::Leader { .. });
        let since = failure.started;
        Some(Box::pin(async move {
            if leader_bound {
                proxy.forget_leader(&up);
                proxy.find_leader(since).await;
            }
            tokio::time::sleep(wait).await;
        }))
    }

    fn clone_request(&mut self, req: &Forward<M>) -> Option<Forward<M>> {
        Some(req.clone())
    }
}

/// Whether attempt `attempt` (0 for the first) that failed with `status` is tried again,
/// and after how long: `None` when it may not be repeated, attempts are used up, or the
/// backoff would end past `deadline`.
pub fn decide(
    idempotent: bool,
    status: &Status,
    attempt: u32,
    now: Instant,
    deadline: Instant,
) -> Option<Duration> {
    let retry = if idempotent {
        retryable_read(status)
    } else {
        not_applied(status)
    };
    let max_attempts = if idempotent { 4 } else { 12 };
    let wait = backoff(attempt);
    (retry && attempt + 1 < max_attempts && now + wait < deadline).then_some(wait)
}

/// Backoff before attempt `attempt + 1`: 20 ms doubling, at most 400 ms.
pub fn backoff(attempt: u32) -> Duration {
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
pub fn retryable_read(status: &Status) -> bool {
    status.code() == tonic::Code::Unavailable || is_transport(status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::Upstream;

    #[tokio::test]
    async fn a_refused_connection_is_provably_not_applied() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(1);
        let u = Upstream::new(&format!("http://127.0.0.1:{port}"), None)
            .unwrap_or_else(|e| panic!("{e}"));
        let Err(err) = crate::route::status(&u, Duration::from_secs(2)).await else {
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

    #[test]
    fn writes_are_retried_only_when_provably_not_applied() {
        let now = Instant::now();
        let later = now + Duration::from_secs(5);
        let no_leader = Status::unavailable("etcdserver: no leader");
        let changed = Status::unavailable("etcdserver: leader changed");
        let internal = Status::internal("boom");
        // Reads: any Unavailable, 4 attempts at most.
        assert_eq!(
            decide(true, &changed, 0, now, later),
            Some(Duration::from_millis(20))
        );
        assert_eq!(decide(true, &changed, 3, now, later), None);
        assert_eq!(decide(true, &internal, 0, now, later), None);
        // Writes: only "no leader" (or a refused connection), 12 attempts at most.
        assert_eq!(decide(false, &changed, 0, now, later), None);
        assert_eq!(
            decide(false, &no_leader, 10, now, later),
            Some(Duration::from_millis(400))
        );
        assert_eq!(decide(false, &no_leader, 11, now, later), None);
        // Never past the deadline.
        let soon = now + Duration::from_millis(30);
        assert_eq!(decide(true, &changed, 1, now, soon), None);
    }
}
