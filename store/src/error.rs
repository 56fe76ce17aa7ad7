//! Domain errors: each carries etcd's exact message and the gRPC code etcd answers with.

use mango_rpctypes as rpc;

use crate::auth::AuthError;
use crate::backend::BackendError;

/// The gRPC status code an error maps to (the API layer turns it into a `tonic::Code`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    /// `InvalidArgument`.
    InvalidArgument,
    /// `OutOfRange`.
    OutOfRange,
    /// `NotFound`.
    NotFound,
    /// `FailedPrecondition`.
    FailedPrecondition,
    /// `ResourceExhausted`.
    ResourceExhausted,
    /// `Internal`.
    Internal,
    /// `PermissionDenied` (etcd's "permission denied").
    PermissionDenied,
    /// `Unauthenticated` (etcd's "invalid auth token").
    Unauthenticated,
    /// `DataLoss` (etcd's "corrupt cluster").
    DataLoss,
    /// `Unknown`: etcd answers errors missing from its table with it (an Authenticate with a
    /// password for a user that has none).
    Unknown,
}

/// A request the store refused, or could not serve. Every variant but `Backend` is a normal
/// answer to a client; `Backend` means storage failed and the node must stop.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Read or compaction below the compacted revision.
    #[error("{}", rpc::COMPACTED)]
    Compacted,
    /// Read or compaction above the current revision.
    #[error("{}", rpc::FUTURE_REV)]
    FutureRevision,
    /// `ignore_value` / `ignore_lease` on a key that does not exist.
    #[error("{}", rpc::KEY_NOT_FOUND)]
    KeyNotFound,
    /// A put or a revoke names a lease that does not exist.
    #[error("{}", rpc::LEASE_NOT_FOUND)]
    LeaseNotFound,
    /// A grant names a lease id that exists.
    #[error("{}", rpc::LEASE_EXIST)]
    LeaseExists,
    /// A grant asks for a TTL above [`crate::MAX_LEASE_TTL`].
    #[error("{}", rpc::LEASE_TTL_TOO_LARGE)]
    LeaseTtlTooLarge,
    /// An empty key.
    #[error("{}", rpc::EMPTY_KEY)]
    EmptyKey,
    /// `ignore_value` with a value.
    #[error("{}", rpc::VALUE_PROVIDED)]
    ValueProvided,
    /// `ignore_lease` with a lease.
    #[error("{}", rpc::LEASE_PROVIDED)]
    LeaseProvided,
    /// More than the allowed number of operations in one txn branch.
    #[error("{}", rpc::TOO_MANY_OPS)]
    TooManyOps,
    /// A txn writes one key twice, or puts and deletes the same key.
    #[error("{}", rpc::DUPLICATE_KEY)]
    DuplicateKey,
    /// An unknown sort order or target.
    #[error("{}", rpc::INVALID_SORT_OPTION)]
    InvalidSortOption,
    /// A write while a NOSPACE alarm is raised (etcd's capped applier).
    #[error("{}", rpc::NO_SPACE)]
    NoSpace,
    /// A write while a CORRUPT alarm is raised (etcd's corrupt applier).
    #[error("{}", rpc::CORRUPT)]
    Corrupt,
    /// A replicated request that does not decode (never produced by a correct proposer).
    #[error("etcdserver: malformed request: {0}")]
    Malformed(String),
    /// An auth request refused, or a request its sender may not make (etcd's auth errors).
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// Storage failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
}

impl StoreError {
    /// The gRPC code etcd answers this error with.
    pub fn code(&self) -> ErrorCode {
        match self {
            StoreError::Compacted | StoreError::FutureRevision | StoreError::LeaseTtlTooLarge => {
                ErrorCode::OutOfRange
            }
            StoreError::LeaseNotFound => ErrorCode::NotFound,
            StoreError::LeaseExists => ErrorCode::FailedPrecondition,
            StoreError::KeyNotFound
            | StoreError::EmptyKey
            | StoreError::ValueProvided
            | StoreError::LeaseProvided
            | StoreError::TooManyOps
            | StoreError::DuplicateKey
            | StoreError::InvalidSortOption
            | StoreError::Malformed(_) => ErrorCode::InvalidArgument,
            StoreError::Auth(e) => e.code(),
            StoreError::NoSpace => ErrorCode::ResourceExhausted,
            StoreError::Corrupt => ErrorCode::DataLoss,
            StoreError::Backend(_) => ErrorCode::Internal,
        }
    }
}
