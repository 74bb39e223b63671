//! What the load generator talks to: raftkv's HTTP API or etcd's v3 gRPC API (spoken by etcd and
//! by raftkv's client port alike), so the same load can be pointed at either store.
//!
//! Each client of the load is pinned to one connection (`client % connections`), and connections
//! are spread over the endpoints in turn.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use raftkv_etcdpb::etcdserverpb::kv_client::KvClient;
use raftkv_etcdpb::etcdserverpb::maintenance_client::MaintenanceClient;
use raftkv_etcdpb::etcdserverpb::{PutRequest, RangeRequest, StatusRequest};
use tonic::transport::{Channel, Endpoint};

use crate::client::normalize;

/// Time to connect to one endpoint.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time one request may take before it counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The protocol spoken, from `--protocol`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// raftkv's HTTP API (`/v1/kv`).
    Http,
    /// etcd's v3 gRPC API (`etcdserverpb.KV`).
    Etcd,
}

/// How a read is served, from `--consistency`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Consistency {
    /// A quorum-confirmed read (ReadIndex; etcd's default).
    Linearizable,
    /// The leader's lease, no round trip (raftkv's HTTP API only).
    Lease,
    /// The node's own copy, possibly behind (etcd's `serializable`, raftkv's `stale`).
    Serializable,
}

/// Connections to the store under load.
pub enum Target {
    /// raftkv's HTTP API: one pooled client; `endpoints[client % len]` per client.
    Http {
        /// The pooled HTTP client (one connection per concurrent request).
        client: reqwest::Client,
        /// Base URLs, without a trailing slash.
        endpoints: Vec<String>,
    },
    /// etcd's gRPC API: HTTP/2 connections, many requests multiplexed on each.
    Etcd {
        /// The connections (a client per call is a cheap handle on one).
        connections: Vec<Channel>,
    },
}

impl Target {
    /// Connects to `endpoints` (`host:port` or URLs) in `protocol`; `connections` is the number
    /// of gRPC connections (HTTP opens one per client).
    pub async fn connect(
        protocol: Protocol,
        endpoints: &[String],
        clients: usize,
        connections: usize,
    ) -> Result<Target> {
        if endpoints.is_empty() {
            bail!("at least one endpoint is needed");
        }
        let urls: Vec<String> = endpoints
            .iter()
            .map(|e| normalize(e).trim_end_matches('/').to_string())
            .collect();
        match protocol {
            Protocol::Http => Ok(Target::Http {
                client: reqwest::Client::builder()
                    .pool_max_idle_per_host(clients)
                    .timeout(REQUEST_TIMEOUT)
                    .build()?,
                endpoints: urls,
            }),
            Protocol::Etcd => {
                let mut out = Vec::with_capacity(connections.max(1));
                for i in 0..connections.max(1) {
                    out.push(channel(&urls[i % urls.len()]).await?);
                }
                Ok(Target::Etcd { connections: out })
            }
        }
    }

    /// Writes `value` at `key` through the connection of client `client`; whether it succeeded.
    pub async fn put(&self, client: usize, key: String, value: Bytes) -> bool {
        match self {
            Target::Http {
                client: http,
                endpoints,
            } => {
                let endpoint = &endpoints[client % endpoints.len()];
                let request = http.put(format!("{endpoint}/v1/kv/{key}")).body(value);
                answered(request, |status| status == 200).await
            }
            Target::Etcd { connections } => {
                let mut kv = KvClient::new(connections[client % connections.len()].clone());
                let request = PutRequest {
                    key: key.into_bytes().into(),
                    value,
                    ..Default::default()
                };
                kv.put(request).await.is_ok()
            }
        }
    }

    /// Reads `key` through the connection of client `client`; whether it was answered (a
    /// missing key counts as an answer).
    pub async fn get(&self, client: usize, key: String, consistency: Consistency) -> bool {
        match self {
            Target::Http {
                client: http,
                endpoints,
            } => {
                let endpoint = &endpoints[client % endpoints.len()];
                let mode = match consistency {
                    Consistency::Linearizable => "linearizable",
                    Consistency::Lease => "lease",
                    Consistency::Serializable => "stale",
                };
                let request = http.get(format!("{endpoint}/v1/kv/{key}?consistency={mode}"));
                answered(request, |status| status == 200 || status == 404).await
            }
            Target::Etcd { connections } => {
                let mut kv = KvClient::new(connections[client % connections.len()].clone());
                let request = RangeRequest {
                    key: key.into_bytes().into(),
                    serializable: consistency == Consistency::Serializable,
                    ..Default::default()
                };
                kv.range(request).await.is_ok()
            }
        }
    }
}

/// Sends an HTTP request and reads its answer; whether its status is one `ok` accepts.
async fn answered(request: reqwest::RequestBuilder, ok: impl Fn(u16) -> bool) -> bool {
    match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            let _ = response.bytes().await;
            ok(status)
        }
        Err(_) => false,
    }
}

/// A gRPC channel to `url`.
async fn channel(url: &str) -> Result<Channel> {
    Endpoint::from_shared(url.to_string())
        .with_context(|| format!("endpoint `{url}` is not a URL"))?
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .tcp_nodelay(true)
        .connect()
        .await
        .with_context(|| format!("cannot connect to {url}"))
}

/// Which of `endpoints` leads its cluster, asked over etcd's `Maintenance.Status` (which raftkv
/// answers too): the one whose own id is the leader it reports.
pub async fn etcd_leader(endpoints: &[String]) -> Result<String> {
    for endpoint in endpoints {
        let url = normalize(endpoint);
        let Ok(channel) = channel(&url).await else {
            continue;
        };
        let Ok(status) = MaintenanceClient::new(channel)
            .status(StatusRequest {})
            .await
        else {
            continue;
        };
        let status = status.into_inner();
        let own = status.header.map(|h| h.member_id).unwrap_or(0);
        if own != 0 && own == status.leader {
            return Ok(endpoint.clone());
        }
    }
    bail!("no leader among {}", endpoints.join(", "))
}
