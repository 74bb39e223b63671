//! Alarms: `GET /v1/alarms` lists the raised ones, `DELETE /v1/alarms` disarms every one (as
//! `etcdctl alarm disarm` does); and the quota watch: the leader raises `NOSPACE` once the
//! store's live bytes pass `--quota-bytes` (checked every [`QUOTA_CHECK_INTERVAL`]; a disarmed
//! alarm over a still-full store is raised again).

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use raftkv_replica::alarms::{Alarm, NOSPACE};
use serde_json::{Value, json};

use super::Api;
use super::forward::Forward;

/// How often the leader compares the store's live bytes with the quota.
pub const QUOTA_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// An alarm as the API shows it.
pub fn alarm_view(alarm: &Alarm) -> Value {
    json!({ "member": alarm.member, "alarm": alarm.name() })
}

/// `GET /v1/alarms`.
pub async fn list(State(api): State<Api>) -> Response {
    let alarms: Vec<Value> = api
        .service
        .read(|state| state.alarms.list().iter().map(alarm_view).collect());
    Json(json!({ "alarms": alarms })).into_response()
}

/// `DELETE /v1/alarms`: clears every raised alarm, through the leader.
pub async fn disarm(State(api): State<Api>, request: Forward) -> Response {
    let raised = api.service.read(|state| state.alarms.list());
    let mut result = Ok(());
    for alarm in &raised {
        if let Err(e) = api.service.alarm(false, *alarm).await {
            result = Err(e);
            break;
        }
    }
    api.answer_or_forward(result, request, |()| {
        Ok(json!({ "disarmed": raised.iter().map(alarm_view).collect::<Vec<_>>() }))
    })
    .await
}

/// The leader's quota watch (runs until the node stops).
pub async fn watch_quota(api: Api) {
    let quota = api.service.config().quota_bytes;
    if quota == 0 {
        return;
    }
    let mut interval = tokio::time::interval(QUOTA_CHECK_INTERVAL);
    loop {
        interval.tick().await;
        let status = api.service.status();
        if status.role != "leader" {
            continue;
        }
        let (live_bytes, raised) = api
            .service
            .read(|state| (state.kv.live_bytes(), state.alarms.no_space()));
        if live_bytes <= quota || raised {
            continue;
        }
        let alarm = Alarm {
            member: status.id,
            kind: NOSPACE,
        };
        match api.service.alarm(true, alarm).await {
            Ok(_) => tracing::warn!(
                live_bytes,
                quota,
                "the storage quota is used up: raised NOSPACE, writes are refused until room is \
                 made and the alarm disarmed"
            ),
            Err(e) => tracing::debug!(error = %e, "could not raise NOSPACE yet"),
        }
    }
}
