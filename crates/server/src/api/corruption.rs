//! The corruption check's HTTP side (see `corrupt_check`): `GET /v1/internal/hash` lists this
//! member's latest check-point hashes, and the leader's round gathers them from every member and
//! raises `CORRUPT` for each one outside the majority.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use raftkv_raft::NodeId;
use raftkv_replica::alarms::{Alarm, CORRUPT};
use serde_json::json;

use super::Api;
use crate::corrupt_check::{Checkpoint, verdict};

/// `GET /v1/internal/hash`: this member's latest check-point hashes, oldest first.
pub async fn hashes(State(api): State<Api>) -> Response {
    Json(json!({ "checkpoints": api.service.shared().checkpoints.list() })).into_response()
}

/// Leader: every `corrupt_check_interval`, compares the members' hashes at its latest check
/// point, then proposes the next check point (run as a task).
pub async fn check_corruption(api: Api) {
    let every = api.service.config().corrupt_check_interval;
    if every.is_zero() {
        return;
    }
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let status = api.service.status();
        if status.role != "leader" {
            continue;
        }
        if let Some(latest) = api.service.shared().checkpoints.latest() {
            compare(&api, latest, status.id).await;
        }
        if let Err(e) = api.service.hash_check().await {
            tracing::debug!(error = %e, "could not propose a corruption check point");
        }
    }
}

/// Gathers the members' hashes at `latest` (a member that has not hashed it yet is left out)
/// and raises `CORRUPT` for each member outside the majority.
async fn compare(api: &Api, latest: Checkpoint, leader: NodeId) {
    let (members, raised) = api.service.read(|state| {
        let members: Vec<(NodeId, String)> = state
            .registry
            .members()
            .filter(|m| m.id != leader && !m.client_url.is_empty())
            .map(|m| (m.id, m.client_url.clone()))
            .collect();
        (members, state.alarms.list())
    });
    let mut hashes = BTreeMap::from([(leader, latest.hash)]);
    for (id, url) in members {
        let asked = api
            .as_member(api.http.get(format!("{url}/v1/internal/hash")))
            .send()
            .await
            .and_then(|r| r.error_for_status());
        let listed = match asked {
            Ok(response) => response.json::<serde_json::Value>().await.ok(),
            Err(e) => {
                tracing::debug!(member = id, error = %e, "no corruption-check hashes from member");
                None
            }
        };
        let found = listed
            .and_then(|l| serde_json::from_value::<Vec<Checkpoint>>(l["checkpoints"].clone()).ok())
            .and_then(|kept| kept.into_iter().find(|c| c.index == latest.index));
        if let Some(checkpoint) = found {
            hashes.insert(id, checkpoint.hash);
        }
    }
    for member in verdict(&hashes, leader) {
        let alarm = Alarm {
            member,
            kind: CORRUPT,
        };
        if raised.contains(&alarm) {
            continue;
        }
        tracing::error!(
            member = format!("{member:x}"),
            index = latest.index,
            ?hashes,
            "member's state differs from the majority's: raising CORRUPT, writes stop until it is \
             rebuilt and the alarm disarmed"
        );
        if let Err(e) = api.service.alarm(true, alarm).await {
            tracing::warn!(error = %e, "could not raise CORRUPT yet");
        }
    }
}
