//! `GET /v1/status` (this node's view: role, term, leader, indexes, members, health, version),
//! `GET /health` (the process serves), `GET /ready` (it can serve reads and writes: a leader is
//! known, everything committed is applied, the disk is healthy) and `GET /metrics` (Prometheus
//! text).

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::Api;
use super::members::member_views;

/// This build's version, as `/v1/status` reports it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Whether a WAL sync has been running longer than the stall limit.
fn disk_stalled(api: &Api) -> bool {
    let config = api.service.config();
    let stall = config
        .tick
        .checked_mul(config.disk_stall_ticks)
        .unwrap_or(Duration::MAX);
    let sync_running = api.service.shared().sync_running_for();
    sync_running.is_some_and(|d| d > stall)
}

/// `GET /health`: 200 while the process serves HTTP at all (a liveness probe).
pub async fn health() -> Response {
    Json(json!({ "health": true })).into_response()
}

/// `GET /ready`: 200 when this node can serve reads and writes, 503 with the reason otherwise (a
/// readiness probe: a load balancer sends clients elsewhere meanwhile).
pub async fn ready(State(api): State<Api>) -> Response {
    let status = api.service.status();
    let reason = if let Some(error) = &status.wal_error {
        Some(format!("the write-ahead log failed: {error}"))
    } else if disk_stalled(&api) {
        Some("a disk sync is stalled".to_string())
    } else if status.leader.is_none() {
        Some("no leader is known (an election is under way, or no quorum)".to_string())
    } else if status.applied_index < status.commit_index {
        Some(format!(
            "applied up to {} of {} committed entries; catching up",
            status.applied_index, status.commit_index
        ))
    } else {
        None
    };
    match reason {
        None => Json(json!({ "ready": true })).into_response(),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "ready": false, "reason": reason })),
        )
            .into_response(),
    }
}

/// `GET /v1/status`.
pub async fn status(State(api): State<Api>) -> Response {
    let status = api.service.status();
    let disk_stalled = disk_stalled(&api);
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
        map.insert("version".into(), json!(VERSION));
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
    let (keys, live_bytes, leases, watchers) = api.service.read(|state| {
        (
            state.kv.len(),
            state.kv.live_bytes(),
            state.kv.lease_ids().len(),
            state.kv.watch_count(),
        )
    });
    let observed = &api.service.shared().metrics.observed;
    observed.keys.set(i64::try_from(keys).unwrap_or(i64::MAX));
    observed
        .live_bytes
        .set(i64::try_from(live_bytes).unwrap_or(i64::MAX));
    observed
        .leases
        .set(i64::try_from(leases).unwrap_or(i64::MAX));
    observed
        .watchers
        .set(i64::try_from(watchers).unwrap_or(i64::MAX));
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        api.service.shared().metrics.render(&status),
    )
        .into_response()
}

/// A member's Raft address as Consul shows it: its peer URL's `host:port`.
fn raft_address(api: &Api, id: raftkv_raft::NodeId) -> Option<String> {
    let url = api
        .service
        .read(|state| state.registry.get(id).map(|m| m.peer_url.clone()))?;
    crate::config::host_port(&url).ok()
}

/// `GET /v1/status/leader` (Consul's): the leader's Raft address, `""` when none is known.
pub async fn consul_leader(State(api): State<Api>) -> Json<String> {
    let leader = api.service.status().leader;
    Json(
        leader
            .and_then(|id| raft_address(&api, id))
            .unwrap_or_default(),
    )
}

/// `GET /v1/status/peers` (Consul's): the voters' Raft addresses.
pub async fn consul_peers(State(api): State<Api>) -> Json<Vec<String>> {
    let voters = api.service.status().voters;
    Json(
        voters
            .into_iter()
            .filter_map(|id| raft_address(&api, id))
            .collect(),
    )
}
