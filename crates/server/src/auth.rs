//! Authentication and authorization for every front end: passwords (argon2, hashed and checked
//! off the async threads), tokens, and the check of what a caller may do against the replicated
//! auth store (`raftkv_replica::auth`).
//!
//! A token is `USER.EXPIRY.MAC`: the user's name (base64url), when it expires (Unix
//! milliseconds), and an HMAC-SHA256 of both under the cluster's secret, which enabling
//! authentication put in the log. So any member verifies any member's token without asking
//! anyone, a token dies with its expiry or with the next enable, and nothing about tokens needs
//! to be replicated.
//!
//! Invariants: while authentication is disabled every caller may do everything; while it is
//! enabled an anonymous caller may do nothing but authenticate, and every key a request reads
//! or writes is checked against the caller's roles before the request goes anywhere.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use raftkv_kv::{
    DeleteRangeRequest, LeaseId, LockSessionId, Op, PutRequest, Request, RequestOp, TxnOp,
    TxnRequest,
};
use raftkv_raft::NodeId;
use raftkv_replica::State;
use raftkv_replica::auth::{Access, AuthError, AuthStore};

/// Default lifetime of a token (etcd's `--auth-token-ttl`).
pub const TOKEN_TTL_DEFAULT: Duration = Duration::from_secs(300);
/// Longest password accepted (hashing is deliberately slow; a huge input must not make it
/// slower).
pub const PASSWORD_BYTES_MAX: usize = 1024;
/// Longest token looked at.
pub const TOKEN_BYTES_MAX: usize = 1024;

/// Who a request comes from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Caller {
    /// Nobody: no credentials.
    #[default]
    Anonymous,
    /// A user that authenticated.
    User(String),
    /// Another member (a member token): a call it forwards, having checked its caller itself, or
    /// one of its own internal calls.
    Member(NodeId),
}

/// What a request needs of its caller.
#[derive(Clone, Copy, Debug)]
pub enum Need<'a> {
    /// To be a known user.
    User,
    /// The root role (membership, maintenance, auth management).
    Root,
    /// Access to `[key, range_end)`.
    Keys(Access, &'a Bytes, &'a Bytes),
}

/// Whether `caller` may do what `need` says under `auth`.
pub fn authorize(auth: &AuthStore, caller: &Caller, need: Need<'_>) -> Result<(), AuthError> {
    if !auth.enabled() {
        return Ok(());
    }
    let user = match caller {
        Caller::Anonymous => return Err(AuthError::UserEmpty),
        Caller::Member(_) => return Ok(()),
        Caller::User(user) => user,
    };
    let allowed = match need {
        Need::User => auth.user(user).is_some(),
        Need::Root => auth.is_root(user),
        Need::Keys(access, key, range_end) => auth.permitted(user, access, key, range_end),
    };
    if allowed {
        Ok(())
    } else {
        Err(AuthError::PermissionDenied)
    }
}

/// Whether `caller` may send the key-value `request` (each key it reads or writes, a
/// transaction's compares and both branches included; a write that returns the previous value
/// reads it too; ending a lease or a lock session writes every key it deletes or releases, as
/// etcd checks a revoke's keys).
pub fn authorize_request(
    state: &State,
    caller: &Caller,
    request: &Request,
) -> Result<(), AuthError> {
    let auth = &state.auth;
    if !auth.enabled() {
        return Ok(());
    }
    match &request.op {
        Some(Op::Put(put)) => authorize_put(auth, caller, put),
        Some(Op::DeleteRange(delete)) => authorize_delete(auth, caller, delete),
        Some(Op::Txn(txn)) => authorize_txn(auth, caller, txn),
        Some(Op::Lock(lock)) => authorize(
            auth,
            caller,
            Need::Keys(Access::Write, &lock.key, &Bytes::new()),
        ),
        Some(Op::LeaseRevoke(revoke)) => {
            let session = state.kv.lock_session_of_lease(revoke.id);
            authorize_ending(state, caller, revoke.id, session)
        }
        Some(Op::LockSessionDestroy(destroy)) => {
            let lease = state.kv.lock_session(destroy.id).map_or(0, |s| s.lease);
            authorize_ending(state, caller, lease, Some(destroy.id))
        }
        _ => authorize(auth, caller, Need::User),
    }
}

/// Whether `caller` may end `lease` (0 or unknown: none) and lock session `session`: write
/// permission on every key attached to the lease and every key the session holds.
fn authorize_ending(
    state: &State,
    caller: &Caller,
    lease: LeaseId,
    session: Option<LockSessionId>,
) -> Result<(), AuthError> {
    authorize(&state.auth, caller, Need::User)?;
    let lease_keys = state.kv.lease_keys(lease);
    let held = session.map_or_else(Vec::new, |id| state.kv.lock_session_keys(id));
    let end = Bytes::new();
    lease_keys
        .iter()
        .chain(&held)
        .try_for_each(|key| authorize(&state.auth, caller, Need::Keys(Access::Write, key, &end)))
}

/// Whether `caller` may see the keys attached to `lease` (etcd's `LeaseTimeToLive` with
/// `keys`): read permission on each.
pub fn authorize_lease_keys(
    state: &State,
    caller: &Caller,
    lease: LeaseId,
) -> Result<(), AuthError> {
    let end = Bytes::new();
    state
        .kv
        .lease_keys(lease)
        .iter()
        .try_for_each(|key| authorize(&state.auth, caller, Need::Keys(Access::Read, key, &end)))
}

fn authorize_put(auth: &AuthStore, caller: &Caller, put: &PutRequest) -> Result<(), AuthError> {
    let end = Bytes::new();
    authorize(auth, caller, Need::Keys(Access::Write, &put.key, &end))?;
    if put.prev_kv {
        authorize(auth, caller, Need::Keys(Access::Read, &put.key, &end))?;
    }
    Ok(())
}

fn authorize_delete(
    auth: &AuthStore,
    caller: &Caller,
    delete: &DeleteRangeRequest,
) -> Result<(), AuthError> {
    let (key, end) = (&delete.key, &delete.range_end);
    authorize(auth, caller, Need::Keys(Access::Write, key, end))?;
    if delete.prev_kv {
        authorize(auth, caller, Need::Keys(Access::Read, key, end))?;
    }
    Ok(())
}

fn authorize_txn(auth: &AuthStore, caller: &Caller, txn: &TxnRequest) -> Result<(), AuthError> {
    for compare in &txn.compare {
        let need = Need::Keys(Access::Read, &compare.key, &compare.range_end);
        authorize(auth, caller, need)?;
    }
    for RequestOp { op } in txn.success.iter().chain(&txn.failure) {
        match op {
            Some(TxnOp::Range(range)) => {
                let need = Need::Keys(Access::Read, &range.key, &range.range_end);
                authorize(auth, caller, need)?;
            }
            Some(TxnOp::Put(put)) => authorize_put(auth, caller, put)?,
            Some(TxnOp::DeleteRange(delete)) => authorize_delete(auth, caller, delete)?,
            Some(TxnOp::Txn(nested)) => authorize_txn(auth, caller, nested)?,
            Some(TxnOp::Lock(lock)) => {
                let need = Need::Keys(Access::Write, &lock.key, &Bytes::new());
                authorize(auth, caller, need)?;
            }
            None => {}
        }
    }
    Ok(())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The key tokens are signed with: the cluster's secret.
fn key(secret: &[u8]) -> ring::hmac::Key {
    ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret)
}

/// What a token's MAC covers: `subject` (a user's name, or a member's id after
/// `MEMBER_SUBJECT`) and its expiry.
fn signed_part(subject: &[u8], expires_ms: u64) -> Vec<u8> {
    let mut message = subject.to_vec();
    message.push(0);
    message.extend_from_slice(&expires_ms.to_le_bytes());
    message
}

/// Marks a member token's subject, so that no user name can pass for a member.
const MEMBER_SUBJECT: u8 = 0xff;

/// `SUBJECT.EXPIRY.MAC` for `subject`, good for `ttl`.
fn sign(auth: &AuthStore, subject: &[u8], ttl: Duration) -> String {
    let expires_ms = now_ms() + ttl.as_millis() as u64;
    let tag = ring::hmac::sign(&key(auth.secret()), &signed_part(subject, expires_ms));
    format!(
        "{}.{expires_ms}.{}",
        URL_SAFE_NO_PAD.encode(subject),
        URL_SAFE_NO_PAD.encode(tag.as_ref())
    )
}

/// The subject of a token signed with the cluster's secret and not expired.
fn signed(auth: &AuthStore, token: &str) -> Result<Vec<u8>, AuthError> {
    let invalid = || AuthError::InvalidToken;
    if token.len() > TOKEN_BYTES_MAX {
        return Err(invalid());
    }
    let mut parts = token.split('.');
    let (Some(subject), Some(expires), Some(tag), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid());
    };
    let subject = URL_SAFE_NO_PAD.decode(subject).map_err(|_| invalid())?;
    let expires_ms: u64 = expires.parse().map_err(|_| invalid())?;
    let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| invalid())?;
    let message = signed_part(&subject, expires_ms);
    if ring::hmac::verify(&key(auth.secret()), &message, &tag).is_err() || expires_ms < now_ms() {
        return Err(invalid());
    }
    Ok(subject)
}

/// Header (HTTP) and metadata key (gRPC) of a member token.
pub const MEMBER_TOKEN_HEADER: &str = "x-raftkv-member";

/// How long a member token stays good (one is signed per call, so a short life).
pub const MEMBER_TOKEN_TTL: Duration = Duration::from_secs(60);

/// A member's token, for its calls to other members while authentication is enabled.
pub fn mint_member(auth: &AuthStore, id: NodeId, ttl: Duration) -> String {
    let mut subject = vec![MEMBER_SUBJECT];
    subject.extend_from_slice(&id.to_le_bytes());
    sign(auth, &subject, ttl)
}

/// The member a member token speaks for, if it is one of this cluster's, unexpired, for a
/// member of the registry.
pub fn verify_member(state: &State, token: &str) -> Result<NodeId, AuthError> {
    let subject = signed(&state.auth, token)?;
    let id = match subject.split_first() {
        Some((&MEMBER_SUBJECT, id)) => id
            .try_into()
            .map(NodeId::from_le_bytes)
            .map_err(|_| AuthError::InvalidToken)?,
        _ => return Err(AuthError::InvalidToken),
    };
    if state.registry.get(id).is_none() {
        return Err(AuthError::InvalidToken);
    }
    Ok(id)
}

/// Who a request with these credentials comes from: a member token, else a user token, else
/// nobody (a bad token is refused, not taken for nobody).
pub fn identify(
    state: &State,
    member_token: Option<&str>,
    token: Option<&str>,
) -> Result<Caller, AuthError> {
    if !state.auth.enabled() {
        // Every caller may do everything; an old token means nothing.
        return Ok(Caller::Anonymous);
    }
    if let Some(token) = member_token {
        return verify_member(state, token).map(Caller::Member);
    }
    match token {
        Some(token) => verify(&state.auth, token).map(Caller::User),
        None => Ok(Caller::Anonymous),
    }
}

/// A token for `user`, good for `ttl`.
pub fn mint(auth: &AuthStore, user: &str, ttl: Duration) -> String {
    sign(auth, user.as_bytes(), ttl)
}

/// The user a token speaks for, if it is one of this cluster's, unexpired, for a user that
/// still exists.
pub fn verify(auth: &AuthStore, token: &str) -> Result<String, AuthError> {
    let subject = signed(auth, token)?;
    let user = String::from_utf8(subject).map_err(|_| AuthError::InvalidToken)?;
    if auth.user(&user).is_none() {
        return Err(AuthError::InvalidToken);
    }
    Ok(user)
}

/// `password` hashed for storage (a PHC string). Slow by design: call it off the async threads.
pub fn hash_password(password: &str) -> Result<String, AuthError> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let mut salt = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut salt)
        .map_err(|_| AuthError::AuthFailed)?;
    let salt = SaltString::encode_b64(&salt).map_err(|_| AuthError::AuthFailed)?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|_| AuthError::AuthFailed)
}

/// Whether `password` matches `stored` (a user's hash). Slow by design: call it off the async
/// threads.
pub fn check_password(stored: &str, password: &str) -> Result<(), AuthError> {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    if password.len() > PASSWORD_BYTES_MAX {
        return Err(AuthError::AuthFailed);
    }
    let parsed = PasswordHash::new(stored).map_err(|_| AuthError::AuthFailed)?;
    argon2::Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .map_err(|_| AuthError::AuthFailed)
}

/// Password hashes and checks running at once: each takes argon2's memory (19 MiB) and a core for
/// a moment, so callers beyond this wait their turn instead of exhausting the node.
pub const PASSWORD_WORK_MAX: usize = 2;

/// Runs password work `f` off the async threads, at most [`PASSWORD_WORK_MAX`] at once.
async fn password_work<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, AuthError> + Send + 'static,
) -> Result<T, AuthError> {
    static PERMITS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(PASSWORD_WORK_MAX);
    let _permit = PERMITS.acquire().await.map_err(|_| AuthError::AuthFailed)?;
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| AuthError::AuthFailed)?
}

/// [`hash_password`], off the async threads and bounded.
pub async fn hash_password_bounded(password: String) -> Result<String, AuthError> {
    password_work(move || hash_password(&password)).await
}

/// [`check_password`], off the async threads and bounded.
pub async fn check_password_bounded(stored: String, password: String) -> Result<(), AuthError> {
    password_work(move || check_password(&stored, &password)).await
}

/// A fresh token-signing secret.
pub fn new_secret() -> Result<Bytes, AuthError> {
    let mut secret = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret)
        .map_err(|_| AuthError::AuthFailed)?;
    Ok(Bytes::copy_from_slice(&secret))
}

#[cfg(test)]
mod tests {
    use raftkv_kv::Compare;
    use raftkv_replica::auth::{
        AuthChange, AuthOp, Grant, Permission, READWRITE, ROOT, RolePermission, User,
    };

    use super::*;

    fn enabled(secret: &'static [u8]) -> AuthStore {
        let mut auth = AuthStore::default();
        let user = |name: &str| {
            AuthOp::UserAdd(User {
                name: name.into(),
                password_hash: String::new(),
                roles: Vec::new(),
            })
        };
        let grant = |user: &str, role: &str| {
            AuthOp::UserGrantRole(Grant {
                user: user.into(),
                role: role.into(),
            })
        };
        for op in [
            user(ROOT),
            grant(ROOT, ROOT),
            user("alice"),
            AuthOp::RoleAdd("app".into()),
            AuthOp::RoleGrantPermission(RolePermission {
                role: "app".into(),
                permission: Some(Permission {
                    perm_type: READWRITE,
                    key: Bytes::from_static(b"/app/"),
                    range_end: Bytes::from_static(b"/app0"),
                }),
            }),
            grant("alice", "app"),
            AuthOp::Enable(Bytes::from_static(secret)),
        ] {
            auth.apply(&AuthChange { op: Some(op) }).unwrap();
        }
        auth
    }

    /// A replicated state with `auth` and an empty store.
    fn state_of(auth: &AuthStore) -> State {
        let mut state = State::new(raftkv_replica::state::limits());
        state.auth = auth.clone();
        state
    }

    #[test]
    fn a_token_speaks_for_its_user_until_it_expires_and_only_under_its_secret() {
        let auth = enabled(b"one");
        let token = mint(&auth, "alice", Duration::from_secs(60));
        assert_eq!(verify(&auth, &token), Ok("alice".to_string()));
        let expired = mint(&auth, "alice", Duration::ZERO);
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(verify(&auth, &expired), Err(AuthError::InvalidToken));
        assert_eq!(
            verify(&enabled(b"two"), &token),
            Err(AuthError::InvalidToken)
        );
        let forged = token.replacen("YWxpY2U", "cm9vdA", 1);
        assert_eq!(verify(&auth, &forged), Err(AuthError::InvalidToken));
        assert_eq!(verify(&auth, "garbage"), Err(AuthError::InvalidToken));
    }

    #[test]
    fn a_member_token_is_no_user_token_and_a_user_token_no_member_token() {
        let auth = enabled(b"one");
        let member = mint_member(&auth, 7, Duration::from_secs(60));
        assert_eq!(verify(&auth, &member), Err(AuthError::InvalidToken));
        let mut state = raftkv_replica::State::new(raftkv_replica::state::limits());
        state.auth = auth.clone();
        // Not a member of the registry.
        assert_eq!(verify_member(&state, &member), Err(AuthError::InvalidToken));
        let user = mint(&auth, "alice", Duration::from_secs(60));
        assert_eq!(verify_member(&state, &user), Err(AuthError::InvalidToken));
    }

    #[test]
    fn a_password_is_checked_against_its_hash() {
        let stored = hash_password("secret").unwrap();
        assert!(!stored.contains("secret"));
        assert_eq!(check_password(&stored, "secret"), Ok(()));
        assert_eq!(check_password(&stored, "wrong"), Err(AuthError::AuthFailed));
        assert_eq!(
            check_password("not a hash", "secret"),
            Err(AuthError::AuthFailed)
        );
    }

    #[test]
    fn a_transaction_needs_permission_for_every_key_of_both_branches() {
        let auth = enabled(b"one");
        let alice = Caller::User("alice".into());
        let put = |key: &'static [u8]| RequestOp {
            op: Some(TxnOp::Put(PutRequest {
                key: Bytes::from_static(key),
                ..Default::default()
            })),
        };
        let txn = |compare: &'static [u8], success, failure| {
            Request::txn(TxnRequest {
                compare: vec![Compare {
                    key: Bytes::from_static(compare),
                    ..Default::default()
                }],
                success: vec![success],
                failure: vec![failure],
            })
        };
        let inside = txn(b"/app/a", put(b"/app/b"), put(b"/app/c"));
        assert_eq!(authorize_request(&state_of(&auth), &alice, &inside), Ok(()));
        let failure_outside = txn(b"/app/a", put(b"/app/b"), put(b"/other"));
        assert_eq!(
            authorize_request(&state_of(&auth), &alice, &failure_outside),
            Err(AuthError::PermissionDenied)
        );
        let compare_outside = txn(b"/other", put(b"/app/b"), put(b"/app/c"));
        assert_eq!(
            authorize_request(&state_of(&auth), &alice, &compare_outside),
            Err(AuthError::PermissionDenied)
        );
        assert_eq!(
            authorize_request(&state_of(&auth), &Caller::Anonymous, &inside),
            Err(AuthError::UserEmpty)
        );
        assert_eq!(
            authorize_request(&state_of(&auth), &Caller::Member(1), &failure_outside),
            Ok(())
        );
        let root = Caller::User(ROOT.into());
        assert_eq!(
            authorize_request(&state_of(&auth), &root, &failure_outside),
            Ok(())
        );
    }

    #[test]
    fn a_write_that_returns_the_previous_value_needs_read_permission_too() {
        let mut auth = enabled(b"one");
        let write_only = AuthOp::RoleGrantPermission(RolePermission {
            role: "app".into(),
            permission: Some(Permission {
                perm_type: raftkv_replica::auth::WRITE,
                key: Bytes::from_static(b"/app/"),
                range_end: Bytes::from_static(b"/app0"),
            }),
        });
        auth.apply(&AuthChange {
            op: Some(write_only),
        })
        .unwrap();
        let alice = Caller::User("alice".into());
        let put = PutRequest::new("/app/a", "v");
        let plain = Request::new(Op::Put(put.clone()));
        assert_eq!(authorize_request(&state_of(&auth), &alice, &plain), Ok(()));
        let with_prev = Request::new(Op::Put(PutRequest {
            prev_kv: true,
            ..put
        }));
        assert_eq!(
            authorize_request(&state_of(&auth), &alice, &with_prev),
            Err(AuthError::PermissionDenied)
        );
    }

    #[test]
    fn ending_a_lease_or_lock_session_needs_write_permission_on_its_keys() {
        let mut state = state_of(&enabled(b"one"));
        let mut index = 0;
        let mut apply = |state: &mut State, request: Request| {
            index += 1;
            state.kv.apply(index, &request.encode_to_vec()).result
        };
        let lease = match apply(&mut state, Request::lease_grant(0, 60_000)) {
            Ok(raftkv_kv::Reply::LeaseGrant(granted)) => granted.id,
            other => panic!("{other:?}"),
        };
        let alice = Caller::User("alice".into());
        let revoke = Request::lease_revoke(lease);
        assert_eq!(
            authorize_request(&state, &alice, &revoke),
            Ok(()),
            "a lease without keys"
        );
        let mut attach = |state: &mut State, key: &'static str| {
            let put = PutRequest {
                lease,
                ..PutRequest::new(key, "v")
            };
            apply(state, Request::new(Op::Put(put))).unwrap();
        };
        attach(&mut state, "/app/a");
        assert_eq!(authorize_request(&state, &alice, &revoke), Ok(()));
        attach(&mut state, "/other");
        assert_eq!(
            authorize_request(&state, &alice, &revoke),
            Err(AuthError::PermissionDenied),
            "revoking deletes /other"
        );
        assert_eq!(
            authorize_lease_keys(&state, &alice, lease),
            Err(AuthError::PermissionDenied),
            "listing the keys shows /other"
        );
        let root = Caller::User(ROOT.into());
        assert_eq!(authorize_request(&state, &root, &revoke), Ok(()));

        // A lock session (with a lease of its own) holding /other: neither its end nor its
        // lease's revoke is alice's to ask.
        let create = raftkv_kv::LockSessionCreateRequest {
            ttl_ms: 30_000,
            ..Default::default()
        };
        let (session, session_lease) =
            match apply(&mut state, Request::new(Op::LockSessionCreate(create))) {
                Ok(raftkv_kv::Reply::LockSessionCreate(created)) => (created.id, created.lease),
                other => panic!("{other:?}"),
            };
        let destroy = Request::new(Op::LockSessionDestroy(
            raftkv_kv::LockSessionDestroyRequest { id: session },
        ));
        let revoke_session = Request::lease_revoke(session_lease);
        assert_eq!(authorize_request(&state, &alice, &destroy), Ok(()));
        let lock = raftkv_kv::LockRequest {
            key: Bytes::from_static(b"/other-lock"),
            session,
            ..Default::default()
        };
        let acquire = Request::new(Op::Lock(lock));
        assert_eq!(
            authorize_request(&state, &alice, &acquire),
            Err(AuthError::PermissionDenied),
            "a lock writes its key"
        );
        apply(&mut state, acquire).unwrap();
        for ending in [&destroy, &revoke_session] {
            assert_eq!(
                authorize_request(&state, &alice, ending),
                Err(AuthError::PermissionDenied)
            );
        }
    }
}
