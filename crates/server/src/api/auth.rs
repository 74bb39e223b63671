//! The HTTP API's authentication and authorization, one middleware before every route: while
//! authentication is enabled a request carries a token (`Authorization: Bearer TOKEN`, or the
//! bare token as etcd's gateway takes it; or, as Consul's clients send one, `X-Consul-Token:
//! TOKEN` or `?token=TOKEN`) or a user's password (`Authorization: Basic ...`),
//! and what its route needs is checked against the caller's roles: the keys a read, write or
//! watch touches, the root role for membership, leadership and alarms, any user for leases,
//! sessions, status and Consul's transactions (whose handlers then check the keys a
//! transaction touches, a lease revoke or a session's end deletes or releases). A refusal is a
//! 401 (no or bad credentials) or a 403, and always a 403 on Consul's endpoints, as Consul
//! answers. Member-to-member calls (`/v1/internal/...`) carry a member token
//! (`MEMBER_TOKEN_HEADER`) instead; `/health`, `/ready`, `/metrics` and the etcd gateway
//! (whose gRPC handlers check the token themselves) pass.
//!
//! Invariant: while authentication is enabled, no route that reads or changes the store or the
//! cluster runs for a caller that has not been checked for it.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use bytes::Bytes;
use raftkv_replica::auth::{Access, AuthError};

use super::Api;
use super::error::ApiError;
use crate::auth::{self, Caller, Need};

pub use crate::auth::MEMBER_TOKEN_HEADER;
use crate::auth::MEMBER_TOKEN_TTL;

impl Api {
    /// `request` (to another member's internal route) with this member's token while
    /// authentication is enabled.
    pub(super) fn as_member(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let id = self.service.me().id;
        let token = self.service.read(|state| {
            state
                .auth
                .enabled()
                .then(|| auth::mint_member(&state.auth, id, MEMBER_TOKEN_TTL))
        });
        match token {
            Some(token) => request.header(MEMBER_TOKEN_HEADER, token),
            None => request,
        }
    }
}

/// What a route needs of its caller.
enum RouteNeed {
    /// Nothing (health, metrics, the etcd gateway, unknown routes).
    Open,
    /// A member token, or root.
    Member,
    /// Root, a member, or nobody when the joining node was added by root beforehand (checked by
    /// the join handler, which sees the request).
    Join,
    /// What [`Need`] says, on these keys.
    Keys(Access, Bytes, Bytes),
    /// Any user.
    User,
    /// The root role.
    Root,
}

/// `[key, range_end)` of a key route: the key alone, or every key under it with `?recurse`,
/// `?keys` or `?prefix`. Decoded as the handlers decode them: the path percent-decoded (as
/// axum's `Path`), the query form-decoded (as axum's `Query`), so the keys checked are the keys
/// served.
fn keys(path: &str, query: Option<&str>) -> (Bytes, Bytes) {
    let key = percent_decode(path);
    let prefix = query.is_some_and(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .any(|(name, _)| ["prefix", "recurse", "keys"].contains(&name.as_ref()))
    });
    if !prefix {
        return (key, Bytes::new());
    }
    let end = raftkv_kv::prefix_end(&key);
    (key, end)
}

/// `text` with every `%XX` decoded (nothing else: `+` and `&` are themselves in a path).
fn percent_decode(text: &str) -> Bytes {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    Bytes::from(out)
}

fn route_need(method: &Method, path: &str, query: Option<&str>) -> RouteNeed {
    let reads = method == Method::GET || method == Method::HEAD;
    if let Some(key) = path.strip_prefix("/v1/kv/") {
        let (key, end) = keys(key, query);
        let access = if reads { Access::Read } else { Access::Write };
        return RouteNeed::Keys(access, key, end);
    }
    if path == "/v1/kv" {
        return RouteNeed::Keys(Access::Read, Bytes::new(), Bytes::from_static(b"\0"));
    }
    if let Some(key) = path.strip_prefix("/v1/watch/") {
        let (key, end) = keys(key, query);
        return RouteNeed::Keys(Access::Read, key, end);
    }
    if path.starts_with("/v1/internal/") {
        return RouteNeed::Member;
    }
    if path == "/v1/members" && method == Method::POST {
        return RouteNeed::Join;
    }
    if path.starts_with("/v1/lease")
        || path.starts_with("/v1/session")
        || path.starts_with("/v1/status")
        || path == "/v1/txn"
    {
        return RouteNeed::User;
    }
    if path.starts_with("/v1/members") || path.starts_with("/v1/alarms") {
        return if reads {
            RouteNeed::User
        } else {
            RouteNeed::Root
        };
    }
    if path.starts_with("/v1/leader") {
        return RouteNeed::Root;
    }
    RouteNeed::Open
}

/// 401 (no or bad credentials) or 403 (not allowed), with etcd's words.
pub(super) fn refused(error: AuthError) -> Response {
    let status = match error {
        AuthError::PermissionDenied => StatusCode::FORBIDDEN,
        _ => StatusCode::UNAUTHORIZED,
    };
    ApiError::new(status, "auth", error.to_string()).into_response()
}

/// A refusal on one of Consul's endpoints: 403 whatever the reason, as Consul answers every ACL
/// refusal (a missing or unknown token included; its clients take a 401 for something else).
pub(super) fn refused_consul(error: AuthError) -> Response {
    ApiError::new(StatusCode::FORBIDDEN, "auth", error.to_string()).into_response()
}

/// Whether `path` is one of Consul's endpoints (raftkv's own `/v1/session` client sessions and
/// `/v1/status` are not).
fn is_consul(path: &str) -> bool {
    const SESSION_ROUTES: [&str; 6] = ["create", "destroy/", "renew/", "info/", "list", "node/"];
    let session_route = path
        .strip_prefix("/v1/session/")
        .is_some_and(|rest| SESSION_ROUTES.iter().any(|route| rest.starts_with(route)));
    path == "/v1/kv"
        || path.starts_with("/v1/kv/")
        || path == "/v1/txn"
        || path == "/v1/status/leader"
        || path == "/v1/status/peers"
        || session_route
}

/// The header Consul's clients carry their token in.
pub const CONSUL_TOKEN_HEADER: &str = "x-consul-token";

/// Who sent a request: a member token, a user token (`Authorization: Bearer TOKEN`, or the bare
/// token; else `X-Consul-Token`, else `?token=`), a user's password (`Authorization: Basic`,
/// checked off the async threads), or nobody.
pub async fn caller(
    api: &Api,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Caller, AuthError> {
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let authorization = text(header::AUTHORIZATION.as_str());
    if let Some(basic) = authorization.and_then(|v| v.strip_prefix("Basic ")) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(basic.trim())
            .ok()
            .and_then(|d| String::from_utf8(d).ok())
            .ok_or(AuthError::AuthFailed)?;
        let (user, password) = decoded.split_once(':').ok_or(AuthError::AuthFailed)?;
        let stored = api
            .service
            .read(|state| state.auth.user(user).map(|u| u.password_hash.clone()))
            .ok_or(AuthError::AuthFailed)?;
        let password = password.to_string();
        auth::check_password_bounded(stored, password).await?;
        return Ok(Caller::User(user.to_string()));
    }
    let query_token = query.and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(name, _)| name == "token")
            .map(|(_, token)| token.into_owned())
    });
    let token = authorization
        .map(|v| v.strip_prefix("Bearer ").unwrap_or(v))
        .or_else(|| text(CONSUL_TOKEN_HEADER))
        .or(query_token.as_deref())
        .map(str::trim)
        // An empty token is no token (as Consul takes it).
        .filter(|token| !token.is_empty());
    let member_token = text(MEMBER_TOKEN_HEADER);
    api.service
        .read(|state| auth::identify(state, member_token, token))
}

/// The middleware.
pub async fn guard(State(api): State<Api>, mut request: Request, next: Next) -> Response {
    let refuse = match is_consul(request.uri().path()) {
        true => refused_consul,
        false => refused,
    };
    let need = route_need(
        request.method(),
        request.uri().path(),
        request.uri().query(),
    );
    if matches!(need, RouteNeed::Open) || !api.service.read(|state| state.auth.enabled()) {
        return next.run(request).await;
    }
    let caller = match caller(&api, request.headers(), request.uri().query()).await {
        Ok(caller) => caller,
        Err(e) => return refuse(e),
    };
    let checked = api.service.read(|state| {
        let check = |need| auth::authorize(&state.auth, &caller, need);
        match &need {
            RouteNeed::Open | RouteNeed::Join => Ok(()),
            RouteNeed::Member | RouteNeed::Root => check(Need::Root),
            RouteNeed::User => check(Need::User),
            RouteNeed::Keys(access, key, end) => check(Need::Keys(*access, key, end)),
        }
    });
    if let Err(e) = checked {
        return refuse(e);
    }
    let trusted = api
        .service
        .read(|state| auth::authorize(&state.auth, &caller, Need::Root).is_ok());
    request.extensions_mut().insert(Trusted(trusted));
    request.extensions_mut().insert(Identified(caller));
    next.run(request).await
}

/// Who the guard found the caller to be (for handlers that check what a body asks, such as a
/// transaction's keys).
#[derive(Clone, Debug)]
pub struct Identified(pub Caller);

/// Whether the guard found the caller to be a member or root (a join by anyone else must be of a
/// member root added beforehand, which only the join handler can tell).
#[derive(Clone, Copy, Debug)]
pub struct Trusted(pub bool);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consuls_endpoints_are_told_from_raftkvs_own() {
        for path in [
            "/v1/kv",
            "/v1/kv/a",
            "/v1/txn",
            "/v1/session/create",
            "/v1/session/info/x",
            "/v1/status/leader",
        ] {
            assert!(is_consul(path), "{path}");
        }
        for path in [
            "/v1/kvx",
            "/v1/session",
            "/v1/session/17",
            "/v1/status",
            "/v1/lease",
            "/v1/watch/a",
        ] {
            assert!(!is_consul(path), "{path}");
        }
    }

    #[test]
    fn a_route_is_checked_on_the_keys_its_handler_serves() {
        let need = |path: &str, query: Option<&str>| match route_need(&Method::GET, path, query) {
            RouteNeed::Keys(_, key, end) => (key, end),
            _ => panic!("a key route"),
        };
        let (key, end) = need("/v1/kv/pub&secret", None);
        assert_eq!((&key[..], &end[..]), (&b"pub&secret"[..], &b""[..]));
        let (key, _) = need("/v1/kv/a%2Fb+c", None);
        assert_eq!(&key[..], b"a/b+c");
        for query in ["recurse", "%72ecurse", "k%65ys", "prefix=1", "x=1&recurse"] {
            let (_, end) = need("/v1/kv/app/", Some(query));
            assert_eq!(&end[..], b"app0", "?{query} reads a prefix");
        }
        let (_, end) = need("/v1/kv/app/", Some("recursed"));
        assert!(end.is_empty());
    }
}
