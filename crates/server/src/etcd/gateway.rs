//! etcd's gRPC JSON gateway on the client port, as etcd serves it: `POST /v3/<service>/<call>`
//! with the request message as JSON, answered with the response message as JSON (proto field
//! names, bytes as base64, 64-bit integers as strings, default values left out); `/v3/watch`
//! and `/v3/lease/keepalive` answer `{"result": ...}` objects, the watch as a stream of lines.
//! Errors are `{"error", "code", "message"}` with the HTTP status grpc-gateway gives the gRPC
//! code. `GET /version` answers as etcd does. Each route calls the same gRPC handler, so the
//! gateway adds only the JSON mapping, done by `prost-reflect` from the compiled descriptors.

use std::future::Future;
use std::sync::OnceLock;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use futures::StreamExt;
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, SerializeOptions};
use raftkv_etcdpb::etcdserverpb::cluster_server::Cluster;
use raftkv_etcdpb::etcdserverpb::kv_server::Kv;
use raftkv_etcdpb::etcdserverpb::lease_server::Lease;
use raftkv_etcdpb::etcdserverpb::maintenance_server::Maintenance;
use raftkv_etcdpb::etcdserverpb::{self as pb};
use serde_json::{Value, json};
use tonic::{Code, Status};

use super::{ETCD_API_VERSION, Etcd};

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

/// One unary call: parse, call the gRPC handler, render.
async fn unary<Req, Resp, Fut>(
    request: &str,
    response: &str,
    body: &[u8],
    call: impl FnOnce(tonic::Request<Req>) -> Fut,
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
    match call(tonic::Request::new(message)).await {
        Ok(answer) => Json(render(response, answer.get_ref())).into_response(),
        Err(status) => error(&status),
    }
}

/// Routes `$path` to `$handler` of trait `$service`, from `$req` to `$resp`.
macro_rules! route {
    ($router:expr, $path:literal, $service:ident :: $handler:ident, $req:literal, $resp:literal) => {
        $router.route(
            $path,
            post(|State(etcd): State<Etcd>, body: Bytes| async move {
                unary($req, $resp, &body, |r| async move {
                    $service::$handler(&etcd, r).await
                })
                .await
            }),
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
        router
            .route("/v3/lease/keepalive", post(keep_alive))
            .route("/v3/watch", post(watch))
            .route("/version", get(version))
            .layer(DefaultBodyLimit::max(GATEWAY_BODY_BYTES_MAX))
            .with_state(self)
    }
}

/// `POST /v3/lease/keepalive`: one keep-alive, answered `{"result": LeaseKeepAliveResponse}`.
async fn keep_alive(State(etcd): State<Etcd>, body: Bytes) -> Response {
    let request = match parse::<pb::LeaseKeepAliveRequest>("LeaseKeepAliveRequest", &body) {
        Ok(request) => request,
        Err(e) => return error(&e),
    };
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
    body: Bytes,
) -> Response {
    let request = match parse::<pb::WatchRequest>("WatchRequest", &body) {
        Ok(request) => request,
        Err(e) => return error(&e),
    };
    let client = client.map(|c| c.0.0.ip());
    let requests = futures::stream::once(async move { request }).chain(futures::stream::pending());
    let mut responses = etcd.watch_session(client, Box::pin(requests));
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
