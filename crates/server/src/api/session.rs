//! Client sessions over HTTP (exactly-once writes, Raft dissertation §6.3). A client opens a
//! session (`POST /v1/session` answers `{"client_id": N}`), then sends each write with two
//! headers: `X-Raftkv-Client-Id: N` and `X-Raftkv-Sequence: S`, S starting at 1 and increasing by
//! one per new write. A write retried with the same S (after a timeout, a 503, a lost
//! connection, a leader that died mid-request) is applied at most once: the retry gets the first
//! answer. A session closes with `DELETE /v1/session/{id}`, or expires after
//! `Limits::session_idle_entries_max` log entries without a request from it; a write of an
//! unknown session gets 404 `session_not_found` (its outcome is unknown: open a new session).

use axum::extract::{FromRequestParts, Path, State};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use raftkv_kv::Request;

use super::Api;
use super::error::ApiError;
use super::forward::Forward;
use super::render;
use crate::service::ClientSession;

/// Header carrying a write's client session id.
pub const CLIENT_ID_HEADER: &str = "x-raftkv-client-id";
/// Header carrying a write's sequence number in its session.
pub const SEQUENCE_HEADER: &str = "x-raftkv-sequence";

/// The client session a write's headers name, if any; both headers or neither.
pub fn client_session(headers: &HeaderMap) -> Result<Option<ClientSession>, ApiError> {
    let number = |name: &str| -> Result<Option<u64>, ApiError> {
        let Some(value) = headers.get(name) else {
            return Ok(None);
        };
        value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|&n| n > 0)
            .map(Some)
            .ok_or_else(|| ApiError::bad_request(format!("{name} must be a number above 0")))
    };
    match (number(CLIENT_ID_HEADER)?, number(SEQUENCE_HEADER)?) {
        (Some(client_id), Some(seq)) => Ok(Some(ClientSession { client_id, seq })),
        (None, None) => Ok(None),
        _ => Err(ApiError::bad_request(format!(
            "a session write needs both {CLIENT_ID_HEADER} and {SEQUENCE_HEADER}"
        ))),
    }
}

/// The client session a write's headers name, as an extractor (a malformed pair is a 400).
pub struct SessionHeaders(pub Option<ClientSession>);

impl<S: Send + Sync> FromRequestParts<S> for SessionHeaders {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        client_session(&parts.headers).map(SessionHeaders)
    }
}

/// `POST /v1/session`: opens a client session.
pub async fn open(State(api): State<Api>, request: Forward) -> Response {
    let result = api.service.write(Request::session_open(), None).await;
    api.answer_or_forward(result, request, render::session_open_answer)
        .await
}

/// `DELETE /v1/session/{id}`: closes a client session.
pub async fn close(State(api): State<Api>, Path(id): Path<u64>, request: Forward) -> Response {
    if id == 0 {
        return ApiError::bad_request("session ids start at 1").into_response();
    }
    let result = api.service.write(Request::session_expire(id), None).await;
    api.answer_or_forward(result, request, render::session_close_answer)
        .await
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn a_session_write_needs_both_headers_as_positive_numbers() {
        let mut headers = HeaderMap::new();
        assert_eq!(client_session(&headers).unwrap(), None);
        headers.insert(CLIENT_ID_HEADER, HeaderValue::from_static("7"));
        assert!(client_session(&headers).is_err());
        headers.insert(SEQUENCE_HEADER, HeaderValue::from_static("3"));
        assert_eq!(
            client_session(&headers).unwrap(),
            Some(ClientSession {
                client_id: 7,
                seq: 3
            })
        );
        headers.insert(SEQUENCE_HEADER, HeaderValue::from_static("0"));
        assert!(client_session(&headers).is_err());
        headers.insert(SEQUENCE_HEADER, HeaderValue::from_static("x"));
        assert!(client_session(&headers).is_err());
    }
}
