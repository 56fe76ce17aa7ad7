//! etcd's Lease service: grants and revokes go through Raft; keep-alives and remaining TTLs
//! are the leader's lessor's (the node forwards them); the lease list and attached keys are
//! read from the store.

use std::pin::Pin;
use std::sync::Arc;

use mango_proto::etcdserverpb::lease_server::Lease;
use mango_proto::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
    LeaseLeasesRequest, LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse, LeaseStatus,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use mango_proto::mangopb::raft_request::Request;
use mango_store::{MAX_LEASE_TTL, Response, StoreError};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Status, Streaming};

use crate::auth::authorize;
use crate::error::{node_status, store_status, unexpected_response};
use crate::kv::fill_header;
use crate::node::{EtcdNode, NodeError};

/// Keep-alive responses queued per stream before the stream stops reading requests.
const KEEPALIVE_QUEUE: usize = 16;

/// The Lease service over a node.
pub struct LeaseService<N> {
    node: Arc<N>,
}

impl<N: EtcdNode> LeaseService<N> {
    /// A Lease service over `node`.
    pub fn new(node: Arc<N>) -> Self {
        Self { node }
    }
}

fn is_not_found(e: &NodeError) -> bool {
    matches!(e, NodeError::Store(StoreError::LeaseNotFound))
}

type KeepAliveStream =
    Pin<Box<dyn Stream<Item = Result<LeaseKeepAliveResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl<N: EtcdNode> Lease for LeaseService<N> {
    async fn lease_grant(
        &self,
        request: tonic::Request<LeaseGrantRequest>,
    ) -> Result<tonic::Response<LeaseGrantResponse>, Status> {
        let caller = authorize(self.node.as_ref(), &request).await?;
        let req = request.into_inner();
        if req.ttl > MAX_LEASE_TTL {
            return Err(store_status(StoreError::LeaseTtlTooLarge));
        }
        let mut resp = self
            .node
            .lease_grant(req.id, req.ttl, &caller)
            .await
            .map_err(node_status)?;
        fill_header(self.node.as_ref(), &mut resp.header, 0);
        Ok(tonic::Response::new(resp))
    }

    async fn lease_revoke(
        &self,
        request: tonic::Request<LeaseRevokeRequest>,
    ) -> Result<tonic::Response<LeaseRevokeResponse>, Status> {
        let caller = authorize(self.node.as_ref(), &request).await?;
        let req = request.into_inner();
        match self
            .node
            .propose(Request::LeaseRevoke(req), &caller)
            .await
            .map_err(node_status)?
        {
            Response::LeaseRevoke(mut resp) => {
                fill_header(self.node.as_ref(), &mut resp.header, 0);
                Ok(tonic::Response::new(resp))
            }
            _ => Err(unexpected_response("LeaseRevoke")),
        }
    }

    type LeaseKeepAliveStream = KeepAliveStream;

    /// One response per request, in order. A lease that does not exist or expired answers a
    /// TTL of 0 (etcd's behaviour: the client's keep-alive loop then stops); other failures
    /// end the stream with the error.
    async fn lease_keep_alive(
        &self,
        request: tonic::Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<tonic::Response<Self::LeaseKeepAliveStream>, Status> {
        let mut requests = request.into_inner();
        let (tx, rx) = mpsc::channel(KEEPALIVE_QUEUE);
        let node = self.node.clone();
        tokio::spawn(async move {
            while let Some(next) = requests.next().await {
                let req = match next {
                    Ok(req) => req,
                    // The client went away or broke the stream: nothing to answer.
                    Err(_) => return,
                };
                let ttl = match node.lease_renew(req.id).await {
                    Ok(ttl) => ttl,
                    Err(e) if is_not_found(&e) => 0,
                    Err(e) => {
                        let _ = tx.send(Err(node_status(e))).await;
                        return;
                    }
                };
                let mut resp = LeaseKeepAliveResponse {
                    header: None,
                    id: req.id,
                    ttl,
                };
                let revision = node.read_view().map(|v| v.revision()).unwrap_or(0);
                fill_header(node.as_ref(), &mut resp.header, revision);
                if tx.send(Ok(resp)).await.is_err() {
                    return;
                }
            }
        });
        Ok(tonic::Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    /// The leader's remaining TTL (-1 for a lease that does not exist, as etcd answers), the
    /// granted TTL and, if asked, the attached keys from a linearizable view (only to a
    /// caller that may read every one of them, as etcd since 3.4.26).
    async fn lease_time_to_live(
        &self,
        request: tonic::Request<LeaseTimeToLiveRequest>,
    ) -> Result<tonic::Response<LeaseTimeToLiveResponse>, Status> {
        let caller = authorize(self.node.as_ref(), &request).await?;
        let req = request.into_inner();
        let remaining = match self.node.lease_remaining(req.id).await {
            Ok(ttl) => Some(ttl),
            Err(e) if is_not_found(&e) => None,
            Err(e) => return Err(node_status(e)),
        };
        let view = self.node.linearizable_view().await.map_err(node_status)?;
        let info = view
            .lease(req.id)
            .map_err(|e| node_status(NodeError::Other(e.to_string())))?;
        if req.keys && view.auth().enabled() {
            let keys = view
                .lease_keys(req.id)
                .map_err(|e| node_status(NodeError::Other(e.to_string())))?;
            for key in &keys {
                caller.check_range(&view, key, &[])?;
            }
        }
        let mut resp = match (remaining, info) {
            (Some(ttl), Some(info)) => LeaseTimeToLiveResponse {
                header: None,
                id: req.id,
                ttl,
                granted_ttl: info.granted_ttl,
                keys: if req.keys {
                    view.lease_keys(req.id)
                        .map_err(|e| node_status(NodeError::Other(e.to_string())))?
                } else {
                    Vec::new()
                },
            },
            _ => LeaseTimeToLiveResponse {
                header: None,
                id: req.id,
                ttl: -1,
                granted_ttl: 0,
                keys: Vec::new(),
            },
        };
        fill_header(self.node.as_ref(), &mut resp.header, view.revision());
        Ok(tonic::Response::new(resp))
    }

    async fn lease_leases(
        &self,
        _request: tonic::Request<LeaseLeasesRequest>,
    ) -> Result<tonic::Response<LeaseLeasesResponse>, Status> {
        let view = self.node.linearizable_view().await.map_err(node_status)?;
        let leases = view
            .leases()
            .map_err(|e| node_status(NodeError::Other(e.to_string())))?
            .into_iter()
            .map(|l| LeaseStatus { id: l.id })
            .collect();
        let mut resp = LeaseLeasesResponse {
            header: None,
            leases,
        };
        fill_header(self.node.as_ref(), &mut resp.header, view.revision());
        Ok(tonic::Response::new(resp))
    }
}
