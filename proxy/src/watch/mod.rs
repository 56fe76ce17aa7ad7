//! etcd's Watch service through the proxy, with identical watches coalesced as etcd's
//! grpc-proxy does: many client watches, one upstream watch on a learner ([`broadcast`]).
//!
//! Each client stream has a task that reads its requests and a bounded queue its responses
//! go through ([`outbox`]). The proxy speaks for the upstream on the client's stream:
//! - create: the proxy assigns the watch id (etcd's rules: the client's own if it names
//!   one not in use, else counting from 0; a duplicate is refused as etcd refuses it), and the
//!   watch joins or starts an upstream watch. The stream's next request is handled once the
//!   created response is queued, so created responses come in request order, as clients
//!   expect;
//! - cancel: the watch leaves its upstream watch (the last one out cancels it upstream) and
//!   gets a canceled response; an unknown id gets nothing, as from etcd;
//! - progress: each upstream watch of the stream is asked for its progress and the stream gets
//!   one response (watch id -1) at the lowest revision they report, after every event up to it;
//!   a stream without watches gets the current revision of a learner.

pub mod broadcast;
pub mod outbox;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use mango_proto::etcdserverpb::kv_client::KvClient;
use mango_proto::etcdserverpb::watch_request::RequestUnion;
use mango_proto::etcdserverpb::watch_server::Watch;
use mango_proto::etcdserverpb::{
    RangeRequest, ResponseHeader, WatchCreateRequest, WatchRequest, WatchResponse,
};
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status, Streaming};

use crate::route::{BoxStream, Route, passed};
use broadcast::{Broadcast, Registry};
use outbox::Outbox;

/// How long a progress request waits for the upstream watches' answers.
const PROGRESS_WAIT: Duration = Duration::from_secs(5);

/// The Watch service of the proxy.
#[derive(Clone)]
pub struct WatchProxy {
    /// The upstream watches, shared or not.
    registry: Arc<Registry>,
}

impl WatchProxy {
    /// The service over `registry`.
    pub fn new(registry: Arc<Registry>) -> Self {
        Self { registry }
    }
}

#[tonic::async_trait]
impl Watch for WatchProxy {
    type WatchStream = BoxStream<WatchResponse>;

    async fn watch(
        &self,
        req: Request<Streaming<WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        // A watch stream counts once against the stream limit, for its whole life.
        let permit = crate::stack::limit::admit_stream(self.registry.proxy())?;
        let (md, _, incoming) = req.into_parts();
        let (outbox, stream) = Outbox::new(self.registry.client_id());
        let client = Client {
            registry: self.registry.clone(),
            metadata: passed(&md),
            outbox,
            watches: HashMap::new(),
            next_id: 0,
        };
        tokio::spawn(client.run(incoming));
        let stream = tokio_stream::StreamExt::map(stream, move |item| {
            let _held = &permit;
            item
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

/// One client stream.
struct Client {
    registry: Arc<Registry>,
    /// Metadata passed upstream (and part of what makes watches identical).
    metadata: MetadataMap,
    /// The client's queue.
    outbox: Arc<Outbox>,
    /// The client's watches by id.
    watches: HashMap<i64, Arc<Broadcast>>,
    /// The next id to try for a create that names none.
    next_id: i64,
}

impl Client {
    async fn run(mut self, mut incoming: Streaming<WatchRequest>) {
        loop {
            let request = tokio::select! {
                msg = incoming.message() => match msg {
                    Ok(Some(r)) => r,
                    _ => break,
                },
                () = self.outbox.cut.notified() => break,
                () = self.outbox.closed() => break,
            };
            if self.request(request).await.is_err() {
                break;
            }
        }
        if self.outbox.is_cut() {
            self.registry
                .counters
                .slow_clients
                .fetch_add(1, Ordering::Relaxed);
        }
        for (id, b) in self.watches.drain() {
            self.registry.leave(&b, self.outbox.id, id);
        }
    }

    async fn request(&mut self, request: WatchRequest) -> Result<(), outbox::Refused> {
        match request.request_union {
            Some(RequestUnion::CreateRequest(create)) => self.create(create).await,
            Some(RequestUnion::CancelRequest(cancel)) => {
                let Some(b) = self.watches.remove(&cancel.watch_id) else {
                    return Ok(());
                };
                if !self.registry.leave(&b, self.outbox.id, cancel.watch_id) {
                    // Its upstream watch had already ended it.
                    return Ok(());
                }
                self.outbox.post(WatchResponse {
                    header: Some(b.header()),
                    watch_id: cancel.watch_id,
                    canceled: true,
                    ..Default::default()
                })
            }
            Some(RequestUnion::ProgressRequest(_)) => self.progress().await,
            None => Ok(()),
        }
    }

    async fn create(&mut self, create: WatchCreateRequest) -> Result<(), outbox::Refused> {
        // Watches ended by their upstream free their ids.
        let client = self.outbox.id;
        self.watches.retain(|id, b| b.is_member(client, *id));
        let watch_id = if create.watch_id == 0 {
            while self.watches.contains_key(&self.next_id) {
                self.next_id += 1;
            }
            self.next_id += 1;
            self.next_id - 1
        } else if self.watches.contains_key(&create.watch_id) {
            return self.outbox.post(WatchResponse {
                header: Some(ResponseHeader::default()),
                watch_id: -1,
                created: true,
                canceled: true,
                cancel_reason: mango_rpctypes::DUPLICATE_WATCH_ID.message.to_string(),
                ..Default::default()
            });
        } else {
            create.watch_id
        };
        let (b, created) = self
            .registry
            .join(&self.outbox, watch_id, &create, &self.metadata);
        self.watches.insert(watch_id, b);
        tokio::select! {
            _ = created => Ok(()),
            () = self.outbox.cut.notified() => {
                // Still cut off: `run` sees the flag.
                self.outbox.cut.notify_one();
                Ok(())
            }
            () = self.outbox.closed() => Err(outbox::Refused::Gone),
        }
    }

    async fn progress(&mut self) -> Result<(), outbox::Refused> {
        let asked: Vec<_> = self.watches.values().map(|b| b.progress()).collect();
        let answer = if asked.is_empty() {
            self.current_header().await
        } else {
            let mut lowest: Option<(ResponseHeader, i64)> = None;
            for a in asked {
                let Ok(Ok((header, rev))) = tokio::time::timeout(PROGRESS_WAIT, a).await else {
                    // An upstream watch could not say (resuming, or ended): no answer, as
                    // etcd gives none while a watch is catching up.
                    return Ok(());
                };
                if lowest.as_ref().is_none_or(|(_, r)| rev < *r) {
                    lowest = Some((header, rev));
                }
            }
            lowest.map(|(header, revision)| ResponseHeader { revision, ..header })
        };
        let Some(header) = answer else {
            return Ok(());
        };
        self.outbox.post(WatchResponse {
            header: Some(header),
            watch_id: -1,
            ..Default::default()
        })
    }

    /// The header of a learner's answer to a tiny stale read: its current revision.
    async fn current_header(&self) -> Option<ResponseHeader> {
        let req = Request::from_parts(
            self.metadata.clone(),
            tonic::Extensions::default(),
            RangeRequest {
                key: vec![0],
                count_only: true,
                serializable: true,
                ..Default::default()
            },
        );
        self.registry
            .proxy()
            .unary(Route::Reads, req, |ch, r| async move {
                KvClient::new(ch).range(r).await
            })
            .await
            .ok()
            .and_then(|r| r.into_inner().header)
    }
}
