//! `GET /v1/status` (this node's view: role, term, leader, indexes, members, health) and
//! `GET /metrics` (Prometheus text).

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::Api;
use super::members::member_views;

/// `GET /v1/status`.
pub async fn status(State(api): State<Api>) -> Response {
    let status = api.service.status();
    let config = api.service.config();
    let stall = config
        .tick
        .checked_mul(config.disk_stall_ticks)
        .unwrap_or(Duration::MAX);
    let sync_running = api.service.shared().sync_running_for();
    let disk_stalled = sync_running.is_some_and(|d| d > stall);
    let members = member_views(
        &api,
        &status.voters,
        &status.voters_outgoing,
        &status.learners,
    );
    let leader_name = status
        .leader
        .and_then(|id| members.iter().find(|m| m.id == id))
        .map(|m| m.name.clone());
    let mut value = serde_json::to_value(&status).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut value {
        map.insert("leader_name".into(), json!(leader_name));
        map.insert("members".into(), json!(members));
        map.insert("disk_stalled".into(), json!(disk_stalled));
        map.insert(
            "healthy".into(),
            json!(!disk_stalled && status.wal_error.is_none() && status.leader.is_some()),
        );
    }
    Json(value).into_response()
}

/// `GET /metrics`.
pub async fn metrics(State(api): State<Api>) -> Response {
    let status = api.service.status();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        api.service.shared().metrics.render(&status),
    )
        .into_response()
}
