//! The key-value routes' side of the store: building requests from HTTP input and turning
//! responses into JSON.

use axum::http::StatusCode;
use base64::Engine;
use bytes::Bytes;
use raftkv_kv::{
    DeleteRangeRequest, EventKind, KeyValue, KvStore, Op, PutRequest, RangeRequest, Reply, Request,
    TxnOpResponse, WatchResponse,
};
use serde_json::{Value, json};

use super::error::ApiError;
use crate::state::Applied;

/// A key found by `get`.
pub struct Found {
    /// The bare value (for `?raw`).
    pub value: Bytes,
    /// The JSON form.
    pub json: Value,
}

fn kv_json(kv: &KeyValue) -> Value {
    json!({
        "key": String::from_utf8_lossy(&kv.key),
        "value": base64::engine::general_purpose::STANDARD.encode(&kv.value),
        "create_revision": kv.create_revision,
        "mod_revision": kv.mod_revision,
        "version": kv.version,
        "lease": kv.lease,
    })
}

/// A put; `lease` 0 attaches none.
pub fn put_request(key: &[u8], value: Bytes, prev: bool, lease: i64) -> Request {
    let mut put = PutRequest::new(Bytes::copy_from_slice(key), value).with_lease(lease);
    if prev {
        put = put.with_prev_kv();
    }
    Request::new(Op::Put(put))
}

/// The JSON answer to a lease grant.
pub fn lease_grant_answer(applied: Applied) -> Result<Value, ApiError> {
    let (revision, reply) = reply(applied)?;
    match reply {
        Reply::LeaseGrant(g) => Ok(json!({ "id": g.id, "ttl_ms": g.ttl_ms, "revision": revision })),
        _ => Ok(json!({ "revision": revision })),
    }
}

/// The JSON answer to a lease revoke.
pub fn lease_revoke_answer(applied: Applied) -> Result<Value, ApiError> {
    let (revision, reply) = reply(applied)?;
    let deleted = match reply {
        Reply::LeaseRevoke(r) => r.deleted,
        _ => 0,
    };
    Ok(json!({ "revision": revision, "deleted": deleted }))
}

/// A compare-and-swap: put only if the key's mod_revision is `expected` (0: only if absent).
pub fn cas_request(key: &[u8], value: Bytes, expected: i64) -> Request {
    Request::cas(Bytes::copy_from_slice(key), value, expected)
}

/// The JSON answer to a compare-and-swap: whether it swapped, and the current pair if not.
pub fn cas_answer(applied: Applied) -> Result<Value, ApiError> {
    let (revision, reply) = reply(applied)?;
    let Reply::Txn(txn) = reply else {
        return Ok(json!({ "revision": revision, "succeeded": false }));
    };
    let current = txn.responses.iter().find_map(|r| match &r.op {
        Some(TxnOpResponse::Range(range)) => range.kvs.first().map(kv_json),
        _ => None,
    });
    Ok(json!({ "revision": revision, "succeeded": txn.succeeded, "current": current }))
}

/// A delete of one key or of a prefix.
pub fn delete_request(key: &[u8], prefix: bool, prev: bool) -> Request {
    let key = Bytes::copy_from_slice(key);
    let mut delete = if prefix {
        DeleteRangeRequest::prefix(key)
    } else {
        DeleteRangeRequest::key(key)
    };
    if prev {
        delete = delete.with_prev_kv();
    }
    Request::new(Op::DeleteRange(delete))
}

fn reply(applied: Applied) -> Result<(i64, Reply), ApiError> {
    match applied {
        Applied::Kv(response) => match response.result {
            Ok(reply) => Ok((response.revision, reply)),
            Err(e) => Err(e.into()),
        },
        other => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("unexpected apply result {other:?}"),
        )),
    }
}

/// The JSON answer to a put.
pub fn put_answer(applied: Applied) -> Result<Value, ApiError> {
    let (revision, reply) = reply(applied)?;
    let prev = match reply {
        Reply::Put(put) => put.prev_kv.as_ref().map(kv_json),
        _ => None,
    };
    Ok(json!({ "revision": revision, "prev": prev }))
}

/// The JSON answer to a delete.
pub fn delete_answer(applied: Applied) -> Result<Value, ApiError> {
    let (revision, reply) = reply(applied)?;
    let (deleted, prev) = match reply {
        Reply::DeleteRange(d) => (d.deleted, d.prev_kvs.iter().map(kv_json).collect()),
        _ => (0, Vec::new()),
    };
    Ok(json!({ "revision": revision, "deleted": deleted, "prev": prev }))
}

/// The JSON form of a watch response: the revisions it covers (so a client can check there is
/// no gap) and the events.
pub fn watch_json(response: &WatchResponse) -> Value {
    let events: Vec<Value> = response
        .events
        .iter()
        .map(|e| {
            json!({
                "type": match e.kind {
                    EventKind::Put => "put",
                    EventKind::Delete => "delete",
                },
                "kv": kv_json(&e.kv),
                "prev": e.prev_kv.as_ref().map(kv_json),
            })
        })
        .collect();
    json!({
        "from_revision": response.from_revision,
        "to_revision": response.to_revision,
        "events": events,
    })
}

/// One key, read from this node's applied state.
pub fn get(store: &KvStore, key: &[u8]) -> Result<Option<Found>, ApiError> {
    let response = store.range(&RangeRequest::key(Bytes::copy_from_slice(key)))?;
    Ok(response.kvs.first().map(|kv| Found {
        value: kv.value.clone(),
        json: {
            let mut v = kv_json(kv);
            v["revision"] = json!(response.revision);
            v
        },
    }))
}

/// The keys under a prefix, read from this node's applied state.
pub fn list(store: &KvStore, prefix: &[u8], page: &Page) -> Result<Value, ApiError> {
    let mut request = RangeRequest::prefix(Bytes::copy_from_slice(prefix));
    if let Some(start) = &page.start {
        if !start.as_bytes().starts_with(prefix) {
            return Err(ApiError::bad_request(format!(
                "start `{start}` is not under the prefix being listed"
            )));
        }
        request.key = Bytes::copy_from_slice(start.as_bytes());
    }
    if let Some(limit) = page.limit {
        request = request.with_limit(limit);
    }
    request.revision = page.revision.unwrap_or(0);
    request.keys_only = page.keys_only;
    request.count_only = page.count_only;
    let response = store.range(&request)?;
    // Where the next page starts: just after the last key of this one.
    let next = response
        .kvs
        .last()
        .filter(|_| response.more)
        .map(|kv| format!("{}\0", String::from_utf8_lossy(&kv.key)));
    let kvs: Vec<Value> = response
        .kvs
        .iter()
        .map(|kv| {
            let mut json = kv_json(kv);
            if page.keys_only
                && let Value::Object(map) = &mut json
            {
                map.remove("value");
            }
            json
        })
        .collect();
    Ok(json!({
        "revision": response.revision,
        "count": response.count,
        "more": response.more,
        "next": next,
        "kvs": kvs,
    }))
}

/// Which page of a listing to read.
#[derive(Debug, Default)]
pub struct Page {
    /// The first key to list (a previous page's `next`); the prefix's start when absent.
    pub start: Option<String>,
    /// Most keys to list.
    pub limit: Option<u64>,
    /// The revision to read at (the first page's, so every page sees the same store).
    pub revision: Option<i64>,
    /// Leave values out.
    pub keys_only: bool,
    /// Only count the keys.
    pub count_only: bool,
}

/// The JSON answer to opening a client session.
pub fn session_open_answer(applied: Applied) -> Result<Value, ApiError> {
    let (revision, reply) = reply(applied)?;
    match reply {
        Reply::SessionOpen(open) => {
            Ok(json!({ "client_id": open.client_id, "revision": revision }))
        }
        _ => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "opening a session gave no client id",
        )),
    }
}

/// The JSON answer to closing a client session.
pub fn session_close_answer(applied: Applied) -> Result<Value, ApiError> {
    let (revision, _) = reply(applied)?;
    Ok(json!({ "closed": true, "revision": revision }))
}
