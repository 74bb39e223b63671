//! Forwarding to the leader: a request a follower cannot serve (a write, a keep-alive, a
//! membership change) is sent on to the leader as it came, and the leader's answer relayed.
//!
//! Invariant: a forwarded request carries `FORWARDED_HEADER` and is never forwarded again (a
//! node that is not the leader either answers 503 or, during a leadership change, would bounce
//! it around).

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Json, Response};
use raftkv_raft::NodeId;
use serde_json::Value;

use super::Api;
use super::auth::{CONSUL_TOKEN_HEADER, MEMBER_TOKEN_HEADER};
use super::error::ApiError;
use super::session::{CLIENT_ID_HEADER, SEQUENCE_HEADER};
use crate::error::RequestError;
use crate::metrics::Metrics;

/// Header marking a request forwarded by another node.
pub const FORWARDED_HEADER: &str = "x-raftkv-forwarded";

/// Headers a forwarded request keeps (beyond the body).
const FORWARDED_HEADERS: [&str; 6] = [
    CLIENT_ID_HEADER,
    SEQUENCE_HEADER,
    "content-type",
    "authorization",
    CONSUL_TOKEN_HEADER,
    MEMBER_TOKEN_HEADER,
];

/// A request as it came, kept so it can be forwarded to the leader.
pub struct Forward {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

impl<S: Send + Sync> FromRequest<S> for Forward {
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let method = request.method().clone();
        let uri = request.uri().clone();
        let headers = request.headers().clone();
        let body = Bytes::from_request(request, state)
            .await
            .map_err(IntoResponse::into_response)?;
        Ok(Forward {
            method,
            uri,
            headers,
            body,
        })
    }
}

impl Api {
    /// Answers with `result`, or forwards the request to the leader when this node is not it.
    pub async fn answer_or_forward<T>(
        &self,
        result: Result<T, RequestError>,
        request: Forward,
        render: impl FnOnce(T) -> Result<Value, ApiError>,
    ) -> Response {
        match result {
            Ok(value) => match render(value) {
                Ok(json) => Json(json).into_response(),
                Err(e) => e.into_response(),
            },
            Err(RequestError::NotLeader { leader }) => self.forward(leader, request).await,
            Err(e) => ApiError::from(e).into_response(),
        }
    }

    /// Sends the request on to the leader and relays its answer.
    pub(super) async fn forward(&self, leader: Option<NodeId>, request: Forward) -> Response {
        if request.headers.contains_key(FORWARDED_HEADER) {
            return ApiError::unavailable("leadership is moving; retry shortly").into_response();
        }
        let Some(url) = self.service.leader_client_url(leader) else {
            return ApiError::from(RequestError::NotLeader { leader }).into_response();
        };
        Metrics::bump(&self.service.shared().metrics.forwarded);
        let path = request
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let mut outgoing = self
            .http
            .request(request.method, format!("{url}{path}"))
            .header(FORWARDED_HEADER, "1");
        for name in FORWARDED_HEADERS {
            if let Some(value) = request.headers.get(name) {
                outgoing = outgoing.header(name, value);
            }
        }
        match outgoing.body(request.body).send().await {
            Ok(response) => {
                let status = response.status();
                let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
                let retry_after = response.headers().get(header::RETRY_AFTER).cloned();
                match response.bytes().await {
                    Ok(bytes) => {
                        let mut out = (status, bytes).into_response();
                        if let Some(v) = content_type {
                            out.headers_mut().insert(header::CONTENT_TYPE, v);
                        }
                        if let Some(v) = retry_after {
                            out.headers_mut().insert(header::RETRY_AFTER, v);
                        }
                        out
                    }
                    Err(e) => ApiError::outcome_unknown(format!(
                        "the leader did not finish answering: {}; outcome unknown",
                        e.without_url()
                    ))
                    .into_response(),
                }
            }
            // The request's query may carry a token (`?token=`): errors name the leader only.
            Err(e) if e.is_connect() => ApiError::unavailable(format!(
                "cannot reach the leader at {url}: {}",
                e.without_url()
            ))
            .into_response(),
            Err(e) => ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "outcome_unknown",
                format!(
                    "forwarding to the leader at {url} failed: {}; outcome unknown",
                    e.without_url()
                ),
            )
            .into_response(),
        }
    }
}
