//! etcd's gRPC JSON gateway on the client port, as etcd serves it: `POST /v3/<service>/<call>`
//! with the request message as JSON, answered with the response message as JSON (proto field
//! names, bytes as base64, 64-bit integers as strings, default values left out); `/v3/watch`
//! and `/v3/lease/keepalive` answer `{"result": ...}` objects, the watch as a stream of lines.
//! Errors are `{"error", "code", "message"}` with the HTTP status grpc-gateway gives the gRPC
//! code. `GET /version` answers as etcd does. A token from `/v3/auth/authenticate` goes in the
//! `Authorization` header (bare, as etcd takes it, or `Bearer TOKEN`). Each route calls the same gRPC handler, so the
//! gateway adds only the JSON mapping, done by `prost-reflect` from the compiled descriptors.

use std::future::Future;
use std::sync::OnceLock;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use futures::StreamExt;
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, SerializeOptions};
use raftkv_etcdpb::etcdserverpb::auth_server::Auth;
use raftkv_etcdpb::etcdserverpb::cluster_server::Cluster;
use raftkv_etcdpb::etcdserverpb::kv_server::Kv;
use raftkv_etcdpb::etcdserverpb::lease_server::Lease;
use raftkv_etcdpb::etcdserverpb::maintenance_server::Maintenance;
use raftkv_etcdpb::etcdserverpb::{self as pb};
use serde_json::{Value, json};
use tonic::{Code, Status};

use super::auth::TOKEN_METADATA;
use super::{ETCD_API_VERSION, Etcd};
use crate::auth::Need;

/// Most bytes of a gateway request body.
const GATEWAY_BODY_BYTES_MAX: usize = 2 * 1024 * 1024;

/// The descriptors of etcd's messages, compiled into this binary.
fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(raftkv_etcdpb::FILE_DESCRIPTORS)
            .expect("the descriptors compiled into this binary decode")
    })
}

fn descriptor(name: &str) -> MessageDescriptor {
    pool()
        .get_message_by_name(&format!("etcdserverpb.{name}"))
        .unwrap_or_else(|| panic!("etcdserverpb.{name} is compiled into this binary"))
}

/// The HTTP status grpc-gateway answers a gRPC code with.
fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::REQUEST_TIMEOUT,
        Code::InvalidArgument | Code::OutOfRange | Code::FailedPrecondition => {
            StatusCode::BAD_REQUEST
        }
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// An error as the gateway renders it.
fn error(status: &Status) -> Response {
    let body = json!({
        "error": status.message(),
        "code": status.code() as i32,
        "message": status.message(),
    });
    (http_status(status.code()), Json(body)).into_response()
}

/// Parses a JSON body as message `name` (an empty body is the empty message).
fn parse<T: Message + Default>(name: &str, body: &[u8]) -> Result<T, Status> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        body
    };
    let mut json = serde_json::Deserializer::from_slice(body);
    let dynamic = DynamicMessage::deserialize(descriptor(name), &mut json)
        .map_err(|e| Status::invalid_argument(format!("{name}: {e}")))?;
    T::decode(dynamic.encode_to_vec().as_slice())
        .map_err(|e| Status::invalid_argument(format!("{name}: {e}")))
}

/// Message `name` as the gateway's JSON.
fn render<T: Message>(name: &str, message: &T) -> Value {
    let dynamic = DynamicMessage::decode(descriptor(name), message.encode_to_vec().as_slice())
        .expect("a message encoded here decodes with its own descriptor");
    let options = SerializeOptions::new().use_proto_field_name(true);
    dynamic
        .serialize_with_options(serde_json::value::Serializer, &options)
        .expect("a decoded message serializes to JSON")
}

/// `message` as a gRPC call, carrying the token of the `Authorization` header (etcd's gateway
/// takes the bare token, raftkv also `Bearer TOKEN`) as the `token` metadata etcd's clients send.
fn call<T>(headers: &HeaderMap, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.strip_prefix("Bearer ").unwrap_or(v).trim())
        .and_then(|v| v.parse().ok());
    if let Some(token) = token {
        request.metadata_mut().insert(TOKEN_METADATA, token);
    }
    request
}

/// One unary call: parse, call the gRPC handler, render.
async fn unary<Req, Resp, Fut>(
    request: &str,
    response: &str,
    headers: &HeaderMap,
    body: &[u8],
    handler: impl FnOnce(tonic::Request<Req>) -> Fut,
) -> Response
where
    Req: Message + Default,
    Resp: Message,
    Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
{
    let message = match parse::<Req>(request, body) {
        Ok(message) => message,
        Err(e) => return error(&e),
    };
    match handler(call(headers, message)).await {
        Ok(answer) => Json(render(response, answer.get_ref())).into_response(),
        Err(status) => error(&status),
    }
}

/// Routes `$path` to `$handler` of trait `$service`, from `$req` to `$resp`.
macro_rules! route {
    ($router:expr, $path:literal, $service:ident :: $handler:ident, $req:literal, $resp:literal) => {
        $router.route(
            $path,
            post(
                |State(etcd): State<Etcd>, headers: HeaderMap, body: Bytes| async move {
                    unary($req, $resp, &headers, &body, |r| async move {
                        $service::$handler(&etcd, r).await
                    })
                    .await
                },
            ),
        )
    };
}

impl Etcd {
    /// The JSON gateway's routes (HTTP, beside raftkv's own API).
    pub fn gateway(self) -> Router {
        let router = Router::new();
        let router = route!(
            router,
            "/v3/kv/range",
            Kv::range,
            "RangeRequest",
            "RangeResponse"
        );
        let router = route!(router, "/v3/kv/put", Kv::put, "PutRequest", "PutResponse");
        let router = route!(
            router,
            "/v3/kv/deleterange",
            Kv::delete_range,
            "DeleteRangeRequest",
            "DeleteRangeResponse"
        );
        let router = route!(router, "/v3/kv/txn", Kv::txn, "TxnRequest", "TxnResponse");
        let router = route!(
            router,
            "/v3/kv/compaction",
            Kv::compact,
            "CompactionRequest",
            "CompactionResponse"
        );
        let router = route!(
            router,
            "/v3/lease/grant",
            Lease::lease_grant,
            "LeaseGrantRequest",
            "LeaseGrantResponse"
        );
        let router = route!(
            router,
            "/v3/lease/revoke",
            Lease::lease_revoke,
            "LeaseRevokeRequest",
            "LeaseRevokeResponse"
        );
        let router = route!(
            router,
            "/v3/lease/timetolive",
            Lease::lease_time_to_live,
            "LeaseTimeToLiveRequest",
            "LeaseTimeToLiveResponse"
        );
        let router = route!(
            router,
            "/v3/lease/leases",
            Lease::lease_leases,
            "LeaseLeasesRequest",
            "LeaseLeasesResponse"
        );
        let router = route!(
            router,
            "/v3/cluster/member/list",
            Cluster::member_list,
            "MemberListRequest",
            "MemberListResponse"
        );
        let router = route!(
            router,
            "/v3/maintenance/status",
            Maintenance::status,
            "StatusRequest",
            "StatusResponse"
        );
        let router = route!(
            router,
            "/v3/auth/authenticate",
            Auth::authenticate,
            "AuthenticateRequest",
            "AuthenticateResponse"
        );
        let router = route!(
            router,
            "/v3/auth/enable",
            Auth::auth_enable,
            "AuthEnableRequest",
            "AuthEnableResponse"
        );
        let router = route!(
            router,
            "/v3/auth/disable",
            Auth::auth_disable,
            "AuthDisableRequest",
            "AuthDisableResponse"
        );
        let router = route!(
            router,
            "/v3/auth/status",
            Auth::auth_status,
            "AuthStatusRequest",
            "AuthStatusResponse"
        );
        let router = route!(
            router,
            "/v3/auth/user/add",
            Auth::user_add,
            "AuthUserAddRequest",
            "AuthUserAddResponse"
        );
        let router = route!(
            router,
            "/v3/auth/user/get",
            Auth::user_get,
            "AuthUserGetRequest",
            "AuthUserGetResponse"
        );
        let router = route!(
            router,
            "/v3/auth/user/list",
            Auth::user_list,
            "AuthUserListRequest",
            "AuthUserListResponse"
        );
        let router = route!(
            router,
            "/v3/auth/user/delete",
            Auth::user_delete,
            "AuthUserDeleteRequest",
            "AuthUserDeleteResponse"
        );
        let router = route!(
            router,
            "/v3/auth/user/changepw",
            Auth::user_change_password,
            "AuthUserChangePasswordRequest",
            "AuthUserChangePasswordResponse"
        );
        let router = route!(
            router,
            "/v3/auth/user/grant",
            Auth::user_grant_role,
            "AuthUserGrantRoleRequest",
            "AuthUserGrantRoleResponse"
        );
        let router = route!(
            router,
            "/v3/auth/user/revoke",
            Auth::user_revoke_role,
            "AuthUserRevokeRoleRequest",
            "AuthUserRevokeRoleResponse"
        );
        let router = route!(
            router,
            "/v3/auth/role/add",
            Auth::role_add,
            "AuthRoleAddRequest",
            "AuthRoleAddResponse"
        );
        let router = route!(
            router,
            "/v3/auth/role/get",
            Auth::role_get,
            "AuthRoleGetRequest",
            "AuthRoleGetResponse"
        );
        let router = route!(
            router,
            "/v3/auth/role/list",
            Auth::role_list,
            "AuthRoleListRequest",
            "AuthRoleListResponse"
        );
        let router = route!(
            router,
            "/v3/auth/role/delete",
            Auth::role_delete,
            "AuthRoleDeleteRequest",
            "AuthRoleDeleteResponse"
        );
        let router = route!(
            router,
            "/v3/auth/role/grant",
            Auth::role_grant_permission,
            "AuthRoleGrantPermissionRequest",
            "AuthRoleGrantPermissionResponse"
        );
        let router = route!(
            router,
            "/v3/auth/role/revoke",
            Auth::role_revoke_permission,
            "AuthRoleRevokePermissionRequest",
            "AuthRoleRevokePermissionResponse"
        );
        router
            .route("/v3/lease/keepalive", post(keep_alive))
            .route("/v3/watch", post(watch))
            .route("/version", get(version))
            .layer(DefaultBodyLimit::max(GATEWAY_BODY_BYTES_MAX))
            .with_state(self)
    }
}

/// `POST /v3/lease/keepalive`: one keep-alive, answered `{"result": LeaseKeepAliveResponse}`.
async fn keep_alive(State(etcd): State<Etcd>, headers: HeaderMap, body: Bytes) -> Response {
    let request = match parse::<pb::LeaseKeepAliveRequest>("LeaseKeepAliveRequest", &body) {
        Ok(request) => request,
        Err(e) => return error(&e),
    };
    if let Err(e) = etcd.authorize(&call(&headers, ()), Need::User) {
        return error(&e);
    }
    match etcd.keep_alive_once(request.id, false).await {
        Ok(answer) => {
            Json(json!({ "result": render("LeaseKeepAliveResponse", &answer) })).into_response()
        }
        Err(status) => error(&status),
    }
}

/// `POST /v3/watch`: the body is one `WatchRequest` (a create); the answer is a stream of
/// `{"result": WatchResponse}` lines, for as long as the client reads.
async fn watch(
    State(etcd): State<Etcd>,
    client: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = match parse::<pb::WatchRequest>("WatchRequest", &body) {
        Ok(request) => request,
        Err(e) => return error(&e),
    };
    let caller = match etcd.caller(&call(&headers, ())) {
        Ok(caller) => caller,
        Err(e) => return error(&e),
    };
    let client = client.map(|c| c.0.0.ip());
    let requests = futures::stream::once(async move { request }).chain(futures::stream::pending());
    let mut responses = etcd.watch_session(client, caller, Box::pin(requests));
    let lines = futures::stream::poll_fn(move |cx| responses.poll_recv(cx)).map(|answer| {
        let line = match answer {
            Ok(response) => json!({ "result": render("WatchResponse", &response) }),
            Err(status) => {
                json!({ "error": { "code": status.code() as i32, "message": status.message() } })
            }
        };
        Ok::<_, std::convert::Infallible>(format!("{line}\n"))
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        axum::body::Body::from_stream(lines),
    )
        .into_response()
}

/// `GET /version`, as etcd answers it.
async fn version() -> Json<Value> {
    Json(json!({ "etcdserver": ETCD_API_VERSION, "etcdcluster": ETCD_API_VERSION }))
}
