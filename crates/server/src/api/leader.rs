//! `POST /v1/leader/transfer` with `{"to": NAME}`: hands leadership to that voter (etcd's
//! `move-leader`), answered once it leads or refused with why; sent to a follower, it goes on to
//! the leader.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::Api;
use super::error::ApiError;
use super::forward::Forward;

/// The body of a transfer.
#[derive(Deserialize)]
struct TransferRequest {
    /// The voter to lead next: its name or node id.
    to: String,
}

/// `POST /v1/leader/transfer`.
pub async fn transfer(State(api): State<Api>, request: Forward) -> Response {
    let transfer: TransferRequest = match serde_json::from_slice(&request.body) {
        Ok(r) => r,
        Err(e) => {
            return ApiError::bad_request(format!(
                "bad transfer: {e}; expected {{\"to\": \"member name\"}}"
            ))
            .into_response();
        }
    };
    let target = api.service.read(|state| {
        state
            .registry
            .by_name(&transfer.to)
            .map(|m| m.id)
            .or_else(|| transfer.to.parse().ok())
    });
    let Some(target) = target else {
        return ApiError::not_found(format!("no member named `{}`", transfer.to)).into_response();
    };
    let result = api.service.transfer_leader(target).await;
    api.answer_or_forward(result, request, |()| {
        Ok(json!({ "leader": transfer.to, "id": target }))
    })
    .await
}
