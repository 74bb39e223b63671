//! The HTTP/JSON client API (axum): thin handlers over the service layer (`crate::service`), one
//! file per concept, and forwarding to the leader.
//!
//! | route | what |
//! |---|---|
//! | `GET /v1/kv/{key}` | Consul's KV read: `[{"Key", "Value", "Flags", "CreateIndex", "ModifyIndex", "LockIndex", "Session"}]`; `?raw`, `?recurse`, `?keys&separator=`; blocking with `?index=N&wait=D`; 404 with an empty body when missing |
//! | `PUT /v1/kv/{key}` | set a key (body = value); `?flags=N`; `?cas=N` only if its ModifyIndex is N (0: absent); answers `true`/`false` |
//! | `DELETE /v1/kv/{key}` | delete a key; `?recurse` every key under it; `?cas=N`; answers `true`/`false` |
//! | `PUT /v1/txn` | Consul's transaction: a JSON array of KV operations, applied atomically |
//! | `PUT /v1/session/create`, `destroy/{id}`, `renew/{id}`; `GET /v1/session/info/{id}`, `list`, `node/{node}` | Consul's sessions, for `?acquire=`/`?release=` locks |
//! | `POST /v1/session`, `DELETE /v1/session/{id}` | open a client session (exactly-once writes), close it |
//! | `POST /v1/lease?ttl=S` | grant a lease of S seconds; `PUT /v1/kv/{key}?lease=ID` attaches keys |
//! | `POST /v1/lease/{id}/keepalive`, `DELETE /v1/lease/{id}` | renew (on the leader), revoke |
//! | `GET /v1/watch/{key}` | a stream of JSON lines of changes; `?prefix`, `&rev=N` to start in the past, `&prev` |
//! | `GET /v1/status` | this node's view: role, term, leader, indexes, members, version |
//! | `GET /v1/status/leader`, `GET /v1/status/peers` | Consul's: the leader's and the voters' Raft addresses |
//! | `GET /health`, `GET /ready` | liveness (the process serves); readiness (leader known, applied up to commit, disk healthy) or 503 with the reason |
//! | `GET /v1/members`, `POST /v1/members` | list members; join (a new node calls it) |
//! | `POST /v1/members/{name}` | add a member that starts later (`{"peer_url": ..., "learner": bool}`) |
//! | `POST /v1/members/{name}/promote` | make a caught-up learner a voter |
//! | `DELETE /v1/members/{name}` | remove a member (voter or learner) |
//! | `POST /v1/leader/transfer` | hand leadership to a voter (`{"to": NAME}`) |
//! | `GET /v1/alarms`, `DELETE /v1/alarms` | list the raised alarms (`NOSPACE`, `CORRUPT`); disarm them |
//! | `POST /v1/internal/publish` | a member records its addresses through the leader |
//! | `GET /v1/internal/hash` | this member's latest corruption-check hashes |
//! | `GET /metrics` | Prometheus text: term, indexes, role, counters |
//!
//! Reads take Consul's modes (`kv.rs`): the default reads through the leader's lease,
//! `?consistent` after a ReadIndex round (also on followers), `?stale` from this node's applied
//! state, possibly behind (`?max_stale=D` bounds how far); `?consistency=linearizable|lease|stale`
//! says the same. Writes that reach a follower are forwarded to the leader; a
//! forwarded request is never forwarded again. Writes may carry a client session
//! (`X-Raftkv-Client-Id` and `X-Raftkv-Sequence`, see `session.rs`): a retried write is applied
//! once. Errors are `{"error": ..., "code": ...}` (`error.rs`). While authentication is enabled
//! every route but `/health`, `/ready` and `/metrics` needs credentials: `Authorization: Bearer
//! TOKEN` (from etcd's `Authenticate`) or `Authorization: Basic` with a user's password
//! (`auth.rs`).
//!
//! | file | concept |
//! |---|---|
//! | `auth.rs` | who the caller is, and whether its route is allowed it |
//! | `error.rs` | statuses and codes of every error |
//! | `forward.rs` | the `Forward` extractor, relaying to the leader |
//! | `kv.rs` | Consul's KV reads and writes |
//! | `blocking.rs` | Consul's blocking queries |
//! | `txn.rs` | Consul's transactions |
//! | `lock_session.rs` | Consul's sessions (the store's lock sessions) |
//! | `render.rs` | building store requests, rendering answers as JSON |
//! | `session.rs` | client sessions and their headers |
//! | `watch.rs` | watch streams |
//! | `watch_pump.rs` | one poller feeding every watch stream |
//! | `lease.rs` | lease grant, revoke, keep-alive |
//! | `members.rs` | listing, joining, adding, promoting, removing members; publishing addresses |
//! | `leader.rs` | leadership transfer |
//! | `alarms.rs` | alarms, and the leader's quota watch that raises `NOSPACE` |
//! | `status.rs` | `/v1/status`, `/health`, `/ready` and `/metrics` |
//! | `bootstrap.rs` | a new node joining; a follower publishing its addresses |

mod alarms;
mod auth;
mod blocking;
mod bootstrap;
mod corruption;
mod error;
mod forward;
mod kv;
mod leader;
mod lease;
mod lock_session;
mod members;
mod render;
mod session;
mod status;
mod txn;
mod watch;
pub mod watch_pump;

use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use serde::{Deserialize, Serialize};

pub use auth::MEMBER_TOKEN_HEADER;
pub use bootstrap::join;
pub use error::ApiError;
pub use forward::FORWARDED_HEADER;
pub use session::{CLIENT_ID_HEADER, SEQUENCE_HEADER};

use crate::members::Member;
use crate::service::Service;

/// Largest request body accepted by the HTTP layer; the store's own limits (smaller) answer
/// with a JSON 413 first.
pub const HTTP_BODY_BYTES_MAX: usize = 4 * 1024 * 1024;

/// The API's shared handles.
#[derive(Clone)]
pub struct Api {
    /// The node's operations.
    service: Service,
    /// Client for forwarding to the leader.
    http: reqwest::Client,
    /// Feeds every watch stream.
    watches: std::sync::Arc<watch_pump::WatchPump>,
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

impl Api {
    /// The API over a node's operations.
    pub fn new(service: Service) -> Self {
        let http = crate::tls::http_client(service.client_tls())
            .timeout(service.config().request_timeout + Duration::from_secs(1))
            .build()
            .unwrap_or_default();
        Api {
            service,
            http,
            watches: std::sync::Arc::default(),
        }
    }

    /// The pump that feeds every watch stream of the node (the etcd front end's too).
    pub fn watch_pump_handle(&self) -> std::sync::Arc<watch_pump::WatchPump> {
        self.watches.clone()
    }

    /// Feeds the watch streams until the node stops (run as a task).
    pub async fn watch_pump(self) {
        self.watches.clone().run(self.service.clone()).await
    }

    /// The routes.
    pub fn router(self) -> Router {
        Router::new()
            .route(
                "/v1/kv/{*key}",
                get(kv::get_kv).put(kv::put_kv).delete(kv::delete_kv),
            )
            .route("/v1/kv", get(kv::list_all))
            .route("/v1/kv/", get(kv::list_all))
            .route("/v1/session", post(session::open))
            .route(
                "/v1/session/create",
                axum::routing::put(lock_session::create),
            )
            .route(
                "/v1/session/destroy/{id}",
                axum::routing::put(lock_session::destroy),
            )
            .route(
                "/v1/session/renew/{id}",
                axum::routing::put(lock_session::renew),
            )
            .route("/v1/session/info/{id}", get(lock_session::info))
            .route("/v1/session/list", get(lock_session::list))
            .route("/v1/session/node/{node}", get(lock_session::node))
            .route("/v1/session/{id}", delete(session::close))
            .route("/v1/lease", post(lease::grant))
            .route("/v1/lease/{id}", delete(lease::revoke))
            .route(
                "/v1/lease/{id}/keepalive",
                post(lease::keep_alive).put(lease::keep_alive),
            )
            .route("/v1/watch/{*key}", get(watch::watch))
            .route("/v1/txn", axum::routing::put(txn::txn))
            .route("/v1/status", get(status::status))
            .route("/v1/status/leader", get(status::consul_leader))
            .route("/v1/status/peers", get(status::consul_peers))
            .route("/metrics", get(status::metrics))
            .route("/v1/members", get(members::list).post(members::join))
            .route(
                "/v1/members/{name}",
                post(members::add).delete(members::remove),
            )
            .route("/v1/members/{name}/promote", post(members::promote))
            .route("/v1/leader/transfer", post(leader::transfer))
            .route("/v1/alarms", get(alarms::list).delete(alarms::disarm))
            .route("/health", get(status::health))
            .route("/ready", get(status::ready))
            .route("/v1/internal/publish", post(members::publish))
            .route("/v1/internal/hash", get(corruption::hashes))
            .fallback(|| async {
                ApiError::not_found("no such route; the API lives under /v1/ (see the README)")
            })
            .layer(axum::middleware::from_fn_with_state(
                self.clone(),
                auth::guard,
            ))
            .layer(axum::middleware::map_response(error::json_errors))
            .layer(DefaultBodyLimit::max(HTTP_BODY_BYTES_MAX))
            .layer(axum::middleware::from_fn_with_state(
                self.service.config().client_request_timeout,
                request_timeout,
            ))
            .with_state(self)
    }

    /// Leader: raises `NOSPACE` once the store outgrows the quota (run as a task).
    pub async fn watch_quota(self) {
        alarms::watch_quota(self).await
    }

    /// Leader: runs the corruption check every `corrupt_check_interval` (run as a task).
    pub async fn check_corruption(self) {
        corruption::check_corruption(self).await
    }

    /// Follower: keeps the registry's record of this node current, through the leader.
    pub async fn publisher(self) {
        bootstrap::publisher(self).await
    }
}

/// Answers 408 if a request (its body read and its answer produced; a watch's stream is not
/// counted) takes longer than `client_request_timeout`, so a client trickling a body cannot hold
/// its connection for ever.
async fn request_timeout(
    axum::extract::State(timeout): axum::extract::State<Duration>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!(
                "the request took longer than {timeout:?} (--client-request-timeout-ms); \
                 send it again, faster"
            ),
        )
        .into_response(),
    }
}
