//! The client subcommands spoken in etcd's v3 gRPC API (`--etcd`): `put`, `get`, `del` and
//! `watch` against any etcd endpoint — an etcd cluster, or raftkv's own client port, which
//! speaks it too. The output is the same as over raftkv's HTTP API.
//!
//! etcd's clients never retry a write (its outcome may be unknown); neither do these: a write is
//! sent once, to the first endpoint that accepts a connection.
//!
//! With `--user NAME:PASSWORD`, the connection first authenticates (etcd's `Authenticate`) and
//! every call carries the token in etcd's `token` metadata, as etcdctl does.

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use raftkv_etcdpb::etcdserverpb::AuthenticateRequest;
use raftkv_etcdpb::etcdserverpb::auth_client::AuthClient;
use raftkv_etcdpb::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use raftkv_etcdpb::etcdserverpb::kv_client::KvClient;
use raftkv_etcdpb::etcdserverpb::response_op::Response as ResponseOp;
use raftkv_etcdpb::etcdserverpb::watch_client::WatchClient;
use raftkv_etcdpb::etcdserverpb::watch_request::RequestUnion;
use raftkv_etcdpb::etcdserverpb::{
    Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
    WatchCreateRequest, WatchRequest, request_op,
};
use raftkv_etcdpb::mvccpb::event::EventType;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use crate::client::{Common, WatchEvent};

/// Time to connect to one endpoint.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
/// Time a unary call may take.
const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// etcd's metadata key for a token.
const TOKEN_METADATA: &str = "token";

/// A connection to an endpoint, each call carrying the token of `--user` if one was given.
pub(crate) type Connection = InterceptedService<Channel, Token>;

/// The token calls carry (`None`: no `--user`).
#[derive(Clone)]
pub(crate) struct Token(Option<MetadataValue<Ascii>>);

impl Interceptor for Token {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(token) = &self.0 {
            request.metadata_mut().insert(TOKEN_METADATA, token.clone());
        }
        Ok(request)
    }
}

/// A connection to the first endpoint that accepts one, authenticated as `--user` if given.
pub(crate) async fn connect(common: &Common) -> Result<Connection> {
    let channel = channel(common).await?;
    let token = match &common.user {
        Some(user) => authenticate(channel.clone(), user).await?,
        None => None,
    };
    Ok(InterceptedService::new(channel, Token(token)))
}

/// etcd's answer to `Authenticate` while authentication is disabled (its clients then go on
/// without a token, as the HTTP API ignores credentials).
const AUTH_NOT_ENABLED: &str = "etcdserver: authentication is not enabled";

/// `user`'s token (`NAME:PASSWORD`), from etcd's `Authenticate`; `None` if the cluster does not
/// have authentication enabled.
async fn authenticate(channel: Channel, user: &str) -> Result<Option<MetadataValue<Ascii>>> {
    let (name, password) = crate::client::credentials(user)?;
    let request = AuthenticateRequest {
        name: name.to_string(),
        password: password.to_string(),
    };
    let answer = match AuthClient::new(channel).authenticate(request).await {
        Ok(answer) => answer,
        Err(status) if status.message() == AUTH_NOT_ENABLED => return Ok(None),
        Err(status) => return Err(refused(status)),
    };
    let mut token = MetadataValue::try_from(answer.into_inner().token)
        .context("the server's token is not printable ASCII")?;
    token.set_sensitive(true);
    Ok(Some(token))
}

/// A channel to the first endpoint that accepts a connection.
async fn channel(common: &Common) -> Result<Channel> {
    let mut failures = Vec::new();
    let tls = common.tls()?.map(|(_, grpc)| grpc);
    for endpoint in &common.endpoints {
        let url = crate::client::normalize(endpoint);
        let mut channel = Endpoint::from_shared(url.clone())
            .with_context(|| format!("endpoint `{endpoint}` is not a URL"))?
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(CALL_TIMEOUT);
        match &tls {
            Some(tls) => channel = channel.tls_config(tls.clone())?,
            None if url.starts_with("https://") => {
                failures.push(format!(
                    "{url}: an https:// endpoint needs --cacert (the CA that signed the \
                     members' certificates)"
                ));
                continue;
            }
            None => {}
        }
        let channel = channel.connect().await;
        match channel {
            Ok(channel) => return Ok(channel),
            Err(e) => failures.push(format!("{url}: {}", crate::client::causes(&e))),
        }
    }
    bail!(
        "no endpoint accepted a connection ({})",
        failures.join("; ")
    )
}

/// A gRPC error as the user reads it: etcd's message (etcd's clients match on it).
pub(crate) fn refused(status: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{} ({:?})", status.message(), status.code())
}

/// The end of the range of every key starting with `prefix` (etcd's `GetPrefixRangeEnd`).
pub(crate) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0] // every key
}

/// The key and range end of `key`, or of every key starting with it.
fn key_range(key: &str, prefix: bool) -> (bytes::Bytes, bytes::Bytes) {
    let end = if prefix {
        prefix_end(key.as_bytes())
    } else {
        Vec::new()
    };
    (key.as_bytes().to_vec().into(), end.into())
}

/// `raftkv --etcd put K V [--cas N] [--lease ID]`.
pub async fn put(
    common: &Common,
    key: &str,
    value: &str,
    cas: Option<i64>,
    lease: i64,
) -> Result<()> {
    let mut kv = KvClient::new(connect(common).await?);
    let put = PutRequest {
        key: key.as_bytes().to_vec().into(),
        value: value.as_bytes().to_vec().into(),
        lease,
        ..Default::default()
    };
    let Some(cas) = cas else {
        let answer = kv.put(put).await.map_err(refused)?.into_inner();
        let revision = answer.header.map_or(0, |h| h.revision);
        return print(common, serde_json::json!({ "revision": revision }), || {
            out!("OK (revision {revision})")
        });
    };
    // Compare-and-swap: the key's mod_revision is `cas` (0: it does not exist).
    let txn = TxnRequest {
        compare: vec![Compare {
            result: CompareResult::Equal as i32,
            target: CompareTarget::Mod as i32,
            key: put.key.clone(),
            target_union: Some(TargetUnion::ModRevision(cas)),
            ..Default::default()
        }],
        success: vec![RequestOp {
            request: Some(request_op::Request::RequestPut(put.clone())),
        }],
        failure: vec![RequestOp {
            request: Some(request_op::Request::RequestRange(RangeRequest {
                key: put.key,
                ..Default::default()
            })),
        }],
    };
    let answer = kv.txn(txn).await.map_err(refused)?.into_inner();
    let revision = answer.header.map_or(0, |h| h.revision);
    if answer.succeeded {
        return print(
            common,
            serde_json::json!({ "revision": revision, "succeeded": true }),
            || out!("OK (revision {revision})"),
        );
    }
    let current = answer.responses.into_iter().find_map(|r| match r.response {
        Some(ResponseOp::ResponseRange(range)) => range.kvs.into_iter().next(),
        _ => None,
    });
    if common.json {
        let at = current.as_ref().map(|kv| kv.mod_revision);
        let json =
            serde_json::json!({ "revision": revision, "succeeded": false, "mod_revision": at });
        out!("{json}");
        return Ok(());
    }
    match current {
        Some(kv) => bail!(
            "not written: `{key}` is at mod_revision {}",
            kv.mod_revision
        ),
        None => bail!("not written: `{key}` does not exist"),
    }
}

/// `raftkv --etcd get K`; `stale` reads serve the member's local copy (etcd's serializable).
pub async fn get(common: &Common, key: &str, stale: bool) -> Result<()> {
    let mut kv = KvClient::new(connect(common).await?);
    let range = RangeRequest {
        key: key.as_bytes().to_vec().into(),
        serializable: stale,
        ..Default::default()
    };
    let answer = kv.range(range).await.map_err(refused)?.into_inner();
    let Some(found) = answer.kvs.into_iter().next() else {
        bail!("key `{key}` not found");
    };
    let value = String::from_utf8_lossy(&found.value).into_owned();
    let json = serde_json::json!({
        "key": key,
        "value": value,
        "create_revision": found.create_revision,
        "mod_revision": found.mod_revision,
        "version": found.version,
        "lease": found.lease,
    });
    print(common, json, || out!("{value}"))
}

/// `raftkv --etcd del K [--prefix]`.
pub async fn del(common: &Common, key: &str, prefix: bool) -> Result<()> {
    let mut kv = KvClient::new(connect(common).await?);
    let (key, range_end) = key_range(key, prefix);
    let delete = DeleteRangeRequest {
        key,
        range_end,
        ..Default::default()
    };
    let answer = kv.delete_range(delete).await.map_err(refused)?.into_inner();
    let revision = answer.header.map_or(0, |h| h.revision);
    let deleted = answer.deleted;
    let json = serde_json::json!({ "revision": revision, "deleted": deleted });
    print(common, json, || {
        let noun = if deleted == 1 { "key" } else { "keys" };
        out!("deleted {deleted} {noun} (revision {revision})");
    })
}

/// `raftkv --etcd watch K [--prefix] [--rev N]`: prints events until the stream ends.
pub async fn watch(common: &Common, key: &str, prefix: bool, rev: i64) -> Result<()> {
    let mut client = WatchClient::new(connect(common).await?);
    let (key, range_end) = key_range(key, prefix);
    let create = WatchCreateRequest {
        key,
        range_end,
        start_revision: rev,
        ..Default::default()
    };
    let request = WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(create)),
    };
    // The request stream stays open (a closed one ends the watch).
    let requests = futures::stream::iter([request]).chain(futures::stream::pending());
    let mut responses = client.watch(requests).await.map_err(refused)?.into_inner();
    while let Some(response) = responses.next().await {
        let response = response.map_err(refused)?;
        if response.canceled {
            bail!("the watch was cancelled: {}", response.cancel_reason);
        }
        for event in response.events {
            let Some(kv) = event.kv else { continue };
            WatchEvent {
                put: event.r#type == EventType::Put as i32,
                key: String::from_utf8_lossy(&kv.key).into_owned(),
                value: String::from_utf8_lossy(&kv.value).into_owned(),
                revision: kv.mod_revision,
            }
            .print(common.json);
        }
    }
    bail!("the watch stream ended")
}

/// Prints `json` with `--json`, else what `human` prints.
fn print(common: &Common, json: serde_json::Value, human: impl FnOnce()) -> Result<()> {
    if common.json {
        out!("{json}");
    } else {
        human();
    }
    Ok(())
}
