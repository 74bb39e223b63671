//! Key-value reads and writes: `GET`, `PUT` and `DELETE /v1/kv/{key}`, and listing.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::Api;
use super::error::ApiError;
use super::forward::Forward;
use super::render;
use super::session::SessionHeaders;
use crate::service::Consistency;

/// Query flags of the key-value routes.
#[derive(Debug, Default, Deserialize)]
pub struct KvQuery {
    /// Return the bare value.
    raw: Option<String>,
    /// Treat the key as a prefix.
    pub prefix: Option<String>,
    /// linearizable, lease or stale.
    consistency: Option<String>,
    /// Consul-style flag for `consistency=stale`.
    stale: Option<String>,
    /// Consul-style flag for `consistency=linearizable`.
    consistent: Option<String>,
    /// Most keys to list.
    limit: Option<u64>,
    /// List from this key on (a previous page's `next`).
    start: Option<String>,
    /// Read at this revision (a previous page's `revision`).
    revision: Option<i64>,
    /// List keys without their values.
    keys_only: Option<String>,
    /// Only count the keys.
    count_only: Option<String>,
    /// Return the previous pair of a put or delete.
    pub prev: Option<String>,
    /// Compare-and-swap: put only if the key's mod_revision equals this (0: only if absent).
    cas: Option<i64>,
    /// Attach the key to this lease.
    lease: Option<i64>,
    /// Watch from this revision (0 or absent: changes after now).
    pub rev: Option<i64>,
}

fn consistency(query: &KvQuery) -> Result<Consistency, ApiError> {
    if query.stale.is_some() {
        return Ok(Consistency::Stale);
    }
    if query.consistent.is_some() {
        return Ok(Consistency::Linearizable);
    }
    match query.consistency.as_deref() {
        None | Some("linearizable") | Some("consistent") => Ok(Consistency::Linearizable),
        Some("lease") | Some("default") => Ok(Consistency::Lease),
        Some("stale") | Some("serializable") => Ok(Consistency::Stale),
        Some(other) => Err(ApiError::bad_request(format!(
            "consistency `{other}` is not one of linearizable, lease, stale"
        ))),
    }
}

/// `GET /v1/kv/{key}`.
pub async fn get_kv(
    State(api): State<Api>,
    Path(key): Path<String>,
    Query(query): Query<KvQuery>,
) -> Response {
    read_kv(api, key, query).await
}

/// `GET /v1/kv`: every key.
pub async fn list_all(State(api): State<Api>, Query(mut query): Query<KvQuery>) -> Response {
    query.prefix = Some(String::new());
    read_kv(api, String::new(), query).await
}

async fn read_kv(api: Api, key: String, query: KvQuery) -> Response {
    let consistency = match consistency(&query) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    if key.is_empty() && query.prefix.is_none() {
        return ApiError::bad_request("empty key; give a key, or ?prefix to list").into_response();
    }
    if let Err(e) = api.service.read_barrier(consistency).await {
        return ApiError::from(e).into_response();
    }
    if query.prefix.is_some() {
        let page = render::Page {
            start: query.start.clone(),
            limit: query.limit,
            revision: query.revision,
            keys_only: query.keys_only.is_some(),
            count_only: query.count_only.is_some(),
        };
        let listed = api
            .service
            .read(|state| render::list(&state.kv, key.as_bytes(), &page));
        return match listed {
            Ok(value) => Json(value).into_response(),
            Err(e) => e.into_response(),
        };
    }
    match api
        .service
        .read(|state| render::get(&state.kv, key.as_bytes()))
    {
        Ok(Some(found)) if query.raw.is_some() => (
            [(header::CONTENT_TYPE, "application/octet-stream")],
            found.value,
        )
            .into_response(),
        Ok(Some(found)) => Json(found.json).into_response(),
        Ok(None) => ApiError::not_found(format!("key `{key}` not found")).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `PUT /v1/kv/{key}`: a put, or a compare-and-swap with `?cas=N`.
pub async fn put_kv(
    State(api): State<Api>,
    Path(key): Path<String>,
    Query(query): Query<KvQuery>,
    SessionHeaders(session): SessionHeaders,
    request: Forward,
) -> Response {
    let value = request.body.clone();
    let (store_request, answer): (_, fn(_) -> _) = match query.cas {
        Some(expected) => (
            render::cas_request(key.as_bytes(), value, expected),
            render::cas_answer,
        ),
        None => (
            render::put_request(
                key.as_bytes(),
                value,
                query.prev.is_some(),
                query.lease.unwrap_or(0),
            ),
            render::put_answer,
        ),
    };
    let result = api.service.write(store_request, session).await;
    api.answer_or_forward(result, request, answer).await
}

/// `DELETE /v1/kv/{key}`: a delete of a key, or of a prefix with `?prefix`.
pub async fn delete_kv(
    State(api): State<Api>,
    Path(key): Path<String>,
    Query(query): Query<KvQuery>,
    SessionHeaders(session): SessionHeaders,
    request: Forward,
) -> Response {
    let store_request =
        render::delete_request(key.as_bytes(), query.prefix.is_some(), query.prev.is_some());
    let result = api.service.write(store_request, session).await;
    api.answer_or_forward(result, request, render::delete_answer)
        .await
}
