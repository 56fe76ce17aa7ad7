//! The limit on streams and blocking calls (`--max-concurrent-streams`), separate from the
//! unary concurrency limit.
//!
//! Why separate, and held for the stream's life rather than counted at open time: a unary
//! permit is held for milliseconds, a Watch, LeaseKeepAlive, Snapshot or Observe stream (or a
//! Lock or Campaign call, which waits until granted) for minutes or days. Counted in the
//! unary limit, a few thousand idle watches would use it up and every read and write would be
//! refused; counted only while opening, nothing would bound what open streams hold in the
//! proxy (a task, queues of up to 16 MiB per watch stream, an upstream stream each). So each
//! such call takes a permit of its own semaphore when it opens and gives it back when the
//! client's stream ends (or the blocking call returns); beyond the limit it is refused at
//! once with etcd's `ResourceExhausted` "etcdserver: too many requests", as unary requests
//! are. A watch stream counts once however many watches it carries (they share its queue).

use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::Status;
use tower::{Layer, Service};

use super::{Answer, BoxError, BoxFuture, Forward, errors};
use crate::route::Proxy;

/// The stream limit refused a call.
#[derive(Debug)]
pub struct TooManyStreams;

impl std::fmt::Display for TooManyStreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("too many streams")
    }
}

impl std::error::Error for TooManyStreams {}

/// Takes a stream permit for a stream the proxy answers itself (Watch), or refuses.
pub fn admit_stream(proxy: &Proxy) -> Result<OwnedSemaphorePermit, Status> {
    proxy
        .streams()
        .try_acquire_owned()
        .map_err(|_| errors::to_status(Box::new(TooManyStreams), proxy))
}

/// Takes a permit of `permits` for each call, or refuses it with [`TooManyStreams`]; the
/// permit rides the [`Answer`] (and so the client's stream).
#[derive(Clone)]
pub struct StreamLimitLayer {
    permits: Arc<Semaphore>,
}

impl StreamLimitLayer {
    /// The layer over these permits.
    pub fn new(permits: Arc<Semaphore>) -> Self {
        Self { permits }
    }
}

impl<S> Layer<S> for StreamLimitLayer {
    type Service = StreamLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        StreamLimit {
            inner,
            permits: self.permits.clone(),
        }
    }
}

/// See [`StreamLimitLayer`].
#[derive(Clone)]
pub struct StreamLimit<S> {
    inner: S,
    permits: Arc<Semaphore>,
}

impl<S, M, R> Service<Forward<M>> for StreamLimit<S>
where
    S: Service<Forward<M>, Response = Answer<R>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    R: Send + 'static,
{
    type Response = Answer<R>;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Answer<R>, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Forward<M>) -> Self::Future {
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            return Box::pin(std::future::ready(
                Err(Box::new(TooManyStreams) as BoxError),
            ));
        };
        let answer = self.inner.call(req);
        Box::pin(async move {
            let mut answer = answer.await.map_err(Into::into)?;
            answer.permit = Some(permit);
            Ok(answer)
        })
    }
}
