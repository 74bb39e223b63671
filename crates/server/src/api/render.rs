//! The JSON of raftkv's own routes (watch streams, leases, client sessions), from the store's
//! answers.

use axum::http::StatusCode;
use base64::Engine;
use raftkv_kv::{EventKind, KeyValue, Reply, WatchResponse};
use serde_json::{Value, json};

use super::error::ApiError;
use crate::state::Applied;

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

/// The store's revision after `applied` and its reply, or the store's refusal.
pub fn reply(applied: Applied) -> Result<(i64, Reply), ApiError> {
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
