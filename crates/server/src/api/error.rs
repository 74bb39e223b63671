//! Errors as the HTTP API shows them: `{"error": message, "code": code}` with a status chosen for
//! every request error and store error, `Retry-After` on a 503 (the only status a client retries
//! blindly: the request did not take effect).

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use raftkv_kv::KvError;
use serde_json::json;

use crate::error::RequestError;

/// Seconds clients are told to wait before retrying a 503.
const RETRY_AFTER_SECS: &str = "1";

/// Marks a response that must go out as it is, even as an error (Consul's empty 404 for a
/// missing key, which its clients expect).
#[derive(Clone, Copy, Debug)]
pub struct Verbatim;

/// A JSON error response.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    /// An error of `status`, with a `code` clients can match on.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// What went wrong, for a client.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 503: retry shortly.
    pub fn unavailable(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    /// 504: the outcome is unknown.
    pub fn outcome_unknown(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::GATEWAY_TIMEOUT, "outcome_unknown", message)
    }
}

impl From<RequestError> for ApiError {
    fn from(error: RequestError) -> Self {
        let message = error.to_string();
        match error {
            RequestError::NotLeader { .. } => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "no_leader",
                "no leader is known right now; retry shortly",
            ),
            RequestError::Unavailable(_) => ApiError::unavailable(message),
            RequestError::NotCommitted => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_committed", message)
            }
            RequestError::Unknown(_) => ApiError::outcome_unknown(message),
            RequestError::TooLarge(_) => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", message)
            }
            RequestError::Invalid(_) => ApiError::bad_request(message),
            RequestError::NoSpace => {
                ApiError::new(StatusCode::INSUFFICIENT_STORAGE, "no_space", message)
            }
            RequestError::Corrupt => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "corrupt", message)
            }
            RequestError::Conflict(_)
            | RequestError::NotALearner(_)
            | RequestError::LearnerBehind(_) => {
                ApiError::new(StatusCode::CONFLICT, "conflict", message)
            }
        }
    }
}

impl From<KvError> for ApiError {
    fn from(error: KvError) -> Self {
        let message = error.to_string();
        match error {
            KvError::KeyTooLarge { .. }
            | KvError::ValueTooLarge { .. }
            | KvError::RequestTooLarge { .. }
            | KvError::RangeTooLarge { .. }
            | KvError::TooManyOps { .. } => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", message)
            }
            KvError::LeaseNotFound { .. } | KvError::WatchNotFound { .. } => {
                ApiError::not_found(message)
            }
            KvError::SessionNotFound { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, "session_not_found", message)
            }
            KvError::StaleSequence { .. } => {
                ApiError::new(StatusCode::CONFLICT, "stale_sequence", message)
            }
            // Hard limits: retrying at once does not help (429, not a retryable 503).
            // Consul answers an acquire by an unknown session with a 500 "invalid session".
            KvError::LockSessionNotFound { .. } => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "invalid_session",
                message,
            ),
            KvError::LeaseLimit { .. }
            | KvError::SessionLimit { .. }
            | KvError::LockSessionLimit { .. }
            | KvError::WatchLimit { .. } => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "limit_reached", message)
            }
            _ => ApiError::bad_request(message),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(json!({ "error": self.message, "code": self.code })),
        )
            .into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECS),
            );
        }
        response
    }
}

/// Turns the HTTP layer's own plain-text errors (a body over the limit, an unparsable query or
/// path) into the API's JSON error shape.
pub async fn json_errors(response: Response) -> Response {
    if response.extensions().get::<Verbatim>().is_some() {
        return response;
    }
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let text = axum::body::to_bytes(response.into_body(), 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let code = match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        _ => "error",
    };
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        text
    };
    ApiError::new(status, code, message).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every request error has its own status and code, and a client may retry exactly the
    /// 503s (not a 400 or a 409, which would fail again).
    #[test]
    fn every_request_error_maps_to_a_deliberate_status() {
        let table = [
            (RequestError::NotLeader { leader: None }, 503, "no_leader"),
            (RequestError::Unavailable("x".into()), 503, "unavailable"),
            (RequestError::NotCommitted, 503, "not_committed"),
            (RequestError::Unknown("x".into()), 504, "outcome_unknown"),
            (RequestError::TooLarge("x".into()), 413, "too_large"),
            (RequestError::Invalid("x".into()), 400, "bad_request"),
            (RequestError::Conflict("x".into()), 409, "conflict"),
            (RequestError::NotALearner(1), 409, "conflict"),
            (RequestError::LearnerBehind(1), 409, "conflict"),
        ];
        for (error, status, code) in table {
            let shown = error.to_string();
            let api = ApiError::from(error);
            assert_eq!(api.status.as_u16(), status, "{shown}");
            assert_eq!(api.code, code, "{shown}");
        }
    }

    #[test]
    fn a_hard_limit_is_a_429_not_a_retryable_503() {
        let limit = ApiError::from(KvError::WatchLimit { max: 1 });
        assert_eq!((limit.status.as_u16(), limit.code), (429, "limit_reached"));
    }

    #[test]
    fn session_errors_tell_the_client_what_to_do() {
        let gone = ApiError::from(KvError::SessionNotFound { client_id: 4 });
        assert_eq!(
            (gone.status.as_u16(), gone.code),
            (404, "session_not_found")
        );
        let stale = ApiError::from(KvError::StaleSequence {
            client_id: 4,
            seq: 1,
            last_seq: 2,
        });
        assert_eq!((stale.status.as_u16(), stale.code), (409, "stale_sequence"));
    }
}
