//! etcd's `Auth` service. As in etcd 3.4 every call goes through the log (reads included),
//! carrying the caller's credentials, and the apply answers with etcd's errors (root only for
//! all but a user reading itself or one of its roles). Passwords are hashed here, on the
//! proposing member, so the log never holds one; Authenticate checks the password here and
//! proposes only the user's name (see `mango_store::auth`).

use std::sync::Arc;
use std::time::SystemTime;

use mango_proto::etcdserverpb::auth_server::Auth;
use mango_proto::etcdserverpb::{
    AuthDisableRequest, AuthDisableResponse, AuthEnableRequest, AuthEnableResponse,
    AuthRoleAddRequest, AuthRoleAddResponse, AuthRoleDeleteRequest, AuthRoleDeleteResponse,
    AuthRoleGetRequest, AuthRoleGetResponse, AuthRoleGrantPermissionRequest,
    AuthRoleGrantPermissionResponse, AuthRoleListRequest, AuthRoleListResponse,
    AuthRoleRevokePermissionRequest, AuthRoleRevokePermissionResponse, AuthStatusRequest,
    AuthStatusResponse, AuthUserAddRequest, AuthUserAddResponse, AuthUserChangePasswordRequest,
    AuthUserChangePasswordResponse, AuthUserDeleteRequest, AuthUserDeleteResponse,
    AuthUserGetRequest, AuthUserGetResponse, AuthUserGrantRoleRequest, AuthUserGrantRoleResponse,
    AuthUserListRequest, AuthUserListResponse, AuthUserRevokeRoleRequest,
    AuthUserRevokeRoleResponse, AuthenticateRequest, AuthenticateResponse,
};
use mango_proto::mangopb::InternalAuthenticateRequest;
use mango_proto::mangopb::raft_request::Request;
use mango_store::Response;
use mango_store::auth::{AuthResponse, hash_password};
use tonic::Status;

use super::{Caller, authorize};
use crate::error::{node_status, store_status, unexpected_response};
use crate::kv::fill_header;
use crate::node::EtcdNode;

/// How often Authenticate retries when the auth state changed between the password check and
/// the apply (etcd retries without bound; a client keeps changing auth only by mistake).
const AUTHENTICATE_ATTEMPTS: usize = 8;

/// The Auth service over a node.
pub struct AuthService<N> {
    /// The node that proposes and answers.
    node: Arc<N>,
}

impl<N: EtcdNode> AuthService<N> {
    /// The Auth service over `node`.
    pub fn new(node: Arc<N>) -> Self {
        Self { node }
    }

    /// Proposes `request` for `caller`; the apply's answer.
    async fn call(&self, caller: &Caller, request: Request) -> Result<AuthResponse, Status> {
        match self
            .node
            .propose(request, caller)
            .await
            .map_err(node_status)?
        {
            Response::Auth(r) => Ok(r),
            _ => Err(unexpected_response("an auth request")),
        }
    }

    /// bcrypt of `password` at the node's cost, off the async executor. Refuses first what
    /// the apply would refuse for lack of the root role, so nobody else spends bcrypt time.
    async fn hash(&self, caller: &Caller, password: String) -> Result<String, Status> {
        caller.check_admin_on(&*self.node)?;
        let cost = self.node.auth_config().bcrypt_cost;
        tokio::task::spawn_blocking(move || hash_password(&password, cost))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Status::internal(format!("hashing the password: {e}")))
    }
}

/// One Auth RPC whose request goes to the log as it is: authorize, propose, fill the header.
macro_rules! through_log {
    ($self:ident, $request:ident, $variant:ident, $answer:ident) => {{
        let caller = authorize(&*$self.node, &$request).await?;
        match $self
            .call(&caller, Request::$variant($request.into_inner()))
            .await?
        {
            AuthResponse::$answer(mut resp) => {
                fill_header(&*$self.node, &mut resp.header, 0);
                Ok(tonic::Response::new(resp))
            }
            _ => Err(unexpected_response(stringify!($answer))),
        }
    }};
}

#[tonic::async_trait]
impl<N: EtcdNode> Auth for AuthService<N> {
    async fn auth_enable(
        &self,
        request: tonic::Request<AuthEnableRequest>,
    ) -> Result<tonic::Response<AuthEnableResponse>, Status> {
        through_log!(self, request, AuthEnable, AuthEnable)
    }

    async fn auth_disable(
        &self,
        request: tonic::Request<AuthDisableRequest>,
    ) -> Result<tonic::Response<AuthDisableResponse>, Status> {
        through_log!(self, request, AuthDisable, AuthDisable)
    }

    async fn auth_status(
        &self,
        request: tonic::Request<AuthStatusRequest>,
    ) -> Result<tonic::Response<AuthStatusResponse>, Status> {
        through_log!(self, request, AuthStatus, AuthStatus)
    }

    /// etcd's sequence: a linearizable read, the password checked against it, the user's
    /// name through the log, retried if auth changed in between; then the token.
    async fn authenticate(
        &self,
        request: tonic::Request<AuthenticateRequest>,
    ) -> Result<tonic::Response<AuthenticateResponse>, Status> {
        let req = request.into_inner();
        if let Some(forwarded) = self.node.forward_authenticate(&req).await {
            return forwarded.map(tonic::Response::new).map_err(node_status);
        }
        let tokens = &self.node.auth_config().tokens;
        for _ in 0..AUTHENTICATE_ATTEMPTS {
            let view = self.node.linearizable_view().await.map_err(node_status)?;
            let state = view.auth().clone();
            let (name, password) = (req.name.clone(), req.password.clone());
            let checked =
                tokio::task::spawn_blocking(move || state.check_password(&name, &password))
                    .await
                    .map_err(|e| Status::internal(e.to_string()))?
                    .map_err(|e| store_status(e.into()))?;
            let prefix = tokens
                .authenticate_prefix()
                .map_err(|_| Status::internal("no random numbers for a token"))?;
            let internal = InternalAuthenticateRequest {
                name: req.name.clone(),
                simple_token: prefix,
            };
            let authenticated = match self
                .call(&Caller::MEMBER, Request::Authenticate(internal))
                .await?
            {
                AuthResponse::Authenticate(a) => a,
                _ => return Err(unexpected_response("Authenticate")),
            };
            if authenticated.auth_revision != checked {
                tracing::info!("auth changed while a password was checked; retrying");
                continue;
            }
            let token = tokens
                .token_for(&authenticated, SystemTime::now())
                .map_err(|e| Status::internal(format!("signing a token: {e}")))?;
            let mut resp = authenticated.response;
            resp.token = token;
            fill_header(&*self.node, &mut resp.header, 0);
            return Ok(tonic::Response::new(resp));
        }
        Err(store_status(
            mango_store::auth::AuthError::AuthOldRevision.into(),
        ))
    }

    async fn user_add(
        &self,
        request: tonic::Request<AuthUserAddRequest>,
    ) -> Result<tonic::Response<AuthUserAddResponse>, Status> {
        let caller = authorize(&*self.node, &request).await?;
        let mut req = request.into_inner();
        let no_password = req.options.is_some_and(|o| o.no_password);
        if !no_password && req.hashed_password.is_empty() {
            req.hashed_password = self
                .hash(&caller, std::mem::take(&mut req.password))
                .await?;
        }
        req.password.clear();
        match self.call(&caller, Request::AuthUserAdd(req)).await? {
            AuthResponse::UserAdd(mut resp) => {
                fill_header(&*self.node, &mut resp.header, 0);
                Ok(tonic::Response::new(resp))
            }
            _ => Err(unexpected_response("UserAdd")),
        }
    }

    async fn user_get(
        &self,
        request: tonic::Request<AuthUserGetRequest>,
    ) -> Result<tonic::Response<AuthUserGetResponse>, Status> {
        through_log!(self, request, AuthUserGet, UserGet)
    }

    async fn user_list(
        &self,
        request: tonic::Request<AuthUserListRequest>,
    ) -> Result<tonic::Response<AuthUserListResponse>, Status> {
        through_log!(self, request, AuthUserList, UserList)
    }

    async fn user_delete(
        &self,
        request: tonic::Request<AuthUserDeleteRequest>,
    ) -> Result<tonic::Response<AuthUserDeleteResponse>, Status> {
        through_log!(self, request, AuthUserDelete, UserDelete)
    }

    async fn user_change_password(
        &self,
        request: tonic::Request<AuthUserChangePasswordRequest>,
    ) -> Result<tonic::Response<AuthUserChangePasswordResponse>, Status> {
        let caller = authorize(&*self.node, &request).await?;
        let mut req = request.into_inner();
        if req.hashed_password.is_empty() {
            req.hashed_password = self
                .hash(&caller, std::mem::take(&mut req.password))
                .await?;
        }
        req.password.clear();
        match self
            .call(&caller, Request::AuthUserChangePassword(req))
            .await?
        {
            AuthResponse::UserChangePassword(mut resp) => {
                fill_header(&*self.node, &mut resp.header, 0);
                Ok(tonic::Response::new(resp))
            }
            _ => Err(unexpected_response("UserChangePassword")),
        }
    }

    async fn user_grant_role(
        &self,
        request: tonic::Request<AuthUserGrantRoleRequest>,
    ) -> Result<tonic::Response<AuthUserGrantRoleResponse>, Status> {
        through_log!(self, request, AuthUserGrantRole, UserGrantRole)
    }

    async fn user_revoke_role(
        &self,
        request: tonic::Request<AuthUserRevokeRoleRequest>,
    ) -> Result<tonic::Response<AuthUserRevokeRoleResponse>, Status> {
        through_log!(self, request, AuthUserRevokeRole, UserRevokeRole)
    }

    async fn role_add(
        &self,
        request: tonic::Request<AuthRoleAddRequest>,
    ) -> Result<tonic::Response<AuthRoleAddResponse>, Status> {
        through_log!(self, request, AuthRoleAdd, RoleAdd)
    }

    async fn role_get(
        &self,
        request: tonic::Request<AuthRoleGetRequest>,
    ) -> Result<tonic::Response<AuthRoleGetResponse>, Status> {
        through_log!(self, request, AuthRoleGet, RoleGet)
    }

    async fn role_list(
        &self,
        request: tonic::Request<AuthRoleListRequest>,
    ) -> Result<tonic::Response<AuthRoleListResponse>, Status> {
        through_log!(self, request, AuthRoleList, RoleList)
    }

    async fn role_delete(
        &self,
        request: tonic::Request<AuthRoleDeleteRequest>,
    ) -> Result<tonic::Response<AuthRoleDeleteResponse>, Status> {
        through_log!(self, request, AuthRoleDelete, RoleDelete)
    }

    async fn role_grant_permission(
        &self,
        request: tonic::Request<AuthRoleGrantPermissionRequest>,
    ) -> Result<tonic::Response<AuthRoleGrantPermissionResponse>, Status> {
        through_log!(self, request, AuthRoleGrantPermission, RoleGrantPermission)
    }

    async fn role_revoke_permission(
        &self,
        request: tonic::Request<AuthRoleRevokePermissionRequest>,
    ) -> Result<tonic::Response<AuthRoleRevokePermissionResponse>, Status> {
        through_log!(
            self,
            request,
            AuthRoleRevokePermission,
            RoleRevokePermission
        )
    }
}
