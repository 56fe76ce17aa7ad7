//! Failures as etcd answers them: each error becomes the `tonic::Status` with etcd's gRPC code
//! and exact message (etcd's `api/v3rpc/rpctypes`), so clients that match on either keep
//! working.

use mango_rpctypes as rpc;
use mango_store::{ErrorCode, StoreError};
use tonic::{Code, Status};

use crate::node::NodeError;

/// The status etcd answers a store error with. A storage failure is `Internal` and logged.
pub fn store_status(e: StoreError) -> Status {
    let code = match e.code() {
        ErrorCode::InvalidArgument => Code::InvalidArgument,
        ErrorCode::OutOfRange => Code::OutOfRange,
        ErrorCode::NotFound => Code::NotFound,
        ErrorCode::FailedPrecondition => Code::FailedPrecondition,
        ErrorCode::ResourceExhausted => Code::ResourceExhausted,
        ErrorCode::PermissionDenied => Code::PermissionDenied,
        ErrorCode::Unauthenticated => Code::Unauthenticated,
        ErrorCode::Unknown => Code::Unknown,
        ErrorCode::DataLoss => Code::DataLoss,
        ErrorCode::Internal => {
            tracing::error!(error = %e, "storage failure while serving a request");
            Code::Internal
        }
    };
    Status::new(code, e.to_string())
}

/// The status etcd answers a node error with.
pub fn node_status(e: NodeError) -> Status {
    if let Some(etcd) = e.etcd() {
        return etcd.status();
    }
    match e {
        NodeError::Store(store) => store_status(store),
        NodeError::Forwarded(status) => status,
        NodeError::TooStale(_) | NodeError::Unavailable(_) => Status::unavailable(e.to_string()),
        other => {
            tracing::warn!(error = %other, "node failure while serving a request");
            Status::internal(other.to_string())
        }
    }
}

/// A request whose replicated form exceeds the configured limit (`InvalidArgument`).
pub fn request_too_large() -> Status {
    rpc::REQUEST_TOO_LARGE.status()
}

/// Member peer URLs that are not `scheme://host:port` (`InvalidArgument`).
pub fn bad_member_urls() -> Status {
    rpc::MEMBER_BAD_URLS.status()
}

/// The node answered a proposal with a response of another kind: a bug, never a client error.
pub(crate) fn unexpected_response(what: &str) -> Status {
    tracing::error!(
        request = what,
        "the node answered with a response of another kind"
    );
    Status::internal(format!("etcdserver: unexpected response to {what}"))
}

#[cfg(test)]
mod tests {
    use mango_store::BackendError;

    use super::*;

    fn check(status: Status, code: Code, message: &str) {
        assert_eq!(status.code(), code, "code of {message:?}");
        assert_eq!(status.message(), message);
    }

    #[test]
    fn store_errors_map_to_etcd_codes_and_messages() {
        let cases = [
            (
                StoreError::Compacted,
                Code::OutOfRange,
                "etcdserver: mvcc: required revision has been compacted",
            ),
            (
                StoreError::FutureRevision,
                Code::OutOfRange,
                "etcdserver: mvcc: required revision is a future revision",
            ),
            (
                StoreError::KeyNotFound,
                Code::InvalidArgument,
                "etcdserver: key not found",
            ),
            (
                StoreError::LeaseNotFound,
                Code::NotFound,
                "etcdserver: requested lease not found",
            ),
            (
                StoreError::LeaseExists,
                Code::FailedPrecondition,
                "etcdserver: lease already exists",
            ),
            (
                StoreError::LeaseTtlTooLarge,
                Code::OutOfRange,
                "etcdserver: too large lease TTL",
            ),
            (
                StoreError::EmptyKey,
                Code::InvalidArgument,
                "etcdserver: key is not provided",
            ),
            (
                StoreError::ValueProvided,
                Code::InvalidArgument,
                "etcdserver: value is provided",
            ),
            (
                StoreError::LeaseProvided,
                Code::InvalidArgument,
                "etcdserver: lease is provided",
            ),
            (
                StoreError::TooManyOps,
                Code::InvalidArgument,
                "etcdserver: too many operations in txn request",
            ),
            (
                StoreError::DuplicateKey,
                Code::InvalidArgument,
                "etcdserver: duplicate key given in txn request",
            ),
            (
                StoreError::InvalidSortOption,
                Code::InvalidArgument,
                "etcdserver: invalid sort option",
            ),
            (
                StoreError::Malformed("bad bytes".into()),
                Code::InvalidArgument,
                "etcdserver: malformed request: bad bytes",
            ),
        ];
        for (e, code, message) in cases {
            check(store_status(e), code, message);
        }
        let backend = store_status(StoreError::Backend(BackendError::Engine("disk".into())));
        assert_eq!(backend.code(), Code::Internal);
        assert!(backend.message().contains("disk"), "{}", backend.message());
    }

    #[test]
    fn node_errors_map_to_etcd_codes_and_messages() {
        let cases = [
            (
                NodeError::NoLeader,
                Code::Unavailable,
                "etcdserver: no leader",
            ),
            (
                NodeError::Timeout,
                Code::Unavailable,
                "etcdserver: request timed out",
            ),
            (
                NodeError::LeaderChanged,
                Code::Unavailable,
                "etcdserver: leader changed",
            ),
            (
                NodeError::Stopped,
                Code::Unavailable,
                "etcdserver: server stopped",
            ),
            (
                NodeError::TooManyRequests,
                Code::ResourceExhausted,
                "etcdserver: too many requests",
            ),
            (
                NodeError::NoSpace,
                Code::ResourceExhausted,
                "etcdserver: mvcc: database space exceeded",
            ),
            (
                NodeError::MemberNotFound,
                Code::NotFound,
                "etcdserver: member not found",
            ),
            (
                NodeError::PeerUrlExists,
                Code::FailedPrecondition,
                "etcdserver: Peer URLs already exists",
            ),
            (
                NodeError::NotLearner,
                Code::FailedPrecondition,
                "etcdserver: can only promote a learner member",
            ),
            (
                NodeError::LearnerNotReady,
                Code::FailedPrecondition,
                "etcdserver: can only promote a learner member which is in sync with leader",
            ),
            (
                NodeError::BadLeaderTransferee,
                Code::FailedPrecondition,
                "etcdserver: bad leader transferee",
            ),
            (
                NodeError::NotLeader,
                Code::FailedPrecondition,
                "etcdserver: not leader",
            ),
            (NodeError::Other("boom".into()), Code::Internal, "boom"),
            (
                NodeError::Unavailable("upstream: no leader".into()),
                Code::Unavailable,
                "upstream: no leader",
            ),
            (
                NodeError::Store(StoreError::Compacted),
                Code::OutOfRange,
                "etcdserver: mvcc: required revision has been compacted",
            ),
            (
                NodeError::Store(StoreError::EmptyKey),
                Code::InvalidArgument,
                "etcdserver: key is not provided",
            ),
        ];
        for (e, code, message) in cases {
            check(node_status(e), code, message);
        }
    }

    #[test]
    fn api_errors_have_etcd_codes_and_messages() {
        check(
            request_too_large(),
            Code::InvalidArgument,
            "etcdserver: request is too large",
        );
        check(
            bad_member_urls(),
            Code::InvalidArgument,
            "etcdserver: given member URLs are invalid",
        );
    }
}
