//! Consul's sessions (`/v1/session/create`, `destroy`, `renew`, `info`, `list`, `node`): the
//! store's lock sessions (`raftkv_kv`'s `locks`), which `PUT /v1/kv/{key}?acquire=ID` and
//! `?release=ID` use as locks.
//!
//! A session with a `TTL` (10 s to 24 h, as Consul) is kept alive by a lease of its own: `renew`
//! keeps the lease alive (on the leader), and when the lease expires the session ends. Ending
//! releases or deletes the keys it holds (`Behavior`), and each key may not be acquired again for
//! the session's `LockDelay` (15 s by default, at most 60 s, as Consul).
//!
//! A session's `ID` is Consul's UUID shape around the store's id (the log index that created
//! it); `Node` defaults to this member's name. Health checks are not modelled: a session without
//! a TTL lives until it is destroyed.
//!
//! The reads (`info`, `list`, `node`) answer with the sessions' index (the log index of the last
//! creation or end of a session) as `X-Consul-Index`, and with `?index=N&wait=D` block until it
//! moves past N (see `blocking`).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::Json;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use raftkv_kv::{
    DELETE, LockSession, LockSessionCreateRequest, LockSessionDestroyRequest, Op, RELEASE, Reply,
    Request,
};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::Api;
use super::auth::{Identified, refused_consul};
use super::blocking::{self, parse_duration};
use super::error::ApiError;
use super::forward::Forward;
use crate::auth;

/// The lock delay of a session created without one (Consul's).
pub const LOCK_DELAY_DEFAULT: Duration = Duration::from_secs(15);
/// The longest lock delay (Consul's).
pub const LOCK_DELAY_MAX: Duration = Duration::from_secs(60);
/// The shortest and longest session TTL (Consul's).
pub const TTL_RANGE: std::ops::RangeInclusive<Duration> =
    Duration::from_secs(10)..=Duration::from_secs(24 * 3600);

/// A session id in Consul's UUID shape.
pub fn session_uuid(id: u64) -> String {
    format!("00000000-0000-4000-8000-{id:012x}")
}

/// The store id of a session UUID, if it is one of ours.
pub fn session_id(uuid: &str) -> Option<u64> {
    let hex = uuid.strip_prefix("00000000-0000-4000-8000-")?;
    (hex.len() == 12)
        .then(|| u64::from_str_radix(hex, 16).ok())
        .flatten()
        .filter(|&id| id > 0)
}

/// A Go duration as Consul prints it (`15s`).
fn go_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// A session in Consul's shape.
fn session_json(session: &LockSession) -> Value {
    let ttl = match session.ttl_ms {
        0 => String::new(),
        ms => go_duration(Duration::from_millis(ms)),
    };
    json!({
        "ID": session_uuid(session.id),
        "Name": session.name,
        "Node": session.node,
        "LockDelay": Duration::from_millis(session.lock_delay_ms).as_nanos() as u64,
        "Behavior": if session.behavior == DELETE { "delete" } else { "release" },
        "TTL": ttl,
        "NodeChecks": [],
        "ServiceChecks": null,
        "CreateIndex": session.id,
        "ModifyIndex": session.id,
    })
}

/// The value of `field` in a Consul JSON body (whose field names match in any case).
fn field<'a>(body: &'a Map<String, Value>, field: &str) -> Option<&'a Value> {
    body.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(field))
        .map(|(_, v)| v)
}

/// A duration field: a Go duration string, or nanoseconds.
fn duration_field(body: &Map<String, Value>, name: &str) -> Result<Option<Duration>, ApiError> {
    match field(body, name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text.is_empty() => Ok(None),
        Some(Value::String(text)) => parse_duration(text)
            .map(Some)
            .ok_or_else(|| ApiError::bad_request(format!("{name} `{text}` is not a duration"))),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(|ns| Some(Duration::from_nanos(ns)))
            .ok_or_else(|| ApiError::bad_request(format!("{name} must be a duration"))),
        Some(other) => Err(ApiError::bad_request(format!(
            "{name} must be a duration, not {other}"
        ))),
    }
}

/// The store request a `create` body asks for.
fn create_request(api: &Api, body: &[u8]) -> Result<LockSessionCreateRequest, ApiError> {
    let body: Map<String, Value> = if body.iter().all(u8::is_ascii_whitespace) {
        Map::new()
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("request decode failed: {e}")))?
    };
    let text = |name: &str| {
        field(&body, name)
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let behavior = match text("Behavior").as_deref() {
        None | Some("") | Some("release") => RELEASE,
        Some("delete") => DELETE,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "Invalid Behavior setting '{other}'"
            )));
        }
    };
    let lock_delay = duration_field(&body, "LockDelay")?.unwrap_or(LOCK_DELAY_DEFAULT);
    let ttl = duration_field(&body, "TTL")?;
    if let Some(ttl) = ttl.filter(|ttl| !TTL_RANGE.contains(ttl)) {
        return Err(ApiError::bad_request(format!(
            "Invalid Session TTL '{}', must be between [{}={}]",
            go_duration(ttl),
            go_duration(*TTL_RANGE.start()),
            go_duration(*TTL_RANGE.end())
        )));
    }
    Ok(LockSessionCreateRequest {
        name: text("Name").unwrap_or_default(),
        node: text("Node").unwrap_or_else(|| api.service.me().name.clone()),
        behavior,
        lock_delay_ms: lock_delay.min(LOCK_DELAY_MAX).as_millis() as u64,
        ttl_ms: ttl.map_or(0, |ttl| ttl.as_millis() as u64),
    })
}

/// `PUT /v1/session/create`: `{"ID": ...}`.
pub async fn create(State(api): State<Api>, request: Forward) -> Response {
    let create = match create_request(&api, &request.body) {
        Ok(create) => create,
        Err(e) => return e.into_response(),
    };
    let result = api
        .service
        .write(Request::new(Op::LockSessionCreate(create)), None)
        .await;
    api.answer_or_forward(result, request, |applied| {
        match super::render::reply(applied)? {
            (_, Reply::LockSessionCreate(created)) => Ok(json!({ "ID": session_uuid(created.id) })),
            _ => Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "creating a session gave no id",
            )),
        }
    })
    .await
}

/// The store id of a path's session UUID, or a 400.
fn path_id(uuid: &str) -> Result<u64, ApiError> {
    session_id(uuid).ok_or_else(|| {
        ApiError::bad_request(format!("`{uuid}` is not a session id of this cluster"))
    })
}

/// `PUT /v1/session/destroy/{id}`: `true`. With authentication on, the caller must be allowed
/// to write every key the session holds (ending it releases or deletes them).
pub async fn destroy(
    State(api): State<Api>,
    identified: Option<axum::Extension<Identified>>,
    Path(uuid): Path<String>,
    request: Forward,
) -> Response {
    let id = match path_id(&uuid) {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    let caller = identified.map(|i| i.0.0).unwrap_or_default();
    let destroy = Request::new(Op::LockSessionDestroy(LockSessionDestroyRequest { id }));
    let permitted = api
        .service
        .read(|state| auth::authorize_request(state, &caller, &destroy));
    if let Err(e) = permitted {
        return refused_consul(e);
    }
    let result = api.service.write(destroy, None).await;
    api.answer_or_forward(result, request, |applied| {
        super::render::reply(applied).map(|_| json!(true))
    })
    .await
}

/// `PUT /v1/session/renew/{id}`: `[session]` once its lease is renewed (on the leader).
pub async fn renew(State(api): State<Api>, Path(uuid): Path<String>, request: Forward) -> Response {
    let id = match path_id(&uuid) {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    let Some(session) = api.service.read(|state| state.kv.lock_session(id).cloned()) else {
        return ApiError::not_found(format!("Session id '{uuid}' not found")).into_response();
    };
    let result = match session.lease {
        0 => Ok(Ok(0)),
        lease => api.service.keep_alive(lease).await,
    };
    api.answer_or_forward(result, request, |renewed| match renewed {
        Ok(_) => Ok(json!([session_json(&session)])),
        Err(_) => Err(ApiError::not_found(format!(
            "Session id '{uuid}' not found"
        ))),
    })
    .await
}

/// `?index=N&wait=D` of a session read: a blocking query.
#[derive(Debug, Default, Deserialize)]
pub struct SessionQuery {
    /// Wait until the sessions change after this index.
    index: Option<u64>,
    /// For at most this long (a Go duration; default and cap as for keys).
    wait: Option<String>,
}

/// With `?index=N` (N > 0: an index of 0 asks for no wait, as Consul's), waits until the
/// sessions change after N or the wait passes.
async fn block(api: &Api, client: IpAddr, query: &SessionQuery) -> Result<(), ApiError> {
    let Some(index) = query.index.filter(|&index| index > 0) else {
        return Ok(());
    };
    let wait = blocking::wait_of(query.wait.as_deref())?;
    blocking::wait_for_sessions(api, client, index, wait).await
}

/// A list of sessions, with the sessions' index as `X-Consul-Index`; with `?index=`, once the
/// sessions changed after it (or the wait passed).
async fn listed(
    api: &Api,
    client: IpAddr,
    query: SessionQuery,
    pick: impl Fn(&LockSession) -> bool,
) -> Response {
    if let Err(e) = block(api, client, &query).await {
        return e.into_response();
    }
    let index = blocking::sessions_index(api);
    let sessions: Vec<Value> = api.service.read(|state| {
        state
            .kv
            .lock_sessions()
            .filter(|s| pick(s))
            .map(session_json)
            .collect()
    });
    let mut response = Json(sessions).into_response();
    let index = i64::try_from(index).unwrap_or(i64::MAX);
    super::kv::consul_headers(api, response.headers_mut(), index);
    response
}

/// `GET /v1/session/info/{id}`: `[session]`, or `[]` for an unknown one.
pub async fn info(
    State(api): State<Api>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    Path(uuid): Path<String>,
    Query(query): Query<SessionQuery>,
) -> Response {
    let id = session_id(&uuid);
    listed(&api, client.ip(), query, |s| Some(s.id) == id).await
}

/// `GET /v1/session/list`: every session.
pub async fn list(
    State(api): State<Api>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    Query(query): Query<SessionQuery>,
) -> Response {
    listed(&api, client.ip(), query, |_| true).await
}

/// `GET /v1/session/node/{node}`: the sessions of a node.
pub async fn node(
    State(api): State<Api>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    Path(node): Path<String>,
    Query(query): Query<SessionQuery>,
) -> Response {
    listed(&api, client.ip(), query, |s| s.node == node).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_id_round_trips_through_its_uuid_and_others_are_refused() {
        let uuid = session_uuid(0x2a);
        assert_eq!(uuid, "00000000-0000-4000-8000-00000000002a");
        assert_eq!(session_id(&uuid), Some(0x2a));
        assert_eq!(session_id("adf4238a-882b-9ddc-4a9d-5b6758e4159e"), None);
        assert_eq!(session_id("00000000-0000-4000-8000-000000000000"), None);
        assert_eq!(session_id("00000000-0000-4000-8000-zz"), None);
    }

    #[test]
    fn durations_print_as_consul_prints_them() {
        assert_eq!(go_duration(Duration::from_secs(15)), "15s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1500ms");
    }
}
