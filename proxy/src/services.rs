//! etcd's Lease, Cluster, Maintenance, Lock, Election and Auth services through the proxy (Watch:
//! [`crate::watch`]).
//!
//! Lease keep-alive streams, membership, maintenance, lock and election calls go to the
//! leader; what only reads (MemberList, Status, hashes, TimeToLive, Leader) is retried like a read,
//! the rest like a write. Lock and Campaign block until granted, so they are bounded by the
//! client's deadline, not the proxy's request timeout, and counted by the stream limit, not
//! the unary one (see [`crate::stack::limit`]).

use mango_proto::etcdserverpb::auth_client::AuthClient;
use mango_proto::etcdserverpb::auth_server::Auth;
use mango_proto::etcdserverpb::cluster_client::ClusterClient;
use mango_proto::etcdserverpb::cluster_server::Cluster;
use mango_proto::etcdserverpb::lease_client::LeaseClient;
use mango_proto::etcdserverpb::lease_server::Lease;
use mango_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use mango_proto::etcdserverpb::maintenance_server::Maintenance;
use mango_proto::etcdserverpb::*;
use mango_proto::v3electionpb::election_client::ElectionClient;
use mango_proto::v3electionpb::election_server::Election;
use mango_proto::v3electionpb::{
    CampaignRequest, CampaignResponse, LeaderRequest, LeaderResponse, ProclaimRequest,
    ProclaimResponse, ResignRequest, ResignResponse,
};
use mango_proto::v3lockpb::lock_client::LockClient;
use mango_proto::v3lockpb::lock_server::Lock;
use mango_proto::v3lockpb::{LockRequest, LockResponse, UnlockRequest, UnlockResponse};
use tonic::{Request, Response, Status, Streaming};

use crate::route::{BoxStream, Proxy, Route};

const WRITE: Route = Route::Leader { idempotent: false };
const READ: Route = Route::Leader { idempotent: true };

/// Forwards a unary call with `unary` (or `unary_blocking`) along a route.
macro_rules! forward {
    ($how:ident, $self:ident, $route:expr, $req:ident, $client:ident, $method:ident) => {
        $self
            .proxy
            .$how($route, $req, |ch, r| async move {
                $client::new(ch)
                    .max_decoding_message_size(usize::MAX)
                    .$method(r)
                    .await
            })
            .await
    };
}

/// Every service but KV, each a thin forwarder over the same [`Proxy`].
#[derive(Clone)]
pub struct Forwarder {
    /// Routing and forwarding.
    proxy: Proxy,
}

impl Forwarder {
    /// The services over `proxy`.
    pub fn new(proxy: Proxy) -> Self {
        Self { proxy }
    }
}

#[tonic::async_trait]
impl Lease for Forwarder {
    async fn lease_grant(
        &self,
        req: Request<LeaseGrantRequest>,
    ) -> Result<Response<LeaseGrantResponse>, Status> {
        forward!(unary, self, WRITE, req, LeaseClient, lease_grant)
    }

    async fn lease_revoke(
        &self,
        req: Request<LeaseRevokeRequest>,
    ) -> Result<Response<LeaseRevokeResponse>, Status> {
        forward!(unary, self, WRITE, req, LeaseClient, lease_revoke)
    }

    type LeaseKeepAliveStream = BoxStream<LeaseKeepAliveResponse>;

    async fn lease_keep_alive(
        &self,
        req: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        self.proxy
            .bidi(READ, req, |ch, r| async move {
                LeaseClient::new(ch).lease_keep_alive(r).await
            })
            .await
    }

    async fn lease_time_to_live(
        &self,
        req: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        forward!(unary, self, READ, req, LeaseClient, lease_time_to_live)
    }

    async fn lease_leases(
        &self,
        req: Request<LeaseLeasesRequest>,
    ) -> Result<Response<LeaseLeasesResponse>, Status> {
        forward!(unary, self, READ, req, LeaseClient, lease_leases)
    }
}

#[tonic::async_trait]
impl Cluster for Forwarder {
    async fn member_add(
        &self,
        req: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        forward!(unary, self, WRITE, req, ClusterClient, member_add)
    }

    async fn member_remove(
        &self,
        req: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        forward!(unary, self, WRITE, req, ClusterClient, member_remove)
    }

    async fn member_update(
        &self,
        req: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        forward!(unary, self, WRITE, req, ClusterClient, member_update)
    }

    async fn member_list(
        &self,
        req: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        forward!(unary, self, READ, req, ClusterClient, member_list)
    }

    async fn member_promote(
        &self,
        req: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        forward!(unary, self, WRITE, req, ClusterClient, member_promote)
    }
}

#[tonic::async_trait]
impl Maintenance for Forwarder {
    async fn alarm(&self, req: Request<AlarmRequest>) -> Result<Response<AlarmResponse>, Status> {
        forward!(unary, self, WRITE, req, MaintenanceClient, alarm)
    }

    /// The leader's status (the proxy is one endpoint standing for the cluster).
    async fn status(
        &self,
        req: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        forward!(unary, self, READ, req, MaintenanceClient, status)
    }

    async fn defragment(
        &self,
        req: Request<DefragmentRequest>,
    ) -> Result<Response<DefragmentResponse>, Status> {
        forward!(unary, self, READ, req, MaintenanceClient, defragment)
    }

    async fn hash(&self, req: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        forward!(unary, self, READ, req, MaintenanceClient, hash)
    }

    async fn hash_kv(
        &self,
        req: Request<HashKvRequest>,
    ) -> Result<Response<HashKvResponse>, Status> {
        forward!(unary, self, READ, req, MaintenanceClient, hash_kv)
    }

    type SnapshotStream = BoxStream<SnapshotResponse>;

    async fn snapshot(
        &self,
        req: Request<SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        self.proxy
            .server_stream(READ, req, |ch, r| async move {
                MaintenanceClient::new(ch)
                    .max_decoding_message_size(usize::MAX)
                    .snapshot(r)
                    .await
            })
            .await
    }

    async fn move_leader(
        &self,
        req: Request<MoveLeaderRequest>,
    ) -> Result<Response<MoveLeaderResponse>, Status> {
        forward!(unary, self, WRITE, req, MaintenanceClient, move_leader)
    }

    async fn downgrade(
        &self,
        req: Request<DowngradeRequest>,
    ) -> Result<Response<DowngradeResponse>, Status> {
        forward!(unary, self, WRITE, req, MaintenanceClient, downgrade)
    }
}

#[tonic::async_trait]
impl Lock for Forwarder {
    async fn lock(&self, req: Request<LockRequest>) -> Result<Response<LockResponse>, Status> {
        forward!(unary_blocking, self, WRITE, req, LockClient, lock)
    }

    async fn unlock(
        &self,
        req: Request<UnlockRequest>,
    ) -> Result<Response<UnlockResponse>, Status> {
        forward!(unary, self, WRITE, req, LockClient, unlock)
    }
}

#[tonic::async_trait]
impl Election for Forwarder {
    async fn campaign(
        &self,
        req: Request<CampaignRequest>,
    ) -> Result<Response<CampaignResponse>, Status> {
        forward!(unary_blocking, self, WRITE, req, ElectionClient, campaign)
    }

    async fn proclaim(
        &self,
        req: Request<ProclaimRequest>,
    ) -> Result<Response<ProclaimResponse>, Status> {
        forward!(unary, self, WRITE, req, ElectionClient, proclaim)
    }

    async fn leader(
        &self,
        req: Request<LeaderRequest>,
    ) -> Result<Response<LeaderResponse>, Status> {
        forward!(unary, self, READ, req, ElectionClient, leader)
    }

    type ObserveStream = BoxStream<LeaderResponse>;

    async fn observe(
        &self,
        req: Request<LeaderRequest>,
    ) -> Result<Response<Self::ObserveStream>, Status> {
        self.proxy
            .server_stream(READ, req, |ch, r| async move {
                ElectionClient::new(ch).observe(r).await
            })
            .await
    }

    async fn resign(
        &self,
        req: Request<ResignRequest>,
    ) -> Result<Response<ResignResponse>, Status> {
        forward!(unary, self, WRITE, req, ElectionClient, resign)
    }
}

/// etcd's Auth service: every call goes to the leader, as the voters put every auth request
/// (reads included) through the log; the token is passed through unchanged.
#[tonic::async_trait]
impl Auth for Forwarder {
    async fn auth_enable(
        &self,
        req: Request<AuthEnableRequest>,
    ) -> Result<Response<AuthEnableResponse>, Status> {
        forward!(unary, self, WRITE, req, AuthClient, auth_enable)
    }

    async fn auth_disable(
        &self,
        req: Request<AuthDisableRequest>,
    ) -> Result<Response<AuthDisableResponse>, Status> {
        forward!(unary, self, WRITE, req, AuthClient, auth_disable)
    }

    async fn auth_status(
        &self,
        req: Request<AuthStatusRequest>,
    ) -> Result<Response<AuthStatusResponse>, Status> {
        forward!(unary, self, WRITE, req, AuthClient, auth_status)
    }

    async fn authenticate(
        &self,
        req: Request<AuthenticateRequest>,
    ) -> Result<Response<AuthenticateResponse>, Status> {
        forward!(unary, self, WRITE, req, AuthClient, authenticate)
    }

    async fn user_add(
        &self,
        req: Request<AuthUserAddRequest>,
    ) -> Result<Response<AuthUserAddResponse>, Status> {
        forward!(unary, self, WRITE, req, AuthClient, user_add)
    }

    async fn user_get(
        &self,
        req: Request<AuthUserGetRequest>,
    ) -> Result<Response<AuthUserGetResponse>, Status> {
        forward!(unary, self, WRITE, req, AuthClient, user_get)
    }

    async fn user_list(
        &self,
        req: Request<AuthUserListRequest>,
    ) -> Result<Response<AuthUserListResponse>, Status> {
        forward!(unary, self, WRITE, req, AuthClient, user_list)
    }

    async fn user_delete(
        &self,
        req: Request<AuthUserDeleteRequest>,
    ) -> Result<Response<AuthUserDeleteResponse>, Status> {
        forward!(unary, self, WRITE, req, AuthClient, user_delete)
    }

    async fn user_change_password(
        &self,
        req: Request<AuthUserChangePasswordRequest>,
    ) -> Result<Response<AuthUserChangePasswordResponse>, Status> {
        forward!(unary, self, WRITE, req, AuthClient, user_change_password)
    }

    async fn user_grant_role(
        &self,
        req: Request<AuthUserGrantRoleRequest>,
    ) -> Result<Response<AuthUserGrantRoleResponse>, Status> {
        forward!(unary, self, WRITE, req, AuthClient, user_grant_role)
    }

    async fn user_revoke_role(
        &self,
        req: Request<AuthUserRevokeRoleRequest>,
    ) -> Result<Response<AuthUserRevokeRoleResponse>, Status> {
        forward!(unary, self, WRITE, req, AuthClient, user_revoke_role)
    }

    async fn role_add(
        &self,
        req: Request<AuthRoleAddRequest>,
    ) -> Result<Response<AuthRoleAddResponse>, Status> {
        forward!(unary, self, WRITE, req, AuthClient, role_add)
    }

    async fn role_get(
        &self,
        req: Request<AuthRoleGetRequest>,
    ) -> Result<Response<AuthRoleGetResponse>, Status> {
        forward!(unary, self, WRITE, req, AuthClient, role_get)
    }

    async fn role_list(
        &self,
        req: Request<AuthRoleListRequest>,
    ) -> Result<Response<AuthRoleListResponse>, Status> {
        forward!(unary, self, WRITE, req, AuthClient, role_list)
    }

    async fn role_delete(
        &self,
        req: Request<AuthRoleDeleteRequest>,
    ) -> Result<Response<AuthRoleDeleteResponse>, Status> {
        forward!(unary, self, WRITE, req, AuthClient, role_delete)
    }

    async fn role_grant_permission(
        &self,
        req: Request<AuthRoleGrantPermissionRequest>,
    ) -> Result<Response<AuthRoleGrantPermissionResponse>, Status> {
        forward!(unary, self, WRITE, req, AuthClient, role_grant_permission)
    }

    async fn role_revoke_permission(
        &self,
        req: Request<AuthRoleRevokePermissionRequest>,
    ) -> Result<Response<AuthRoleRevokePermissionResponse>, Status> {
        forward!(unary, self, WRITE, req, AuthClient, role_revoke_permission)
    }
}
