//! Who may do what: etcd 3.4's permission checks (`auth/store.go`'s `isOpPermitted` and
//! `IsAdminPermitted`, `etcdserver/apply_auth.go`'s per-request checks, with the fixes of the
//! later 3.4 releases: nested txns, and a txn's puts with `prev_kv` or a lease, are checked).
//!
//! The same functions serve the apply path (against the state as of the entry, with the
//! credentials the entry carries) and the API layer (against a read view's state, for
//! serializable reads and to refuse early).

use mango_proto::etcdserverpb::request_op::Request as Op;
use mango_proto::etcdserverpb::{DeleteRangeRequest, PutRequest, RequestOp, TxnRequest};
use mango_proto::mangopb::raft_request::Request;

use super::error::AuthError;
use super::state::{AuthInfo, AuthState, ROOT};
use crate::backend::BackendError;
use crate::error::StoreError;

/// The keys attached to a lease (empty for a lease that does not exist), for the checks that
/// need them: a Put naming a lease, a LeaseRevoke.
pub type LeaseKeys<'a> = dyn Fn(i64) -> Result<Vec<Vec<u8>>, BackendError> + 'a;

/// Which permission an operation needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Reading (Range, Watch, a txn's compares).
    Read,
    /// Writing (Put, DeleteRange, LeaseRevoke of leased keys).
    Write,
}

impl AuthState {
    fn has_root_role(&self, user: &str) -> bool {
        self.has_role(user, ROOT)
    }

    /// Whether `info` may `access` the keys `key`/`range_end` name (etcd's `isOpPermitted`):
    /// always while auth is disabled; `UserEmpty` without credentials; `AuthOldRevision` for
    /// credentials resolved before the last auth change; the root role may do anything.
    pub fn is_range_permitted_for(
        &self,
        info: &AuthInfo,
        key: &[u8],
        range_end: &[u8],
        access: Access,
    ) -> Result<(), AuthError> {
        if !self.enabled {
            return Ok(());
        }
        if info.revision == 0 {
            return Err(AuthError::UserEmpty);
        }
        if info.revision < self.revision {
            return Err(AuthError::AuthOldRevision);
        }
        if !self.users.contains_key(&info.username) {
            return Err(AuthError::PermissionDenied);
        }
        if self.has_root_role(&info.username) {
            return Ok(());
        }
        let allowed = self.perms.get(&info.username).is_some_and(|p| {
            let set = match access {
                Access::Read => &p.read,
                Access::Write => &p.write,
            };
            set.contains_range(key, range_end)
        });
        if allowed {
            Ok(())
        } else {
            Err(AuthError::PermissionDenied)
        }
    }

    /// etcd's `IsRangePermitted`: reading `key`/`range_end`.
    pub fn is_range_permitted(
        &self,
        info: &AuthInfo,
        key: &[u8],
        range_end: &[u8],
    ) -> Result<(), AuthError> {
        self.is_range_permitted_for(info, key, range_end, Access::Read)
    }

    /// etcd's `IsPutPermitted`: writing the single key `key`.
    pub fn is_put_permitted(&self, info: &AuthInfo, key: &[u8]) -> Result<(), AuthError> {
        self.is_range_permitted_for(info, key, &[], Access::Write)
    }

    /// etcd's `IsDeleteRangePermitted`: writing `key`/`range_end`.
    pub fn is_delete_range_permitted(
        &self,
        info: &AuthInfo,
        key: &[u8],
        range_end: &[u8],
    ) -> Result<(), AuthError> {
        self.is_range_permitted_for(info, key, range_end, Access::Write)
    }

    /// etcd's `IsAdminPermitted`: only a user with the root role (auth management, member,
    /// alarm, defragment, snapshot, move-leader, ... calls). The auth revision is not checked,
    /// as in etcd.
    pub fn is_admin_permitted(&self, info: &AuthInfo) -> Result<(), AuthError> {
        if !self.enabled {
            return Ok(());
        }
        if info.username.is_empty() {
            return Err(AuthError::UserEmpty);
        }
        if !self.users.contains_key(&info.username) {
            return Err(AuthError::UserNotFound);
        }
        if self.has_root_role(&info.username) {
            Ok(())
        } else {
            Err(AuthError::PermissionDenied)
        }
    }

    /// A Put: its key, the keys already attached to its lease (a user who could not revoke
    /// the lease may not attach to it), and with `prev_kv` reading the key (etcd's
    /// `checkPutAuth`).
    pub fn check_put(
        &self,
        info: &AuthInfo,
        put: &PutRequest,
        lease_keys: &LeaseKeys<'_>,
    ) -> Result<(), StoreError> {
        self.is_put_permitted(info, &put.key)?;
        if put.lease != 0 {
            self.check_lease_keys(info, put.lease, lease_keys)?;
        }
        if put.prev_kv {
            self.is_range_permitted(info, &put.key, &[])?;
        }
        Ok(())
    }

    /// A DeleteRange: writing its range, and with `prev_kv` reading it.
    pub fn check_delete_range(
        &self,
        info: &AuthInfo,
        del: &DeleteRangeRequest,
    ) -> Result<(), AuthError> {
        self.is_delete_range_permitted(info, &del.key, &del.range_end)?;
        if del.prev_kv {
            self.is_range_permitted(info, &del.key, &del.range_end)?;
        }
        Ok(())
    }

    /// Writing every key attached to lease `id` (etcd's `checkLeasePuts`: a LeaseRevoke
    /// deletes them). A user with the root role skips the per-key checks.
    pub fn check_lease_keys(
        &self,
        info: &AuthInfo,
        id: i64,
        lease_keys: &LeaseKeys<'_>,
    ) -> Result<(), StoreError> {
        if self.is_admin_permitted(info).is_ok() {
            return Ok(());
        }
        for key in lease_keys(id)? {
            self.is_put_permitted(info, &key)?;
        }
        Ok(())
    }

    /// A Txn (etcd's `checkTxnAuth`): reading every compare's key, then every operation of
    /// both branches, nested txns included.
    pub fn check_txn(
        &self,
        info: &AuthInfo,
        txn: &TxnRequest,
        lease_keys: &LeaseKeys<'_>,
    ) -> Result<(), StoreError> {
        if !self.enabled {
            return Ok(());
        }
        for c in &txn.compare {
            self.is_range_permitted(info, &c.key, &c.range_end)?;
        }
        self.check_ops(info, &txn.success, lease_keys)?;
        self.check_ops(info, &txn.failure, lease_keys)
    }

    fn check_ops(
        &self,
        info: &AuthInfo,
        ops: &[RequestOp],
        lease_keys: &LeaseKeys<'_>,
    ) -> Result<(), StoreError> {
        for op in ops {
            match &op.request {
                Some(Op::RequestRange(r)) => self.is_range_permitted(info, &r.key, &r.range_end)?,
                Some(Op::RequestPut(p)) => self.check_put(info, p, lease_keys)?,
                Some(Op::RequestDeleteRange(d)) => {
                    if d.prev_kv {
                        self.is_range_permitted(info, &d.key, &d.range_end)?;
                    }
                    self.is_delete_range_permitted(info, &d.key, &d.range_end)?;
                }
                Some(Op::RequestTxn(t)) => self.check_txn(info, t, lease_keys)?,
                None => {}
            }
        }
        Ok(())
    }

    /// What etcd's auth applier checks before applying `request` sent with `info`: auth
    /// management needs the root role (UserGet of oneself and RoleGet of one's own role
    /// excepted); key operations need their permissions; a LeaseRevoke needs write access to
    /// the lease's keys. Requests etcd does not check (LeaseGrant, Compaction, Alarm, ...)
    /// pass: the API layer checks the admin ones before proposing, as etcd does.
    pub fn check_request(
        &self,
        info: &AuthInfo,
        request: &Request,
        lease_keys: &LeaseKeys<'_>,
    ) -> Result<(), StoreError> {
        if !self.enabled {
            return Ok(());
        }
        match request {
            Request::AuthEnable(_)
            | Request::AuthDisable(_)
            | Request::AuthStatus(_)
            | Request::AuthUserAdd(_)
            | Request::AuthUserDelete(_)
            | Request::AuthUserChangePassword(_)
            | Request::AuthUserGrantRole(_)
            | Request::AuthUserRevokeRole(_)
            | Request::AuthUserList(_)
            | Request::AuthRoleList(_)
            | Request::AuthRoleAdd(_)
            | Request::AuthRoleDelete(_)
            | Request::AuthRoleGrantPermission(_)
            | Request::AuthRoleRevokePermission(_) => Ok(self.is_admin_permitted(info)?),
            Request::AuthUserGet(r) => match self.is_admin_permitted(info) {
                Err(e) if r.name != info.username => Err(e.into()),
                _ => Ok(()),
            },
            Request::AuthRoleGet(r) => match self.is_admin_permitted(info) {
                Err(e) if !self.has_role(&info.username, &r.role) => Err(e.into()),
                _ => Ok(()),
            },
            Request::Range(r) => Ok(self.is_range_permitted(info, &r.key, &r.range_end)?),
            Request::Put(p) => self.check_put(info, p, lease_keys),
            Request::DeleteRange(d) => Ok(self.check_delete_range(info, d)?),
            Request::Txn(t) => self.check_txn(info, t, lease_keys),
            Request::LeaseRevoke(r) => self.check_lease_keys(info, r.id, lease_keys),
            Request::Authenticate(_)
            | Request::Compaction(_)
            | Request::LeaseGrant(_)
            | Request::LeaseCheckpoint(_)
            | Request::MemberChange(_)
            | Request::Alarm(_) => Ok(()),
        }
    }
}
