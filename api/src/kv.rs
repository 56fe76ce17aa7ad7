//! etcd's KV service: validate, read from a view or propose through the node, fill the header.

use std::sync::Arc;

use mango_proto::etcdserverpb::kv_server::Kv;
use mango_proto::etcdserverpb::request_op::Request as Op;
use mango_proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, ResponseHeader, TxnRequest, TxnResponse,
};
use mango_proto::mangopb::raft_request::Request;
use mango_store::backend::redb::RedbSnapshot;
use mango_store::{
    MAX_TXN_OPS, ReadView, Response, is_txn_read_only, validate_delete, validate_put,
    validate_range, validate_txn,
};
use tonic::Status;

use crate::auth::{Caller, authorize, authorize_admin};
use crate::error::{node_status, store_status, unexpected_response};
use crate::limits::check_request_size;
use crate::node::EtcdNode;
use mango_rpctypes::Consistency;

/// The KV service over a node.
pub struct KvService<N> {
    /// The node that serves reads and replicates writes.
    node: Arc<N>,
    /// The largest replicated request accepted (etcd's `--max-request-bytes`).
    max_request_bytes: usize,
}

impl<N: EtcdNode> KvService<N> {
    /// A KV service over `node`, refusing writes whose replicated form exceeds
    /// `max_request_bytes`.
    pub fn new(node: Arc<N>, max_request_bytes: usize) -> Self {
        Self {
            node,
            max_request_bytes,
        }
    }

    /// The view a read is served from, by the consistency the client picked: the latest
    /// applied one (stale, etcd's serializable), one that has applied everything committed
    /// before the call (linearizable), or one known current within a bound.
    async fn view(&self, consistency: Consistency) -> Result<Arc<ReadView<RedbSnapshot>>, Status> {
        match consistency {
            Consistency::Stale => self.node.read_view().map_err(node_status),
            Consistency::Linearizable | Consistency::LearnerLinearizable => {
                self.node.linearizable_view().await.map_err(node_status)
            }
            Consistency::Bounded(max_age) => {
                self.node.bounded_view(max_age).await.map_err(node_status)
            }
        }
    }

    /// Checks the size of `request` and replicates it for `caller` (the apply checks the
    /// caller's permissions, as etcd's auth applier does).
    async fn propose(&self, request: Request, caller: &Caller) -> Result<Response, Status> {
        check_request_size(&request, self.max_request_bytes)?;
        self.node
            .propose(request, caller)
            .await
            .map_err(node_status)
    }
}

/// Fills a response header as etcd does: cluster, member and term from the node, and the
/// revision the store set (`fallback` when it set none).
pub(crate) fn fill_header<N: EtcdNode>(
    node: &N,
    header: &mut Option<ResponseHeader>,
    fallback: i64,
) {
    let revision = header
        .as_ref()
        .map(|h| h.revision)
        .filter(|&r| r != 0)
        .unwrap_or(fallback);
    *header = Some(node.header(revision));
}

/// etcd serves a read-only txn without a ReadIndex round only when every Range in it, nested
/// txns included, asked for a serializable read.
fn is_txn_serializable(req: &TxnRequest) -> bool {
    req.success
        .iter()
        .chain(&req.failure)
        .all(|op| match &op.request {
            Some(Op::RequestRange(r)) => r.serializable,
            Some(Op::RequestTxn(t)) => is_txn_serializable(t),
            // Writes make the txn not read-only; the caller checked that first.
            Some(Op::RequestPut(_)) | Some(Op::RequestDeleteRange(_)) | None => false,
        })
}

#[tonic::async_trait]
impl<N: EtcdNode> Kv for KvService<N> {
    async fn range(
        &self,
        request: tonic::Request<RangeRequest>,
    ) -> Result<tonic::Response<RangeResponse>, Status> {
        let consistency = Consistency::of(request.metadata(), request.get_ref().serializable)?;
        let caller = authorize(&*self.node, &request).await?;
        let req = request.into_inner();
        validate_range(&req).map_err(store_status)?;
        let view = self.view(consistency).await?;
        caller.check_range(&view, &req.key, &req.range_end)?;
        let mut resp = view.range(&req).map_err(store_status)?;
        resp.header = Some(self.node.header(view.revision()));
        Ok(tonic::Response::new(resp))
    }

    async fn put(
        &self,
        request: tonic::Request<PutRequest>,
    ) -> Result<tonic::Response<PutResponse>, Status> {
        let caller = authorize(&*self.node, &request).await?;
        let req = request.into_inner();
        validate_put(&req).map_err(store_status)?;
        match self.propose(Request::Put(req), &caller).await? {
            Response::Put(mut resp) => {
                fill_header(&*self.node, &mut resp.header, 0);
                Ok(tonic::Response::new(resp))
            }
            _ => Err(unexpected_response("Put")),
        }
    }

    async fn delete_range(
        &self,
        request: tonic::Request<DeleteRangeRequest>,
    ) -> Result<tonic::Response<DeleteRangeResponse>, Status> {
        let caller = authorize(&*self.node, &request).await?;
        let req = request.into_inner();
        validate_delete(&req).map_err(store_status)?;
        match self.propose(Request::DeleteRange(req), &caller).await? {
            Response::DeleteRange(mut resp) => {
                fill_header(&*self.node, &mut resp.header, 0);
                Ok(tonic::Response::new(resp))
            }
            _ => Err(unexpected_response("DeleteRange")),
        }
    }

    async fn txn(
        &self,
        request: tonic::Request<TxnRequest>,
    ) -> Result<tonic::Response<TxnResponse>, Status> {
        let consistency =
            Consistency::of(request.metadata(), is_txn_serializable(request.get_ref()))?;
        let caller = authorize(&*self.node, &request).await?;
        let req = request.into_inner();
        validate_txn(&req, MAX_TXN_OPS).map_err(store_status)?;
        if is_txn_read_only(&req) {
            let view = self.view(consistency).await?;
            caller.check_txn(&view, &req)?;
            let mut resp = view.txn(&req).map_err(store_status)?;
            fill_header(&*self.node, &mut resp.header, view.revision());
            return Ok(tonic::Response::new(resp));
        }
        match self.propose(Request::Txn(req), &caller).await? {
            Response::Txn(mut resp) => {
                fill_header(&*self.node, &mut resp.header, 0);
                Ok(tonic::Response::new(resp))
            }
            _ => Err(unexpected_response("Txn")),
        }
    }

    async fn compact(
        &self,
        request: tonic::Request<CompactionRequest>,
    ) -> Result<tonic::Response<CompactionResponse>, Status> {
        // Root only (mango's rule: etcd 3.4 lets any user compact).
        let caller = authorize_admin(&*self.node, &request).await?;
        let req = request.into_inner();
        let physical = req.physical;
        let mut resp = match self.propose(Request::Compaction(req), &caller).await? {
            Response::Compaction(resp) => resp,
            _ => return Err(unexpected_response("Compaction")),
        };
        if physical {
            // etcd answers a physical compaction only once the old versions are gone.
            self.node.wait_compacted().await.map_err(node_status)?;
        }
        fill_header(&*self.node, &mut resp.header, 0);
        Ok(tonic::Response::new(resp))
    }
}

#[cfg(test)]
mod tests {
    use mango_proto::etcdserverpb::RequestOp;

    use super::*;

    fn range(serializable: bool) -> RequestOp {
        RequestOp {
            request: Some(Op::RequestRange(RangeRequest {
                key: b"a".to_vec(),
                serializable,
                ..Default::default()
            })),
        }
    }

    fn nested(success: Vec<RequestOp>) -> RequestOp {
        RequestOp {
            request: Some(Op::RequestTxn(TxnRequest {
                success,
                ..Default::default()
            })),
        }
    }

    #[test]
    fn a_txn_is_serializable_only_when_every_range_is() {
        let txn = |success, failure| TxnRequest {
            success,
            failure,
            ..Default::default()
        };
        assert!(is_txn_serializable(&txn(vec![], vec![])));
        assert!(is_txn_serializable(&txn(
            vec![range(true)],
            vec![range(true)]
        )));
        assert!(!is_txn_serializable(&txn(
            vec![range(true)],
            vec![range(false)]
        )));
        assert!(is_txn_serializable(&txn(
            vec![nested(vec![range(true)])],
            vec![]
        )));
        assert!(!is_txn_serializable(&txn(
            vec![range(true), nested(vec![range(true), range(false)])],
            vec![]
        )));
    }
}
