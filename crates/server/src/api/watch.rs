//! Watch streams: `GET /v1/watch/{key}[?prefix][&rev=N][&prev]`, a stream of JSON lines, one per
//! batch of events, in revision order, each saying which revisions it covers. The stream ends
//! with an error line if the watch is cancelled (too slow a reader, compaction) or the node stops.
//!
//! Invariants: a stream holds one store watch, cancelled when the stream ends (`WatchGuard`); it
//! waits for the next apply without holding the state lock, and sends a progress line at least
//! every `WATCH_PROGRESS_INTERVAL`.

use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::Api;
use super::error::ApiError;
use super::kv::KvQuery;
use super::render;

/// Events a watch stream takes from the store per poll.
const WATCH_BATCH_EVENTS: usize = 256;
/// A watch stream sends a progress line at least this often, so a client can tell the stream
/// is alive and how far it is complete.
const WATCH_PROGRESS_INTERVAL: Duration = Duration::from_secs(5);

/// Cancels the store's watch when the HTTP stream ends (the client went away).
struct WatchGuard {
    api: Api,
    id: raftkv_kv::WatchId,
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        let id = self.id;
        self.api.service.read(|state| {
            let _ = state.kv.watch_cancel(id);
        });
    }
}

/// `GET /v1/watch/{key}`.
pub async fn watch(
    State(api): State<Api>,
    Path(key): Path<String>,
    Query(query): Query<KvQuery>,
) -> Response {
    let key = bytes::Bytes::copy_from_slice(key.as_bytes());
    let mut request = if query.prefix.is_some() {
        raftkv_kv::WatchRequest::prefix(key)
    } else {
        raftkv_kv::WatchRequest::key(key)
    };
    request.start_revision = query.rev.unwrap_or(0);
    request.prev_kv = query.prev.is_some();
    let id = match api.service.read(|state| state.kv.watch_create(&request)) {
        Ok(id) => id,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let guard = WatchGuard { api, id };
    let lines = futures::stream::unfold(Some(guard), |guard| async move {
        let guard = guard?;
        let shared = guard.api.service.shared().clone();
        let mut stopping = shared.stopping.subscribe();
        loop {
            if *stopping.borrow_and_update() {
                let line = format!("{}\n", json!({ "error": "the node is shutting down" }));
                return Some((Ok(line), None));
            }
            // Register for the next apply before polling, so no batch is missed in between.
            let applied = shared.applied.notified();
            tokio::pin!(applied);
            applied.as_mut().enable();
            let polled = guard
                .api
                .service
                .read(|state| state.kv.watch_poll(guard.id, WATCH_BATCH_EVENTS));
            match polled {
                Ok(Some(response)) => {
                    let line = format!("{}\n", render::watch_json(&response));
                    return Some((Ok::<_, std::convert::Infallible>(line), Some(guard)));
                }
                Ok(None) => {
                    tokio::select! {
                        woken = tokio::time::timeout(WATCH_PROGRESS_INTERVAL, applied) => {
                            if woken.is_err() {
                                // Idle: a progress line says the stream is alive and complete
                                // up to the store's revision.
                                let revision = guard.api.service.read(|state| state.kv.revision());
                                let line = format!(
                                    "{}\n",
                                    json!({ "progress": true, "revision": revision })
                                );
                                return Some((Ok(line), Some(guard)));
                            }
                        }
                        _ = stopping.changed() => {}
                    }
                }
                Err(e) => {
                    let line = format!("{}\n", json!({ "error": e.to_string() }));
                    return Some((Ok(line), None));
                }
            }
        }
    });
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        axum::body::Body::from_stream(lines),
    )
        .into_response()
}
