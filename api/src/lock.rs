//! etcd's v3lock service (`v3lockpb.Lock`): a distributed mutex on a lease, built as etcd's
//! `concurrency.Mutex`. Lock creates `name/<lease hex>` with the lease (or finds it from an
//! earlier call), then waits until every key under `name/` created before it is deleted; the
//! holder is the key with the lowest create revision. Unlock deletes the key; the lease
//! expiring deletes it too, so a crashed holder frees the lock.

use std::sync::Arc;

use mango_proto::etcdserverpb::request_op::Request as Op;
use mango_proto::etcdserverpb::{RangeRequest, RequestOp, TxnRequest};
use mango_proto::v3lockpb::lock_server::Lock;
use mango_proto::v3lockpb::{LockRequest, LockResponse, UnlockRequest, UnlockResponse};
use tonic::Status;

use crate::auth::authorize;
use crate::concurrency::{
    DeleteOnDrop, created_at, delete, first_created, lease_key, name_prefix, op_get, op_put,
    range_of, read, txn, wait_deletes,
};
use crate::kv::fill_header;
use crate::node::EtcdNode;

/// The Lock service over a node.
pub struct LockService<N> {
    node: Arc<N>,
}

impl<N: EtcdNode> LockService<N> {
    /// A Lock service over `node`.
    pub fn new(node: Arc<N>) -> Self {
        Self { node }
    }
}

/// The error a lock whose key vanished while waiting answers (its lease expired), as etcd's
/// `concurrency.ErrSessionExpired`.
const SESSION_EXPIRED: &str = "session expired";

#[tonic::async_trait]
impl<N: EtcdNode> Lock for LockService<N> {
    async fn lock(
        &self,
        request: tonic::Request<LockRequest>,
    ) -> Result<tonic::Response<LockResponse>, Status> {
        let caller = authorize(self.node.as_ref(), &request).await?;
        let req = request.into_inner();
        let prefix = name_prefix(&req.name);
        let key = lease_key(&prefix, req.lease);
        // Create the key if it is not there (else find ours from an earlier call); read the
        // current holder in the same revision.
        let owner = RequestOp {
            request: Some(Op::RequestRange(first_created(&prefix))),
        };
        let resp = txn(
            self.node.as_ref(),
            &caller,
            TxnRequest {
                compare: vec![created_at(&key, 0)],
                success: vec![op_put(&key, b"", req.lease), owner.clone()],
                failure: vec![op_get(&key), owner],
            },
        )
        .await?;
        let revision = resp.header.as_ref().map_or(0, |h| h.revision);
        let my_rev = if resp.succeeded {
            revision
        } else {
            range_of(&resp, 0)
                .and_then(|r| r.kvs.first())
                .map_or(revision, |kv| kv.create_revision)
        };
        let holder = range_of(&resp, 1).and_then(|r| r.kvs.first());
        let mut header_rev = revision;
        if holder.is_some_and(|kv| kv.create_revision != my_rev) {
            let guard = DeleteOnDrop::new(self.node.clone(), caller.clone(), key.clone(), my_rev);
            header_rev = wait_deletes(&self.node, &caller, &prefix, my_rev - 1).await?;
            // Our key may have gone with its lease while we waited.
            let mine = read(
                self.node.as_ref(),
                &caller,
                &RangeRequest {
                    key: key.clone(),
                    ..Default::default()
                },
            )?;
            if mine.kvs.first().map(|kv| kv.create_revision) != Some(my_rev) {
                guard.disarm();
                return Err(Status::unknown(SESSION_EXPIRED));
            }
            guard.disarm();
        }
        let mut out = LockResponse { header: None, key };
        fill_header(self.node.as_ref(), &mut out.header, header_rev);
        Ok(tonic::Response::new(out))
    }

    async fn unlock(
        &self,
        request: tonic::Request<UnlockRequest>,
    ) -> Result<tonic::Response<UnlockResponse>, Status> {
        let caller = authorize(self.node.as_ref(), &request).await?;
        let req = request.into_inner();
        let header = delete(self.node.as_ref(), &caller, &req.key).await?;
        let mut out = UnlockResponse {
            header: Some(header),
        };
        fill_header(self.node.as_ref(), &mut out.header, 0);
        Ok(tonic::Response::new(out))
    }
}
