//! The bottom of the stack: one attempt on one upstream.
//!
//! A leader-bound attempt with no leader known first waits for a lookup (up to 3 s, or the
//! deadline) rather than go through a follower. The upstream is the leader, or for reads the
//! less loaded of two learners (the voters if none is up), skipping those already tried
//! (`Proxy::pick_again`). A success readmits the upstream; a transport error counts
//! towards ejecting it. Whether to try again is the retry layer's business.

use std::future::Future;
use std::task::{Context, Poll};

use tokio::time::Instant;
use tonic::transport::Channel;
use tonic::{Extensions, Request, Response, Status};
use tower::Service;

use super::retry::is_transport;
use super::{Answer, BoxFuture, Failure, Forward};
use crate::route::{Proxy, Route};

/// Makes one attempt of a [`Forward`] with `call` (a generated client's method).
#[derive(Clone)]
pub struct Router<F> {
    proxy: Proxy,
    call: F,
}

impl<F> Router<F> {
    /// The router over `proxy`'s upstreams, calling with `call`.
    pub fn new(proxy: Proxy, call: F) -> Self {
        Self { proxy, call }
    }
}

impl<Req, Resp, F, Fut> Service<Forward<Req>> for Router<F>
where
    Req: Send + 'static,
    Resp: Send + 'static,
    F: Fn(Channel, Request<Req>) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<Response<Resp>, Status>> + Send + 'static,
{
    type Response = Answer<Resp>;
    type Error = Failure;
    type Future = BoxFuture<'static, Result<Answer<Resp>, Failure>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Failure>> {
        // Channels connect lazily and multiplex: always ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Forward<Req>) -> Self::Future {
        let proxy = self.proxy.clone();
        let call = self.call.clone();
        Box::pin(async move {
            let started = Instant::now();
            let Forward {
                route,
                metadata,
                message,
                deadline,
                mut tried,
                ..
            } = req;
            if matches!(route, Route::Leader { .. }) {
                proxy.await_leader(deadline).await;
            }
            let up = proxy
                .pick_again(route, &mut tried)
                .map_err(|status| Failure {
                    status,
                    upstream: None,
                    started,
                })?;
            let load = up.start();
            let out = Request::from_parts(metadata, Extensions::default(), message);
            match call(up.channel(), out).await {
                Ok(response) => {
                    up.succeeded();
                    Ok(Answer {
                        response,
                        load,
                        permit: None,
                    })
                }
                Err(status) => {
                    drop(load);
                    if is_transport(&status) {
                        up.failed(proxy.eject_after());
                    }
                    Err(Failure {
                        status,
                        upstream: Some(up),
                        started,
                    })
                }
            }
        })
    }
}
