//! The HTTP/JSON client API (axum), and forwarding to the leader.
//!
//! | route | what |
//! |---|---|
//! | `PUT /v1/kv/{key}` | set a key (body = value); `?prev` returns the previous pair; `?cas=N` only if its mod_revision is N (0: absent) |
//! | `GET /v1/kv/{key}` | read a key; `?raw` gives the bare value; `?prefix` lists a prefix |
//! | `DELETE /v1/kv/{key}` | delete a key; `?prefix` deletes a prefix |
//! | `POST /v1/lease?ttl=S` | grant a lease of S seconds; `PUT /v1/kv/{key}?lease=ID` attaches keys |
//! | `POST /v1/lease/{id}/keepalive`, `DELETE /v1/lease/{id}` | renew (on the leader), revoke |
//! | `GET /v1/watch/{key}` | a stream of JSON lines of changes; `?prefix`, `&rev=N` to start in the past, `&prev` |
//! | `GET /v1/status` | this node's view: role, term, leader, indexes, members |
//! | `GET /v1/members`, `POST /v1/members` | list members; join (a new node calls it) |
//! | `DELETE /v1/members/{name}` | remove a member (voter or learner) |
//! | `POST /v1/internal/publish` | a member records its addresses through the leader |
//! | `GET /metrics` | Prometheus text: term, indexes, role, counters |
//!
//! Reads take `?consistency=linearizable` (the default: a ReadIndex round, also on followers),
//! `lease` (the leader's lease, no round trip) or `stale` (this node's applied state, possibly
//! behind; Consul's `?stale`). Writes that reach a follower are forwarded to the leader; a
//! forwarded request is never forwarded again. Errors are `{"error": ..., "code": ...}`: 400 bad
//! request, 404 no key, 413 too large, 503 (with `Retry-After`) no leader or no quorum, 504 when
//! the commit did not happen in time (outcome unknown).

use std::sync::Arc;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State as AxumState};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use raftkv_raft::{NodeId, ReadMode};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::config::ServerConfig;
use crate::error::{RequestError, Result, ServerError};
use crate::members::{Member, node_id};
use crate::node::{CLIENT_INPUTS_MAX, Input, Reply, Shared};
use crate::state::{Applied, Command};
use std::sync::atomic::Ordering;

mod kv;

/// Largest request body accepted by the HTTP layer; the store's own limits (smaller) answer
/// with a JSON 413 first.
pub const HTTP_BODY_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Header marking a request forwarded by another node.
pub const FORWARDED_HEADER: &str = "x-raftkv-forwarded";
/// Seconds clients are told to wait before retrying a 503.
const RETRY_AFTER_SECS: &str = "1";
/// How often a follower checks that the registry holds its current addresses.
const PUBLISH_INTERVAL: Duration = Duration::from_secs(1);
/// How long a joining node keeps asking the cluster to add it.
const JOIN_TIMEOUT: Duration = Duration::from_secs(60);

/// The API's shared handles.
#[derive(Clone)]
pub struct Api {
    inner: Arc<Inner>,
}

struct Inner {
    /// The driver's input queue.
    inputs: SyncSender<Input>,
    /// State and status shared with the driver.
    shared: Arc<Shared>,
    /// Settings.
    config: ServerConfig,
    /// This node's registry record.
    me: Member,
    /// Client for forwarding to the leader.
    http: reqwest::Client,
}

/// A JSON error response.
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    fn unavailable(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
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
            RequestError::Unknown(_) => {
                ApiError::new(StatusCode::GATEWAY_TIMEOUT, "outcome_unknown", message)
            }
            RequestError::TooLarge(_) => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", message)
            }
            RequestError::Invalid(_) => ApiError::bad_request(message),
            RequestError::Conflict(_) => ApiError::new(StatusCode::CONFLICT, "conflict", message),
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

/// What a joining node learns from the cluster.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JoinResponse {
    /// The cluster's id.
    pub cluster_id: u64,
    /// The id the new node has.
    pub id: u64,
    /// Every member, the new one included.
    pub members: Vec<Member>,
}

/// A join request.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JoinRequest {
    /// The new member's name.
    pub name: String,
    /// Its peer URL.
    pub peer_url: String,
    /// Its client URL.
    pub client_url: String,
}

/// Query flags of the key-value routes.
#[derive(Debug, Default, Deserialize)]
pub struct KvQuery {
    /// Return the bare value.
    raw: Option<String>,
    /// Treat the key as a prefix.
    prefix: Option<String>,
    /// linearizable, lease or stale.
    consistency: Option<String>,
    /// Consul-style flag for `consistency=stale`.
    stale: Option<String>,
    /// Consul-style flag for `consistency=linearizable`.
    consistent: Option<String>,
    /// Most keys to list.
    limit: Option<u64>,
    /// Return the previous pair of a put or delete.
    prev: Option<String>,
    /// Compare-and-swap: put only if the key's mod_revision equals this (0: only if absent).
    cas: Option<i64>,
    /// Attach the key to this lease.
    lease: Option<i64>,
    /// Watch from this revision (0 or absent: changes after now).
    rev: Option<i64>,
}

/// Query of `POST /v1/lease`.
#[derive(Debug, Deserialize)]
pub struct LeaseQuery {
    /// Time to live in seconds.
    ttl: u64,
}

impl Api {
    /// The API of a node.
    pub fn new(
        inputs: SyncSender<Input>,
        shared: Arc<Shared>,
        config: ServerConfig,
        me: Member,
    ) -> Self {
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout + Duration::from_secs(1))
            .build()
            .unwrap_or_default();
        Api {
            inner: Arc::new(Inner {
                inputs,
                shared,
                config,
                me,
                http,
            }),
        }
    }

    /// The routes.
    pub fn router(self) -> Router {
        Router::new()
            .route("/v1/kv/{*key}", get(get_kv).put(put_kv).delete(delete_kv))
            .route("/v1/kv", get(list_all))
            .route("/v1/kv/", get(list_all))
            .route("/v1/lease", post(lease_grant))
            .route("/v1/lease/{id}", axum::routing::delete(lease_revoke))
            .route(
                "/v1/lease/{id}/keepalive",
                post(lease_keep_alive).put(lease_keep_alive),
            )
            .route("/v1/watch/{*key}", get(watch))
            .route("/v1/status", get(status))
            .route("/metrics", get(metrics))
            .route("/v1/members", get(list_members).post(join_member))
            .route("/v1/members/{name}", axum::routing::delete(remove_member))
            .route("/v1/internal/publish", post(publish))
            .fallback(|| async {
                ApiError::not_found("no such route; the API lives under /v1/ (see the README)")
            })
            .layer(axum::middleware::map_response(json_errors))
            .layer(DefaultBodyLimit::max(HTTP_BODY_BYTES_MAX))
            .with_state(self)
    }

    fn submit<T>(
        &self,
        input: Input,
        rx: oneshot::Receiver<Result<T, RequestError>>,
    ) -> Waiting<T> {
        let queued = &self.inner.shared.client_inputs;
        if queued.fetch_add(1, Ordering::Relaxed) >= CLIENT_INPUTS_MAX {
            queued.fetch_sub(1, Ordering::Relaxed);
            return Waiting::Failed(RequestError::Unavailable(
                "the node is overloaded (too many queued requests)".into(),
            ));
        }
        match self.inner.inputs.try_send(input) {
            Ok(()) => Waiting::Sent(rx),
            Err(TrySendError::Full(_)) => {
                queued.fetch_sub(1, Ordering::Relaxed);
                Waiting::Failed(RequestError::Unavailable(
                    "the node is overloaded (input queue full)".into(),
                ))
            }
            Err(TrySendError::Disconnected(_)) => {
                queued.fetch_sub(1, Ordering::Relaxed);
                Waiting::Failed(RequestError::Unavailable("the node is stopping".into()))
            }
        }
    }

    /// Queues the input `make` builds around a reply channel, and waits for the driver's answer.
    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Input) -> Result<T, RequestError> {
        let (reply, rx) = oneshot::channel();
        let waiting = self.submit(make(reply), rx);
        self.wait(waiting).await
    }

    async fn wait<T>(&self, waiting: Waiting<T>) -> Result<T, RequestError> {
        let rx = match waiting {
            Waiting::Sent(rx) => rx,
            Waiting::Failed(e) => return Err(e),
        };
        let timeout = self.inner.config.request_timeout;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(RequestError::Unknown(
                "the node stopped before answering".into(),
            )),
            Err(_) => Err(RequestError::Unknown(format!(
                "not done within {timeout:?}; it may still happen"
            ))),
        }
    }

    /// Proposes a payload and waits for it to be applied.
    async fn propose(&self, data: bytes::Bytes) -> Result<Applied, RequestError> {
        self.ask(|reply| Input::Propose { data, reply }).await
    }

    /// Waits until this node may serve a read at the given consistency.
    async fn read_barrier(&self, consistency: Consistency) -> Result<(), RequestError> {
        let mode = match consistency {
            Consistency::Stale => return Ok(()),
            Consistency::Linearizable => ReadMode::ReadIndex,
            Consistency::Lease => ReadMode::Lease,
        };
        self.ask(|reply| Input::Read { mode, reply }).await
    }

    /// The client URL of the leader this node knows of.
    fn leader_url(&self, leader: Option<NodeId>) -> Option<String> {
        let leader = leader.or_else(|| self.status_leader())?;
        if leader == self.inner.me.id {
            return None;
        }
        let state = self.inner.shared.state();
        state
            .registry
            .get(leader)
            .map(|m| m.client_url.clone())
            .filter(|url| !url.is_empty())
    }

    fn status_leader(&self) -> Option<NodeId> {
        self.inner.shared.status().leader
    }

    /// Sends the request on to the leader and relays its answer.
    async fn forward(
        &self,
        leader: Option<NodeId>,
        method: Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Response {
        if headers.contains_key(FORWARDED_HEADER) {
            return ApiError::unavailable("leadership is moving; retry shortly").into_response();
        }
        let Some(url) = self.leader_url(leader) else {
            return ApiError::from(RequestError::NotLeader { leader }).into_response();
        };
        crate::metrics::Metrics::bump(&self.inner.shared.metrics.forwarded);
        let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let request = self
            .inner
            .http
            .request(method, format!("{url}{path}"))
            .header(FORWARDED_HEADER, "1")
            .body(body);
        match request.send().await {
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
                    Err(e) => ApiError::new(
                        StatusCode::GATEWAY_TIMEOUT,
                        "outcome_unknown",
                        format!("the leader did not finish answering: {e}; outcome unknown"),
                    )
                    .into_response(),
                }
            }
            Err(e) if e.is_connect() => {
                ApiError::unavailable(format!("cannot reach the leader at {url}: {e}"))
                    .into_response()
            }
            Err(e) => ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "outcome_unknown",
                format!("forwarding to the leader at {url} failed: {e}; outcome unknown"),
            )
            .into_response(),
        }
    }

    /// Proposes a write here, or forwards it to the leader when this node is not the leader.
    async fn write(
        &self,
        data: bytes::Bytes,
        method: Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: Bytes,
        answer: impl FnOnce(Applied) -> Result<Value, ApiError>,
    ) -> Response {
        match self.propose(data).await {
            Ok(applied) => match answer(applied) {
                Ok(value) => Json(value).into_response(),
                Err(e) => e.into_response(),
            },
            Err(RequestError::NotLeader { leader }) => {
                self.forward(leader, method, uri, headers, body).await
            }
            Err(e) => ApiError::from(e).into_response(),
        }
    }

    /// Follower: keeps the registry's record of this node current, through the leader.
    pub async fn publisher(self) {
        let mut interval = tokio::time::interval(PUBLISH_INTERVAL);
        loop {
            interval.tick().await;
            let current = {
                let state = self.inner.shared.state();
                state.registry.get(self.inner.me.id).cloned()
            };
            if current.as_ref() == Some(&self.inner.me) {
                continue;
            }
            // The leader publishes itself from the driver; a follower asks the leader.
            let Some(url) = self.leader_url(None) else {
                continue;
            };
            let sent = self
                .inner
                .http
                .post(format!("{url}/v1/internal/publish"))
                .json(&self.inner.me)
                .send()
                .await;
            if let Err(e) = sent {
                tracing::debug!(error = %e, "publishing this node's addresses failed; will retry");
            }
        }
    }
}

/// Turns an applied write into its JSON answer.
type Answer = fn(Applied) -> Result<Value, ApiError>;

enum Waiting<T> {
    Sent(oneshot::Receiver<Result<T, RequestError>>),
    Failed(RequestError),
}

/// Read consistency.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Consistency {
    Linearizable,
    Lease,
    Stale,
}

fn consistency(query: &KvQuery) -> Result<Consistency, ApiError> {
    if query.stale.is_some() {
        return Ok(Consistency::Stale);
    }
    if query.consistent.is_some() {
        return Ok(Consistency::Linearizable);
    }
    match query.consistency.as_deref() {
        None | Some("linearizable") | Some("consistent") => Ok(Consistency::Linearizable),
        Some("lease") | Some("default") => Ok(Consistency::Lease),
        Some("stale") | Some("serializable") => Ok(Consistency::Stale),
        Some(other) => Err(ApiError::bad_request(format!(
            "consistency `{other}` is not one of linearizable, lease, stale"
        ))),
    }
}

async fn get_kv(
    AxumState(api): AxumState<Api>,
    Path(key): Path<String>,
    Query(query): Query<KvQuery>,
) -> Response {
    read_kv(api, key, query).await
}

async fn list_all(AxumState(api): AxumState<Api>, Query(mut query): Query<KvQuery>) -> Response {
    query.prefix = Some(String::new());
    read_kv(api, String::new(), query).await
}

async fn read_kv(api: Api, key: String, query: KvQuery) -> Response {
    let consistency = match consistency(&query) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    if key.is_empty() && query.prefix.is_none() {
        return ApiError::bad_request("empty key; give a key, or ?prefix to list").into_response();
    }
    if let Err(e) = api.read_barrier(consistency).await {
        return ApiError::from(e).into_response();
    }
    let state = api.inner.shared.state();
    if query.prefix.is_some() {
        return match kv::list(&state.kv, key.as_bytes(), query.limit) {
            Ok(value) => Json(value).into_response(),
            Err(e) => e.into_response(),
        };
    }
    match kv::get(&state.kv, key.as_bytes()) {
        Ok(Some(found)) if query.raw.is_some() => (
            [(header::CONTENT_TYPE, "application/octet-stream")],
            found.value,
        )
            .into_response(),
        Ok(Some(found)) => Json(found.json).into_response(),
        Ok(None) => ApiError::not_found(format!("key `{key}` not found")).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn put_kv(
    AxumState(api): AxumState<Api>,
    Path(key): Path<String>,
    Query(query): Query<KvQuery>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (request, answer): (_, Answer) = match query.cas {
        Some(expected) => (
            kv::cas_request(key.as_bytes(), body.clone(), expected),
            kv::cas_answer,
        ),
        None => (
            kv::put_request(
                key.as_bytes(),
                body.clone(),
                query.prev.is_some(),
                query.lease.unwrap_or(0),
            ),
            kv::put_answer,
        ),
    };
    let request = match request {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    api.write(Command::kv(request), method, &uri, &headers, body, answer)
        .await
}

async fn delete_kv(
    AxumState(api): AxumState<Api>,
    Path(key): Path<String>,
    Query(query): Query<KvQuery>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request =
        match kv::delete_request(key.as_bytes(), query.prefix.is_some(), query.prev.is_some()) {
            Ok(r) => r,
            Err(e) => return e.into_response(),
        };
    api.write(
        Command::kv(request),
        method,
        &uri,
        &headers,
        body,
        kv::delete_answer,
    )
    .await
}

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
        let mut state = self.api.inner.shared.state();
        let _ = state.kv.watch_cancel(self.id);
    }
}

/// `GET /v1/watch/{key}[?prefix][&rev=N]`: a stream of JSON lines, one per batch of events, in
/// revision order, each saying which revisions it covers. The stream ends with an error line if
/// the watch is cancelled (too slow a reader, compaction).
async fn watch(
    AxumState(api): AxumState<Api>,
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
    let created = {
        let mut state = api.inner.shared.state();
        state.kv.watch_create(&request)
    };
    let id = match created {
        Ok(id) => id,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let guard = WatchGuard { api, id };
    let lines = futures::stream::unfold(Some(guard), |guard| async move {
        let guard = guard?;
        let shared = guard.api.inner.shared.clone();
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
            let polled = {
                let mut state = shared.state();
                state.kv.watch_poll(guard.id, WATCH_BATCH_EVENTS)
            };
            match polled {
                Ok(Some(response)) => {
                    let line = format!("{}\n", kv::watch_json(&response));
                    return Some((Ok::<_, std::convert::Infallible>(line), Some(guard)));
                }
                Ok(None) => {
                    tokio::select! {
                        _ = tokio::time::timeout(WATCH_PROGRESS_INTERVAL, applied) => {}
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

async fn lease_grant(
    AxumState(api): AxumState<Api>,
    Query(query): Query<LeaseQuery>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(ttl_ms) = query.ttl.checked_mul(1000).filter(|&ms| ms > 0) else {
        return ApiError::bad_request("?ttl must be a number of seconds above 0").into_response();
    };
    match kv::lease_grant_request(ttl_ms) {
        Ok(request) => {
            let answer: Answer = kv::lease_grant_answer;
            api.write(Command::kv(request), method, &uri, &headers, body, answer)
                .await
        }
        Err(e) => e.into_response(),
    }
}

async fn lease_revoke(
    AxumState(api): AxumState<Api>,
    Path(id): Path<i64>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match kv::lease_revoke_request(id) {
        Ok(request) => {
            let answer: Answer = kv::lease_revoke_answer;
            api.write(Command::kv(request), method, &uri, &headers, body, answer)
                .await
        }
        Err(e) => e.into_response(),
    }
}

async fn lease_keep_alive(
    AxumState(api): AxumState<Api>,
    Path(id): Path<i64>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match api.ask(|reply| Input::LeaseKeepAlive { id, reply }).await {
        Ok(Ok(ttl_ms)) => Json(json!({ "id": id, "ttl_ms": ttl_ms })).into_response(),
        Ok(Err(e)) => ApiError::from(e).into_response(),
        Err(RequestError::NotLeader { leader }) => {
            api.forward(leader, method, &uri, &headers, body).await
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// A member as `/v1/status` and `/v1/members` show it.
#[derive(Serialize)]
struct MemberView {
    id: NodeId,
    name: String,
    role: &'static str,
    peer_url: String,
    client_url: String,
}

fn member_views(
    api: &Api,
    voters: &[NodeId],
    outgoing: &[NodeId],
    learners: &[NodeId],
) -> Vec<MemberView> {
    let state = api.inner.shared.state();
    let mut ids: Vec<NodeId> = voters
        .iter()
        .chain(outgoing)
        .chain(learners)
        .copied()
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let mut views: Vec<MemberView> = ids
        .into_iter()
        .map(|id| {
            let member = state.registry.get(id);
            MemberView {
                id,
                name: member.map(|m| m.name.clone()).unwrap_or_default(),
                role: if voters.contains(&id) || outgoing.contains(&id) {
                    "voter"
                } else {
                    "learner"
                },
                peer_url: member.map(|m| m.peer_url.clone()).unwrap_or_default(),
                client_url: member.map(|m| m.client_url.clone()).unwrap_or_default(),
            }
        })
        .collect();
    views.sort_by(|a, b| (&a.name, a.id).cmp(&(&b.name, b.id)));
    views
}

async fn status(AxumState(api): AxumState<Api>) -> Response {
    let status = api.inner.shared.status().clone();
    let stall = api
        .inner
        .config
        .tick
        .checked_mul(api.inner.config.disk_stall_ticks)
        .unwrap_or(Duration::MAX);
    let sync_running = api.inner.shared.sync_running_for();
    let disk_stalled = sync_running.is_some_and(|d| d > stall);
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
        map.insert(
            "healthy".into(),
            json!(!disk_stalled && status.wal_error.is_none() && status.leader.is_some()),
        );
    }
    Json(value).into_response()
}

async fn metrics(AxumState(api): AxumState<Api>) -> Response {
    let status = api.inner.shared.status().clone();
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        api.inner.shared.metrics.render(&status),
    )
        .into_response()
}

async fn list_members(AxumState(api): AxumState<Api>) -> Response {
    let status = api.inner.shared.status().clone();
    Json(json!({
        "members": member_views(&api, &status.voters, &status.voters_outgoing, &status.learners)
    }))
    .into_response()
}

async fn join_member(
    AxumState(api): AxumState<Api>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request: JoinRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return ApiError::bad_request(format!("bad join request: {e}")).into_response(),
    };
    if request.name.is_empty() {
        return ApiError::bad_request("a joining member needs a name").into_response();
    }
    let member = Member {
        id: node_id(&request.name),
        name: request.name,
        peer_url: request.peer_url,
        client_url: request.client_url,
    };
    {
        let state = api.inner.shared.state();
        if state.registry.is_removed(member.id) {
            return ApiError::bad_request(format!(
                "a member named `{}` was removed from this cluster; join under a new name",
                member.name
            ))
            .into_response();
        }
        if let Some(existing) = state.registry.by_name(&member.name) {
            if existing.peer_url != member.peer_url {
                return ApiError::bad_request(format!(
                    "a member named `{}` already exists with peer URL {}",
                    member.name, existing.peer_url
                ))
                .into_response();
            }
        }
    }
    let id = member.id;
    match api.ask(|reply| Input::Join { member, reply }).await {
        Ok(_) => {
            let state = api.inner.shared.state();
            let cluster_id = cluster_id_of(&api);
            Json(JoinResponse {
                cluster_id,
                id,
                members: state.registry.members().cloned().collect(),
            })
            .into_response()
        }
        Err(RequestError::NotLeader { leader }) => {
            api.forward(leader, method, &uri, &headers, body).await
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// Turns the HTTP layer's own plain-text errors (a body over the limit, an unparsable query or
/// path) into the API's JSON error shape.
async fn json_errors(response: Response) -> Response {
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

async fn remove_member(
    AxumState(api): AxumState<Api>,
    Path(name): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let id = node_id(&name);
    match api.ask(|reply| Input::RemoveMember { id, reply }).await {
        Ok(index) => Json(json!({ "removed": name, "id": id, "index": index })).into_response(),
        Err(RequestError::NotLeader { leader }) => {
            api.forward(leader, method, &uri, &headers, body).await
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

fn cluster_id_of(api: &Api) -> u64 {
    let status = api.inner.shared.status();
    u64::from_str_radix(&status.cluster_id, 16).unwrap_or(0)
}

async fn publish(
    AxumState(api): AxumState<Api>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let member: Member = match serde_json::from_slice(&body) {
        Ok(m) => m,
        Err(e) => return ApiError::bad_request(format!("bad member: {e}")).into_response(),
    };
    let is_member = {
        let status = api.inner.shared.status();
        [&status.voters, &status.voters_outgoing, &status.learners]
            .iter()
            .any(|ids| ids.contains(&member.id))
    };
    if !is_member || member.id != node_id(&member.name) {
        return ApiError::bad_request("only a current member can publish its addresses")
            .into_response();
    }
    api.write(
        Command::publish(member),
        method,
        &uri,
        &headers,
        body,
        |_| Ok(json!({ "published": true })),
    )
    .await
}

/// Asks the cluster (through the member at `url`, which forwards to the leader) to add `me`;
/// retries while the cluster is busy (no leader, a change in flight).
pub async fn join(url: &str, me: &Member) -> Result<JoinResponse> {
    let http = reqwest::Client::builder()
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
        ];
        for (error, status, code) in table {
            let shown = error.to_string();
            let api = ApiError::from(error);
            assert_eq!(api.status.as_u16(), status, "{shown}");
            assert_eq!(api.code, code, "{shown}");
        }
    }
}
