//! etcd's auth errors: each carries etcd's exact text (`rpctypes/error.go`) and the gRPC code
//! etcd answers it with, so clients that match on either keep working.

use mango_rpctypes as rpc;

use crate::error::ErrorCode;

/// An auth request refused, or a request its sender may not make.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// AuthEnable without a `root` user.
    #[error("{}", rpc::ROOT_USER_NOT_EXIST)]
    RootUserNotExist,
    /// AuthEnable while the `root` user lacks the `root` role.
    #[error("{}", rpc::ROOT_ROLE_NOT_EXIST)]
    RootRoleNotExist,
    /// UserAdd of a user that exists.
    #[error("{}", rpc::USER_ALREADY_EXIST)]
    UserAlreadyExist,
    /// UserAdd with an empty name, or a request with no user while auth is enabled.
    #[error("{}", rpc::USER_EMPTY)]
    UserEmpty,
    /// A user that does not exist.
    #[error("{}", rpc::USER_NOT_FOUND)]
    UserNotFound,
    /// RoleAdd of a role that exists.
    #[error("{}", rpc::ROLE_ALREADY_EXIST)]
    RoleAlreadyExist,
    /// A role that does not exist.
    #[error("{}", rpc::ROLE_NOT_FOUND)]
    RoleNotFound,
    /// RoleAdd with an empty name.
    #[error("{}", rpc::ROLE_EMPTY)]
    RoleEmpty,
    /// RoleGrantPermission without a permission.
    #[error("{}", rpc::PERMISSION_NOT_GIVEN)]
    PermissionNotGiven,
    /// Authenticate with an unknown user, a wrong password, or for a user without password.
    #[error("{}", rpc::AUTH_FAILED)]
    AuthFailed,
    /// Authenticate with a password for a user added with `no_password` (etcd has no table
    /// entry for it, so it answers `Unknown` with its internal text).
    #[error("{}", rpc::NO_PASSWORD_USER)]
    NoPasswordUser,
    /// The user may not do this.
    #[error("{}", rpc::PERMISSION_DENIED)]
    PermissionDenied,
    /// UserRevokeRole of a role the user does not have.
    #[error("{}", rpc::ROLE_NOT_GRANTED)]
    RoleNotGranted,
    /// RoleRevokePermission of a permission the role does not have.
    #[error("{}", rpc::PERMISSION_NOT_GRANTED)]
    PermissionNotGranted,
    /// Authenticate while auth is disabled.
    #[error("{}", rpc::AUTH_NOT_ENABLED)]
    AuthNotEnabled,
    /// A token that is unknown, expired, or does not verify.
    #[error("{}", rpc::INVALID_AUTH_TOKEN)]
    InvalidAuthToken,
    /// Deleting `root` (user or role), or revoking `root` from `root`, while auth is enabled;
    /// granting an empty key range.
    #[error("{}", rpc::INVALID_AUTH_MGMT)]
    InvalidAuthMgmt,
    /// The credentials were checked at an auth revision older than the current one.
    #[error("{}", rpc::AUTH_OLD_REVISION)]
    AuthOldRevision,
}

impl AuthError {
    /// The gRPC code etcd answers this error with.
    pub fn code(self) -> ErrorCode {
        match self {
            AuthError::UserEmpty
            | AuthError::RoleEmpty
            | AuthError::PermissionNotGiven
            | AuthError::AuthFailed
            | AuthError::InvalidAuthMgmt
            | AuthError::AuthOldRevision => ErrorCode::InvalidArgument,
            AuthError::RootUserNotExist
            | AuthError::RootRoleNotExist
            | AuthError::UserAlreadyExist
            | AuthError::UserNotFound
            | AuthError::RoleAlreadyExist
            | AuthError::RoleNotFound
            | AuthError::RoleNotGranted
            | AuthError::PermissionNotGranted
            | AuthError::AuthNotEnabled => ErrorCode::FailedPrecondition,
            AuthError::PermissionDenied => ErrorCode::PermissionDenied,
            AuthError::InvalidAuthToken => ErrorCode::Unauthenticated,
            AuthError::NoPasswordUser => ErrorCode::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_texts_are_etcds() {
        let cases = [
            (
                AuthError::RootUserNotExist,
                ErrorCode::FailedPrecondition,
                "etcdserver: root user does not exist",
            ),
            (
                AuthError::UserEmpty,
                ErrorCode::InvalidArgument,
                "etcdserver: user name is empty",
            ),
            (
                AuthError::PermissionDenied,
                ErrorCode::PermissionDenied,
                "etcdserver: permission denied",
            ),
            (
                AuthError::InvalidAuthToken,
                ErrorCode::Unauthenticated,
                "etcdserver: invalid auth token",
            ),
            (
                AuthError::AuthOldRevision,
                ErrorCode::InvalidArgument,
                "etcdserver: revision of auth store is old",
            ),
            (
                AuthError::InvalidAuthMgmt,
                ErrorCode::InvalidArgument,
                "etcdserver: invalid auth management",
            ),
        ];
        for (e, code, text) in cases {
            assert_eq!(e.code(), code, "{e:?}");
            assert_eq!(e.to_string(), text);
            assert_eq!(crate::StoreError::from(e).code(), code);
            assert_eq!(crate::StoreError::from(e).to_string(), text);
        }
    }
}
