//! Consul's transactions: `PUT /v1/txn` with a JSON array of `{"KV": {"Verb", "Key", "Value",
//! "Flags", "Index"}}` operations, applied atomically as one store transaction.
//!
//! Each operation's condition (`cas`, `check-index`, `check-not-exists`, `delete-cas`, and `get`,
//! which needs the key) becomes a compare; the operations become the success branch, in order;
//! the failure branch reads the conditioned keys back, so a refusal names the first operation
//! whose condition failed, as Consul does: 409 `{"Results": null, "Errors": [{"OpIndex",
//! "What"}]}`. Success is 200 `{"Results": [{"KV": entry}, ...], "Errors": null}` with an entry
//! for each `set`, `cas`, `get` and `get-tree` key (writes without their value, as Consul).
//!
//! Verbs: `set`, `cas`, `get`, `get-tree`, `check-index`, `check-not-exists`, `delete`,
//! `delete-tree`, `delete-cas`. Not yet: `lock`, `unlock`, `check-session` (locks inside a
//! transaction), and
//! operations other than `KV`: refused with a 400 that says so. A transaction is bounded by the
//! store's request size and operation count (`request_bytes_max`, `txn_ops_max`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use base64::Engine;
use bytes::Bytes;
use raftkv_kv::{
    Compare, CompareOp, CompareTarget, DeleteRangeRequest, KeyValue, PutRequest, RangeRequest,
    Reply, Request, RequestOp, TxnOpResponse, TxnRequest,
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth;

use super::Api;
use super::auth::{Identified, refused};
use super::error::ApiError;
use super::forward::Forward;
use super::kv::entry_json;
use super::session::SessionHeaders;

/// One operation of a transaction.
#[derive(Debug, Deserialize)]
struct TxnOpJson {
    #[serde(rename = "KV")]
    kv: Option<KvOpJson>,
}

/// A KV operation.
#[derive(Debug, Deserialize)]
struct KvOpJson {
    #[serde(rename = "Verb")]
    verb: String,
    #[serde(rename = "Key")]
    key: String,
    /// base64.
    #[serde(rename = "Value", default)]
    value: Option<String>,
    #[serde(rename = "Flags", default)]
    flags: u64,
    #[serde(rename = "Index", default)]
    index: u64,
}

/// What an operation needs of its key before the transaction may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Condition {
    /// Nothing.
    None,
    /// The key exists.
    Exists,
    /// The key does not exist.
    Absent,
    /// The key's ModifyIndex is this (0: absent).
    Index(i64),
}

/// An operation, parsed.
#[derive(Debug)]
struct Planned {
    key: Bytes,
    condition: Condition,
    /// The store operation, if the verb does more than check.
    op: Option<RequestOp>,
    /// Whether its result lists entries (reads and writes) or nothing (checks, deletes).
    listed: bool,
    /// Flags a write stores (its result shows them).
    flags: u64,
}

fn plan(index: usize, op: TxnOpJson) -> Result<Planned, ApiError> {
    let Some(kv) = op.kv else {
        return Err(ApiError::bad_request(format!(
            "operation {index}: only KV operations are supported"
        )));
    };
    let key = Bytes::from(kv.key);
    let value = match &kv.value {
        Some(text) => base64::engine::general_purpose::STANDARD
            .decode(text)
            .map(Bytes::from)
            .map_err(|e| {
                ApiError::bad_request(format!("operation {index}: Value is not base64: {e}"))
            })?,
        None => Bytes::new(),
    };
    let index_of = i64::try_from(kv.index).unwrap_or(i64::MAX);
    let put = || -> RequestOp {
        PutRequest {
            flags: kv.flags,
            prev_kv: true,
            ..PutRequest::new(key.clone(), value.clone())
        }
        .into()
    };
    let (condition, op, listed) = match kv.verb.as_str() {
        "set" => (Condition::None, Some(put()), true),
        "cas" => (Condition::Index(index_of), Some(put()), true),
        "get" => (
            Condition::Exists,
            Some(RangeRequest::key(key.clone()).into()),
            true,
        ),
        "get-tree" => (
            Condition::None,
            Some(RangeRequest::prefix(key.clone()).into()),
            true,
        ),
        "check-index" => (Condition::Index(index_of), None, false),
        "check-not-exists" => (Condition::Absent, None, false),
        "delete" => (
            Condition::None,
            Some(DeleteRangeRequest::key(key.clone()).into()),
            false,
        ),
        "delete-tree" => (
            Condition::None,
            Some(DeleteRangeRequest::prefix(key.clone()).into()),
            false,
        ),
        "delete-cas" => (
            Condition::Index(index_of),
            Some(DeleteRangeRequest::key(key.clone()).into()),
            false,
        ),
        "lock" | "unlock" | "check-session" => {
            return Err(ApiError::bad_request(format!(
                "operation {index}: verb `{}` (locks in a transaction) is not supported yet",
                kv.verb
            )));
        }
        other => {
            return Err(ApiError::bad_request(format!(
                "operation {index}: unknown verb `{other}`"
            )));
        }
    };
    Ok(Planned {
        key,
        condition,
        op,
        listed,
        flags: kv.flags,
    })
}

/// The compare that holds when `condition` does.
fn compare(key: &Bytes, condition: Condition) -> Option<Compare> {
    let (op, target) = match condition {
        Condition::None => return None,
        Condition::Exists => (CompareOp::Greater, CompareTarget::Version(0)),
        Condition::Absent => (CompareOp::Equal, CompareTarget::Version(0)),
        Condition::Index(index) => (CompareOp::Equal, CompareTarget::ModRevision(index)),
    };
    Some(Compare::new(key.clone(), op, target))
}

/// Why `condition` does not hold for the key's current state (`None` if it does).
fn failure(key: &Bytes, condition: Condition, current: Option<&KeyValue>) -> Option<String> {
    let key = String::from_utf8_lossy(key);
    let index = current.map_or(0, |kv| kv.mod_revision);
    match condition {
        Condition::None => None,
        Condition::Exists if current.is_none() => Some(format!("key \"{key}\" doesn't exist")),
        Condition::Absent if current.is_some() => Some(format!("key \"{key}\" exists")),
        Condition::Index(expected) if expected != index => Some(format!(
            "current modify index {index} != {expected} for key \"{key}\""
        )),
        _ => None,
    }
}

/// The transaction's store request.
fn request(planned: &[Planned]) -> Request {
    Request::txn(TxnRequest {
        compare: planned
            .iter()
            .filter_map(|p| compare(&p.key, p.condition))
            .collect(),
        success: planned.iter().filter_map(|p| p.op.clone()).collect(),
        failure: planned
            .iter()
            .filter(|p| p.condition != Condition::None)
            .map(|p| RangeRequest::key(p.key.clone()).into())
            .collect(),
    })
}

/// The answer to an applied transaction.
fn answer(planned: &[Planned], revision: i64, reply: Reply) -> Response {
    let Reply::Txn(txn) = reply else {
        return ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "a transaction answered with another kind of reply",
        )
        .into_response();
    };
    if !txn.succeeded {
        let conditioned = planned
            .iter()
            .enumerate()
            .filter(|(_, p)| p.condition != Condition::None);
        let errors: Vec<Value> = conditioned
            .zip(&txn.responses)
            .filter_map(|((i, p), response)| {
                let current = match &response.op {
                    Some(TxnOpResponse::Range(range)) => range.kvs.first(),
                    _ => None,
                };
                failure(&p.key, p.condition, current)
                    .map(|what| json!({ "OpIndex": i, "What": what }))
            })
            .take(1)
            .collect();
        let body = json!({ "Results": null, "Errors": errors });
        return (StatusCode::CONFLICT, Json(body)).into_response();
    }
    let mut responses = txn.responses.iter();
    let mut results = Vec::new();
    for p in planned.iter().filter(|p| p.op.is_some()) {
        let Some(response) = responses.next() else {
            break;
        };
        if !p.listed {
            continue;
        }
        match &response.op {
            Some(TxnOpResponse::Range(range)) => {
                results.extend(range.kvs.iter().map(|kv| json!({ "KV": entry_json(kv) })));
            }
            Some(TxnOpResponse::Put(put)) => {
                let written = KeyValue {
                    key: p.key.clone(),
                    create_revision: put
                        .prev_kv
                        .as_ref()
                        .map_or(revision, |kv| kv.create_revision),
                    mod_revision: revision,
                    flags: p.flags,
                    ..KeyValue::default()
                };
                results.push(json!({ "KV": entry_json(&written) }));
            }
            _ => {}
        }
    }
    Json(json!({ "Results": results, "Errors": null })).into_response()
}

/// `PUT /v1/txn`.
pub async fn txn(
    State(api): State<Api>,
    identified: Option<axum::Extension<Identified>>,
    SessionHeaders(session): SessionHeaders,
    request_in: Forward,
) -> Response {
    let ops: Vec<TxnOpJson> = match serde_json::from_slice(&request_in.body) {
        Ok(ops) => ops,
        Err(e) => {
            return ApiError::bad_request(format!(
                "a transaction is a JSON array of operations: {e}"
            ))
            .into_response();
        }
    };
    let planned: Result<Vec<Planned>, ApiError> = ops
        .into_iter()
        .enumerate()
        .map(|(i, op)| plan(i, op))
        .collect();
    let planned = match planned {
        Ok(planned) => planned,
        Err(e) => return e.into_response(),
    };
    let store_request = request(&planned);
    // With authentication on, the guard let any user through: each key is checked here (a write
    // needs write permission only: the previous value it asks for is not shown).
    let caller = identified.map(|i| i.0.0).unwrap_or_default();
    let mut checked = store_request.clone();
    if let Some(raftkv_kv::Op::Txn(txn)) = &mut checked.op {
        for op in &mut txn.success {
            if let Some(raftkv_kv::TxnOp::Put(put)) = &mut op.op {
                put.prev_kv = false;
            }
        }
    }
    let permitted = api
        .service
        .read(|state| auth::authorize_request(&state.auth, &caller, &checked));
    if let Err(e) = permitted {
        return refused(e);
    }
    let result = api.service.write(store_request, session).await;
    match result {
        Ok(crate::state::Applied::Kv(response)) => match response.result {
            Ok(reply) => answer(&planned, response.revision, reply),
            Err(e) => ApiError::from(e).into_response(),
        },
        Ok(other) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("unexpected apply result {other:?}"),
        )
        .into_response(),
        Err(crate::error::RequestError::NotLeader { leader }) => {
            api.forward(leader, request_in).await
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(verb: &str, key: &str, index: u64) -> TxnOpJson {
        TxnOpJson {
            kv: Some(KvOpJson {
                verb: verb.into(),
                key: key.into(),
                value: None,
                flags: 0,
                index,
            }),
        }
    }

    #[test]
    fn conditions_become_compares_and_failed_ones_are_named() {
        let planned: Vec<Planned> = [op("cas", "a", 5), op("set", "b", 0), op("get", "c", 0)]
            .into_iter()
            .enumerate()
            .map(|(i, op)| plan(i, op).unwrap())
            .collect();
        let Some(raftkv_kv::Op::Txn(txn)) = request(&planned).op else {
            panic!("a transaction");
        };
        assert_eq!(
            txn.compare.len(),
            2,
            "cas and get are conditioned, set is not"
        );
        assert_eq!(txn.success.len(), 3);
        assert_eq!(txn.failure.len(), 2);
        let current = KeyValue {
            mod_revision: 7,
            ..KeyValue::default()
        };
        let stale = failure(&planned[0].key, planned[0].condition, Some(&current));
        assert_eq!(
            stale.as_deref(),
            Some("current modify index 7 != 5 for key \"a\"")
        );
        let missing = failure(&planned[2].key, planned[2].condition, None);
        assert_eq!(missing.as_deref(), Some("key \"c\" doesn't exist"));
    }

    #[test]
    fn verbs_that_need_sessions_and_unknown_verbs_are_refused_saying_so() {
        for verb in ["lock", "unlock", "check-session", "frobnicate"] {
            let refused = plan(0, op(verb, "k", 0)).unwrap_err();
            assert!(refused.message().contains(verb), "{}", refused.message());
        }
        let not_kv = TxnOpJson { kv: None };
        assert!(plan(0, not_kv).is_err());
    }
}
