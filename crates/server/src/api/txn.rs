//! Consul's transactions: `PUT /v1/txn` with a JSON array of `{"KV": {"Verb", "Key", "Value",
//! "Flags", "Index", "Session"}}` operations, applied atomically as one store transaction.
//!
//! Each operation's condition (`cas`, `check-index`, `check-not-exists`, `check-session`,
//! `delete-cas`, and `get`, which needs the key) becomes compares; the operations become the
//! success branch, in order; the failure branch reads the conditioned keys back, so a refusal
//! names each operation whose condition failed, as Consul does: 409 `{"Results": null, "Errors":
//! [{"OpIndex", "What"}]}`. `lock` and `unlock` are store lock operations: one refused (the lock
//! held by another session, or not held by the releasing one) or naming a session that does not
//! exist fails the whole transaction, which the store rolls back, and is named the same way; a
//! `lock` of a key in the lock delay of an ended session is refused before proposing (this
//! node's clock, as a plain `?acquire`).
//! Success is 200 `{"Results": [{"KV": entry}, ...], "Errors": null}` with an entry for each
//! `set`, `cas`, `lock`, `unlock`, `get`, `get-tree`, `check-index` and `check-session` key
//! (all but reads without their value, as Consul; a write's only if the caller may read it).
//!
//! Every condition is evaluated against the state before the transaction (Consul evaluates each
//! operation after the ones before it), and a key may be written once per transaction. Operations
//! other than `KV` are refused with a 400 that says so. A transaction is bounded by the store's
//! request size and operation count (`request_bytes_max`, `txn_ops_max`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use base64::Engine;
use bytes::Bytes;
use raftkv_kv::{
    Compare, CompareOp, CompareTarget, DeleteRangeRequest, KeyValue, KvError, LockRequest,
    PutRequest, RangeRequest, Reply, Request, RequestOp, TxnOp, TxnOpResponse, TxnRequest,
};
use raftkv_replica::auth::Access;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::{self, Need};

use super::Api;
use super::auth::{Identified, refused_consul};
use super::error::ApiError;
use super::forward::Forward;
use super::kv::entry_json;
use super::lock_session::{session_id, session_uuid};
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
    /// A session UUID (`lock`, `unlock`, `check-session`).
    #[serde(rename = "Session", default)]
    session: String,
}

/// The session a `check-session` names when its ID is not one of ours: no key is held by it
/// (lock session ids are log indexes, far below it).
const NO_SUCH_SESSION: u64 = u64::MAX;

/// What an operation needs of its key before the transaction may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Condition {
    /// Nothing.
    None,
    /// `get`: the key exists.
    Exists,
    /// `check-not-exists`: the key does not exist.
    Absent,
    /// `cas`: the key's ModifyIndex is this (0: the key does not exist).
    SetIndex(i64),
    /// `delete-cas`: the key's ModifyIndex is this.
    DeleteIndex(i64),
    /// `check-index`: the key exists with this ModifyIndex.
    CheckIndex(i64),
    /// `check-session`: the key exists, held by this session (0: by none; `NO_SUCH_SESSION`
    /// for a session ID that is not one of ours).
    CheckSession(u64),
}

impl Condition {
    /// The compares that hold when the condition does.
    fn compares(self, key: &Bytes) -> Vec<Compare> {
        let compare = |op, target| Compare::new(key.clone(), op, target);
        let exists = || compare(CompareOp::Greater, CompareTarget::Version(0));
        match self {
            Condition::None => vec![],
            Condition::Exists => vec![exists()],
            Condition::Absent => vec![compare(CompareOp::Equal, CompareTarget::Version(0))],
            Condition::SetIndex(index) | Condition::DeleteIndex(index) => {
                vec![compare(CompareOp::Equal, CompareTarget::ModRevision(index))]
            }
            Condition::CheckIndex(index) => vec![
                exists(),
                compare(CompareOp::Equal, CompareTarget::ModRevision(index)),
            ],
            Condition::CheckSession(session) => vec![
                exists(),
                compare(CompareOp::Equal, CompareTarget::Session(session)),
            ],
        }
    }

    /// Why the condition does not hold for the key's current state (`None` if it does), in
    /// Consul's words (`asked`: the session the operation named, as it named it).
    fn failure(self, key: &Bytes, current: Option<&KeyValue>, asked: &str) -> Option<String> {
        let key = String::from_utf8_lossy(key);
        let index = current.map_or(0, |kv| kv.mod_revision);
        match (self, current) {
            (Condition::Exists, None) => Some(format!("key {key:?} doesn't exist")),
            (Condition::Absent, Some(_)) => Some(format!("key {key:?} exists")),
            (Condition::SetIndex(expected), _) if expected != index => {
                Some(format!("failed to set key {key:?}, index is stale"))
            }
            (Condition::DeleteIndex(expected), _) if expected != index => {
                Some(format!("failed to delete key {key:?}, index is stale"))
            }
            (Condition::CheckIndex(_), None) => {
                Some(format!("failed to check index, key {key:?} doesn't exist"))
            }
            (Condition::CheckIndex(expected), Some(_)) if expected != index => Some(format!(
                "failed index check for key {key:?}, current modify index {index} != {expected}"
            )),
            (Condition::CheckSession(_), None) => Some(format!(
                "failed to check session, key {key:?} doesn't exist"
            )),
            (Condition::CheckSession(expected), Some(kv)) if expected != kv.session => {
                let held = match kv.session {
                    0 => String::new(),
                    id => session_uuid(id),
                };
                Some(format!(
                    "failed session check for key {key:?}, current session {held:?} != {asked:?}"
                ))
            }
            _ => None,
        }
    }
}

/// An operation, parsed.
#[derive(Debug)]
struct Planned {
    key: Bytes,
    condition: Condition,
    /// The store operation, if the verb does more than check its condition.
    op: Option<RequestOp>,
    /// Whether its result lists entries (reads, writes, checks of a key) or nothing (deletes,
    /// `check-not-exists`).
    listed: bool,
    /// Flags a write stores (its result shows them).
    flags: u64,
    /// The session the operation named, as it named it (for messages).
    session: String,
}

impl Planned {
    /// Why its condition does not hold for the key's current state (`None` if it does).
    fn failure(&self, current: Option<&KeyValue>) -> Option<String> {
        self.condition.failure(&self.key, current, &self.session)
    }

    /// Its lock operation, if it is a `lock` or `unlock`.
    fn lock(&self) -> Option<&LockRequest> {
        match &self.op {
            Some(RequestOp {
                op: Some(TxnOp::Lock(lock)),
            }) => Some(lock),
            _ => None,
        }
    }
}

/// Why an operation cannot be planned.
#[derive(Debug)]
enum PlanError {
    /// The request is malformed: 400.
    Malformed(ApiError),
    /// The operation would fail (a missing or unknown session): a 409 naming it.
    Refused(String),
}

fn plan(index: usize, op: TxnOpJson) -> Result<Planned, PlanError> {
    let malformed = |message: String| PlanError::Malformed(ApiError::bad_request(message));
    let Some(kv) = op.kv else {
        return Err(malformed(format!(
            "operation {index}: only KV operations are supported"
        )));
    };
    let key = Bytes::from(kv.key.clone());
    let value = match &kv.value {
        Some(text) => base64::engine::general_purpose::STANDARD
            .decode(text)
            .map(Bytes::from)
            .map_err(|e| malformed(format!("operation {index}: Value is not base64: {e}")))?,
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
    let lock = |release: bool| -> Result<RequestOp, PlanError> {
        if kv.session.is_empty() {
            return Err(PlanError::Refused("missing session".into()));
        }
        // Consul checks that a locking session exists; an unlock by another fails as unheld.
        let session = session_id(&kv.session).ok_or_else(|| {
            PlanError::Refused(match release {
                false => format!("invalid session {:?}", kv.session),
                true => KvError::LockRefused {
                    key: kv.key.clone(),
                    release,
                }
                .to_string(),
            })
        })?;
        Ok(TxnOp::Lock(LockRequest {
            key: key.clone(),
            value: value.clone(),
            flags: kv.flags,
            session,
            release,
        })
        .into())
    };
    let read_back = || Some(RangeRequest::key(key.clone()).keys_only().into());
    let (condition, op, listed) = match kv.verb.as_str() {
        "set" => (Condition::None, Some(put()), true),
        "cas" => (Condition::SetIndex(index_of), Some(put()), true),
        "lock" => (Condition::None, Some(lock(false)?), true),
        "unlock" => (Condition::None, Some(lock(true)?), true),
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
        "check-index" => (Condition::CheckIndex(index_of), read_back(), true),
        "check-session" => {
            let session = match kv.session.as_str() {
                "" => 0,
                uuid => session_id(uuid).unwrap_or(NO_SUCH_SESSION),
            };
            (Condition::CheckSession(session), read_back(), true)
        }
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
            Condition::DeleteIndex(index_of),
            Some(DeleteRangeRequest::key(key.clone()).into()),
            false,
        ),
        other => {
            return Err(malformed(format!(
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
        session: kv.session,
    })
}

/// Consul's answer to a transaction that failed: 409 naming each failed operation.
fn conflict(errors: Vec<(usize, String)>) -> Response {
    let errors: Vec<Value> = errors
        .into_iter()
        .map(|(i, what)| json!({ "OpIndex": i, "What": what }))
        .collect();
    let body = json!({ "Results": null, "Errors": errors });
    (StatusCode::CONFLICT, Json(body)).into_response()
}

/// The operation a lock error from the store is about, and what Consul says of it.
fn lock_failure(planned: &[Planned], error: &KvError) -> Option<(usize, String)> {
    let mut locks = planned
        .iter()
        .enumerate()
        .filter_map(|(i, p)| p.lock().map(|lock| (i, p, lock)));
    match error {
        KvError::LockRefused { key, release } => locks
            .filter(|(_, _, lock)| lock.release == *release)
            .find(|(_, _, lock)| String::from_utf8_lossy(&lock.key) == key.as_str())
            .map(|(i, _, _)| (i, error.to_string())),
        // A lock by an ended session names it; an unlock by one is an unlock of a key it does
        // not hold.
        KvError::LockSessionNotFound { id } => {
            locks
                .find(|(_, _, lock)| lock.session == *id)
                .map(|(i, p, lock)| match lock.release {
                    false => (i, format!("invalid session {:?}", p.session)),
                    true => {
                        let refused = KvError::LockRefused {
                            key: String::from_utf8_lossy(&lock.key).into_owned(),
                            release: true,
                        };
                        (i, refused.to_string())
                    }
                })
        }
        _ => None,
    }
}

/// The acquisitions of keys still in the lock delay of a session that ended (on this node's
/// clock, as a plain `?acquire` checks it), in Consul's words.
fn lock_delayed(
    planned: &[Planned],
    mut delayed: impl FnMut(&[u8]) -> bool,
) -> Vec<(usize, String)> {
    planned
        .iter()
        .enumerate()
        .filter_map(|(i, p)| p.lock().map(|lock| (i, lock)))
        .filter(|(_, lock)| !lock.release && delayed(&lock.key))
        .map(|(i, lock)| {
            let key = String::from_utf8_lossy(&lock.key);
            (i, format!("failed to lock key {key:?} due to lock delay"))
        })
        .collect()
}

/// The transaction's store request.
fn request(planned: &[Planned]) -> Request {
    Request::txn(TxnRequest {
        compare: planned
            .iter()
            .flat_map(|p| p.condition.compares(&p.key))
            .collect(),
        success: planned.iter().filter_map(|p| p.op.clone()).collect(),
        failure: planned
            .iter()
            .filter(|p| p.condition != Condition::None)
            .map(|p| RangeRequest::key(p.key.clone()).keys_only().into())
            .collect(),
    })
}

/// The answer to an applied transaction. The entry a write answers with is listed only if the
/// caller may read its key (`readable`, one per operation), as Consul filters results by ACL.
fn answer(planned: &[Planned], readable: &[bool], revision: i64, reply: Reply) -> Response {
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
        let errors = conditioned
            .zip(&txn.responses)
            .filter_map(|((i, p), response)| {
                let current = match &response.op {
                    Some(TxnOpResponse::Range(range)) => range.kvs.first(),
                    _ => None,
                };
                p.failure(current).map(|what| (i, what))
            })
            .collect();
        return conflict(errors);
    }
    let mut responses = txn.responses.iter();
    let mut results = Vec::new();
    for (p, &readable) in planned.iter().zip(readable).filter(|(p, _)| p.op.is_some()) {
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
            Some(TxnOpResponse::Put(put)) if readable => {
                // A put keeps the key's lock.
                let prev = put.prev_kv.clone().unwrap_or_default();
                let written = KeyValue {
                    key: p.key.clone(),
                    create_revision: match prev.create_revision {
                        0 => revision,
                        created => created,
                    },
                    mod_revision: revision,
                    flags: p.flags,
                    lock_index: prev.lock_index,
                    session: prev.session,
                    ..KeyValue::default()
                };
                results.push(json!({ "KV": entry_json(&written) }));
            }
            Some(TxnOpResponse::Lock(lock)) if readable => {
                results.extend(lock.kv.iter().map(|kv| json!({ "KV": entry_json(kv) })));
            }
            _ => {}
        }
    }
    Json(json!({ "Results": results, "Errors": null })).into_response()
}

/// Why a transaction is refused before it is proposed.
enum Refusal {
    /// An operation is malformed: 400.
    Malformed(ApiError),
    /// These operations (index, why) cannot succeed: 409.
    Conflict(Vec<(usize, String)>),
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Malformed(e) => e.into_response(),
            Refusal::Conflict(errors) => conflict(errors),
        }
    }
}

/// Plans every operation, refusing the transaction if one is malformed or cannot succeed.
fn plan_all(ops: Vec<TxnOpJson>) -> Result<Vec<Planned>, Refusal> {
    let mut planned = Vec::with_capacity(ops.len());
    let mut refused = Vec::new();
    for (i, op) in ops.into_iter().enumerate() {
        match plan(i, op) {
            Ok(p) => planned.push(p),
            Err(PlanError::Malformed(e)) => return Err(Refusal::Malformed(e)),
            Err(PlanError::Refused(what)) => refused.push((i, what)),
        }
    }
    if refused.is_empty() {
        Ok(planned)
    } else {
        Err(Refusal::Conflict(refused))
    }
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
    let planned = match plan_all(ops) {
        Ok(planned) => planned,
        Err(refusal) => return refusal.into_response(),
    };
    let store_request = request(&planned);
    // With authentication on, the guard let any user through: each key is checked here (a write
    // needs write permission only: the previous value it asks for is not shown).
    let caller = identified.map(|i| i.0.0).unwrap_or_default();
    let mut checked = store_request.clone();
    if let Some(raftkv_kv::Op::Txn(txn)) = &mut checked.op {
        for op in &mut txn.success {
            if let Some(TxnOp::Put(put)) = &mut op.op {
                put.prev_kv = false;
            }
        }
    }
    let permitted = api
        .service
        .read(|state| auth::authorize_request(state, &caller, &checked));
    if let Err(e) = permitted {
        return refused_consul(e);
    }
    let now_ms = api.service.shared().epoch.elapsed().as_millis() as u64;
    let (delayed, readable) = api.service.read(|state| {
        let delayed = lock_delayed(&planned, |key| state.kv.lock_delayed(key, now_ms));
        let no_end = Bytes::new();
        let readable: Vec<bool> = planned
            .iter()
            .map(|p| {
                let need = Need::Keys(Access::Read, &p.key, &no_end);
                auth::authorize(&state.auth, &caller, need).is_ok()
            })
            .collect();
        (delayed, readable)
    });
    if !delayed.is_empty() {
        return conflict(delayed);
    }
    let result = api.service.write(store_request, session).await;
    match result {
        Ok(crate::state::Applied::Kv(response)) => match response.result {
            Ok(reply) => answer(&planned, &readable, response.revision, reply),
            Err(e) => match lock_failure(&planned, &e) {
                Some(failed) => conflict(vec![failed]),
                None => ApiError::from(e).into_response(),
            },
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
                session: String::new(),
            }),
        }
    }

    fn planned(ops: Vec<TxnOpJson>) -> Vec<Planned> {
        ops.into_iter()
            .enumerate()
            .map(|(i, op)| plan(i, op).unwrap())
            .collect()
    }

    #[test]
    fn conditions_become_compares_and_failed_ones_are_named_as_consul_names_them() {
        let planned = planned(vec![
            op("cas", "a", 5),
            op("set", "b", 0),
            op("get", "c", 0),
            op("check-index", "d", 3),
        ]);
        let Some(raftkv_kv::Op::Txn(txn)) = request(&planned).op else {
            panic!("a transaction");
        };
        assert_eq!(
            txn.compare.len(),
            4,
            "cas and get one compare each, check-index two (exists, index); set none"
        );
        assert_eq!(txn.success.len(), 4, "check-index reads its key back");
        assert_eq!(txn.failure.len(), 3, "each conditioned key is read back");
        let current = KeyValue {
            mod_revision: 7,
            ..KeyValue::default()
        };
        let failed = |p: &Planned, current| p.failure(current);
        assert_eq!(
            failed(&planned[0], Some(&current)).as_deref(),
            Some("failed to set key \"a\", index is stale")
        );
        assert_eq!(
            failed(&planned[2], None).as_deref(),
            Some("key \"c\" doesn't exist")
        );
        assert_eq!(
            failed(&planned[3], Some(&current)).as_deref(),
            Some("failed index check for key \"d\", current modify index 7 != 3")
        );
        assert_eq!(
            failed(&planned[3], None).as_deref(),
            Some("failed to check index, key \"d\" doesn't exist")
        );
    }

    #[test]
    fn lock_verbs_become_store_locks_and_check_session_a_session_compare() {
        let with_session = |verb: &str, session: &str| TxnOpJson {
            kv: Some(KvOpJson {
                session: session.into(),
                ..op(verb, "k", 0).kv.unwrap()
            }),
        };
        let uuid = session_uuid(9);
        let planned = planned(vec![
            with_session("lock", &uuid),
            with_session("unlock", &uuid),
            with_session("check-session", &uuid),
        ]);
        let lock = |p: &Planned| match &p.op {
            Some(RequestOp {
                op: Some(TxnOp::Lock(lock)),
            }) => (lock.session, lock.release),
            other => panic!("{other:?}"),
        };
        assert_eq!(lock(&planned[0]), (9, false));
        assert_eq!(lock(&planned[1]), (9, true));
        assert_eq!(planned[2].condition, Condition::CheckSession(9));
        let held_by_other = KeyValue {
            session: 8,
            ..KeyValue::default()
        };
        assert_eq!(
            planned[2].failure(Some(&held_by_other)).as_deref(),
            Some(
                "failed session check for key \"k\", current session \
                 \"00000000-0000-4000-8000-000000000008\" != \"00000000-0000-4000-8000-000000000009\""
            )
        );
        let refused = lock_failure(
            &planned,
            &KvError::LockRefused {
                key: "k".into(),
                release: true,
            },
        );
        assert_eq!(refused.map(|(i, _)| i), Some(1), "the unlock is named");
        let unheld = "failed to unlock key \"k\", lock isn't held, or is held by another session";
        let cases = [
            ("lock", "", "missing session"),
            ("lock", "x", "invalid session \"x\""),
            ("unlock", "", "missing session"),
            ("unlock", "x", unheld),
        ];
        for (verb, session, what) in cases {
            match plan(0, with_session(verb, session)) {
                Err(PlanError::Refused(refused)) => assert_eq!(refused, what, "{verb} {session:?}"),
                other => panic!("{other:?}"),
            }
        }
        let foreign = plan(0, with_session("check-session", "x")).unwrap();
        assert_eq!(
            foreign.failure(Some(&held_by_other)).as_deref(),
            Some(
                "failed session check for key \"k\", current session \
                 \"00000000-0000-4000-8000-000000000008\" != \"x\""
            )
        );
        let ended = lock_failure(&planned, &KvError::LockSessionNotFound { id: 9 });
        assert_eq!(
            ended,
            Some((0, format!("invalid session {uuid:?}"))),
            "a lock by an ended session names it (the first operation of that session)"
        );
        let delayed = lock_delayed(&planned, |key| key == b"k");
        assert_eq!(
            delayed,
            vec![(0, "failed to lock key \"k\" due to lock delay".to_string())],
            "only the acquisition waits out a lock delay"
        );
    }

    #[test]
    fn unknown_verbs_and_other_operations_are_refused_saying_so() {
        match plan(0, op("frobnicate", "k", 0)) {
            Err(PlanError::Malformed(e)) => assert!(e.message().contains("frobnicate")),
            other => panic!("{other:?}"),
        }
        let not_kv = TxnOpJson { kv: None };
        assert!(matches!(plan(0, not_kv), Err(PlanError::Malformed(_))));
    }
}
