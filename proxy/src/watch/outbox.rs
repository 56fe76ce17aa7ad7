//! The sending side of one client's Watch stream: a bounded queue (messages and bytes) that
//! every upstream watch the client is part of posts into without waiting.
//!
//! A client that does not keep up is cut off, as etcd's grpc-proxy does (it cancels a client's
//! stream when a post waits more than 50 ms): when a post would exceed [`MAX_MESSAGES`] or
//! [`MAX_BYTES`], the stream ends with `Unavailable` and the client's watches leave their
//! upstream watches. etcd clients reopen the stream and resume each watch from the revision
//! after the last one they received (as their own upstream watch if the shared one is past
//! it). Posting never blocks, so one slow client never delays the others sharing its
//! upstream watch, and what a client can hold in the proxy is bounded.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use mango_proto::etcdserverpb::WatchResponse;
use prost::Message as _;
use tokio::sync::{Notify, mpsc};
use tokio_stream::Stream;
use tonic::Status;

/// Responses queued for one client stream at most.
pub const MAX_MESSAGES: usize = 1_024;
/// Bytes (encoded) of responses queued for one client stream at most; one response larger
/// than this is still let through when the queue is empty.
pub const MAX_BYTES: usize = 16 << 20;

/// One queued response.
pub enum Out {
    /// A response shared by every client of an upstream watch, sent with this client's id:
    /// queued once in memory however many clients hold it.
    Shared(Arc<WatchResponse>, i64),
    /// A response for this client only.
    Own(WatchResponse),
}

/// Why a post failed.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// The client was too slow and is being cut off.
    Slow,
    /// The client's stream is gone.
    Gone,
}

/// The client's queue, shared by the client's task, its upstream watches and its stream.
pub struct Outbox {
    /// Names the client among an upstream watch's members.
    pub id: u64,
    /// The queue the client's gRPC stream drains.
    tx: mpsc::Sender<(Out, usize)>,
    /// Encoded bytes in the queue.
    bytes: AtomicUsize,
    /// Set once the client was cut off for being slow.
    slow: AtomicBool,
    /// Wakes the client's task when it is cut off.
    pub cut: Notify,
}

impl Outbox {
    /// A queue for client `id` and the stream to hand to tonic.
    pub fn new(id: u64) -> (Arc<Self>, OutStream) {
        let (tx, rx) = mpsc::channel(MAX_MESSAGES);
        let outbox = Arc::new(Self {
            id,
            tx,
            bytes: AtomicUsize::new(0),
            slow: AtomicBool::new(false),
            cut: Notify::new(),
        });
        let stream = OutStream {
            rx,
            outbox: outbox.clone(),
            ended: false,
        };
        (outbox, stream)
    }

    /// Queues `out` of `len` encoded bytes, or cuts the client off if it would not fit.
    pub fn post_sized(&self, out: Out, len: usize) -> Result<(), Refused> {
        if self.slow.load(Ordering::Relaxed) {
            return Err(Refused::Slow);
        }
        let queued = self.bytes.fetch_add(len, Ordering::Relaxed);
        if queued > 0 && queued + len > MAX_BYTES {
            self.bytes.fetch_sub(len, Ordering::Relaxed);
            self.cut_off();
            return Err(Refused::Slow);
        }
        match self.tx.try_send((out, len)) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.bytes.fetch_sub(len, Ordering::Relaxed);
                self.cut_off();
                Err(Refused::Slow)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.bytes.fetch_sub(len, Ordering::Relaxed);
                Err(Refused::Gone)
            }
        }
    }

    /// Queues a response of this client's own.
    pub fn post(&self, response: WatchResponse) -> Result<(), Refused> {
        let len = response.encoded_len();
        self.post_sized(Out::Own(response), len)
    }

    fn cut_off(&self) {
        if !self.slow.swap(true, Ordering::Relaxed) {
            tracing::info!(client = self.id, "watch client too slow: stream closed");
            self.cut.notify_one();
        }
    }

    /// Whether the client was cut off.
    pub fn is_cut(&self) -> bool {
        self.slow.load(Ordering::Relaxed)
    }

    /// Resolves when the client's stream is dropped (the client went away).
    pub async fn closed(&self) {
        self.tx.closed().await
    }
}

/// The client's gRPC response stream: the queue, ending with `Unavailable` once cut off.
pub struct OutStream {
    /// The queue.
    rx: mpsc::Receiver<(Out, usize)>,
    /// For the byte count and the cut-off flag.
    outbox: Arc<Outbox>,
    /// The final error was returned.
    ended: bool,
}

impl Stream for OutStream {
    type Item = Result<WatchResponse, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        if self.outbox.is_cut() {
            self.ended = true;
            return Poll::Ready(Some(Err(Status::unavailable(
                "mango-proxy: watch stream closed: the client did not keep up; resume from \
                 the last revision received",
            ))));
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some((out, len))) => {
                self.outbox.bytes.fetch_sub(len, Ordering::Relaxed);
                let response = match out {
                    Out::Own(r) => r,
                    Out::Shared(shared, watch_id) => WatchResponse {
                        watch_id,
                        ..(*shared).clone()
                    },
                };
                Poll::Ready(Some(Ok(response)))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_stream::StreamExt as _;

    #[tokio::test]
    async fn a_full_queue_cuts_the_client_off() {
        let (outbox, mut stream) = Outbox::new(7);
        for _ in 0..MAX_MESSAGES {
            assert_eq!(outbox.post(WatchResponse::default()), Ok(()));
        }
        assert_eq!(outbox.post(WatchResponse::default()), Err(Refused::Slow));
        assert!(outbox.is_cut());
        let Some(Err(status)) = stream.next().await else {
            panic!("the stream ends with an error");
        };
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert!(stream.next().await.is_none());
    }

    #[tokio::test]
    async fn shared_responses_carry_each_clients_id() {
        let (outbox, mut stream) = Outbox::new(1);
        let shared = Arc::new(WatchResponse {
            watch_id: 99,
            ..Default::default()
        });
        assert_eq!(outbox.post_sized(Out::Shared(shared, 3), 10), Ok(()));
        let Some(Ok(r)) = stream.next().await else {
            panic!("a response");
        };
        assert_eq!(r.watch_id, 3);
        assert_eq!(outbox.bytes.load(Ordering::Relaxed), 0);
        assert_eq!(
            outbox.post_sized(Out::Own(WatchResponse::default()), MAX_BYTES + 1),
            Ok(()),
            "one large response fits an empty queue"
        );
        assert_eq!(
            outbox.post_sized(Out::Own(WatchResponse::default()), 1),
            Err(Refused::Slow)
        );
    }
}
