//! etcd's KV service through the proxy: the routing decision per request.
//!
//! | request | route |
//! |---|---|
//! | Range, linearizable (the default) | the leader, retried |
//! | Range, stale / bounded / learner-linearizable (or `serializable: true`) | learners, retried |
//! | Txn with only Range ops | as a Range at the Txn's level (stale when every Range is serializable) |
//! | Put, DeleteRange, Txn with writes, Compact | the leader, retried only when provably not applied |

use mango_proto::etcdserverpb::kv_client::KvClient;
use mango_proto::etcdserverpb::kv_server::Kv;
use mango_proto::etcdserverpb::request_op::Request as Op;
use mango_proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, ResponseHeader, TxnRequest, TxnResponse,
};
use mango_rpctypes::Consistency;
use tonic::{Request, Response, Status};

use std::sync::Arc;

use crate::cache::StaleCache;
use crate::route::{Proxy, Route};

/// The KV service of the proxy.
pub struct KvProxy {
    /// Routing and forwarding.
    proxy: Proxy,
    /// Stale Range answers, if the cache is on.
    cache: Option<Arc<StaleCache>>,
}

impl KvProxy {
    /// The service over `proxy`.
    pub fn new(proxy: Proxy, cache: Option<Arc<StaleCache>>) -> Self {
        Self { proxy, cache }
    }

    fn seen(&self, header: Option<&ResponseHeader>) {
        if let Some(h) = header {
            self.proxy.saw_term(h.raft_term);
        }
    }
}

/// The route of a read at `level`.
fn read_route(level: Consistency) -> Route {
    match level {
        Consistency::Linearizable => Route::Leader { idempotent: true },
        Consistency::LearnerLinearizable | Consistency::Stale | Consistency::Bounded(_) => {
            Route::Reads
        }
    }
}

/// `Some(all ranges serializable)` if the txn only reads, `None` if it writes.
fn read_only(txn: &TxnRequest) -> Option<bool> {
    let mut serializable = true;
    for op in txn.success.iter().chain(&txn.failure) {
        match &op.request {
            Some(Op::RequestRange(r)) => serializable &= r.serializable,
            Some(Op::RequestTxn(t)) => serializable &= read_only(t)?,
            Some(Op::RequestPut(_) | Op::RequestDeleteRange(_)) => return None,
            None => {}
        }
    }
    Some(serializable)
}

/// A client of the KV service, decoding answers of any size.
fn kv(ch: tonic::transport::Channel) -> KvClient<tonic::transport::Channel> {
    KvClient::new(ch).max_decoding_message_size(usize::MAX)
}

#[tonic::async_trait]
impl Kv for KvProxy {
    async fn range(&self, req: Request<RangeRequest>) -> Result<Response<RangeResponse>, Status> {
        let level = Consistency::of(req.metadata(), req.get_ref().serializable)?;
        self.proxy.counters().count_read(level);
        // A request with credentials (etcd's token) never touches the shared cache: one user's
        // answer must not be served to another, nor a refusal cached for everyone.
        let credentials =
            req.metadata().contains_key("token") || req.metadata().contains_key("authorization");
        let cache = self
            .cache
            .as_ref()
            .filter(|_| level == Consistency::Stale && !credentials && !self.proxy.auth_enabled());
        let wanted = cache.map(|_| req.get_ref().clone());
        if let (Some(cache), Some(wanted)) = (cache, &wanted)
            && let Some(hit) = cache.get(wanted).await
        {
            return Ok(Response::new(hit));
        }
        let route = read_route(level);
        let resp = self
            .proxy
            .unary(route, req, |ch, r| async move { kv(ch).range(r).await })
            .await?;
        self.seen(resp.get_ref().header.as_ref());
        if let (Some(cache), Some(wanted)) = (cache, &wanted) {
            cache.insert(wanted, resp.get_ref()).await;
        }
        Ok(resp)
    }

    async fn put(&self, req: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let resp = self
            .proxy
            .unary(
                Route::Leader { idempotent: false },
                req,
                |ch, r| async move { kv(ch).put(r).await },
            )
            .await?;
        self.seen(resp.get_ref().header.as_ref());
        Ok(resp)
    }

    async fn delete_range(
        &self,
        req: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        let resp = self
            .proxy
            .unary(
                Route::Leader { idempotent: false },
                req,
                |ch, r| async move { kv(ch).delete_range(r).await },
            )
            .await?;
        self.seen(resp.get_ref().header.as_ref());
        Ok(resp)
    }

    async fn txn(&self, req: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        let route = match read_only(req.get_ref()) {
            Some(serializable) => {
                let level = Consistency::of(req.metadata(), serializable)?;
                self.proxy.counters().count_read(level);
                read_route(level)
            }
            None => Route::Leader { idempotent: false },
        };
        let resp = self
            .proxy
            .unary(route, req, |ch, r| async move { kv(ch).txn(r).await })
            .await?;
        self.seen(resp.get_ref().header.as_ref());
        Ok(resp)
    }

    async fn compact(
        &self,
        req: Request<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        // Compacting to the same revision twice is harmless (etcd answers the second with
        // "required revision has been compacted"), but the client must see the first answer,
        // so it is treated as a write.
        self.proxy
            .unary(
                Route::Leader { idempotent: false },
                req,
                |ch, r| async move { kv(ch).compact(r).await },
            )
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mango_proto::etcdserverpb::RequestOp;

    fn op(r: Op) -> RequestOp {
        RequestOp { request: Some(r) }
    }

    #[test]
    fn txns_that_only_read_route_as_reads() {
        let range = |serializable| {
            op(Op::RequestRange(RangeRequest {
                serializable,
                ..Default::default()
            }))
        };
        let reads = TxnRequest {
            success: vec![range(true)],
            failure: vec![op(Op::RequestTxn(TxnRequest {
                success: vec![range(true)],
                ..Default::default()
            }))],
            ..Default::default()
        };
        assert_eq!(read_only(&reads), Some(true));
        let linear = TxnRequest {
            success: vec![range(true), range(false)],
            ..Default::default()
        };
        assert_eq!(read_only(&linear), Some(false));
        let writes = TxnRequest {
            failure: vec![op(Op::RequestTxn(TxnRequest {
                success: vec![op(Op::RequestPut(PutRequest::default()))],
                ..Default::default()
            }))],
            ..Default::default()
        };
        assert_eq!(read_only(&writes), None);
        assert_eq!(
            read_route(Consistency::Linearizable),
            Route::Leader { idempotent: true }
        );
        assert_eq!(read_route(Consistency::Stale), Route::Reads);
    }
}
