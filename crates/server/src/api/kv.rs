//! Consul's KV API: `GET`, `PUT` and `DELETE /v1/kv/{key}` with Consul's parameters, shapes and
//! headers, so Consul's clients work unchanged.
//!
//! - `GET` answers `[{"Key", "Value" (base64, null when empty), "Flags", "CreateIndex",
//!   "ModifyIndex", "LockIndex", "Session" (while a session holds it)}]`; `?raw` the bare value; `?recurse` every key under the prefix;
//!   `?keys` only the keys, cut after the first `?separator=` past the prefix; a missing key (or
//!   an empty prefix) is a 404 with an empty body. `?index=N&wait=D` blocks (`blocking.rs`).
//! - `PUT` stores the body with `?flags=N`; `?cas=N` only if the key's `ModifyIndex` is N (0:
//!   only if absent); `?acquire=SESSION` takes the key as a lock (unless another session holds
//!   it, or it is in a lock delay), `?release=SESSION` gives it back; answers `true` or `false`.
//! - `DELETE` removes the key, or every key under it with `?recurse`; `?cas=N` only if its
//!   `ModifyIndex` is N; answers `true` or `false`.
//!
//! Indexes are the store's revisions: `CreateIndex` and `ModifyIndex` a key's create and mod
//! revisions, `X-Consul-Index` the store's revision when the read was served (never behind any
//! change it shows, so a blocking query from it waits for the next change).
//!
//! Reads are served at Consul's consistency modes: the default reads through the leader's lease,
//! `?consistent` after a quorum round (ReadIndex), `?stale` from this member's state, refused
//! with a 503 under `?max_stale=D` when this member has not heard from a leader within D.
//! Every read carries `X-Consul-Index`, `X-Consul-KnownLeader` and `X-Consul-LastContact`.
//!
//! raftkv's own additions: `?consistency=linearizable|lease|stale`, `?prefix` (as `?recurse`),
//! `?lease=ID` on a put, and paging of a recursive read (`?limit=N`, then `?start=` the
//! form-decoded `X-Raftkv-Next` header and `?revision=` the first page's `X-Consul-Index`).

use std::time::Duration;

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use base64::Engine;
use bytes::Bytes;
use raftkv_kv::{
    Compare, CompareOp, CompareTarget, DeleteRangeRequest, KeyValue, LockRequest, Op, PutRequest,
    RangeRequest, Reply, Request, RequestOp, TxnRequest,
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::Api;
use super::blocking;
use super::error::{ApiError, Verbatim};
use super::forward::Forward;
use super::lock_session::{session_id, session_uuid};
use super::session::SessionHeaders;
use crate::service::Consistency;

/// Query parameters of the KV routes.
#[derive(Debug, Default, Deserialize)]
pub struct KvQuery {
    /// Return the bare value.
    raw: Option<String>,
    /// Every key under the given one.
    recurse: Option<String>,
    /// raftkv's name for `recurse`.
    prefix: Option<String>,
    /// Only the keys.
    keys: Option<String>,
    /// With `keys`: cut each key after the first separator past the prefix.
    separator: Option<String>,
    /// A quorum round before the read.
    consistent: Option<String>,
    /// This member's state, possibly behind.
    stale: Option<String>,
    /// With `stale`: refuse when this member has not heard from a leader for longer.
    max_stale: Option<String>,
    /// raftkv's explicit mode: linearizable, lease or stale.
    consistency: Option<String>,
    /// Block until something changes after this index.
    index: Option<u64>,
    /// How long to block (`10s`, `5m`, ...).
    wait: Option<String>,
    /// Flags stored with a put.
    flags: Option<u64>,
    /// Check-and-set: only if the key's `ModifyIndex` is this (0: only if absent).
    cas: Option<u64>,
    /// raftkv: attach the key to this lease.
    lease: Option<i64>,
    /// Acquire the key for this session (a lock).
    acquire: Option<String>,
    /// Release the key held by this session.
    release: Option<String>,
    /// raftkv: most keys of a recursive read.
    limit: Option<u64>,
    /// raftkv: a recursive read's page starts here (the previous page's `X-Raftkv-Next`).
    start: Option<String>,
    /// raftkv: read at this revision (the first page's `X-Consul-Index`).
    revision: Option<i64>,
}

impl KvQuery {
    fn recursive(&self) -> bool {
        self.recurse.is_some() || self.prefix.is_some() || self.keys.is_some()
    }
}

/// Header naming where the next page of a paged recursive read starts.
pub const NEXT_HEADER: &str = "x-raftkv-next";

fn consistency(query: &KvQuery) -> Result<Consistency, ApiError> {
    if query.stale.is_some() {
        return Ok(Consistency::Stale);
    }
    if query.consistent.is_some() {
        return Ok(Consistency::Linearizable);
    }
    match query.consistency.as_deref() {
        None | Some("lease") | Some("default") => Ok(Consistency::Lease),
        Some("linearizable") | Some("consistent") => Ok(Consistency::Linearizable),
        Some("stale") | Some("serializable") => Ok(Consistency::Stale),
        Some(other) => Err(ApiError::bad_request(format!(
            "consistency `{other}` is not one of linearizable, lease, stale"
        ))),
    }
}

/// A key-value in Consul's shape.
pub fn entry_json(kv: &KeyValue) -> Value {
    let value =
        (!kv.value.is_empty()).then(|| base64::engine::general_purpose::STANDARD.encode(&kv.value));
    let mut entry = json!({
        "LockIndex": kv.lock_index,
        "Key": String::from_utf8_lossy(&kv.key),
        "Flags": kv.flags,
        "Value": value,
        "CreateIndex": kv.create_revision,
        "ModifyIndex": kv.mod_revision,
    });
    if kv.session != 0 {
        entry["Session"] = json!(session_uuid(kv.session));
    }
    entry
}

/// The keys of `kvs`, each cut after the first `separator` past `prefix`, without repeats.
fn key_list(kvs: &[KeyValue], prefix: &[u8], separator: Option<&str>) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    for kv in kvs {
        let mut key = &kv.key[..];
        if let Some(sep) = separator.filter(|s| !s.is_empty()) {
            let rest = &key[prefix.len().min(key.len())..];
            if let Some(at) = rest.windows(sep.len()).position(|w| w == sep.as_bytes()) {
                key = &key[..prefix.len() + at + sep.len()];
            }
        }
        let key = String::from_utf8_lossy(key).into_owned();
        if keys.last() != Some(&key) {
            keys.push(key);
        }
    }
    keys
}

/// How long ago this member heard from its leader (zero on the leader; `None` when it knows no
/// leader or never heard from one).
fn since_leader_contact(api: &Api) -> Option<Duration> {
    let status = api.service.status();
    if status.leader == Some(status.id) {
        return Some(Duration::ZERO);
    }
    let shared = api.service.shared();
    let contact = shared
        .leader_contact_ms
        .load(std::sync::atomic::Ordering::Relaxed);
    let now = shared.epoch.elapsed().as_millis() as u64;
    (status.leader.is_some() && contact > 0)
        .then(|| Duration::from_millis(now.saturating_sub(contact)))
}

/// Adds Consul's read headers: the index the answer is as of, whether a leader is known, and
/// how long ago this member heard from it.
pub(super) fn consul_headers(api: &Api, headers: &mut HeaderMap, index: i64) {
    let known = api.service.status().leader.is_some();
    let since = since_leader_contact(api).map_or(0, |d| d.as_millis() as u64);
    headers.insert("x-consul-index", HeaderValue::from(index.max(1)));
    let known = if known { "true" } else { "false" };
    headers.insert("x-consul-knownleader", HeaderValue::from_static(known));
    headers.insert("x-consul-lastcontact", HeaderValue::from(since));
}

/// Refuses a stale read from a member that has not heard from a leader within `max_stale`.
fn check_max_stale(api: &Api, max_stale: Option<&str>) -> Result<(), ApiError> {
    let Some(text) = max_stale else {
        return Ok(());
    };
    let bound = blocking::parse_duration(text)
        .ok_or_else(|| ApiError::bad_request(format!("max_stale `{text}` is not a duration")))?;
    match since_leader_contact(api) {
        Some(since) if since <= bound => Ok(()),
        since => Err(ApiError::unavailable(format!(
            "this member last heard from a leader {since:?} ago (None: never), more than \
             max_stale {bound:?}"
        ))),
    }
}

/// `GET /v1/kv/{key}`.
pub async fn get_kv(
    State(api): State<Api>,
    ConnectInfo(client): ConnectInfo<std::net::SocketAddr>,
    Path(key): Path<String>,
    Query(query): Query<KvQuery>,
) -> Response {
    read_kv(api, client.ip(), key, query).await
}

/// `GET /v1/kv/`: every key (with `?recurse` or `?keys`).
pub async fn list_all(
    State(api): State<Api>,
    ConnectInfo(client): ConnectInfo<std::net::SocketAddr>,
    Query(query): Query<KvQuery>,
) -> Response {
    read_kv(api, client.ip(), String::new(), query).await
}

async fn read_kv(api: Api, client: std::net::IpAddr, key: String, query: KvQuery) -> Response {
    match read(&api, client, key, &query).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn read(
    api: &Api,
    client: std::net::IpAddr,
    key: String,
    query: &KvQuery,
) -> Result<Response, ApiError> {
    let consistency = consistency(query)?;
    let recursive = query.recursive();
    if key.is_empty() && !recursive {
        return Err(ApiError::bad_request(
            "missing key name; give a key, or ?recurse (?keys) to list",
        ));
    }
    let key = Bytes::from(key);
    let range = if recursive {
        RangeRequest::prefix(key.clone())
    } else {
        RangeRequest::key(key.clone())
    };
    if let Some(index) = query.index.filter(|&i| i > 0) {
        let wait = blocking::wait_of(query.wait.as_deref())?;
        blocking::wait_for_change(api, client, &range, index, wait).await?;
    }
    if consistency == Consistency::Stale {
        check_max_stale(api, query.max_stale.as_deref())?;
    }
    api.service.read_barrier(consistency).await?;
    let mut request = range;
    if recursive {
        if let Some(start) = &query.start {
            if !start.as_bytes().starts_with(&key) {
                return Err(ApiError::bad_request(format!(
                    "start `{start}` is not under the prefix being listed"
                )));
            }
            request.key = Bytes::copy_from_slice(start.as_bytes());
        }
        if let Some(limit) = query.limit {
            request = request.with_limit(limit);
        }
        request.revision = query.revision.unwrap_or(0);
        request.keys_only = query.keys.is_some();
    }
    let found = api.service.read(|state| state.kv.range(&request))?;
    let mut response = if found.kvs.is_empty() {
        // Consul's answer for nothing found: a 404 with an empty body.
        let mut response = StatusCode::NOT_FOUND.into_response();
        response.extensions_mut().insert(Verbatim);
        response
    } else if query.keys.is_some() {
        let keys = key_list(&found.kvs, &key, query.separator.as_deref());
        Json(keys).into_response()
    } else if query.raw.is_some() && !recursive {
        let value = found.kvs[0].value.clone();
        ([(header::CONTENT_TYPE, "application/octet-stream")], value).into_response()
    } else {
        let entries: Vec<Value> = found.kvs.iter().map(entry_json).collect();
        Json(entries).into_response()
    };
    if let Some(last) = found.kvs.last().filter(|_| found.more) {
        // Just after the last key, form-encoded (a key may hold any byte).
        let mut next = last.key.to_vec();
        next.push(0);
        let encoded: String = url::form_urlencoded::byte_serialize(&next).collect();
        if let Ok(value) = HeaderValue::from_str(&encoded) {
            response.headers_mut().insert(NEXT_HEADER, value);
        }
    }
    consul_headers(api, response.headers_mut(), found.revision);
    Ok(response)
}

/// The put of a `PUT` request: the body, with its flags and lease.
fn put_of(key: &str, value: Bytes, query: &KvQuery) -> PutRequest {
    PutRequest {
        flags: query.flags.unwrap_or(0),
        lease: query.lease.unwrap_or(0),
        ..PutRequest::new(Bytes::copy_from_slice(key.as_bytes()), value)
    }
}

/// A check-and-set: `then` if the key's mod revision is `index` (0: if the key is absent).
fn check_and_set(key: &str, index: u64, then: RequestOp) -> Request {
    let key = Bytes::copy_from_slice(key.as_bytes());
    let index = i64::try_from(index).unwrap_or(i64::MAX);
    Request::txn(TxnRequest {
        compare: vec![Compare::new(
            key,
            CompareOp::Equal,
            CompareTarget::ModRevision(index),
        )],
        success: vec![then],
        failure: Vec::new(),
    })
}

/// `true`, or `false` for a check-and-set that did not match or a lock not taken.
fn succeeded(applied: crate::state::Applied) -> Result<Value, ApiError> {
    match super::render::reply(applied)? {
        (_, Reply::Txn(txn)) => Ok(json!(txn.succeeded)),
        (_, Reply::Lock(lock)) => Ok(json!(lock.succeeded)),
        _ => Ok(json!(true)),
    }
}

/// The lock request of a `PUT` with `?acquire=` or `?release=`, if it has one.
fn lock_of(key: &str, value: Bytes, query: &KvQuery) -> Result<Option<LockRequest>, ApiError> {
    let (uuid, release) = match (&query.acquire, &query.release) {
        (None, None) => return Ok(None),
        (Some(uuid), None) => (uuid, false),
        (None, Some(uuid)) => (uuid, true),
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request("acquire and release are exclusive"));
        }
    };
    let session = session_id(uuid)
        .ok_or_else(|| ApiError::bad_request(format!("invalid session \"{uuid}\"")))?;
    Ok(Some(LockRequest {
        key: Bytes::copy_from_slice(key.as_bytes()),
        value,
        flags: query.flags.unwrap_or(0),
        session,
        release,
    }))
}

/// `PUT /v1/kv/{key}`.
pub async fn put_kv(
    State(api): State<Api>,
    Path(key): Path<String>,
    Query(query): Query<KvQuery>,
    SessionHeaders(session): SessionHeaders,
    request: Forward,
) -> Response {
    let lock = match lock_of(&key, request.body.clone(), &query) {
        Ok(lock) => lock,
        Err(e) => return e.into_response(),
    };
    // A key in its lock delay is not acquired (checked here, on this node's clock: see
    // `raftkv_kv`'s `locks`).
    let now_ms = api.service.shared().epoch.elapsed().as_millis() as u64;
    if lock.as_ref().is_some_and(|l| !l.release)
        && api
            .service
            .read(|state| state.kv.lock_delayed(key.as_bytes(), now_ms))
    {
        return Json(false).into_response();
    }
    let put = put_of(&key, request.body.clone(), &query);
    let store_request = match (lock, query.cas) {
        (Some(lock), _) => Request::new(Op::Lock(lock)),
        (None, Some(index)) => check_and_set(&key, index, put.into()),
        (None, None) => Request::new(Op::Put(put)),
    };
    let result = api.service.write(store_request, session).await;
    api.answer_or_forward(result, request, succeeded).await
}

/// `DELETE /v1/kv/{key}`.
pub async fn delete_kv(
    State(api): State<Api>,
    Path(key): Path<String>,
    Query(query): Query<KvQuery>,
    SessionHeaders(session): SessionHeaders,
    request: Forward,
) -> Response {
    let bytes = Bytes::copy_from_slice(key.as_bytes());
    // A check-and-set deletes the one key it checks (Consul's DeleteCAS), even with ?recurse.
    let delete = if query.recursive() && query.cas.is_none() {
        DeleteRangeRequest::prefix(bytes)
    } else {
        DeleteRangeRequest::key(bytes)
    };
    let store_request = match query.cas {
        // Consul: a delete's check-and-set needs an index above 0.
        Some(0) => return Json(false).into_response(),
        Some(index) => check_and_set(&key, index, delete.into()),
        None => Request::new(Op::DeleteRange(delete)),
    };
    let result = api.service.write(store_request, session).await;
    api.answer_or_forward(result, request, succeeded).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str) -> KeyValue {
        KeyValue {
            key: Bytes::copy_from_slice(key.as_bytes()),
            ..KeyValue::default()
        }
    }

    #[test]
    fn keys_are_cut_after_the_first_separator_past_the_prefix() {
        let kvs: Vec<KeyValue> = ["web/a", "web/sub/x", "web/sub/y", "web/z/"]
            .into_iter()
            .map(kv)
            .collect();
        assert_eq!(
            key_list(&kvs, b"web/", Some("/")),
            ["web/a", "web/sub/", "web/z/"]
        );
        assert_eq!(key_list(&kvs, b"web/", None).len(), 4);
        assert_eq!(key_list(&kvs, b"", Some("/")), ["web/"]);
    }

    #[test]
    fn an_entry_has_consuls_fields_and_an_empty_value_is_null() {
        let mut found = kv("k");
        found.flags = 7;
        found.create_revision = 3;
        found.mod_revision = 5;
        let json = entry_json(&found);
        assert_eq!(json["Key"], "k");
        assert_eq!(json["Flags"], 7);
        assert_eq!(json["CreateIndex"], 3);
        assert_eq!(json["ModifyIndex"], 5);
        assert_eq!(json["LockIndex"], 0);
        assert!(json["Value"].is_null());
        found.value = Bytes::from_static(b"hi");
        assert_eq!(entry_json(&found)["Value"], "aGk=");
    }
}
