//! etcd 3.4's errors: a gRPC code and an exact message each (`rpctypes/error.go`), plus the
//! few texts etcd's v3 services answer outside that table (watch, election) and mango's own.

use std::fmt;

/// The gRPC status codes etcd answers with (a subset of gRPC's, with gRPC's numbers).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Code {
    /// 1
    Cancelled = 1,
    /// 2: what grpc-go answers for a plain Go error (etcd's election errors).
    Unknown = 2,
    /// 3
    InvalidArgument = 3,
    /// 4
    DeadlineExceeded = 4,
    /// 5
    NotFound = 5,
    /// 7
    PermissionDenied = 7,
    /// 8
    ResourceExhausted = 8,
    /// 9
    FailedPrecondition = 9,
    /// 11
    OutOfRange = 11,
    /// 12
    Unimplemented = 12,
    /// 13
    Internal = 13,
    /// 14
    Unavailable = 14,
    /// 15
    DataLoss = 15,
    /// 16
    Unauthenticated = 16,
}

/// One of etcd's errors: the code and the exact text a client sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EtcdError {
    /// The gRPC code.
    pub code: Code,
    /// The message, byte for byte etcd's.
    pub message: &'static str,
}

impl EtcdError {
    const fn new(code: Code, message: &'static str) -> Self {
        Self { code, message }
    }

    /// The error whose message is `message`, if it is one of etcd's (as etcd's client
    /// `rpctypes.Error` looks errors up by their text).
    pub fn from_message(message: &str) -> Option<EtcdError> {
        ALL.iter().copied().find(|e| e.message == message)
    }
}

impl fmt::Display for EtcdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message)
    }
}

impl std::error::Error for EtcdError {}

macro_rules! etcd_errors {
    ($($(#[$doc:meta])* $name:ident = ($code:ident, $text:literal);)*) => {
        $($(#[$doc])* pub const $name: EtcdError = EtcdError::new(Code::$code, $text);)*
        /// Every error defined here, for lookups by message.
        pub const ALL: &[EtcdError] = &[$($name),*];
    };
}

etcd_errors! {
    /// An empty key.
    EMPTY_KEY = (InvalidArgument, "etcdserver: key is not provided");
    /// `ignore_value` / `ignore_lease` on a missing key.
    KEY_NOT_FOUND = (InvalidArgument, "etcdserver: key not found");
    /// `ignore_value` with a value.
    VALUE_PROVIDED = (InvalidArgument, "etcdserver: value is provided");
    /// `ignore_lease` with a lease.
    LEASE_PROVIDED = (InvalidArgument, "etcdserver: lease is provided");
    /// Too many operations in one txn branch.
    TOO_MANY_OPS = (InvalidArgument, "etcdserver: too many operations in txn request");
    /// A txn writes one key twice.
    DUPLICATE_KEY = (InvalidArgument, "etcdserver: duplicate key given in txn request");
    /// A revision below the compacted one.
    COMPACTED = (OutOfRange, "etcdserver: mvcc: required revision has been compacted");
    /// A revision above the current one.
    FUTURE_REV = (OutOfRange, "etcdserver: mvcc: required revision is a future revision");
    /// The NOSPACE alarm is raised.
    NO_SPACE = (ResourceExhausted, "etcdserver: mvcc: database space exceeded");
    /// An unknown lease.
    LEASE_NOT_FOUND = (NotFound, "etcdserver: requested lease not found");
    /// A grant of an existing lease id.
    LEASE_EXIST = (FailedPrecondition, "etcdserver: lease already exists");
    /// A TTL above the maximum.
    LEASE_TTL_TOO_LARGE = (OutOfRange, "etcdserver: too large lease TTL");
    /// A watch cancelled by the server.
    WATCH_CANCELED = (Cancelled, "etcdserver: watch canceled");
    /// A member id that exists.
    MEMBER_EXIST = (FailedPrecondition, "etcdserver: member ID already exist");
    /// Peer URLs another member has.
    PEER_URL_EXIST = (FailedPrecondition, "etcdserver: Peer URLs already exists");
    /// A change that would leave too few started members for a quorum.
    MEMBER_NOT_ENOUGH_STARTED = (FailedPrecondition, "etcdserver: re-configuration failed due to not enough started members");
    /// Member URLs that do not parse.
    MEMBER_BAD_URLS = (InvalidArgument, "etcdserver: given member URLs are invalid");
    /// An unknown member.
    MEMBER_NOT_FOUND = (NotFound, "etcdserver: member not found");
    /// Promoting a voter.
    MEMBER_NOT_LEARNER = (FailedPrecondition, "etcdserver: can only promote a learner member");
    /// Promoting a learner that lags.
    LEARNER_NOT_READY = (FailedPrecondition, "etcdserver: can only promote a learner member which is in sync with leader");
    /// More Raft learners than allowed.
    TOO_MANY_LEARNERS = (FailedPrecondition, "etcdserver: too many learner members in cluster");
    /// An unknown sort order or target (etcd 3.5's `ErrGRPCInvalidSortOption`).
    INVALID_SORT_OPTION = (InvalidArgument, "etcdserver: invalid sort option");
    /// A request above `--max-request-bytes`.
    REQUEST_TOO_LARGE = (InvalidArgument, "etcdserver: request is too large");
    /// Back-pressure: too much in flight.
    TOO_MANY_REQUESTS = (ResourceExhausted, "etcdserver: too many requests");
    /// Enabling auth without a root user.
    ROOT_USER_NOT_EXIST = (FailedPrecondition, "etcdserver: root user does not exist");
    /// Enabling auth while root lacks the root role.
    ROOT_ROLE_NOT_EXIST = (FailedPrecondition, "etcdserver: root user does not have root role");
    /// Adding a user that exists.
    USER_ALREADY_EXIST = (FailedPrecondition, "etcdserver: user name already exists");
    /// An empty user name.
    USER_EMPTY = (InvalidArgument, "etcdserver: user name is empty");
    /// An unknown user.
    USER_NOT_FOUND = (FailedPrecondition, "etcdserver: user name not found");
    /// Adding a role that exists.
    ROLE_ALREADY_EXIST = (FailedPrecondition, "etcdserver: role name already exists");
    /// An unknown role.
    ROLE_NOT_FOUND = (FailedPrecondition, "etcdserver: role name not found");
    /// An empty role name.
    ROLE_EMPTY = (InvalidArgument, "etcdserver: role name is empty");
    /// RoleGrantPermission without a permission (etcd 3.4 answers it as `InvalidArgument`
    /// through its unknown-error path).
    PERMISSION_NOT_GIVEN = (InvalidArgument, "etcdserver: permission not given");
    /// Authenticate with a password for a user added with `no_password` (no table entry in
    /// etcd: `Unknown` with its internal text).
    NO_PASSWORD_USER = (Unknown, "auth: authentication failed, password was given for no password user");
    /// Wrong user or password.
    AUTH_FAILED = (InvalidArgument, "etcdserver: authentication failed, invalid user ID or password");
    /// The user may not do this.
    PERMISSION_DENIED = (PermissionDenied, "etcdserver: permission denied");
    /// Revoking a role the user does not have.
    ROLE_NOT_GRANTED = (FailedPrecondition, "etcdserver: role is not granted to the user");
    /// Revoking a permission the role does not have.
    PERMISSION_NOT_GRANTED = (FailedPrecondition, "etcdserver: permission is not granted to the role");
    /// Authenticate while auth is off.
    AUTH_NOT_ENABLED = (FailedPrecondition, "etcdserver: authentication is not enabled");
    /// A token that is unknown, expired or badly signed.
    INVALID_AUTH_TOKEN = (Unauthenticated, "etcdserver: invalid auth token");
    /// A change that would lock root out.
    INVALID_AUTH_MGMT = (InvalidArgument, "etcdserver: invalid auth management");
    /// A token issued before the latest auth change.
    AUTH_OLD_REVISION = (InvalidArgument, "etcdserver: revision of auth store is old");
    /// etcd's Maintenance calls for root only (Defragment, Snapshot, Hash, HashKV) answer
    /// the auth store's own errors untranslated: grpc-go's `Unknown` with the Go text.
    RAW_PERMISSION_DENIED = (Unknown, "auth: permission denied");
    /// As `RAW_PERMISSION_DENIED`, for a request without credentials.
    RAW_USER_EMPTY = (Unknown, "auth: user name is empty");
    /// As `RAW_PERMISSION_DENIED`, for credentials naming a user that no longer exists.
    RAW_USER_NOT_FOUND = (Unknown, "auth: user name not found");
    /// As `RAW_PERMISSION_DENIED`, for an unknown or expired token.
    RAW_INVALID_AUTH_TOKEN = (Unknown, "auth: invalid auth token");
    /// No leader is known.
    NO_LEADER = (Unavailable, "etcdserver: no leader");
    /// The call needs the leader.
    NOT_LEADER = (FailedPrecondition, "etcdserver: not leader");
    /// Leadership changed while the request waited.
    LEADER_CHANGED = (Unavailable, "etcdserver: leader changed");
    /// The cluster version does not support this.
    NOT_CAPABLE = (Unavailable, "etcdserver: not capable");
    /// The server is stopping.
    STOPPED = (Unavailable, "etcdserver: server stopped");
    /// The request did not finish in time.
    TIMEOUT = (Unavailable, "etcdserver: request timed out");
    /// Timed out after the previous leader failed.
    TIMEOUT_DUE_TO_LEADER_FAIL = (Unavailable, "etcdserver: request timed out, possibly due to previous leader failure");
    /// Timed out after the connection to the leader was lost.
    TIMEOUT_DUE_TO_CONNECTION_LOST = (Unavailable, "etcdserver: request timed out, possibly due to connection lost");
    /// Applying did not reach the read index in time.
    TIMEOUT_WAIT_APPLIED_INDEX = (Unavailable, "etcdserver: request timed out, waiting for the applied index took too long");
    /// A quorum is not reachable.
    UNHEALTHY = (Unavailable, "etcdserver: unhealthy cluster");
    /// The CORRUPT alarm is raised.
    CORRUPT = (DataLoss, "etcdserver: corrupt cluster");
    /// A call a Raft learner member does not serve.
    NOT_SUPPORTED_FOR_LEARNER = (Unavailable, "etcdserver: rpc not supported for learner");
    /// Moving leadership to a member that cannot take it.
    BAD_LEADER_TRANSFEREE = (FailedPrecondition, "etcdserver: bad leader transferee");
    /// Membership or admin calls before this member caught up (etcd's `ErrNotEnoughStartedMembers` family).
    NOT_STARTED = (Unavailable, "etcdserver: this member has not caught up with the cluster yet");
    /// A watch on an empty range (`mvcc.ErrEmptyWatcherRange`).
    EMPTY_WATCHER_RANGE = (InvalidArgument, "mvcc: watcher range is empty");
    /// A watch id already in use on the stream (`mvcc.ErrWatcherDuplicateID`).
    DUPLICATE_WATCH_ID = (InvalidArgument, "mvcc: duplicate watch ID provided on the WatchStream");
    /// Election: resign or proclaim by someone not leading.
    ELECTION_NOT_LEADER = (Unknown, "election: not leader");
    /// Election: nobody leads.
    ELECTION_NO_LEADER = (Unknown, "election: no leader");
    /// Election: a call without its leader key.
    ELECTION_MISSING_LEADER_KEY = (Unknown, "\"leader\" field must be provided");
    /// A request that spans two key routes of a keyspace (mango).
    SPANS_KEY_ROUTES = (InvalidArgument, "mango: request spans key routes");
    /// A keyspace that does not exist (mango).
    KEYSPACE_NOT_FOUND = (NotFound, "mango: keyspace not found");
}

#[cfg(feature = "tonic")]
mod grpc {
    use super::{Code, EtcdError};

    impl From<Code> for tonic::Code {
        fn from(code: Code) -> tonic::Code {
            tonic::Code::from_i32(code as i32)
        }
    }

    impl From<EtcdError> for tonic::Status {
        fn from(e: EtcdError) -> tonic::Status {
            tonic::Status::new(e.code.into(), e.message)
        }
    }

    impl EtcdError {
        /// The status a server answers with.
        pub fn status(self) -> tonic::Status {
            self.into()
        }

        /// Whether `status` is this error (code and message).
        pub fn is(self, status: &tonic::Status) -> bool {
            status.code() == tonic::Code::from(self.code) && status.message() == self.message
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_unique_and_found_again() {
        for (i, a) in ALL.iter().enumerate() {
            for b in &ALL[i + 1..] {
                assert_ne!(a.message, b.message);
            }
            assert_eq!(EtcdError::from_message(a.message), Some(*a));
        }
        assert_eq!(EtcdError::from_message("no such text"), None);
    }

    #[cfg(feature = "tonic")]
    #[test]
    fn statuses_carry_etcd_codes_and_texts() {
        let s = COMPACTED.status();
        assert_eq!(s.code(), tonic::Code::OutOfRange);
        assert_eq!(
            s.message(),
            "etcdserver: mvcc: required revision has been compacted"
        );
        assert!(COMPACTED.is(&s));
        assert!(!FUTURE_REV.is(&s));
        assert_eq!(
            INVALID_AUTH_TOKEN.status().code(),
            tonic::Code::Unauthenticated
        );
        assert_eq!(CORRUPT.status().code(), tonic::Code::DataLoss);
    }
}
