//! Users, roles and permissions (etcd's auth store), replicated: changed only by
//! `Command::Auth` entries, so every member checks the same rules from the same index on.
//!
//! A user has a password hash (hashed by the member that took the request, never in the log in
//! clear) and roles; a role has permissions, each read, write or readwrite on one key or a range
//! of keys (`[key, range_end)`, `range_end` `"\0"` meaning every key from `key` on). The role
//! named `root` grants everything. Authentication can be enabled only while a `root` user with
//! the `root` role exists, and neither can be taken away while it is enabled. Every change bumps
//! the auth revision; enabling also sets the secret members sign their tokens with.
//!
//! Invariants: the store changes only in [`AuthStore::apply`], as a function of the entries
//! applied; a refused change changes nothing.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use prost::Message;

/// The user and the role that may do everything.
pub const ROOT: &str = "root";

/// etcd's `Permission.Type` values.
pub const READ: i32 = 0;
/// Write permission.
pub const WRITE: i32 = 1;
/// Read and write permission.
pub const READWRITE: i32 = 2;

/// A permission: `perm_type` on `[key, range_end)` (an empty `range_end`: `key` alone).
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Permission {
    /// [`READ`], [`WRITE`] or [`READWRITE`].
    #[prost(int32, tag = "1")]
    pub perm_type: i32,
    /// First key.
    #[prost(bytes = "bytes", tag = "2")]
    pub key: Bytes,
    /// End of the range (exclusive); empty for `key` alone, `"\0"` for every key from `key`.
    #[prost(bytes = "bytes", tag = "3")]
    pub range_end: Bytes,
}

/// A user.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct User {
    /// Its name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Its password's hash (a PHC string); empty: it cannot log in with a password.
    #[prost(string, tag = "2")]
    pub password_hash: String,
    /// Its roles, sorted.
    #[prost(string, repeated, tag = "3")]
    pub roles: Vec<String>,
}

/// A role.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Role {
    /// Its name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Its permissions, sorted by key and range end.
    #[prost(message, repeated, tag = "2")]
    pub permissions: Vec<Permission>,
}

/// A user and a role, for grants and revokes.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Grant {
    /// The user.
    #[prost(string, tag = "1")]
    pub user: String,
    /// The role.
    #[prost(string, tag = "2")]
    pub role: String,
}

/// A role and a permission, for grants and revokes.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct RolePermission {
    /// The role.
    #[prost(string, tag = "1")]
    pub role: String,
    /// The permission (for a revoke, its type is not looked at).
    #[prost(message, optional, tag = "2")]
    pub permission: Option<Permission>,
}

/// An entry's change of the auth store.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AuthChange {
    /// What to change.
    #[prost(oneof = "AuthOp", tags = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11")]
    pub op: Option<AuthOp>,
}

/// The kinds of auth change.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum AuthOp {
    /// Enable authentication, with a new token-signing secret.
    #[prost(bytes = "bytes", tag = "1")]
    Enable(Bytes),
    /// Disable authentication.
    #[prost(bool, tag = "2")]
    Disable(bool),
    /// Add a user.
    #[prost(message, tag = "3")]
    UserAdd(User),
    /// Delete a user.
    #[prost(string, tag = "4")]
    UserDelete(String),
    /// Set a user's password hash (its roles are not looked at).
    #[prost(message, tag = "5")]
    UserChangePassword(User),
    /// Grant a role to a user.
    #[prost(message, tag = "6")]
    UserGrantRole(Grant),
    /// Revoke a role from a user.
    #[prost(message, tag = "7")]
    UserRevokeRole(Grant),
    /// Add a role.
    #[prost(string, tag = "8")]
    RoleAdd(String),
    /// Delete a role (and revoke it from every user).
    #[prost(string, tag = "9")]
    RoleDelete(String),
    /// Grant a permission to a role (replacing one on the same keys).
    #[prost(message, tag = "10")]
    RoleGrantPermission(RolePermission),
    /// Revoke a role's permission on some keys.
    #[prost(message, tag = "11")]
    RoleRevokePermission(RolePermission),
}

/// Why an auth change or check was refused, in etcd's words (clients match on them).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// A user name is empty.
    #[error("etcdserver: user name is empty")]
    UserEmpty,
    /// A role name is empty.
    #[error("etcdserver: role name is empty")]
    RoleEmpty,
    /// The user exists.
    #[error("etcdserver: user name already exists")]
    UserAlreadyExists,
    /// No such user.
    #[error("etcdserver: user name not found")]
    UserNotFound,
    /// The role exists.
    #[error("etcdserver: role name already exists")]
    RoleAlreadyExists,
    /// No such role.
    #[error("etcdserver: role name not found")]
    RoleNotFound,
    /// Enabling needs a `root` user.
    #[error("etcdserver: root user does not exist")]
    RootUserNotExist,
    /// Enabling needs the `root` user to have the `root` role.
    #[error("etcdserver: root user does not have root role")]
    RootRoleNotExist,
    /// The user does not have the role.
    #[error("etcdserver: role is not granted to the user")]
    RoleNotGranted,
    /// The role does not have the permission.
    #[error("etcdserver: permission is not granted to the role")]
    PermissionNotGranted,
    /// The change would lock everyone out (root's user or role taken away while enabled).
    #[error("etcdserver: invalid auth management")]
    InvalidAuthMgmt,
    /// Wrong user or password.
    #[error("etcdserver: authentication failed, invalid user ID or password")]
    AuthFailed,
    /// Authentication is not enabled (so there is nothing to log in to).
    #[error("etcdserver: authentication is not enabled")]
    NotEnabled,
    /// The caller may not do this.
    #[error("etcdserver: permission denied")]
    PermissionDenied,
    /// The token is not one of this cluster's, or has expired.
    #[error("etcdserver: invalid auth token")]
    InvalidToken,
}

/// The auth store's part of a snapshot.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AuthSnapshot {
    /// Whether authentication is enabled.
    #[prost(bool, tag = "1")]
    pub enabled: bool,
    /// Every user.
    #[prost(message, repeated, tag = "2")]
    pub users: Vec<User>,
    /// Every role.
    #[prost(message, repeated, tag = "3")]
    pub roles: Vec<Role>,
    /// The auth revision.
    #[prost(uint64, tag = "4")]
    pub revision: u64,
    /// The token-signing secret.
    #[prost(bytes = "bytes", tag = "5")]
    pub secret: Bytes,
}

/// The kind of access a request needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Reading keys.
    Read,
    /// Writing keys.
    Write,
}

/// Users, roles and permissions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthStore {
    /// Whether requests must carry credentials.
    enabled: bool,
    /// By name.
    users: BTreeMap<String, User>,
    /// By name.
    roles: BTreeMap<String, Role>,
    /// Bumped by every change.
    revision: u64,
    /// What tokens are signed with (set by each enable).
    secret: Bytes,
}

/// A key range as an interval: `[start, end)`, `end` `None` for "no end".
type Interval = (Bytes, Option<Bytes>);

/// `[key, range_end)` as an interval (an empty end: the key alone; `"\0"`: no end).
fn interval(key: &Bytes, range_end: &Bytes) -> Interval {
    if range_end.is_empty() {
        let mut end = key.to_vec();
        end.push(0);
        (key.clone(), Some(Bytes::from(end)))
    } else if range_end.as_ref() == [0] {
        (key.clone(), None)
    } else {
        (key.clone(), Some(range_end.clone()))
    }
}

/// Whether the union of `granted` covers `wanted`.
fn covered(mut granted: Vec<Interval>, wanted: &Interval) -> bool {
    granted.sort();
    let mut reached = wanted.0.clone();
    for (start, end) in granted {
        if start > reached {
            break;
        }
        match end {
            None => return true,
            Some(end) if end > reached => reached = end,
            Some(_) => {}
        }
        if wanted.1.as_ref().is_some_and(|w| reached >= *w) {
            return true;
        }
    }
    // An empty range (end at or before its start) needs nothing.
    wanted.1.as_ref().is_some_and(|w| *w <= wanted.0)
}

impl AuthStore {
    /// Whether requests must carry credentials.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The auth revision (bumped by every change).
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// The token-signing secret.
    pub fn secret(&self) -> &Bytes {
        &self.secret
    }

    /// A user by name.
    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.get(name)
    }

    /// A role by name.
    pub fn role(&self, name: &str) -> Option<&Role> {
        self.roles.get(name)
    }

    /// Every user, by name.
    pub fn users(&self) -> impl Iterator<Item = &User> {
        self.users.values()
    }

    /// Every role, by name.
    pub fn roles(&self) -> impl Iterator<Item = &Role> {
        self.roles.values()
    }

    /// Whether `user` has the `root` role.
    pub fn is_root(&self, user: &str) -> bool {
        self.users
            .get(user)
            .is_some_and(|u| u.roles.iter().any(|r| r == ROOT))
    }

    /// Whether `user` may `access` the keys `[key, range_end)` (an empty `range_end`: `key`
    /// alone; `"\0"`: every key from `key`).
    pub fn permitted(&self, user: &str, access: Access, key: &Bytes, range_end: &Bytes) -> bool {
        let Some(u) = self.users.get(user) else {
            return false;
        };
        if u.roles.iter().any(|r| r == ROOT) {
            return true;
        }
        let wanted_type = match access {
            Access::Read => READ,
            Access::Write => WRITE,
        };
        let granted: Vec<Interval> = u
            .roles
            .iter()
            .filter_map(|r| self.roles.get(r))
            .flat_map(|r| r.permissions.iter())
            .filter(|p| p.perm_type == wanted_type || p.perm_type == READWRITE)
            .map(|p| interval(&p.key, &p.range_end))
            .collect();
        covered(granted, &interval(key, range_end))
    }

    /// Applies a change; a refused one changes nothing.
    pub fn apply(&mut self, change: &AuthChange) -> Result<(), AuthError> {
        let Some(op) = &change.op else {
            return Ok(());
        };
        self.change(op)?;
        self.revision += 1;
        Ok(())
    }

    fn change(&mut self, op: &AuthOp) -> Result<(), AuthError> {
        match op {
            AuthOp::Enable(secret) => {
                if !self.users.contains_key(ROOT) {
                    return Err(AuthError::RootUserNotExist);
                }
                if !self.is_root(ROOT) {
                    return Err(AuthError::RootRoleNotExist);
                }
                self.enabled = true;
                self.secret = secret.clone();
            }
            AuthOp::Disable(_) => self.enabled = false,
            AuthOp::UserAdd(user) => {
                if user.name.is_empty() {
                    return Err(AuthError::UserEmpty);
                }
                if self.users.contains_key(&user.name) {
                    return Err(AuthError::UserAlreadyExists);
                }
                let user = User {
                    roles: Vec::new(),
                    ..user.clone()
                };
                self.users.insert(user.name.clone(), user);
            }
            AuthOp::UserDelete(name) => {
                if self.enabled && name == ROOT {
                    return Err(AuthError::InvalidAuthMgmt);
                }
                self.users.remove(name).ok_or(AuthError::UserNotFound)?;
            }
            AuthOp::UserChangePassword(user) => {
                let found = self
                    .users
                    .get_mut(&user.name)
                    .ok_or(AuthError::UserNotFound)?;
                found.password_hash = user.password_hash.clone();
            }
            AuthOp::UserGrantRole(grant) => {
                if grant.role != ROOT && !self.roles.contains_key(&grant.role) {
                    return Err(AuthError::RoleNotFound);
                }
                let user = self
                    .users
                    .get_mut(&grant.user)
                    .ok_or(AuthError::UserNotFound)?;
                let mut roles: BTreeSet<String> = user.roles.drain(..).collect();
                roles.insert(grant.role.clone());
                user.roles = roles.into_iter().collect();
            }
            AuthOp::UserRevokeRole(grant) => {
                if self.enabled && grant.user == ROOT && grant.role == ROOT {
                    return Err(AuthError::InvalidAuthMgmt);
                }
                let user = self
                    .users
                    .get_mut(&grant.user)
                    .ok_or(AuthError::UserNotFound)?;
                let before = user.roles.len();
                user.roles.retain(|r| r != &grant.role);
                if user.roles.len() == before {
                    return Err(AuthError::RoleNotGranted);
                }
            }
            AuthOp::RoleAdd(name) => {
                if name.is_empty() {
                    return Err(AuthError::RoleEmpty);
                }
                if self.roles.contains_key(name) {
                    return Err(AuthError::RoleAlreadyExists);
                }
                let role = Role {
                    name: name.clone(),
                    permissions: Vec::new(),
                };
                self.roles.insert(name.clone(), role);
            }
            AuthOp::RoleDelete(name) => {
                if self.enabled && name == ROOT {
                    return Err(AuthError::InvalidAuthMgmt);
                }
                self.roles.remove(name).ok_or(AuthError::RoleNotFound)?;
                for user in self.users.values_mut() {
                    user.roles.retain(|r| r != name);
                }
            }
            AuthOp::RoleGrantPermission(grant) => {
                let role = self
                    .roles
                    .get_mut(&grant.role)
                    .ok_or(AuthError::RoleNotFound)?;
                let permission = grant.permission.clone().unwrap_or_default();
                let same =
                    |p: &Permission| p.key == permission.key && p.range_end == permission.range_end;
                match role.permissions.iter_mut().find(|p| same(p)) {
                    Some(existing) => existing.perm_type = permission.perm_type,
                    None => {
                        role.permissions.push(permission);
                        role.permissions
                            .sort_by(|a, b| (&a.key, &a.range_end).cmp(&(&b.key, &b.range_end)));
                    }
                }
            }
            AuthOp::RoleRevokePermission(revoke) => {
                let role = self
                    .roles
                    .get_mut(&revoke.role)
                    .ok_or(AuthError::RoleNotFound)?;
                let permission = revoke.permission.clone().unwrap_or_default();
                let before = role.permissions.len();
                role.permissions
                    .retain(|p| p.key != permission.key || p.range_end != permission.range_end);
                if role.permissions.len() == before {
                    return Err(AuthError::PermissionNotGranted);
                }
            }
        }
        Ok(())
    }

    /// The store as a snapshot part.
    pub fn snapshot(&self) -> AuthSnapshot {
        AuthSnapshot {
            enabled: self.enabled,
            users: self.users.values().cloned().collect(),
            roles: self.roles.values().cloned().collect(),
            revision: self.revision,
            secret: self.secret.clone(),
        }
    }

    /// The store a snapshot part holds.
    pub fn restore(snapshot: AuthSnapshot) -> AuthStore {
        AuthStore {
            enabled: snapshot.enabled,
            users: snapshot
                .users
                .into_iter()
                .map(|u| (u.name.clone(), u))
                .collect(),
            roles: snapshot
                .roles
                .into_iter()
                .map(|r| (r.name.clone(), r))
                .collect(),
            revision: snapshot.revision,
            secret: snapshot.secret,
        }
    }

    /// A hash of the store (0 while it is empty and never changed, so states without auth hash
    /// as before).
    pub fn hash(&self) -> u64 {
        if self.revision == 0 {
            return 0;
        }
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in self.snapshot().encode_to_vec() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(op: AuthOp) -> AuthChange {
        AuthChange { op: Some(op) }
    }

    fn user(name: &str) -> AuthOp {
        AuthOp::UserAdd(User {
            name: name.into(),
            password_hash: "hash".into(),
            roles: Vec::new(),
        })
    }

    fn grant(user: &str, role: &str) -> AuthOp {
        AuthOp::UserGrantRole(Grant {
            user: user.into(),
            role: role.into(),
        })
    }

    fn permission(role: &str, perm_type: i32, key: &str, range_end: &str) -> AuthOp {
        AuthOp::RoleGrantPermission(RolePermission {
            role: role.into(),
            permission: Some(Permission {
                perm_type,
                key: Bytes::from(key.to_string()),
                range_end: Bytes::from(range_end.to_string()),
            }),
        })
    }

    fn store(ops: Vec<AuthOp>) -> AuthStore {
        let mut store = AuthStore::default();
        for op in ops {
            store.apply(&change(op)).unwrap();
        }
        store
    }

    fn b(text: &str) -> Bytes {
        Bytes::from(text.to_string())
    }

    #[test]
    fn auth_is_enabled_only_with_a_root_user_that_has_the_root_role() {
        let mut auth = AuthStore::default();
        let enable = change(AuthOp::Enable(b("secret")));
        assert_eq!(auth.apply(&enable), Err(AuthError::RootUserNotExist));
        auth.apply(&change(user(ROOT))).unwrap();
        assert_eq!(auth.apply(&enable), Err(AuthError::RootRoleNotExist));
        auth.apply(&change(grant(ROOT, ROOT))).unwrap();
        auth.apply(&enable).unwrap();
        assert!(auth.enabled());
        assert_eq!(auth.secret(), &b("secret"));
        // Root can no longer be locked out.
        let revoke = AuthOp::UserRevokeRole(Grant {
            user: ROOT.into(),
            role: ROOT.into(),
        });
        assert_eq!(auth.apply(&change(revoke)), Err(AuthError::InvalidAuthMgmt));
        let delete = AuthOp::UserDelete(ROOT.into());
        assert_eq!(auth.apply(&change(delete)), Err(AuthError::InvalidAuthMgmt));
    }

    #[test]
    fn a_user_may_access_only_the_keys_its_roles_grant() {
        let auth = store(vec![
            user("alice"),
            AuthOp::RoleAdd("app".into()),
            permission("app", READWRITE, "/app/", "/app0"),
            AuthOp::RoleAdd("reader".into()),
            permission("reader", READ, "/shared", ""),
            grant("alice", "app"),
            grant("alice", "reader"),
        ]);
        let can = |access, key: &str, end: &str| auth.permitted("alice", access, &b(key), &b(end));
        assert!(can(Access::Write, "/app/x", ""));
        assert!(can(Access::Read, "/app/", "/app0"));
        assert!(can(Access::Read, "/app/a", "/app/z"));
        assert!(!can(Access::Read, "/app/", "\0"));
        assert!(!can(Access::Write, "/other", ""));
        assert!(can(Access::Read, "/shared", ""));
        assert!(!can(Access::Write, "/shared", ""));
        assert!(!auth.permitted("nobody", Access::Read, &b("/app/x"), &b("")));
    }

    #[test]
    fn granted_ranges_are_joined_to_cover_a_request() {
        let auth = store(vec![
            user("bob"),
            AuthOp::RoleAdd("a".into()),
            permission("a", READ, "a", "c"),
            AuthOp::RoleAdd("b".into()),
            permission("b", READ, "c", "\0"),
            grant("bob", "a"),
            grant("bob", "b"),
        ]);
        assert!(auth.permitted("bob", Access::Read, &b("b"), &b("\0")));
        assert!(!auth.permitted("bob", Access::Read, &b("0"), &b("b")));
    }

    #[test]
    fn the_root_role_grants_everything() {
        let auth = store(vec![user(ROOT), grant(ROOT, ROOT)]);
        assert!(auth.permitted(ROOT, Access::Write, &b(""), &b("\0")));
        assert!(auth.is_root(ROOT));
    }

    #[test]
    fn a_refused_change_changes_nothing_and_a_deleted_role_leaves_its_users() {
        let mut auth = store(vec![
            user("carol"),
            AuthOp::RoleAdd("r".into()),
            grant("carol", "r"),
        ]);
        let before = auth.clone();
        assert_eq!(
            auth.apply(&change(user("carol"))),
            Err(AuthError::UserAlreadyExists)
        );
        assert_eq!(
            auth.apply(&change(grant("carol", "none"))),
            Err(AuthError::RoleNotFound)
        );
        assert_eq!(auth, before);
        auth.apply(&change(AuthOp::RoleDelete("r".into()))).unwrap();
        assert!(auth.user("carol").is_some_and(|u| u.roles.is_empty()));
        assert_eq!(auth.revision(), before.revision() + 1);
    }

    #[test]
    fn the_store_survives_a_snapshot() {
        let auth = store(vec![
            user("dave"),
            AuthOp::RoleAdd("r".into()),
            permission("r", WRITE, "k", ""),
            grant("dave", "r"),
        ]);
        let restored = AuthStore::restore(
            AuthSnapshot::decode(auth.snapshot().encode_to_vec().as_slice()).unwrap(),
        );
        assert_eq!(restored, auth);
        assert_eq!(restored.hash(), auth.hash());
        assert_eq!(AuthStore::default().hash(), 0);
    }
}
