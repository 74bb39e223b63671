//! Leases: `POST /v1/lease?ttl=S` grants, `DELETE /v1/lease/{id}` revokes (both through the
//! log), `POST /v1/lease/{id}/keepalive` renews on the leader (outside the log, as in etcd).

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use raftkv_kv::Request;
use serde::Deserialize;
use serde_json::json;

use crate::auth;

use super::Api;
use super::auth::{Identified, refused};
use super::error::ApiError;
use super::forward::Forward;
use super::render;
use super::session::SessionHeaders;

/// Query of `POST /v1/lease`.
#[derive(Debug, Deserialize)]
pub struct LeaseQuery {
    /// Time to live in seconds.
    ttl: u64,
}

/// `POST /v1/lease?ttl=S`.
pub async fn grant(
    State(api): State<Api>,
    Query(query): Query<LeaseQuery>,
    SessionHeaders(session): SessionHeaders,
    request: Forward,
) -> Response {
    let Some(ttl_ms) = query.ttl.checked_mul(1000).filter(|&ms| ms > 0) else {
        return ApiError::bad_request("?ttl must be a number of seconds above 0").into_response();
    };
    let result = api
        .service
        .write(Request::lease_grant(0, ttl_ms), session)
        .await;
    api.answer_or_forward(result, request, render::lease_grant_answer)
        .await
}

/// `DELETE /v1/lease/{id}`. With authentication on, the caller must be allowed to write every
/// key the revoke deletes.
pub async fn revoke(
    State(api): State<Api>,
    identified: Option<axum::Extension<Identified>>,
    Path(id): Path<i64>,
    SessionHeaders(session): SessionHeaders,
    request: Forward,
) -> Response {
    let caller = identified.map(|i| i.0.0).unwrap_or_default();
    let revoke = Request::lease_revoke(id);
    let permitted = api
        .service
        .read(|state| auth::authorize_request(state, &caller, &revoke));
    if let Err(e) = permitted {
        return refused(e);
    }
    let result = api.service.write(revoke, session).await;
    api.answer_or_forward(result, request, render::lease_revoke_answer)
        .await
}

/// `POST /v1/lease/{id}/keepalive`.
pub async fn keep_alive(State(api): State<Api>, Path(id): Path<i64>, request: Forward) -> Response {
    let result = api.service.keep_alive(id).await;
    api.answer_or_forward(result, request, |renewed| match renewed {
        Ok(ttl_ms) => Ok(json!({ "id": id, "ttl_ms": ttl_ms })),
        Err(e) => Err(ApiError::from(e)),
    })
    .await
}
