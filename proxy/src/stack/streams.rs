//! Streams through the stack: server streams (Snapshot, Observe) and bidirectional ones
//! (LeaseKeepAlive). Opening one is a call like a unary one (limited by the stream limit,
//! bounded by the request timeout, retried by the same policy); the opened stream then
//! carries the stream permit and the upstream's load until the client's stream ends.

use std::future::Future;

use tokio::time::Instant;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Request, Response, Status, Streaming};
use tower::retry::RetryLayer;
use tower::timeout::TimeoutLayer;
use tower::{ServiceBuilder, ServiceExt as _};

use super::retry::is_transport;
use super::{Answer, Forward, errors, limit, retry, router};
use crate::route::{BoxStream, Proxy, Route};

impl Proxy {
    /// Forwards a server-streaming call; failures to open it are retried as for a unary
    /// call of the same route, the stream itself is passed through.
    pub async fn server_stream<Req, Resp, F, Fut>(
        &self,
        route: Route,
        req: Request<Req>,
        call: F,
    ) -> Result<Response<BoxStream<Resp>>, Status>
    where
        Req: Clone + Send + 'static,
        Resp: Send + 'static,
        F: Fn(Channel, Request<Req>) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = Result<Response<Streaming<Resp>>, Status>> + Send + 'static,
    {
        let deadline = Instant::now() + self.timeout();
        let stack = ServiceBuilder::new()
            .layer(limit::StreamLimitLayer::new(self.streams()))
            .layer(TimeoutLayer::new(self.timeout()))
            .layer(RetryLayer::new(retry::Attempts::new(self.clone())))
            .service(router::Router::new(self.clone(), call));
        let Answer {
            response,
            load,
            permit,
        } = stack
            .oneshot(Forward::new(route, req, Some(deadline)))
            .await
            .map_err(|e| errors::to_status(e, self))?;
        let stream = response.into_inner().map(move |item| {
            let _held = (&load, &permit);
            item
        });
        Ok(Response::new(Box::pin(stream)))
    }

    /// Forwards a bidirectional stream (LeaseKeepAlive) to one upstream of `route`: the
    /// client's messages are pumped to it and its answers passed back, until either side
    /// ends. Opening is retried on another upstream whatever the failure (nothing of the
    /// client's stream was consumed yet); once open, an upstream failure ends the client's
    /// stream with the error (etcd clients reopen their keep-alives).
    pub async fn bidi<Req, Resp, F, Fut>(
        &self,
        route: Route,
        req: Request<Streaming<Req>>,
        call: F,
    ) -> Result<Response<BoxStream<Resp>>, Status>
    where
        Req: Send + 'static,
        Resp: Send + 'static,
        F: Fn(Channel, Request<ReceiverStream<Req>>) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = Result<Response<Streaming<Resp>>, Status>> + Send + 'static,
    {
        let deadline = Instant::now() + self.timeout();
        let (md, ext, mut incoming) = req.into_parts();
        // Each attempt gets its own channel for the client's messages; the successful one's
        // sender comes back with the answer.
        let open = move |ch: Channel, r: Request<()>| {
            let (tx, rx) = tokio::sync::mpsc::channel::<Req>(64);
            let (md, ext, ()) = r.into_parts();
            let opened = call(ch, Request::from_parts(md, ext, ReceiverStream::new(rx)));
            async move { opened.await.map(|resp| resp.map(|s| (s, tx))) }
        };
        let stack = ServiceBuilder::new()
            .layer(limit::StreamLimitLayer::new(self.streams()))
            .layer(TimeoutLayer::new(self.timeout()))
            .layer(RetryLayer::new(retry::Attempts::new(self.clone())))
            .service(router::Router::new(self.clone(), open));
        let mut forward = Forward::new(route, Request::from_parts(md, ext, ()), Some(deadline));
        forward.idempotent = true;
        let Answer {
            response,
            load,
            permit,
        } = stack
            .oneshot(forward)
            .await
            .map_err(|e| errors::to_status(e, self))?;
        let (upstream, tx) = response.into_inner();
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
        let eject_after = self.eject_after();
        let stream = upstream.map(move |item| {
            let _held = &permit;
            if let Err(s) = &item
                && is_transport(s)
            {
                load.upstream().failed(eject_after);
            }
            item
        });
        Ok(Response::new(Box::pin(stream)))
    }
}
