//! The client subcommands: `put`, `get`, `del`, `watch`, `ls`, `lease` over the HTTP API, or
//! (`--etcd`) `put`, `get`, `del` and `watch` over etcd's gRPC API (`etcd_client.rs`). Endpoints
//! are tried in order until one answers; output is for people unless `--json` is given.

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine;
use clap::Args;
use std::path::PathBuf;

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use rustls::ClientConfig;
use serde_json::Value;
use tonic::transport::ClientTlsConfig;

/// Options every client command takes.
#[derive(Args, Debug)]
pub struct Common {
    /// Client URLs of cluster members, comma-separated; tried in order.
    #[arg(
        long,
        env = "RAFTKV_ENDPOINTS",
        default_value = "http://127.0.0.1:4001",
        value_delimiter = ','
    )]
    pub(crate) endpoints: Vec<String>,
    /// Print the server's JSON instead of a human summary.
    #[arg(long)]
    pub(crate) json: bool,
    /// Speak etcd's v3 gRPC API (put, get, del, watch): to an etcd cluster, or to raftkv's
    /// client port, which speaks it too.
    #[arg(long, env = "RAFTKV_ETCD")]
    pub(crate) etcd: bool,
    /// CA certificate that the members' client certificates chain to (for https:// endpoints).
    #[arg(long, env = "RAFTKV_CACERT")]
    pub(crate) cacert: Option<PathBuf>,
    /// Client certificate to present (a cluster with --client-cert-auth asks for one).
    #[arg(long = "cert", env = "RAFTKV_CERT", requires_all = ["client_key", "cacert"])]
    pub(crate) client_cert: Option<PathBuf>,
    /// Private key of --cert.
    #[arg(long = "key", env = "RAFTKV_KEY", requires = "client_cert")]
    pub(crate) client_key: Option<PathBuf>,
    /// NAME:PASSWORD of a user, for a cluster with authentication enabled (sent as HTTP Basic
    /// credentials, or with --etcd exchanged for a token: use it over https://).
    #[arg(long, env = "RAFTKV_USER")]
    pub(crate) user: Option<String>,
}

/// The name and password of `--user NAME:PASSWORD`.
pub(crate) fn credentials(user: &str) -> Result<(&str, &str)> {
    user.split_once(':').context("--user takes NAME:PASSWORD")
}

impl Common {
    /// The TLS settings of --cacert, --cert and --key, for HTTP and for gRPC.
    pub(crate) fn tls(&self) -> Result<Option<(ClientConfig, ClientTlsConfig)>> {
        let Some(ca) = &self.cacert else {
            return Ok(None);
        };
        let identity = self.client_cert.as_deref().zip(self.client_key.as_deref());
        Ok(Some(raftkv_server::tls::client_side(ca, identity)?))
    }

    /// An HTTP client builder that speaks TLS as --cacert, --cert and --key say (without
    /// --cacert, an https:// endpoint's certificate cannot be verified and is refused).
    pub(crate) fn http_client(&self) -> Result<reqwest::ClientBuilder> {
        let mut builder = reqwest::Client::builder();
        if let Some(user) = &self.user {
            credentials(user)?;
            let credentials = base64::engine::general_purpose::STANDARD.encode(user);
            let mut value = reqwest::header::HeaderValue::try_from(format!("Basic {credentials}"))
                .context("--user")?;
            value.set_sensitive(true);
            let headers =
                reqwest::header::HeaderMap::from_iter([(reqwest::header::AUTHORIZATION, value)]);
            builder = builder.default_headers(headers);
        }
        Ok(match self.tls()? {
            Some((config, _)) => builder.use_preconfigured_tls(config),
            None => builder,
        })
    }

    /// Refuses `--etcd` for a command that speaks only raftkv's HTTP API.
    pub(crate) fn http_only(&self, command: &str) -> Result<()> {
        if self.etcd {
            bail!("`raftkv {command}` speaks raftkv's HTTP API only; drop --etcd");
        }
        Ok(())
    }
}

/// `raftkv watch`.
#[derive(Args, Debug)]
pub struct WatchArgs {
    /// The key (or prefix with --prefix).
    key: String,
    /// Watch every key starting with KEY.
    #[arg(long)]
    prefix: bool,
    /// Start at this revision (past events first); 0: from now.
    #[arg(long, default_value_t = 0)]
    rev: i64,
    #[command(flatten)]
    common: Common,
}

/// One change a watch prints, the same over either API.
pub struct WatchEvent {
    /// A put (else a delete).
    pub put: bool,
    pub key: String,
    pub value: String,
    /// The revision of the change.
    pub revision: i64,
}

impl WatchEvent {
    /// One line: `PUT key = value (revision N)`, `DELETE key (revision N)`, or JSON.
    pub fn print(&self, json: bool) {
        let kind = if self.put { "PUT" } else { "DELETE" };
        if json {
            let line = serde_json::json!({
                "type": kind,
                "key": self.key,
                "value": self.value,
                "revision": self.revision,
            });
            out!("{line}");
        } else if self.put {
            out!(
                "{kind} {} = {} (revision {})",
                self.key,
                self.value,
                self.revision
            );
        } else {
            out!("{kind} {} (revision {})", self.key, self.revision);
        }
    }
}

/// `raftkv put`.
#[derive(Args, Debug)]
pub struct PutArgs {
    /// The key.
    key: String,
    /// The value.
    value: String,
    /// Compare-and-swap: write only if the key's mod_revision is N (0: only if it is absent).
    #[arg(long, value_name = "N")]
    cas: Option<i64>,
    /// Attach the key to this lease (see `raftkv lease grant`).
    #[arg(long, value_name = "ID")]
    lease: Option<i64>,
    #[command(flatten)]
    common: Common,
}

/// `raftkv get`.
#[derive(Args, Debug)]
pub struct GetArgs {
    /// The key.
    key: String,
    /// linearizable (default), lease, or stale (any node's local copy, possibly behind).
    #[arg(long, default_value = "linearizable")]
    consistency: String,
    #[command(flatten)]
    common: Common,
}

/// `raftkv del`.
#[derive(Args, Debug)]
pub struct DelArgs {
    /// The key (or prefix with --prefix).
    key: String,
    /// Delete every key starting with KEY.
    #[arg(long)]
    prefix: bool,
    #[command(flatten)]
    common: Common,
}

/// `raftkv ls`.
#[derive(Args, Debug)]
pub struct LsArgs {
    /// List keys starting with this (all keys when empty).
    #[arg(default_value = "")]
    prefix: String,
    #[command(flatten)]
    common: Common,
}

/// Builds `endpoint/v1/kv/<key>` with the key percent-encoded as one path segment.
fn kv_url(endpoint: &str, key: &str, query: &[(&str, &str)]) -> Result<reqwest::Url> {
    let mut url = reqwest::Url::parse(&normalize(endpoint))
        .with_context(|| format!("endpoint `{endpoint}` is not a URL"))?;
    url.path_segments_mut()
        .map_err(|()| anyhow!("endpoint `{endpoint}` cannot take a path"))?
        .clear()
        .extend(["v1", "kv", key]);
    for (k, v) in query {
        if v.is_empty() {
            let q = match url.query() {
                Some(q) if !q.is_empty() => format!("{q}&{k}"),
                _ => k.to_string(),
            };
            url.set_query(Some(&q));
        } else {
            url.query_pairs_mut().append_pair(k, v);
        }
    }
    Ok(url)
}

pub(crate) fn normalize(endpoint: &str) -> String {
    if endpoint.contains("://") {
        endpoint.to_string()
    } else {
        format!("http://{endpoint}")
    }
}

/// `error` with the chain of its causes (a refused TLS certificate is only told by a cause).
pub(crate) fn causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// How long a command keeps retrying while the cluster answers 503 (no leader yet, leader
/// changing). A 503 always means the request did not take effect, so retrying is safe.
const UNAVAILABLE_RETRY_FOR: std::time::Duration = std::time::Duration::from_secs(10);

/// How long a write keeps being retried, in its client session, while its outcome is unknown
/// (no answer, a 504, a 503): the session makes the retry apply at most once.
const WRITE_RETRY_FOR: std::time::Duration = std::time::Duration::from_secs(30);
/// Header carrying a write's client session id (see the README's "Exactly-once writes").
const CLIENT_ID_HEADER: &str = "x-raftkv-client-id";
/// Header carrying a write's sequence number in its session.
const SEQUENCE_HEADER: &str = "x-raftkv-sequence";

/// What one pass over the endpoints gave.
enum Attempt {
    /// A node answered (the last 503, if every node answered 503): status, headers, body.
    Answered(StatusCode, HeaderMap, Vec<u8>),
    /// The request reached a node that did not answer: it may or may not have taken effect.
    Unknown(String),
}

/// Sends a request to the first endpoint that answers, retrying while the cluster answers 503.
pub(crate) async fn send(
    common: &Common,
    method: Method,
    url_for: impl Fn(&str) -> Result<reqwest::Url>,
    body: Option<Vec<u8>>,
) -> Result<(StatusCode, Vec<u8>)> {
    let (status, _, bytes) = send_with_headers(common, method, url_for, body).await?;
    Ok((status, bytes))
}

/// [`send`], with the answer's headers.
pub(crate) async fn send_with_headers(
    common: &Common,
    method: Method,
    url_for: impl Fn(&str) -> Result<reqwest::Url>,
    body: Option<Vec<u8>>,
) -> Result<(StatusCode, HeaderMap, Vec<u8>)> {
    let deadline = tokio::time::Instant::now() + UNAVAILABLE_RETRY_FOR;
    loop {
        match send_once(common, method.clone(), &url_for, body.clone(), &[]).await? {
            Attempt::Answered(status, headers, bytes)
                if status != StatusCode::SERVICE_UNAVAILABLE
                    || tokio::time::Instant::now() > deadline =>
            {
                return Ok((status, headers, bytes));
            }
            Attempt::Answered(..) => {}
            Attempt::Unknown(reason) => bail!(
                "{reason}; the outcome is unknown: the request may or may not have taken effect"
            ),
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Sends a write as write 1 of a new client session, and retries it (to any endpoint) while its
/// outcome is unknown or the cluster is unavailable: the cluster applies it exactly once.
async fn send_write(
    common: &Common,
    method: Method,
    url_for: impl Fn(&str) -> Result<reqwest::Url>,
    body: Option<Vec<u8>>,
) -> Result<(StatusCode, Vec<u8>)> {
    let (status, opened) = send(
        common,
        Method::POST,
        |e| api_url(e, "/v1/session", None),
        None,
    )
    .await?;
    let client_id = check(status, &opened)?["client_id"]
        .as_u64()
        .ok_or_else(|| anyhow!("opening a client session gave no client id"))?
        .to_string();
    let headers = [
        (CLIENT_ID_HEADER, client_id.as_str()),
        (SEQUENCE_HEADER, "1"),
    ];
    let answer = write_in_session(common, method, url_for, body, &headers).await;
    // Close the session (best effort): the cluster keeps a bounded number of them.
    let close = format!("/v1/session/{client_id}");
    let _ = send_once(
        common,
        Method::DELETE,
        &|e| api_url(e, &close, None),
        None,
        &[],
    )
    .await;
    answer
}

/// Sends a session write until it has an answer or its retries run out.
async fn write_in_session(
    common: &Common,
    method: Method,
    url_for: impl Fn(&str) -> Result<reqwest::Url>,
    body: Option<Vec<u8>>,
    headers: &[(&str, &str)],
) -> Result<(StatusCode, Vec<u8>)> {
    let client_id = headers.first().map_or("", |(_, id)| *id);
    let deadline = tokio::time::Instant::now() + WRITE_RETRY_FOR;
    loop {
        let attempt = send_once(common, method.clone(), &url_for, body.clone(), headers).await?;
        let retry = match attempt {
            Attempt::Answered(status, _, bytes)
                if status != StatusCode::SERVICE_UNAVAILABLE
                    && status != StatusCode::GATEWAY_TIMEOUT =>
            {
                return Ok((status, bytes));
            }
            Attempt::Answered(status, _, bytes) => {
                if tokio::time::Instant::now() > deadline {
                    return Ok((status, bytes));
                }
                format!("HTTP {}", status.as_u16())
            }
            Attempt::Unknown(reason) => {
                if tokio::time::Instant::now() > deadline {
                    bail!(
                        "{reason}; gave up after {WRITE_RETRY_FOR:?}: the write may or may not \
                         have taken effect"
                    );
                }
                reason
            }
        };
        eprintln!("retrying the write in session {client_id} ({retry})");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Sends a request to the first endpoint that answers.
async fn send_once(
    common: &Common,
    method: Method,
    url_for: &impl Fn(&str) -> Result<reqwest::Url>,
    body: Option<Vec<u8>>,
    headers: &[(&str, &str)],
) -> Result<Attempt> {
    let client = common
        .http_client()?
        .timeout(std::time::Duration::from_secs(30))
        .build()?;
    let mut failures = Vec::new();
    let mut unavailable = None;
    for endpoint in &common.endpoints {
        let url = url_for(endpoint)?;
        let mut request = client.request(method.clone(), url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = &body {
            request = request.body(body.clone());
        }
        match request.send().await {
            Ok(response) => {
                let status = response.status();
                let headers = response.headers().clone();
                let bytes = match response.bytes().await {
                    Ok(bytes) => bytes.to_vec(),
                    Err(e) => return Ok(Attempt::Unknown(format!("{endpoint}: {e}"))),
                };
                if status == StatusCode::SERVICE_UNAVAILABLE {
                    // This node cannot serve it (no leader in its partition, say): it did not
                    // happen there, so the next endpoint may try.
                    unavailable = Some((status, headers, bytes));
                    continue;
                }
                return Ok(Attempt::Answered(status, headers, bytes));
            }
            // Only a request that never reached the node is safe to send elsewhere.
            Err(e) if e.is_connect() => failures.push(format!("{endpoint}: {}", causes(&e))),
            Err(e) => {
                return Ok(Attempt::Unknown(format!(
                    "{endpoint} did not answer ({})",
                    causes(&e)
                )));
            }
        }
    }
    if let Some((status, headers, bytes)) = unavailable {
        return Ok(Attempt::Answered(status, headers, bytes));
    }
    if !headers.is_empty() {
        // A session write: the nodes may be restarting; the caller retries within its deadline.
        return Ok(Attempt::Unknown(format!(
            "no endpoint answered ({})",
            failures.join("; ")
        )));
    }
    bail!(
        "no endpoint answered ({}); is the cluster running? (`raftkv serve` or `raftkv dev`)",
        failures.join("; ")
    )
}

/// Turns an error response into a readable error.
pub(crate) fn check(status: StatusCode, body: &[u8]) -> Result<Value> {
    let json: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    if status.is_success() {
        return Ok(json);
    }
    let message = json
        .get("error")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    bail!("{message} (HTTP {})", status.as_u16())
}

pub(crate) fn print_json(value: &Value) -> Result<()> {
    out!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// The value of a key-value: Consul's `Value` of a read (base64, null when empty), or the
/// `value` of a watch event (base64).
fn decode_value(kv: &Value) -> String {
    kv.get("Value")
        .or_else(|| kv.get("value"))
        .and_then(Value::as_str)
        .and_then(|v| base64::engine::general_purpose::STANDARD.decode(v).ok())
        .map(|v| String::from_utf8_lossy(&v).into_owned())
        .unwrap_or_default()
}

/// `raftkv put K V`.
pub async fn put(args: PutArgs) -> Result<()> {
    if args.common.etcd {
        let lease = args.lease.unwrap_or(0);
        return crate::etcd_client::put(&args.common, &args.key, &args.value, args.cas, lease)
            .await;
    }
    let cas = args.cas.map(|n| n.to_string());
    let lease = args.lease.map(|n| n.to_string());
    let query: Vec<(&str, &str)> = cas
        .iter()
        .map(|n| ("cas", n.as_str()))
        .chain(lease.iter().map(|n| ("lease", n.as_str())))
        .collect();
    let (status, body) = send_write(
        &args.common,
        Method::PUT,
        |e| kv_url(e, &args.key, &query),
        Some(args.value.into_bytes()),
    )
    .await?;
    let json = check(status, &body)?;
    if args.common.json {
        return print_json(&json);
    }
    if json == Value::Bool(false) {
        match args.cas {
            Some(0) => bail!("not written: `{}` exists", args.key),
            Some(index) => bail!(
                "not written: `{}` is not at ModifyIndex {index} (it changed, or does not exist)",
                args.key
            ),
            None => bail!("not written: `{}`", args.key),
        }
    }
    out!("OK");
    Ok(())
}

pub async fn get(args: GetArgs) -> Result<()> {
    if args.common.etcd {
        let stale = args.consistency == "stale";
        return crate::etcd_client::get(&args.common, &args.key, stale).await;
    }
    let consistency = args.consistency.as_str();
    let (status, body) = send(
        &args.common,
        Method::GET,
        |e| kv_url(e, &args.key, &[("consistency", consistency)]),
        None,
    )
    .await?;
    if status == StatusCode::NOT_FOUND && !args.common.json {
        bail!("key `{}` not found", args.key);
    }
    let json = check(status, &body)?;
    if args.common.json {
        return print_json(&json);
    }
    out!("{}", decode_value(&json[0]));
    Ok(())
}

/// `raftkv del K`.
pub async fn del(args: DelArgs) -> Result<()> {
    if args.common.etcd {
        return crate::etcd_client::del(&args.common, &args.key, args.prefix).await;
    }
    let query: &[(&str, &str)] = if args.prefix { &[("recurse", "")] } else { &[] };
    let (status, body) = send_write(
        &args.common,
        Method::DELETE,
        |e| kv_url(e, &args.key, query),
        None,
    )
    .await?;
    let json = check(status, &body)?;
    if args.common.json {
        return print_json(&json);
    }
    out!("OK");
    Ok(())
}

/// Keys `raftkv ls` asks for per page.
const LS_PAGE_KEYS: &str = "1000";

/// `raftkv ls PREFIX`: every key under the prefix, page by page, all at the first page's
/// revision.
pub async fn ls(args: LsArgs) -> Result<()> {
    args.common.http_only("ls")?;
    let mut start: Option<String> = None;
    let mut revision: Option<String> = None;
    loop {
        let mut query = vec![("recurse", ""), ("limit", LS_PAGE_KEYS)];
        if let Some(start) = &start {
            query.push(("start", start));
        }
        if let Some(revision) = &revision {
            query.push(("revision", revision));
        }
        let (status, headers, body) = send_with_headers(
            &args.common,
            Method::GET,
            |e| kv_url(e, &args.prefix, &query),
            None,
        )
        .await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(());
        }
        let json = check(status, &body)?;
        if args.common.json {
            print_json(&json)?;
        } else {
            for kv in json.as_array().into_iter().flatten() {
                out!(
                    "{} = {}",
                    kv["Key"].as_str().unwrap_or_default(),
                    decode_value(kv)
                );
            }
        }
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        match header("x-raftkv-next") {
            Some(next) => {
                let next = url::form_urlencoded::parse(format!("k={next}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned());
                start = next;
                revision = revision.or_else(|| header("x-consul-index"));
            }
            None => return Ok(()),
        }
    }
}

pub async fn watch(args: WatchArgs) -> Result<()> {
    if args.common.etcd {
        let common = &args.common;
        return crate::etcd_client::watch(common, &args.key, args.prefix, args.rev).await;
    }
    let mut query = Vec::new();
    if args.prefix {
        query.push(("prefix".to_string(), String::new()));
    }
    if args.rev != 0 {
        query.push(("rev".to_string(), args.rev.to_string()));
    }
    let mut failures = Vec::new();
    let watch_client = args.common.http_client()?.build()?;
    for endpoint in &args.common.endpoints {
        let mut url = reqwest::Url::parse(&normalize(endpoint))
            .with_context(|| format!("endpoint `{endpoint}` is not a URL"))?;
        url.path_segments_mut()
            .map_err(|()| anyhow!("endpoint `{endpoint}` cannot take a path"))?
            .clear()
            .extend(["v1", "watch", &args.key]);
        let mut query_text = String::new();
        for (k, v) in &query {
            if !query_text.is_empty() {
                query_text.push('&');
            }
            query_text.push_str(k);
            if !v.is_empty() {
                query_text.push('=');
                query_text.push_str(v);
            }
        }
        url.set_query((!query_text.is_empty()).then_some(query_text.as_str()));
        let response = match watch_client.get(url).send().await {
            Ok(response) => response,
            Err(e) if e.is_connect() => {
                failures.push(format!("{endpoint}: {}", causes(&e)));
                continue;
            }
            Err(e) => bail!("{endpoint}: {e}"),
        };
        let status = response.status();
        if !status.is_success() {
            let body = response.bytes().await.unwrap_or_default();
            check(status, &body)?;
            bail!("{endpoint} refused the watch: HTTP {status}");
        }
        return print_watch_lines(response, args.common.json).await;
    }
    bail!("no endpoint answered ({})", failures.join("; "))
}

/// Prints the events of an HTTP watch stream (JSON lines) until it ends.
async fn print_watch_lines(mut response: reqwest::Response, json: bool) -> Result<()> {
    let mut pending: Vec<u8> = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        pending.extend_from_slice(&chunk);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let value: Value = serde_json::from_slice(&line).with_context(|| {
                format!(
                    "a watch line is not JSON: {:?}",
                    String::from_utf8_lossy(&line)
                )
            })?;
            if let Some(error) = value["error"].as_str() {
                bail!("the watch ended: {error}");
            }
            for event in value["events"].as_array().into_iter().flatten() {
                let kv = &event["kv"];
                WatchEvent {
                    put: event["type"] == "put",
                    key: kv["key"].as_str().unwrap_or_default().to_string(),
                    value: decode_value(kv),
                    revision: kv["mod_revision"].as_i64().unwrap_or_default(),
                }
                .print(json);
            }
        }
    }
    bail!("the watch stream ended")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_one_encoded_path_segment() {
        let url = kv_url("127.0.0.1:4001", "a/b c", &[("prefix", "")]).unwrap();
        assert_eq!(url.as_str(), "http://127.0.0.1:4001/v1/kv/a%2Fb%20c?prefix");
        let url = kv_url("http://h:1", "k", &[("consistency", "stale")]).unwrap();
        assert_eq!(url.as_str(), "http://h:1/v1/kv/k?consistency=stale");
    }
}

/// `raftkv lease ...`.
#[derive(clap::Subcommand, Debug)]
pub enum LeaseCommand {
    /// Grant a lease of TTL seconds; prints its id.
    Grant {
        /// Time to live in seconds.
        ttl: u64,
        #[command(flatten)]
        common: Common,
    },
    /// Renew a lease for another TTL.
    Keepalive {
        /// The lease id.
        id: i64,
        #[command(flatten)]
        common: Common,
    },
    /// End a lease now, deleting its keys.
    Revoke {
        /// The lease id.
        id: i64,
        #[command(flatten)]
        common: Common,
    },
}

pub(crate) fn api_url(endpoint: &str, path: &str, query: Option<&str>) -> Result<reqwest::Url> {
    let mut url = reqwest::Url::parse(&normalize(endpoint))
        .with_context(|| format!("endpoint `{endpoint}` is not a URL"))?;
    url.set_path(path);
    url.set_query(query);
    Ok(url)
}

/// `raftkv lease`.
pub async fn lease(command: LeaseCommand) -> Result<()> {
    let (LeaseCommand::Grant { common, .. }
    | LeaseCommand::Keepalive { common, .. }
    | LeaseCommand::Revoke { common, .. }) = &command;
    common.http_only("lease")?;
    match command {
        LeaseCommand::Grant { ttl, common } => {
            let query = format!("ttl={ttl}");
            let (status, body) = send_write(
                &common,
                Method::POST,
                |e| api_url(e, "/v1/lease", Some(&query)),
                None,
            )
            .await?;
            let json = check(status, &body)?;
            if common.json {
                return print_json(&json);
            }
            out!("{}", json["id"]);
        }
        LeaseCommand::Keepalive { id, common } => {
            let path = format!("/v1/lease/{id}/keepalive");
            let (status, body) =
                send(&common, Method::POST, |e| api_url(e, &path, None), None).await?;
            let json = check(status, &body)?;
            if common.json {
                return print_json(&json);
            }
            out!("lease {id} renewed for {} ms", json["ttl_ms"]);
        }
        LeaseCommand::Revoke { id, common } => {
            let path = format!("/v1/lease/{id}");
            let (status, body) =
                send_write(&common, Method::DELETE, |e| api_url(e, &path, None), None).await?;
            let json = check(status, &body)?;
            if common.json {
                return print_json(&json);
            }
            out!("lease {id} revoked; {} keys deleted", json["deleted"]);
        }
    }
    Ok(())
}
