//! What etcd's `clientv3/concurrency` does on the client side, done in the server for the Lock
//! and Election services (etcd runs that package against an in-process client): keys under a
//! prefix ordered by create revision, a txn that creates a key only if it does not exist, and
//! waiting until every key created before a revision is deleted.
//!
//! Waiting uses the node's applied-revision updates (what wakes the watch hub) and re-reads
//! the prefix from the node's applied view after each change: a waiter only ever sees
//! committed state, so a lock acquired here is held in the linearizable order of the log.

use std::sync::Arc;

use mango_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use mango_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use mango_proto::etcdserverpb::request_op::Request as Op;
use mango_proto::etcdserverpb::response_op::Response as OpResponse;
use mango_proto::etcdserverpb::{
    Compare, DeleteRangeRequest, PutRequest, RangeRequest, RangeResponse, RequestOp,
    ResponseHeader, TxnRequest, TxnResponse,
};
use mango_proto::mangopb::raft_request::Request;
use mango_proto::mvccpb::KeyValue;
use mango_store::Response;
use tonic::Status;

use crate::auth::Caller;
use crate::error::{node_status, store_status, unexpected_response};
use crate::node::{EtcdNode, NodeError};

/// The end of the range of every key starting with `prefix` (etcd's `GetPrefixRangeEnd`).
pub(crate) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // All 0xff (or empty): every key from the prefix on.
    vec![0]
}

/// `key` is `prefix` plus the lease id in lower-case hex, as etcd names lock and election
/// keys (`fmt.Sprintf("%s%x", pfx, lease)`).
pub(crate) fn lease_key(prefix: &[u8], lease: i64) -> Vec<u8> {
    let mut key = prefix.to_vec();
    key.extend_from_slice(format!("{lease:x}").as_bytes());
    key
}

/// `name` + "/", the prefix of a lock's or election's keys.
pub(crate) fn name_prefix(name: &[u8]) -> Vec<u8> {
    let mut prefix = name.to_vec();
    prefix.push(b'/');
    prefix
}

/// Compare: `key`'s create revision equals `rev` (0: the key does not exist).
pub(crate) fn created_at(key: &[u8], rev: i64) -> Compare {
    Compare {
        result: CompareResult::Equal as i32,
        target: CompareTarget::Create as i32,
        key: key.to_vec(),
        range_end: Vec::new(),
        target_union: Some(TargetUnion::CreateRevision(rev)),
    }
}

pub(crate) fn op_put(key: &[u8], value: &[u8], lease: i64) -> RequestOp {
    RequestOp {
        request: Some(Op::RequestPut(PutRequest {
            key: key.to_vec(),
            value: value.to_vec(),
            lease,
            ..Default::default()
        })),
    }
}

pub(crate) fn op_get(key: &[u8]) -> RequestOp {
    RequestOp {
        request: Some(Op::RequestRange(RangeRequest {
            key: key.to_vec(),
            ..Default::default()
        })),
    }
}

pub(crate) fn op_delete(key: &[u8]) -> RequestOp {
    RequestOp {
        request: Some(Op::RequestDeleteRange(DeleteRangeRequest {
            key: key.to_vec(),
            ..Default::default()
        })),
    }
}

/// The first key created under `prefix` (etcd's `WithFirstCreate`).
pub(crate) fn first_created(prefix: &[u8]) -> RangeRequest {
    RangeRequest {
        key: prefix.to_vec(),
        range_end: prefix_end(prefix),
        limit: 1,
        sort_order: SortOrder::Ascend as i32,
        sort_target: SortTarget::Create as i32,
        ..Default::default()
    }
}

/// Runs a txn through Raft.
pub(crate) async fn txn<N: EtcdNode>(
    node: &N,
    caller: &Caller,
    req: TxnRequest,
) -> Result<TxnResponse, Status> {
    match node
        .propose(Request::Txn(req), caller)
        .await
        .map_err(node_status)?
    {
        Response::Txn(resp) => Ok(resp),
        _ => Err(unexpected_response("Txn")),
    }
}

/// Deletes `key` through Raft; answers the header.
pub(crate) async fn delete<N: EtcdNode>(
    node: &N,
    caller: &Caller,
    key: &[u8],
) -> Result<ResponseHeader, Status> {
    let req = DeleteRangeRequest {
        key: key.to_vec(),
        ..Default::default()
    };
    match node
        .propose(Request::DeleteRange(req), caller)
        .await
        .map_err(node_status)?
    {
        Response::DeleteRange(resp) => Ok(resp.header.unwrap_or_default()),
        _ => Err(unexpected_response("DeleteRange")),
    }
}

/// The range response of the txn's `i`-th op.
pub(crate) fn range_of(resp: &TxnResponse, i: usize) -> Option<&RangeResponse> {
    match resp.responses.get(i)?.response.as_ref()? {
        OpResponse::ResponseRange(r) => Some(r),
        _ => None,
    }
}

/// Reads `req` from the node's latest applied view, if `caller` may.
pub(crate) fn read<N: EtcdNode>(
    node: &N,
    caller: &Caller,
    req: &RangeRequest,
) -> Result<RangeResponse, Status> {
    let view = node.read_view().map_err(node_status)?;
    caller.check_range(&view, &req.key, &req.range_end)?;
    view.range(req).map_err(store_status)
}

/// The key under `prefix` created last at or before `max_create_rev`, if any (etcd's
/// `WithLastCreate` + `WithMaxCreateRev`).
fn last_created_before<N: EtcdNode>(
    node: &N,
    caller: &Caller,
    prefix: &[u8],
    max_create_rev: i64,
) -> Result<Option<KeyValue>, Status> {
    let req = RangeRequest {
        key: prefix.to_vec(),
        range_end: prefix_end(prefix),
        limit: 1,
        sort_order: SortOrder::Descend as i32,
        sort_target: SortTarget::Create as i32,
        max_create_revision: max_create_rev,
        ..Default::default()
    };
    Ok(read(node, caller, &req)?.kvs.into_iter().next())
}

/// Waits until no key under `prefix` has a create revision at or below `max_create_rev`
/// (etcd's `waitDeletes`); returns the header of the read that saw it.
pub(crate) async fn wait_deletes<N: EtcdNode>(
    node: &Arc<N>,
    caller: &Caller,
    prefix: &[u8],
    max_create_rev: i64,
) -> Result<i64, Status> {
    let mut updates = node.revision_updates();
    loop {
        // Mark the current revision seen before reading, so a change after the read wakes us.
        updates.borrow_and_update();
        if last_created_before(node.as_ref(), caller, prefix, max_create_rev)?.is_none() {
            return Ok(node.read_view().map_err(node_status)?.revision());
        }
        updates
            .changed()
            .await
            .map_err(|_| node_status(NodeError::Stopped))?;
    }
}

/// Deletes a key when dropped unless disarmed: a waiter whose client went away (the call's
/// future is dropped) must not leave its key queued, as etcd's `Mutex.Lock` and
/// `Election.Campaign` delete theirs on cancellation.
pub(crate) struct DeleteOnDrop<N: EtcdNode> {
    node: Arc<N>,
    /// Whose key it is: the delete is made with the same credentials.
    caller: Caller,
    key: Option<Vec<u8>>,
    /// Delete only while the key still has this create revision (it is ours).
    rev: i64,
}

impl<N: EtcdNode> DeleteOnDrop<N> {
    pub(crate) fn new(node: Arc<N>, caller: Caller, key: Vec<u8>, rev: i64) -> Self {
        Self {
            node,
            caller,
            key: Some(key),
            rev,
        }
    }

    /// Keeps the key.
    pub(crate) fn disarm(mut self) {
        self.key = None;
    }
}

impl<N: EtcdNode> Drop for DeleteOnDrop<N> {
    fn drop(&mut self) {
        let Some(key) = self.key.take() else {
            return;
        };
        let (node, rev, caller) = (self.node.clone(), self.rev, self.caller.clone());
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let req = TxnRequest {
                    compare: vec![created_at(&key, rev)],
                    success: vec![op_delete(&key)],
                    failure: vec![],
                };
                if let Err(e) = txn(node.as_ref(), &caller, req).await {
                    tracing::warn!(error = %e, "could not delete an abandoned lock or campaign key");
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_etcds() {
        assert_eq!(prefix_end(b"a/"), b"a0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
        assert_eq!(lease_key(b"lk/", 0x694d), b"lk/694d".to_vec());
        assert_eq!(name_prefix(b"lk"), b"lk/".to_vec());
    }
}
