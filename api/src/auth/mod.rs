//! etcd 3.4's auth in the API layer: who a request comes from ([`authorize`]), the checks the
//! services make before serving from a view ([`Caller`]'s methods), and the `etcdserverpb.Auth`
//! service ([`AuthService`]).
//!
//! Every service calls [`authorize`] once per call (once per create request for Watch) and
//! passes the [`Caller`] on: reads are checked against the view they are served from, and
//! every proposal carries the caller's credentials (`RaftRequest.auth`) so the apply checks
//! writes against the auth state as of their entry, as etcd's auth applier does.
//!
//! Credentials, in etcd's order (`AuthInfoFromCtx`, then `AuthInfoFromTLS`):
//! 1. gRPC metadata `token` (or `authorization`, as etcd 3.4 also reads): a simple token
//!    resolved in this node's token table (waiting for its entry to apply if this node is
//!    behind), or a JWT verified with the node's key; unknown or expired tokens answer
//!    "etcdserver: invalid auth token".
//! 2. With `--client-cert-auth`: the common name of the verified client certificate, at the
//!    current auth revision.
//! 3. None: the anonymous caller, refused with "etcdserver: user name is empty" while auth is
//!    enabled.
//!
//! While auth is disabled (the default) a request without a token costs two header lookups:
//! no token table, no bcrypt, no view.

mod service;

use mango_proto::etcdserverpb::TxnRequest;
use mango_proto::mangopb::RequestAuth;
use mango_store::auth::{
    AuthError, AuthInfo, DEFAULT_BCRYPT_COST, DEFAULT_SIMPLE_TOKEN_TTL, TokenConfigError,
    TokenLookup, TokenProvider,
};
use mango_store::backend::redb::RedbSnapshot;
use mango_store::{ReadView, StoreError};
use tonic::Status;
use tonic::metadata::AsciiMetadataValue;

use crate::error::{node_status, store_status};
use crate::node::EtcdNode;

pub use service::AuthService;

/// etcd's gRPC metadata key for the token (`rpctypes.TokenFieldNameGRPC`).
pub const TOKEN_METADATA: &str = "token";
/// The other key etcd 3.4 reads a token from (`rpctypes.TokenFieldNameSwagger`).
pub const AUTHORIZATION_METADATA: &str = "authorization";

/// How a node authenticates clients: etcd's `--auth-token` (with `--auth-token-ttl`),
/// `--bcrypt-cost` and `--client-cert-auth`.
#[derive(Debug)]
pub struct AuthConfig {
    /// The tokens this node issues and accepts.
    pub tokens: TokenProvider,
    /// bcrypt's cost for passwords hashed here (UserAdd, UserChangePassword).
    pub bcrypt_cost: u32,
    /// Whether the common name of a verified client certificate names the user when the
    /// request carries no token.
    pub client_cert_auth: bool,
}

impl Default for AuthConfig {
    /// etcd's defaults: simple tokens living 300 s, bcrypt cost 10, no certificate users.
    fn default() -> Self {
        Self {
            tokens: TokenProvider::Simple {
                ttl: DEFAULT_SIMPLE_TOKEN_TTL,
            },
            bcrypt_cost: DEFAULT_BCRYPT_COST,
            client_cert_auth: false,
        }
    }
}

impl AuthConfig {
    /// From etcd's flags: `--auth-token` (with `--auth-token-ttl` for simple tokens),
    /// `--bcrypt-cost` and `--client-cert-auth`.
    pub fn from_flags(
        auth_token: &str,
        simple_ttl: std::time::Duration,
        bcrypt_cost: u32,
        client_cert_auth: bool,
    ) -> Result<Self, TokenConfigError> {
        Ok(Self {
            tokens: TokenProvider::parse(auth_token, simple_ttl)?,
            bcrypt_cost,
            client_cert_auth,
        })
    }
}

/// Drops `store`'s simple tokens unused for their TTL, about once a second, until `store`
/// is dropped elsewhere (etcd's TTL keeper). Nothing to do with JWTs.
pub fn spawn_token_sweep(store: std::sync::Weak<mango_store::Store>, config: &AuthConfig) {
    let Some(ttl) = config.tokens.simple_ttl() else {
        return;
    };
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(store) = store.upgrade() else {
                return;
            };
            match store.expire_tokens(ttl, std::time::Instant::now()) {
                Ok(0) => {}
                Ok(n) => tracing::debug!(expired = n, "simple tokens expired"),
                Err(e) => tracing::warn!(error = %e, "expiring simple tokens"),
            }
        }
    });
}

/// Who a request comes from, as resolved by [`authorize`].
#[derive(Clone, Debug, Default)]
pub struct Caller {
    /// The user and the auth revision the credentials were resolved at (empty: anonymous).
    pub info: AuthInfo,
    /// The token exactly as the client sent it, for a node that forwards the request to
    /// another member (a learner).
    pub token: Option<AsciiMetadataValue>,
    /// Whether proposals carry `info` for the apply to check: true for every client, false
    /// only for the node's own requests ([`Caller::MEMBER`]), which the apply lets pass.
    pub client: bool,
}

impl Caller {
    /// The node itself (lease expiry, member attributes): its proposals carry no credentials,
    /// and the apply checks nothing.
    pub const MEMBER: Caller = Caller {
        info: AuthInfo {
            username: String::new(),
            revision: 0,
        },
        token: None,
        client: false,
    };

    /// What a proposal made for this caller carries in `RaftRequest.auth`. A client without
    /// credentials gets an empty one, so a request proposed before auth was enabled and
    /// applied after is refused, as etcd refuses it.
    pub fn request_auth(&self) -> Option<RequestAuth> {
        self.client.then(|| RequestAuth {
            username: self.info.username.clone(),
            auth_revision: self.info.revision,
        })
    }

    /// Reading `key`/`range_end` from `view` (etcd's `IsRangePermitted`).
    pub fn check_range(
        &self,
        view: &ReadView<RedbSnapshot>,
        key: &[u8],
        range_end: &[u8],
    ) -> Result<(), Status> {
        auth_status(view.auth().is_range_permitted(&self.info, key, range_end))
    }

    /// Writing `key`/`range_end` (etcd's `IsDeleteRangePermitted`; a single key for an empty
    /// `range_end`).
    pub fn check_write(
        &self,
        view: &ReadView<RedbSnapshot>,
        key: &[u8],
        range_end: &[u8],
    ) -> Result<(), Status> {
        auth_status(
            view.auth()
                .is_delete_range_permitted(&self.info, key, range_end),
        )
    }

    /// A txn served from `view` without the log (read-only: every compare and range).
    pub fn check_txn(&self, view: &ReadView<RedbSnapshot>, txn: &TxnRequest) -> Result<(), Status> {
        if !view.auth().enabled() {
            return Ok(());
        }
        // A read-only txn attaches no lease, so no lease's keys are ever asked for.
        let no_lease_keys = |_: i64| Ok(Vec::new());
        view.auth()
            .check_txn(&self.info, txn, &no_lease_keys)
            .map_err(store_status)
    }

    /// Only a user with the root role (etcd's `IsAdminPermitted`).
    pub fn check_admin(&self, view: &ReadView<RedbSnapshot>) -> Result<(), Status> {
        auth_status(view.auth().is_admin_permitted(&self.info))
    }

    /// [`Caller::check_admin`] against `node`'s latest view.
    pub fn check_admin_on<N: EtcdNode>(&self, node: &N) -> Result<(), Status> {
        let view = node.read_view().map_err(node_status)?;
        self.check_admin(&view)
    }

    /// Whether this caller is the anonymous client or a member (no user).
    pub fn is_anonymous(&self) -> bool {
        self.info.username.is_empty()
    }
}

fn auth_status(result: Result<(), AuthError>) -> Result<(), Status> {
    result.map_err(|e| store_status(StoreError::from(e)))
}

fn invalid_token() -> Status {
    store_status(StoreError::from(AuthError::InvalidAuthToken))
}

/// The credentials a request carries, before they are resolved: read synchronously from the
/// request (a stream keeps them to resolve at each Watch create).
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    /// The `token` (or `authorization`) metadata.
    token: Option<AsciiMetadataValue>,
    /// The verified client certificate's common name (with `--client-cert-auth` only).
    common_name: Option<String>,
}

impl Credentials {
    /// What `request` carries.
    pub fn of<T>(request: &tonic::Request<T>, config: &AuthConfig) -> Self {
        let md = request.metadata();
        let token = md
            .get(TOKEN_METADATA)
            .or_else(|| md.get(AUTHORIZATION_METADATA))
            .cloned();
        let common_name = if token.is_none() && config.client_cert_auth {
            request
                .peer_certs()
                .and_then(|certs| certs.first().and_then(|c| mango_tls::common_name(c)))
        } else {
            None
        };
        Self { token, common_name }
    }

    /// Resolves the credentials on `node`.
    pub async fn resolve<N: EtcdNode>(&self, node: &N) -> Result<Caller, Status> {
        if let Some(token) = &self.token {
            let text = token.to_str().map_err(|_| invalid_token())?;
            let info = resolve_token(node, text).await?;
            return Ok(Caller {
                info,
                token: Some(token.clone()),
                client: true,
            });
        }
        if let Some(name) = &self.common_name {
            let view = node.read_view().map_err(node_status)?;
            return Ok(Caller {
                info: AuthInfo {
                    username: name.clone(),
                    revision: view.auth().revision(),
                },
                token: None,
                client: true,
            });
        }
        Ok(Caller {
            client: true,
            ..Caller::default()
        })
    }
}

/// Who `request` comes from on `node` (see the module doc); fails with "invalid auth token"
/// for a token this node does not accept.
pub async fn authorize<N: EtcdNode, T>(
    node: &N,
    request: &tonic::Request<T>,
) -> Result<Caller, Status> {
    Credentials::of(request, node.auth_config())
        .resolve(node)
        .await
}

/// [`authorize`], then only a user with the root role (etcd's
/// `checkMembershipOperationPermission`, and mango's rule for alarms, compaction and
/// move-leader).
pub async fn authorize_admin<N: EtcdNode, T>(
    node: &N,
    request: &tonic::Request<T>,
) -> Result<Caller, Status> {
    let caller = authorize(node, request).await?;
    caller.check_admin_on(node)?;
    Ok(caller)
}

/// [`authorize_admin`] with the errors etcd's Maintenance answers for Defragment, Snapshot,
/// Hash and HashKV: the auth store's own, untranslated (`Unknown`, "auth: ...").
pub async fn authorize_admin_raw<N: EtcdNode, T>(
    node: &N,
    request: &tonic::Request<T>,
) -> Result<Caller, Status> {
    use mango_rpctypes as rpc;
    let caller = match authorize(node, request).await {
        Ok(caller) => caller,
        Err(status) if rpc::INVALID_AUTH_TOKEN.is(&status) => {
            return Err(rpc::RAW_INVALID_AUTH_TOKEN.status());
        }
        Err(status) => return Err(status),
    };
    let view = node.read_view().map_err(node_status)?;
    match view.auth().is_admin_permitted(&caller.info) {
        Ok(()) => Ok(caller),
        Err(AuthError::UserEmpty) => Err(rpc::RAW_USER_EMPTY.status()),
        Err(AuthError::UserNotFound) => Err(rpc::RAW_USER_NOT_FOUND.status()),
        Err(_) => Err(rpc::RAW_PERMISSION_DENIED.status()),
    }
}

/// The user `token` names on `node`.
async fn resolve_token<N: EtcdNode>(node: &N, token: &str) -> Result<AuthInfo, Status> {
    match &node.auth_config().tokens {
        TokenProvider::Jwt(jwt) => jwt.verify(token).ok_or_else(invalid_token),
        TokenProvider::Simple { .. } => {
            match node.simple_token(token).map_err(node_status)? {
                TokenLookup::Valid(info) => return Ok(info),
                TokenLookup::Invalid => return Err(invalid_token()),
                TokenLookup::Pending { index } => {
                    // Issued through an entry this node has not applied yet: wait for it
                    // (etcd waits the same way), then look again.
                    node.wait_applied(index).await.map_err(node_status)?;
                }
            }
            match node.simple_token(token).map_err(node_status)? {
                TokenLookup::Valid(info) => Ok(info),
                TokenLookup::Invalid | TokenLookup::Pending { .. } => Err(invalid_token()),
            }
        }
    }
}
