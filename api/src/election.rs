//! etcd's v3election service (`v3electionpb.Election`), built as etcd's
//! `concurrency.Election`: a campaign creates `name/<lease hex>` holding the candidate's value
//! and waits until every key under `name/` created before it is gone; the leader is the key
//! with the lowest create revision. Proclaim changes the leader's value while it still holds
//! the key; Resign deletes it; Leader reads it; Observe streams every change of it.

use std::pin::Pin;
use std::sync::Arc;

use mango_proto::etcdserverpb::TxnRequest;
use mango_proto::mvccpb::KeyValue;
use mango_proto::v3electionpb::election_server::Election;
use mango_proto::v3electionpb::{
    CampaignRequest, CampaignResponse, LeaderKey, LeaderRequest, LeaderResponse, ProclaimRequest,
    ProclaimResponse, ResignRequest, ResignResponse,
};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use crate::auth::{Caller, authorize};
use crate::concurrency::{
    DeleteOnDrop, created_at, first_created, lease_key, name_prefix, op_delete, op_get, op_put,
    range_of, read, txn, wait_deletes,
};
use crate::error::node_status;
use crate::kv::fill_header;
use crate::node::{EtcdNode, NodeError};

use mango_rpctypes::{
    ELECTION_MISSING_LEADER_KEY as MISSING_LEADER_KEY, ELECTION_NO_LEADER as NO_LEADER,
    ELECTION_NOT_LEADER as NOT_LEADER,
};

/// The Election service over a node.
pub struct ElectionService<N> {
    node: Arc<N>,
}

impl<N: EtcdNode> ElectionService<N> {
    /// An Election service over `node`.
    pub fn new(node: Arc<N>) -> Self {
        Self { node }
    }

    /// Sets the leader's value if `leader` still holds its key.
    async fn proclaim_value(
        &self,
        caller: &Caller,
        leader: &LeaderKey,
        value: &[u8],
    ) -> Result<i64, Status> {
        let resp = txn(
            self.node.as_ref(),
            caller,
            TxnRequest {
                compare: vec![created_at(&leader.key, leader.rev)],
                success: vec![op_put(&leader.key, value, leader.lease)],
                failure: vec![],
            },
        )
        .await?;
        if !resp.succeeded {
            return Err(NOT_LEADER.status());
        }
        Ok(resp.header.map_or(0, |h| h.revision))
    }

    /// The current leader's key-value.
    fn leader_kv(&self, caller: &Caller, name: &[u8]) -> Result<Option<KeyValue>, Status> {
        let prefix = name_prefix(name);
        Ok(read(self.node.as_ref(), caller, &first_created(&prefix))?
            .kvs
            .into_iter()
            .next())
    }
}

type ObserveStream = Pin<Box<dyn Stream<Item = Result<LeaderResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl<N: EtcdNode> Election for ElectionService<N> {
    async fn campaign(
        &self,
        request: tonic::Request<CampaignRequest>,
    ) -> Result<tonic::Response<CampaignResponse>, Status> {
        let caller = authorize(self.node.as_ref(), &request).await?;
        let req = request.into_inner();
        let prefix = name_prefix(&req.name);
        let key = lease_key(&prefix, req.lease);
        let resp = txn(
            self.node.as_ref(),
            &caller,
            TxnRequest {
                compare: vec![created_at(&key, 0)],
                success: vec![op_put(&key, &req.value, req.lease)],
                failure: vec![op_get(&key)],
            },
        )
        .await?;
        let mut header_rev = resp.header.as_ref().map_or(0, |h| h.revision);
        let mut leader = LeaderKey {
            name: req.name.clone(),
            key: key.clone(),
            rev: header_rev,
            lease: req.lease,
        };
        let mut stale_value = false;
        if !resp.succeeded {
            // Campaigning again with the same lease: resume, proclaiming the new value.
            let Some(kv) = range_of(&resp, 0).and_then(|r| r.kvs.first()) else {
                return Err(NOT_LEADER.status());
            };
            leader.rev = kv.create_revision;
            stale_value = kv.value != req.value;
        }
        // From here on a failure or a client that goes away deletes the key (etcd resigns).
        let guard = DeleteOnDrop::new(self.node.clone(), caller.clone(), key, leader.rev);
        if stale_value {
            self.proclaim_value(&caller, &leader, &req.value).await?;
        }
        let waited = wait_deletes(&self.node, &caller, &prefix, leader.rev - 1).await?;
        guard.disarm();
        header_rev = header_rev.max(waited);
        let mut out = CampaignResponse {
            header: None,
            leader: Some(leader),
        };
        fill_header(self.node.as_ref(), &mut out.header, header_rev);
        Ok(tonic::Response::new(out))
    }

    async fn proclaim(
        &self,
        request: tonic::Request<ProclaimRequest>,
    ) -> Result<tonic::Response<ProclaimResponse>, Status> {
        let caller = authorize(self.node.as_ref(), &request).await?;
        let req = request.into_inner();
        let leader = req.leader.ok_or_else(|| MISSING_LEADER_KEY.status())?;
        let rev = self.proclaim_value(&caller, &leader, &req.value).await?;
        let mut out = ProclaimResponse { header: None };
        fill_header(self.node.as_ref(), &mut out.header, rev);
        Ok(tonic::Response::new(out))
    }

    async fn leader(
        &self,
        request: tonic::Request<LeaderRequest>,
    ) -> Result<tonic::Response<LeaderResponse>, Status> {
        let caller = authorize(self.node.as_ref(), &request).await?;
        let req = request.into_inner();
        // A linearizable read, as etcd's Leader (a plain Get).
        let view = self.node.linearizable_view().await.map_err(node_status)?;
        let range = first_created(&name_prefix(&req.name));
        caller.check_range(&view, &range.key, &range.range_end)?;
        let kv = view
            .range(&range)
            .map_err(crate::error::store_status)?
            .kvs
            .into_iter()
            .next()
            .ok_or_else(|| NO_LEADER.status())?;
        let mut out = LeaderResponse {
            header: None,
            kv: Some(kv),
        };
        fill_header(self.node.as_ref(), &mut out.header, view.revision());
        Ok(tonic::Response::new(out))
    }

    type ObserveStream = ObserveStream;

    /// The leader now (if any), then every change of the leader or of its value, in order.
    async fn observe(
        &self,
        request: tonic::Request<LeaderRequest>,
    ) -> Result<tonic::Response<Self::ObserveStream>, Status> {
        let caller = authorize(self.node.as_ref(), &request).await?;
        let name = request.into_inner().name;
        let (tx, rx) = mpsc::channel(16);
        let service = ElectionService {
            node: self.node.clone(),
        };
        tokio::spawn(async move {
            let mut updates = service.node.revision_updates();
            let mut last: Option<(Vec<u8>, i64)> = None;
            loop {
                updates.borrow_and_update();
                match service.leader_kv(&caller, &name) {
                    Ok(Some(kv)) => {
                        let seen = (kv.key.clone(), kv.mod_revision);
                        if last.as_ref() != Some(&seen) {
                            last = Some(seen);
                            let mut out = LeaderResponse {
                                header: None,
                                kv: Some(kv.clone()),
                            };
                            fill_header(service.node.as_ref(), &mut out.header, kv.mod_revision);
                            if tx.send(Ok(out)).await.is_err() {
                                return;
                            }
                        }
                    }
                    Ok(None) => last = None,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                }
                tokio::select! {
                    changed = updates.changed() => {
                        if changed.is_err() {
                            let _ = tx.send(Err(node_status(NodeError::Stopped))).await;
                            return;
                        }
                    }
                    () = tx.closed() => return,
                }
            }
        });
        Ok(tonic::Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn resign(
        &self,
        request: tonic::Request<ResignRequest>,
    ) -> Result<tonic::Response<ResignResponse>, Status> {
        let caller = authorize(self.node.as_ref(), &request).await?;
        let req = request.into_inner();
        let leader = req.leader.ok_or_else(|| MISSING_LEADER_KEY.status())?;
        let resp = txn(
            self.node.as_ref(),
            &caller,
            TxnRequest {
                compare: vec![created_at(&leader.key, leader.rev)],
                success: vec![op_delete(&leader.key)],
                failure: vec![],
            },
        )
        .await?;
        let mut out = ResignResponse {
            header: resp.header,
        };
        fill_header(self.node.as_ref(), &mut out.header, 0);
        Ok(tonic::Response::new(out))
    }
}
