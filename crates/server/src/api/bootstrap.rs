//! A node entering a cluster: a new node asks a member to add it (`join`, retried while the
//! cluster is busy), and a follower keeps the registry's record of its own addresses current
//! through the leader (`publisher`; the leader's engine publishes its own).

use std::time::Duration;

use axum::http::StatusCode;

use super::{Api, JoinRequest, JoinResponse};
use crate::error::{Result, ServerError};
use crate::members::Member;
use crate::tls::Tls;

/// How often a follower checks that the registry holds its current addresses.
const PUBLISH_INTERVAL: Duration = Duration::from_secs(1);
/// How long a joining node keeps asking the cluster to add it.
const JOIN_TIMEOUT: Duration = Duration::from_secs(60);

/// Follower: keeps the registry's record of this node current, through the leader.
pub async fn publisher(api: Api) {
    let mut interval = tokio::time::interval(PUBLISH_INTERVAL);
    let me = api.service.me().clone();
    loop {
        interval.tick().await;
        let current = api.service.read(|state| state.registry.get(me.id).cloned());
        if current.as_ref() == Some(&me) {
            continue;
        }
        let Some(url) = api.service.leader_client_url(None) else {
            continue;
        };
        let sent = api
            .as_member(api.http.post(format!("{url}/v1/internal/publish")))
            .json(&me)
            .send()
            .await;
        if let Err(e) = sent {
            tracing::debug!(error = %e, "publishing this node's addresses failed; will retry");
        }
    }
}

/// Asks the cluster (through the member at `url`, which forwards to the leader) to add `me`;
/// retries while the cluster is busy (no leader, a change in flight).
pub async fn join(url: &str, me: &Member, tls: Option<&Tls>) -> Result<JoinResponse> {
    let http = crate::tls::http_client(tls)
        .timeout(Duration::from_secs(15))
        .build()
        .map_err(|e| ServerError::Join(e.to_string()))?;
    let request = JoinRequest {
        name: me.name.clone(),
        peer_url: me.peer_url.clone(),
        client_url: me.client_url.clone(),
    };
    let deadline = tokio::time::Instant::now() + JOIN_TIMEOUT;
    loop {
        let outcome = http
            .post(format!("{url}/v1/members"))
            .json(&request)
            .send()
            .await;
        let retry_reason = match outcome {
            Ok(response) if response.status().is_success() => {
                return response
                    .json::<JoinResponse>()
                    .await
                    .map_err(|e| ServerError::Join(format!("bad answer from {url}: {e}")));
            }
            Ok(response)
                if response.status() == StatusCode::SERVICE_UNAVAILABLE
                    || response.status() == StatusCode::GATEWAY_TIMEOUT =>
            {
                response.text().await.unwrap_or_default()
            }
            Ok(response) => {
                let status = response.status();
                let text = response.text().await.unwrap_or_default();
                return Err(ServerError::Join(format!("{url} refused: {status} {text}")));
            }
            Err(e) => e.to_string(),
        };
        if tokio::time::Instant::now() > deadline {
            return Err(ServerError::Join(format!(
                "gave up after {JOIN_TIMEOUT:?}: {retry_reason}"
            )));
        }
        tracing::info!(via = %url, reason = %retry_reason, "join not done yet; retrying");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
