//! The replicated auth state of one group, as stored and as read.
//!
//! Stored (in the group's tables, so it is replicated by the log and carried by snapshots):
//! users in `AuthUsers` (name -> `authpb.User`), roles in `AuthRoles` (name -> `authpb.Role`),
//! and in `Meta` the enabled flag (`auth/enabled`) and etcd's auth revision
//! (`auth/revision`), which every auth change but AuthEnable raises.
//!
//! Read: [`AuthState`], an immutable copy with every user's merged permissions, built after
//! each batch that changed auth and published with the group's read view, so permission
//! checks never touch the backend.

use std::collections::{BTreeMap, HashMap};
use std::ops::ControlFlow;

use mango_proto::authpb::{Role, User};
use prost::Message;

use super::error::AuthError;
use super::perms::UserPerms;
use crate::backend::{BackendError, ReadTables, Table, WriteTables};

/// The name of etcd's superuser and of its all-powerful role.
pub const ROOT: &str = "root";

const ENABLED_KEY: &[u8] = b"auth/enabled";
const REVISION_KEY: &[u8] = b"auth/revision";

/// The credentials a request carries: the user a token or certificate names and the auth
/// revision they were resolved at (etcd's `AuthInfo`). The default (no user, revision 0) is
/// a request without credentials.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthInfo {
    /// The user's name; empty when the client presented no credentials.
    pub username: String,
    /// The auth revision the credentials were checked at (0: none).
    pub revision: u64,
}

/// A read-only copy of a group's auth state, shared by every reader of one view.
#[derive(Clone, Debug, PartialEq)]
pub struct AuthState {
    /// Whether auth is enabled: when not, every check passes.
    pub(crate) enabled: bool,
    /// etcd's auth revision (1 for a group that never changed auth, as etcd's first start).
    pub(crate) revision: u64,
    /// Every user, by name.
    pub(crate) users: BTreeMap<String, User>,
    /// Every role, by name.
    pub(crate) roles: BTreeMap<String, Role>,
    /// Each user's merged permissions (etcd's range permission cache).
    pub(crate) perms: HashMap<String, UserPerms>,
}

impl Default for AuthState {
    fn default() -> Self {
        Self {
            enabled: false,
            revision: 1,
            users: BTreeMap::new(),
            roles: BTreeMap::new(),
            perms: HashMap::new(),
        }
    }
}

fn corrupt(table: Table, what: String) -> BackendError {
    BackendError::Corrupt { table, what }
}

fn name_of(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Every record of `table`, decoded.
fn load_all<M: Message + Default, R: ReadTables + ?Sized>(
    tables: &R,
    table: Table,
) -> Result<Vec<M>, BackendError> {
    let mut out = Vec::new();
    let mut bad = None;
    tables.scan(table, &[], None, false, &mut |_, v| match M::decode(v) {
        Ok(m) => {
            out.push(m);
            ControlFlow::Continue(())
        }
        Err(e) => {
            bad = Some(e.to_string());
            ControlFlow::Break(())
        }
    })?;
    match bad {
        Some(what) => Err(corrupt(table, what)),
        None => Ok(out),
    }
}

impl AuthState {
    /// Reads the state of a group (the default for a group that never changed auth).
    pub(crate) fn load<R: ReadTables + ?Sized>(tables: &R) -> Result<Self, BackendError> {
        let enabled = tables.get(Table::Meta, ENABLED_KEY)?.as_deref() == Some(&[1][..]);
        let revision = match tables.get(Table::Meta, REVISION_KEY)? {
            None => 1,
            Some(b) => u64::from_be_bytes(b.as_slice().try_into().map_err(|_| {
                corrupt(Table::Meta, format!("auth revision of {} bytes", b.len()))
            })?),
        };
        let users: BTreeMap<String, User> = load_all::<User, _>(tables, Table::AuthUsers)?
            .into_iter()
            .map(|u| (name_of(&u.name), u))
            .collect();
        let roles: BTreeMap<String, Role> = load_all::<Role, _>(tables, Table::AuthRoles)?
            .into_iter()
            .map(|r| (name_of(&r.name), r))
            .collect();
        let perms = users
            .iter()
            .map(|(name, u)| {
                let granted = u
                    .roles
                    .iter()
                    .filter_map(|r| roles.get(r))
                    .flat_map(|r| r.key_permission.iter());
                (name.clone(), UserPerms::merge(granted))
            })
            .collect();
        Ok(Self {
            enabled,
            revision,
            users,
            roles,
            perms,
        })
    }

    /// Whether auth is enabled.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// etcd's auth revision: raised by every auth change, so credentials resolved before a
    /// change can be told from those resolved after it.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// The user `name`, if it exists (its `password` is the bcrypt hash).
    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.get(name)
    }

    /// The role `name`, if it exists.
    pub fn role(&self, name: &str) -> Option<&Role> {
        self.roles.get(name)
    }

    /// Every user's name, in etcd's order (by name).
    pub fn user_names(&self) -> Vec<String> {
        self.users.keys().cloned().collect()
    }

    /// Every role's name, in etcd's order (by name).
    pub fn role_names(&self) -> Vec<String> {
        self.roles.keys().cloned().collect()
    }

    /// Whether user `user` exists and has role `role` (etcd's `HasRole`).
    pub fn has_role(&self, user: &str, role: &str) -> bool {
        self.users
            .get(user)
            .is_some_and(|u| u.roles.iter().any(|r| r == role))
    }

    /// Checks a password against the stored bcrypt hash (etcd's `CheckPassword`) and returns
    /// the auth revision it was checked at, which the Authenticate the caller then proposes
    /// must still be current when it applies (etcd retries otherwise). bcrypt is slow by
    /// design (tens of milliseconds at etcd's default cost): call it off any async executor
    /// and never on the apply path.
    pub fn check_password(&self, name: &str, password: &str) -> Result<u64, AuthError> {
        if !self.enabled {
            return Err(AuthError::AuthNotEnabled);
        }
        let user = self.users.get(name).ok_or(AuthError::AuthFailed)?;
        if user.options.is_some_and(|o| o.no_password) {
            return Err(AuthError::NoPasswordUser);
        }
        let hash = std::str::from_utf8(&user.password).map_err(|_| AuthError::AuthFailed)?;
        match bcrypt::verify(password, hash) {
            Ok(true) => Ok(self.revision),
            _ => Err(AuthError::AuthFailed),
        }
    }
}

/// Reads the user `name` inside a write transaction.
pub(crate) fn get_user(tables: &dyn WriteTables, name: &str) -> Result<Option<User>, BackendError> {
    tables
        .get(Table::AuthUsers, name.as_bytes())?
        .map(|v| User::decode(v.as_slice()).map_err(|e| corrupt(Table::AuthUsers, e.to_string())))
        .transpose()
}

/// Stores `user` under its name.
pub(crate) fn put_user(tables: &mut dyn WriteTables, user: &User) -> Result<(), BackendError> {
    tables.put(Table::AuthUsers, &user.name, &user.encode_to_vec())
}

/// Reads the role `name` inside a write transaction.
pub(crate) fn get_role(tables: &dyn WriteTables, name: &str) -> Result<Option<Role>, BackendError> {
    tables
        .get(Table::AuthRoles, name.as_bytes())?
        .map(|v| Role::decode(v.as_slice()).map_err(|e| corrupt(Table::AuthRoles, e.to_string())))
        .transpose()
}

/// Stores `role` under its name.
pub(crate) fn put_role(tables: &mut dyn WriteTables, role: &Role) -> Result<(), BackendError> {
    tables.put(Table::AuthRoles, &role.name, &role.encode_to_vec())
}

/// Every user, in name order, inside a write transaction.
pub(crate) fn all_users(tables: &dyn WriteTables) -> Result<Vec<User>, BackendError> {
    load_all(tables, Table::AuthUsers)
}

/// Records the enabled flag.
pub(crate) fn set_enabled(tables: &mut dyn WriteTables, on: bool) -> Result<(), BackendError> {
    tables.put(Table::Meta, ENABLED_KEY, &[u8::from(on)])
}

/// Records the auth revision (a restore carries the source's).
pub(crate) fn set_revision(
    tables: &mut dyn WriteTables,
    revision: u64,
) -> Result<(), BackendError> {
    tables.put(Table::Meta, REVISION_KEY, &revision.to_be_bytes())
}

/// Raises the auth revision by one (etcd's `commitRevision`) and returns the new one.
pub(crate) fn bump_revision(
    tables: &mut dyn WriteTables,
    current: u64,
) -> Result<u64, BackendError> {
    let next = current.saturating_add(1);
    tables.put(Table::Meta, REVISION_KEY, &next.to_be_bytes())?;
    Ok(next)
}
