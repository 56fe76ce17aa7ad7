//! etcd 3.4's auth as replicated state: users, roles and their key permissions, the enabled
//! flag and the auth revision, per group (a keyspace has its own auth, as it is a whole etcd).
//!
//! - Stored in the group's tables (`AuthUsers`, `AuthRoles`, two keys of `Meta`; see
//!   `state.rs`), changed only by applying `RaftRequest`s, so learners and joining voters get
//!   it from the log or a snapshot and enforce the same rules from their own copy.
//! - Read as [`AuthState`], an immutable copy published with each read view
//!   ([`ReadView::auth`](crate::ReadView::auth)): permission checks (`is_range_permitted`,
//!   `check_txn`, ...; see `checks.rs`) cost no I/O.
//! - Enforced at apply as etcd's auth applier does: a request whose `RaftRequest.auth`
//!   names credentials is checked against the state as of that entry, so a permission
//!   revoked between proposal and apply is honoured (and credentials resolved before an auth
//!   change fail with "revision of auth store is old").
//! - Tokens: simple tokens are issued through the log and kept per node in memory
//!   (`tokens.rs`); JWTs are stateless ([`JwtTokens`]); [`TokenProvider`] is the `--auth-token`
//!   choice.
//!
//! Authenticate, step by step (the API layer's part in 1, 2 and 5):
//! 1. `AuthState::check_password` on the receiving member's latest view (bcrypt, off the
//!    async executor); it returns the auth revision it checked at.
//! 2. Propose `InternalAuthenticateRequest { name, simple_token:
//!    TokenProvider::authenticate_prefix() }`.
//! 3. Apply (every member): errors as etcd's (`AuthNotEnabled`, `AuthFailed`); a simple
//!    token `<prefix>.<index>` goes into every member's token table.
//! 4. The proposer gets [`AuthResponse::Authenticate`] with the user and the auth revision.
//! 5. If that revision differs from the one checked in 1, retry from 1 (etcd does); else
//!    answer `TokenProvider::token_for` (the simple token, or a JWT signed now).

mod apply;
mod checks;
mod error;
mod jwt;
mod perms;
#[cfg(test)]
mod perms_model;
mod provider;
pub(crate) mod state;
mod tokens;

pub(crate) use apply::{AuthCtx, apply};
pub use checks::{Access, LeaseKeys};
pub use error::AuthError;
pub use jwt::{DEFAULT_JWT_TTL, JwtSignError, JwtTokens};
pub use provider::{TokenConfigError, TokenProvider, parse_go_duration};
pub use state::{AuthInfo, AuthState, ROOT};
pub use tokens::{DEFAULT_SIMPLE_TOKEN_TTL, TokenLookup, simple_token_index, simple_token_prefix};
pub(crate) use tokens::{TokenChange, TokenTable};

use mango_proto::etcdserverpb::{
    AuthDisableResponse, AuthEnableResponse, AuthRoleAddResponse, AuthRoleDeleteResponse,
    AuthRoleGetResponse, AuthRoleGrantPermissionResponse, AuthRoleListResponse,
    AuthRoleRevokePermissionResponse, AuthStatusResponse, AuthUserAddResponse,
    AuthUserChangePasswordResponse, AuthUserDeleteResponse, AuthUserGetResponse,
    AuthUserGrantRoleResponse, AuthUserListResponse, AuthUserRevokeRoleResponse,
    AuthenticateResponse,
};

/// etcd's default `--bcrypt-cost` (Go's `bcrypt.DefaultCost`).
pub const DEFAULT_BCRYPT_COST: u32 = 10;
/// The lowest cost bcrypt accepts; etcd falls back to the default outside `4..=31`.
pub const MIN_BCRYPT_COST: u32 = 4;
/// The highest cost bcrypt accepts.
pub const MAX_BCRYPT_COST: u32 = 31;

/// Hashes a password for `AuthUserAddRequest.hashedPassword` /
/// `AuthUserChangePasswordRequest.hashedPassword`, on the proposing member (never at apply:
/// the salt is random). Like etcd, a cost outside bcrypt's range uses the default, and the
/// hash is in Go's `$2a$` form so etcd reads it too. Slow by design: run it off the async
/// executor.
pub fn hash_password(password: &str, cost: u32) -> Result<String, bcrypt::BcryptError> {
    let cost = if (MIN_BCRYPT_COST..=MAX_BCRYPT_COST).contains(&cost) {
        cost
    } else {
        DEFAULT_BCRYPT_COST
    };
    Ok(bcrypt::hash_with_result(password, cost)?.format_for_version(bcrypt::Version::TwoA))
}

/// An applied Authenticate: etcd's response (its token is the simple token when one was
/// asked for, else empty) and what a JWT is signed with.
#[derive(Clone, Debug, PartialEq)]
pub struct Authenticated {
    /// The response; `token` set for simple tokens.
    pub response: AuthenticateResponse,
    /// The authenticated user.
    pub username: String,
    /// The auth revision the Authenticate applied at (the JWT's `revision`, and what the
    /// proposer compares with the revision its password check saw).
    pub auth_revision: u64,
}

/// The answer to an applied auth request (the header carries only the key-value revision;
/// the API layer fills in the rest).
#[derive(Clone, Debug, PartialEq)]
pub enum AuthResponse {
    /// AuthEnable.
    AuthEnable(AuthEnableResponse),
    /// AuthDisable.
    AuthDisable(AuthDisableResponse),
    /// AuthStatus.
    AuthStatus(AuthStatusResponse),
    /// Authenticate.
    Authenticate(Authenticated),
    /// UserAdd.
    UserAdd(AuthUserAddResponse),
    /// UserDelete.
    UserDelete(AuthUserDeleteResponse),
    /// UserGet.
    UserGet(AuthUserGetResponse),
    /// UserList.
    UserList(AuthUserListResponse),
    /// UserChangePassword.
    UserChangePassword(AuthUserChangePasswordResponse),
    /// UserGrantRole.
    UserGrantRole(AuthUserGrantRoleResponse),
    /// UserRevokeRole.
    UserRevokeRole(AuthUserRevokeRoleResponse),
    /// RoleAdd.
    RoleAdd(AuthRoleAddResponse),
    /// RoleDelete.
    RoleDelete(AuthRoleDeleteResponse),
    /// RoleGet.
    RoleGet(AuthRoleGetResponse),
    /// RoleList.
    RoleList(AuthRoleListResponse),
    /// RoleGrantPermission.
    RoleGrantPermission(AuthRoleGrantPermissionResponse),
    /// RoleRevokePermission.
    RoleRevokePermission(AuthRoleRevokePermissionResponse),
}
