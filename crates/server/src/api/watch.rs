//! Watch streams: `GET /v1/watch/{key}[?prefix][&rev=N][&prev]`, a stream of JSON lines, one per
//! batch of events, in revision order, each saying which revisions it covers. The stream ends
//! with an error line if the watch is cancelled (compaction overtook it) or the node stops.
//!
//! Limits: `watches_max` per node (the store's, 10,000) and `--watches-per-client-max` per client
//! address (1,024); beyond either the answer is a 429 `limit_reached`.
//!
//! Invariants: a stream holds one store watch, cancelled when the stream ends (`WatchGuard`), and
//! one of its client's slots; its lines come from the node's `WatchPump` (so a stream never takes
//! the state lock to wait for events), and it sends a progress line after
//! `WATCH_PROGRESS_INTERVAL` without one.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::json;

use super::Api;
use super::error::ApiError;
use super::watch_pump::{ClientSlot, Line, WatchPump};

/// A watch stream sends a progress line at least this often, so a client can tell the stream
/// is alive and how far it is complete.
const WATCH_PROGRESS_INTERVAL: Duration = Duration::from_secs(5);

/// Cancels the store's watch, stops its feed and frees its client's slot when the HTTP stream
/// (or blocking query) ends.
pub(super) struct WatchGuard {
    api: Api,
    id: raftkv_kv::WatchId,
    _slot: ClientSlot,
}

impl WatchGuard {
    /// Guards watch `id`, fed by `api`'s pump, counted in `slot`.
    pub(super) fn new(api: Api, id: raftkv_kv::WatchId, slot: ClientSlot) -> Self {
        WatchGuard {
            api,
            id,
            _slot: slot,
        }
    }
}

/// Query parameters of a watch stream.
#[derive(Debug, Default, serde::Deserialize)]
pub struct WatchQuery {
    /// Watch every key under the given one.
    prefix: Option<String>,
    /// Also every key under it (Consul's word).
    recurse: Option<String>,
    /// Include each event's previous key-value.
    prev: Option<String>,
    /// Watch from this revision (0 or absent: changes after now).
    rev: Option<i64>,
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        let id = self.id;
        self.api.watches.unregister(id);
        self.api.service.read(|state| {
            let _ = state.kv.watch_cancel(id);
        });
    }
}

/// `GET /v1/watch/{key}`.
pub async fn watch(
    State(api): State<Api>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    Path(key): Path<String>,
    Query(query): Query<WatchQuery>,
) -> Response {
    let key = bytes::Bytes::copy_from_slice(key.as_bytes());
    let mut request = if query.prefix.is_some() || query.recurse.is_some() {
        raftkv_kv::WatchRequest::prefix(key)
    } else {
        raftkv_kv::WatchRequest::key(key)
    };
    request.start_revision = query.rev.unwrap_or(0);
    request.prev_kv = query.prev.is_some();
    let per_client_max = api.service.config().watches_per_client_max;
    let slot = match api.watches.admit(client.ip(), per_client_max) {
        Ok(slot) => slot,
        Err(e) => return e.into_response(),
    };
    let id = match api.service.read(|state| state.kv.watch_create(&request)) {
        Ok(id) => id,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let (lines_out, lines_in) = WatchPump::channel();
    api.watches.register(id, lines_out);
    let stopping = api.service.shared().stopping.subscribe();
    let guard = WatchGuard {
        api,
        id,
        _slot: slot,
    };
    let lines = futures::stream::unfold(Some((guard, lines_in)), move |open| {
        let mut stopping = stopping.clone();
        async move {
            let (guard, mut lines_in) = open?;
            if *stopping.borrow_and_update() {
                return Some((Ok(shutting_down()), None));
            }
            let line = tokio::select! {
                line = tokio::time::timeout(WATCH_PROGRESS_INTERVAL, lines_in.recv()) => line,
                _ = stopping.changed() => return Some((Ok(shutting_down()), None)),
            };
            match line {
                Ok(Some((_, Line::Events(batch)))) => Some((
                    Ok::<_, std::convert::Infallible>(batch.json_line()),
                    Some((guard, lines_in)),
                )),
                Ok(Some((_, Line::End(error)))) => {
                    let line = format!("{}\n", json!({ "error": error.to_string() }));
                    Some((Ok(line.into()), None))
                }
                Ok(None) => None,
                Err(_) => {
                    // Idle: a progress line says the stream is alive and complete up to the
                    // store's revision.
                    let revision = guard.api.service.read(|state| state.kv.revision());
                    let line = format!("{}\n", json!({ "progress": true, "revision": revision }));
                    Some((Ok(line.into()), Some((guard, lines_in))))
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

fn shutting_down() -> Bytes {
    format!("{}\n", json!({ "error": "the node is shutting down" })).into()
}
