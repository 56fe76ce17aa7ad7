//! etcd's auth errors: each carries etcd's exact text (`rpctypes/error.go`) and the gRPC code
//! etcd answers it with, so clients that match on either keep working.

use crate::error::ErrorCode;

/// An auth request refused, or a request its sender may not make.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// AuthEnable without a `root` user.
    #[error("etcdserver: root user does not exist")]
    RootUserNotExist,
    /// AuthEnable while the `root` user lacks the `root` role.
    #[error("etcdserver: root user does not have root role")]
    RootRoleNotExist,
    /// UserAdd of a user that exists.
    #[error("etcdserver: user name already exists")]
    UserAlreadyExist,
    /// UserAdd with an empty name, or a request with no user while auth is enabled.
    #[error("etcdserver: user name is empty")]
    UserEmpty,
    /// A user that does not exist.
    #[error("etcdserver: user name not found")]
    UserNotFound,
    /// RoleAdd of a role that exists.
    #[error("etcdserver: role name already exists")]
    RoleAlreadyExist,
    /// A role that does not exist.
    #[error("etcdserver: role name not found")]
    RoleNotFound,
    /// RoleAdd with an empty name.
    #[error("etcdserver: role name is empty")]
    RoleEmpty,
    /// RoleGrantPermission without a permission.
    #[error("etcdserver: permission not given")]
    PermissionNotGiven,
    /// Authenticate with an unknown user, a wrong password, or for a user without password.
    #[error("etcdserver: authentication failed, invalid user ID or password")]
    AuthFailed,
    /// Authenticate with a password for a user added with `no_password` (etcd has no table
    /// entry for it, so it answers `Unknown` with its internal text).
    #[error("auth: authentication failed, password was given for no password user")]
    NoPasswordUser,
    /// The user may not do this.
    #[error("etcdserver: permission denied")]
    PermissionDenied,
    /// UserRevokeRole of a role the user does not have.
    #[error("etcdserver: role is not granted to the user")]
    RoleNotGranted,
    /// RoleRevokePermission of a permission the role does not have.
    #[error("etcdserver: permission is not granted to the role")]
    PermissionNotGranted,
    /// Authenticate while auth is disabled.
    #[error("etcdserver: authentication is not enabled")]
    AuthNotEnabled,
    /// A token that is unknown, expired, or does not verify.
    #[error("etcdserver: invalid auth token")]
    InvalidAuthToken,
    /// Deleting `root` (user or role), or revoking `root` from `root`, while auth is enabled;
    /// granting an empty key range.
    #[error("etcdserver: invalid auth management")]
    InvalidAuthMgmt,
    /// The credentials were checked at an auth revision older than the current one.
    #[error("etcdserver: revision of auth store is old")]
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
