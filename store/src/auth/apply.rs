//! Applying etcd's auth requests: etcd 3.4's `auth/store.go` semantics and errors, on the
//! group's tables, deterministic on every member (passwords arrive hashed, tokens' random
//! parts arrive chosen).
//!
//! Where etcd 3.4 behaves oddly we follow the later 3.4 releases: a grant with no permission
//! or an empty range is refused. One deliberate difference: granting a permission whose key
//! and range end a role already has updates it wherever it sits (etcd compares only the first
//! permission with that key, and may add a duplicate).

use std::sync::Arc;

use mango_proto::authpb::{Role, User, UserAddOptions};
use mango_proto::etcdserverpb::{
    AuthDisableResponse, AuthEnableResponse, AuthRoleAddResponse, AuthRoleDeleteResponse,
    AuthRoleGetResponse, AuthRoleGrantPermissionResponse, AuthRoleListResponse,
    AuthRoleRevokePermissionResponse, AuthStatusResponse, AuthUserAddResponse,
    AuthUserChangePasswordResponse, AuthUserDeleteResponse, AuthUserGetResponse,
    AuthUserGrantRoleResponse, AuthUserListResponse, AuthUserRevokeRoleResponse,
    AuthenticateResponse,
};
use mango_proto::mangopb::raft_request::Request;

use super::error::AuthError;
use super::perms::is_valid_permission_range;
use super::state::{self, AuthState, ROOT};
use super::tokens::TokenChange;
use super::{AuthResponse, Authenticated};
use crate::backend::{BackendError, Table, WriteTables};
use crate::error::StoreError;
use crate::kv::header;

/// The auth state as a batch applies: what the next entry is checked against (the view
/// publishes it: the same `Arc` when nothing changed), and the token changes to make.
pub(crate) struct AuthCtx {
    /// The state as of the entry being applied.
    pub(crate) state: Arc<AuthState>,
    /// Changes to this node's simple-token table, made once the batch commits.
    pub(crate) tokens: Vec<TokenChange>,
}

impl AuthCtx {
    /// Starts a batch from the published state.
    pub(crate) fn new(state: Arc<AuthState>) -> Self {
        Self {
            state,
            tokens: Vec::new(),
        }
    }

    /// Re-reads the state after a change, so later entries of the batch see it.
    fn reload(&mut self, tables: &dyn WriteTables) -> Result<(), BackendError> {
        self.state = Arc::new(AuthState::load(tables)?);
        Ok(())
    }

    /// Raises the revision and re-reads the state (every change but AuthEnable).
    fn commit(&mut self, tables: &mut dyn WriteTables) -> Result<(), BackendError> {
        state::bump_revision(tables, self.state.revision)?;
        self.reload(tables)
    }
}

fn user_named(tables: &dyn WriteTables, name: &str) -> Result<User, StoreError> {
    state::get_user(tables, name)?.ok_or_else(|| AuthError::UserNotFound.into())
}

fn role_named(tables: &dyn WriteTables, name: &str) -> Result<Role, StoreError> {
    state::get_role(tables, name)?.ok_or_else(|| AuthError::RoleNotFound.into())
}

/// A password hash the proposer must have computed: its absence means a broken proposer.
fn hashed(hash: &str) -> Result<Vec<u8>, StoreError> {
    if hash.is_empty() {
        return Err(StoreError::Malformed(
            "a user's password must arrive hashed".into(),
        ));
    }
    Ok(hash.as_bytes().to_vec())
}

/// Applies one auth request at Raft index `index`; `revision` is the key-value revision the
/// response header carries.
pub(crate) fn apply(
    tables: &mut dyn WriteTables,
    ctx: &mut AuthCtx,
    index: u64,
    revision: i64,
    request: Request,
) -> Result<AuthResponse, StoreError> {
    let h = header(revision);
    let enabled = ctx.state.enabled;
    Ok(match request {
        Request::AuthEnable(_) => {
            if !enabled {
                let root = state::get_user(tables, ROOT)?.ok_or(AuthError::RootUserNotExist)?;
                if !root.roles.iter().any(|r| r == ROOT) {
                    return Err(AuthError::RootRoleNotExist.into());
                }
                state::set_enabled(tables, true)?;
                ctx.reload(tables)?;
            }
            AuthResponse::AuthEnable(AuthEnableResponse { header: h })
        }
        Request::AuthDisable(_) => {
            if enabled {
                state::set_enabled(tables, false)?;
                ctx.commit(tables)?;
                ctx.tokens.push(TokenChange::Clear);
            }
            AuthResponse::AuthDisable(AuthDisableResponse { header: h })
        }
        Request::AuthStatus(_) => AuthResponse::AuthStatus(AuthStatusResponse {
            header: h,
            enabled,
            auth_revision: ctx.state.revision,
        }),
        Request::Authenticate(r) => {
            if !enabled {
                return Err(AuthError::AuthNotEnabled.into());
            }
            let user = state::get_user(tables, &r.name)?.ok_or(AuthError::AuthFailed)?;
            if user.options.is_some_and(|o| o.no_password) {
                return Err(AuthError::AuthFailed.into());
            }
            let token = if r.simple_token.is_empty() {
                String::new()
            } else {
                let token = format!("{}.{index}", r.simple_token);
                ctx.tokens.push(TokenChange::Assign {
                    token: token.clone(),
                    user: r.name.clone(),
                });
                token
            };
            AuthResponse::Authenticate(Authenticated {
                response: AuthenticateResponse { header: h, token },
                username: r.name,
                auth_revision: ctx.state.revision,
            })
        }
        Request::AuthUserAdd(r) => {
            if r.name.is_empty() {
                return Err(AuthError::UserEmpty.into());
            }
            if state::get_user(tables, &r.name)?.is_some() {
                return Err(AuthError::UserAlreadyExist.into());
            }
            let options = r.options.unwrap_or(UserAddOptions { no_password: false });
            let password = if options.no_password {
                Vec::new()
            } else {
                hashed(&r.hashed_password)?
            };
            let user = User {
                name: r.name.into_bytes(),
                password,
                roles: Vec::new(),
                options: Some(options),
            };
            state::put_user(tables, &user)?;
            ctx.commit(tables)?;
            AuthResponse::UserAdd(AuthUserAddResponse { header: h })
        }
        Request::AuthUserDelete(r) => {
            if enabled && r.name == ROOT {
                return Err(AuthError::InvalidAuthMgmt.into());
            }
            user_named(tables, &r.name)?;
            tables.delete(Table::AuthUsers, r.name.as_bytes())?;
            ctx.commit(tables)?;
            ctx.tokens.push(TokenChange::InvalidateUser(r.name));
            AuthResponse::UserDelete(AuthUserDeleteResponse { header: h })
        }
        Request::AuthUserChangePassword(r) => {
            let mut user = user_named(tables, &r.name)?;
            user.password = hashed(&r.hashed_password)?;
            state::put_user(tables, &user)?;
            ctx.commit(tables)?;
            ctx.tokens.push(TokenChange::InvalidateUser(r.name));
            AuthResponse::UserChangePassword(AuthUserChangePasswordResponse { header: h })
        }
        Request::AuthUserGrantRole(r) => {
            let mut user = user_named(tables, &r.user)?;
            // The root role may be granted before it exists as a role (etcd's rule).
            if r.role != ROOT {
                role_named(tables, &r.role)?;
            }
            if let Err(at) = user.roles.binary_search(&r.role) {
                user.roles.insert(at, r.role);
                state::put_user(tables, &user)?;
                ctx.commit(tables)?;
            }
            AuthResponse::UserGrantRole(AuthUserGrantRoleResponse { header: h })
        }
        Request::AuthUserGet(r) => {
            let user = user_named(tables, &r.name)?;
            AuthResponse::UserGet(AuthUserGetResponse {
                header: h,
                roles: user.roles,
            })
        }
        Request::AuthUserRevokeRole(r) => {
            if enabled && r.name == ROOT && r.role == ROOT {
                return Err(AuthError::InvalidAuthMgmt.into());
            }
            let mut user = user_named(tables, &r.name)?;
            let before = user.roles.len();
            user.roles.retain(|role| *role != r.role);
            if user.roles.len() == before {
                return Err(AuthError::RoleNotGranted.into());
            }
            state::put_user(tables, &user)?;
            ctx.commit(tables)?;
            AuthResponse::UserRevokeRole(AuthUserRevokeRoleResponse { header: h })
        }
        Request::AuthUserList(_) => AuthResponse::UserList(AuthUserListResponse {
            header: h,
            users: ctx.state.user_names(),
        }),
        Request::AuthRoleList(_) => AuthResponse::RoleList(AuthRoleListResponse {
            header: h,
            roles: ctx.state.role_names(),
        }),
        Request::AuthRoleAdd(r) => {
            if r.name.is_empty() {
                return Err(AuthError::RoleEmpty.into());
            }
            if state::get_role(tables, &r.name)?.is_some() {
                return Err(AuthError::RoleAlreadyExist.into());
            }
            let role = Role {
                name: r.name.into_bytes(),
                key_permission: Vec::new(),
            };
            state::put_role(tables, &role)?;
            ctx.commit(tables)?;
            AuthResponse::RoleAdd(AuthRoleAddResponse { header: h })
        }
        Request::AuthRoleDelete(r) => {
            if enabled && r.role == ROOT {
                return Err(AuthError::InvalidAuthMgmt.into());
            }
            role_named(tables, &r.role)?;
            tables.delete(Table::AuthRoles, r.role.as_bytes())?;
            for mut user in state::all_users(tables)? {
                let before = user.roles.len();
                user.roles.retain(|role| *role != r.role);
                if user.roles.len() != before {
                    state::put_user(tables, &user)?;
                }
            }
            ctx.commit(tables)?;
            AuthResponse::RoleDelete(AuthRoleDeleteResponse { header: h })
        }
        Request::AuthRoleGet(r) => {
            let role = role_named(tables, &r.role)?;
            AuthResponse::RoleGet(AuthRoleGetResponse {
                header: h,
                perm: role.key_permission,
            })
        }
        Request::AuthRoleGrantPermission(r) => {
            let perm = r.perm.ok_or(AuthError::PermissionNotGiven)?;
            if !is_valid_permission_range(&perm.key, &perm.range_end) {
                return Err(AuthError::InvalidAuthMgmt.into());
            }
            let mut role = role_named(tables, &r.name)?;
            let same = role
                .key_permission
                .iter_mut()
                .find(|p| p.key == perm.key && p.range_end == perm.range_end);
            match same {
                Some(existing) => existing.perm_type = perm.perm_type,
                None => {
                    // Kept in key order; a new one goes after those with the same key.
                    let at = role.key_permission.partition_point(|p| p.key <= perm.key);
                    role.key_permission.insert(at, perm);
                }
            }
            state::put_role(tables, &role)?;
            ctx.commit(tables)?;
            AuthResponse::RoleGrantPermission(AuthRoleGrantPermissionResponse { header: h })
        }
        Request::AuthRoleRevokePermission(r) => {
            let mut role = role_named(tables, &r.role)?;
            let before = role.key_permission.len();
            role.key_permission
                .retain(|p| p.key != r.key || p.range_end != r.range_end);
            if role.key_permission.len() == before {
                return Err(AuthError::PermissionNotGranted.into());
            }
            state::put_role(tables, &role)?;
            ctx.commit(tables)?;
            AuthResponse::RoleRevokePermission(AuthRoleRevokePermissionResponse { header: h })
        }
        other => {
            return Err(StoreError::Malformed(format!(
                "not an auth request: {other:?}"
            )));
        }
    })
}
