//! # raftkv-server: a raftkv node
//!
//! Drives the replica engine (`raftkv-replica`: the Raft core, the key-value store and every
//! decision of the node loop) with the write-ahead log (`raftkv-wal`) on disk, talks to peers over
//! TCP and to clients over HTTP/JSON.
//!
//! | file | concept |
//! |---|---|
//! | `config.rs` | settings and their defaults, URL parsing |
//! | `meta.rs` | the node's identity in its data dir; bootstrap happens once |
//! | `node.rs` | the driver thread: feeds the replica engine, carries out its output |
//! | `shared.rs` | what the driver shares with the front ends: state, status, metrics |
//! | `codec.rs` | the peer wire format |
//! | `transport.rs` | peer connections: handshake, batching, bounded queues, reconnect |
//! | `corrupt_check.rs` | members compare state hashes at common check points; `CORRUPT` |
//! | `tls.rs` | TLS for the client and peer listeners and for calls between members |
//! | `auth.rs` | passwords, tokens, and what a caller may do |
//! | `snapshots.rs` | the snapshot worker: taking and installing snapshots off the driver |
//! | `syncer.rs` | the WAL syncer: `fdatasync` off the driver, one sync for every write meanwhile |
//! | `service.rs` | the node's operations, for every protocol front end |
//! | `api/` | the HTTP API, one file per concept, and forwarding to the leader |
//! | `metrics.rs` | counters and the `/metrics` scrape |
//!
//! Threads: one driver thread owns the engine and the WAL's writes; the syncer runs its
//! `fdatasync`s and the snapshot worker its snapshots; tokio runs the transport and the APIs. They meet in a bounded input queue and in `node::Shared`, whose
//! locks are held briefly and never across an `.await`.

pub mod api;
pub mod auth;
pub mod backup;
pub mod codec;
pub mod config;
pub mod corrupt_check;
pub mod error;
pub mod etcd;
pub mod http_serve;
pub mod log_limit;
pub mod meta;
pub mod metrics;
pub mod node;
pub mod peer_sources;
pub mod restore;
pub mod service;
pub mod shared;
pub mod snapshots;
pub mod syncer;
pub mod tls;
pub mod transport;

pub use raftkv_replica::{members, state};

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use raftkv_raft::Config;
use raftkv_replica::{Replica, Settings};
use raftkv_wal::{FsDisk, Wal, WalOptions};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub use config::{Bootstrap, ServerConfig};
pub use error::{RequestError, Result, ServerError};

use crate::members::{Member, cluster_id, initial_members, node_id};
use crate::meta::{META_VERSION, NodeMeta};
use crate::node::{Driver, INPUT_QUEUE_MAX, Input, NodeStatus, Shared};
use crate::transport::{PeerAddrs, Transport};

/// Largest snapshot chunk in one InstallSnapshot message.
pub const SNAPSHOT_CHUNK_BYTES: u64 = 1024 * 1024;
/// Longest a shutdown waits for client requests in flight.
pub const SHUTDOWN_DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// Largest AppendEntries payload.
pub const APPEND_BYTES_MAX: u64 = 1024 * 1024;

/// A running node.
pub struct Server {
    /// The driver's input queue.
    inputs: SyncSender<Input>,
    /// The driver thread.
    driver: Option<std::thread::JoinHandle<()>>,
    /// Stops the HTTP server.
    http_stop: Option<oneshot::Sender<()>>,
    /// The HTTP server task.
    http: tokio::task::JoinHandle<()>,
    /// Resolves when the driver ends: `Some(error)` if it failed.
    exit: Option<oneshot::Receiver<Option<String>>>,
    /// Background tasks (peer listener, publisher).
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The node's identity.
    meta: NodeMeta,
    /// State shared with the driver.
    shared: Arc<Shared>,
}

impl Server {
    /// Starts a node: bootstraps or joins on first start, resumes from the data dir afterwards.
    /// Must be called within a tokio runtime.
    pub async fn start(config: ServerConfig) -> Result<Server> {
        config.validate()?;
        // Bind first, so a port in use fails the start with a clear error (before a join adds
        // this node to the cluster).
        let bind = |addr, what: &'static str| async move {
            TcpListener::bind(addr).await.map_err(|e| {
                ServerError::Config(format!(
                    "cannot listen for {what} on {addr}: {e} (is another raftkv running? \
                     choose another port with --listen-{what})"
                ))
            })
        };
        let peer_listener = bind(config.listen_peer, "peer").await?;
        let client_listener = bind(config.listen_client, "client").await?;
        let client_tls = config
            .client_tls
            .as_ref()
            .map(|files| tls::Tls::load(files, ""))
            .transpose()?;
        let peer_tls = config
            .peer_tls
            .as_ref()
            .map(|files| tls::Tls::load(files, "peer-"))
            .transpose()?;
        let meta = identity(&config, client_tls.as_ref()).await?;

        let wal_dir = config.data_dir.join("wal");
        let options = WalOptions {
            cluster_id: meta.cluster_id,
            ..WalOptions::default()
        };
        let (wal, report) = Wal::open(FsDisk, &wal_dir, options)?;
        if let Some((path, torn)) = &report.torn_tail {
            tracing::warn!(
                file = %path.display(),
                offset = torn.offset,
                bytes = torn.bytes,
                "cut a torn tail left by a crash (those bytes were never acknowledged)"
            );
        }
        for (path, reason) in &report.damaged_snapshots {
            tracing::warn!(file = %path.display(), reason, "skipped a damaged snapshot");
        }
        tracing::info!(
            first_index = report.first_index,
            last_index = report.last_index,
            snapshot_index = report.snapshot_index,
            "recovered the write-ahead log"
        );

        let mut raft_config = Config::new(meta.id, meta.initial_voters.clone());
        raft_config.election_timeout_ticks = config.election_ticks;
        raft_config.heartbeat_interval_ticks = config.heartbeat_ticks;
        raft_config.pre_vote = true;
        raft_config.check_quorum = true;
        raft_config.snapshot_chunk_bytes_max = SNAPSHOT_CHUNK_BYTES;
        raft_config.msg_bytes_max = APPEND_BYTES_MAX;
        raft_config.seed = seed(meta.id);
        let me = Member {
            id: meta.id,
            name: meta.name.clone(),
            peer_url: config.advertise_peer.clone(),
            client_url: config.advertise_client.clone(),
        };
        let tick_ms = (config.tick.as_millis() as u64).max(1);
        let settings = Settings {
            tick_ms,
            snapshot_entries: config.snapshot_entries,
            snapshot_log_fraction: crate::config::SNAPSHOT_LOG_FRACTION,
            read_timeout_ticks: (config.request_timeout.as_millis() as u64 / tick_ms) + 1,
            me: Some(me.clone()),
            ..Settings::default()
        };
        let epoch = Instant::now();
        let engine = Replica::new(&raft_config, wal, settings, 0)?;

        let sessions_index = engine.state().kv.lock_sessions_index();
        let shared = Arc::new(Shared {
            state: engine.shared_state(),
            status: Mutex::new(NodeStatus {
                name: meta.name.clone(),
                cluster_id: format!("{:016x}", meta.cluster_id),
                ..NodeStatus::default()
            }),
            sync_started_ms: AtomicU64::new(0),
            leader_contact_ms: AtomicU64::new(0),
            epoch,
            metrics: metrics::Metrics::default(),
            applied: tokio::sync::Notify::new(),
            sessions_index: tokio::sync::watch::Sender::new(sessions_index),
            client_inputs: std::sync::atomic::AtomicUsize::new(0),
            stopping: tokio::sync::watch::Sender::new(false),
            checkpoints: Arc::default(),
        });
        let addrs: PeerAddrs = Arc::new(RwLock::new(HashMap::new()));
        for member in &meta.members {
            if let Ok(addr) = config::host_port(&member.peer_url) {
                addrs
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(member.id, addr);
            }
        }
        let runtime = tokio::runtime::Handle::current();
        let transport = Transport::new(
            meta.id,
            meta.cluster_id,
            addrs.clone(),
            runtime,
            shared.clone(),
            peer_tls.clone(),
        );
        let (inputs, input_rx) = std::sync::mpsc::sync_channel(INPUT_QUEUE_MAX);
        let sources = Arc::new(peer_sources::SourceFilter::new(config.peer_sources));
        let refresh_sources = tokio::spawn(sources.clone().refresh(addrs.clone()));
        let driver = Driver::new(
            engine,
            shared.clone(),
            transport,
            addrs,
            config.clone(),
            inputs.clone(),
        )?;
        let (exit_tx, exit) = oneshot::channel();
        let driver = std::thread::Builder::new()
            .name("raftkv-driver".into())
            .spawn(move || {
                let _ = exit_tx.send(driver.run(input_rx));
            })?;

        let removed_view = shared.clone();
        let removed: transport::RemovedCheck =
            Arc::new(move |id| removed_view.state().registry.is_removed(id));
        let mut tasks = vec![
            refresh_sources,
            tokio::spawn(transport::serve_peers(
                peer_listener,
                meta.id,
                meta.cluster_id,
                transport::PeerChecks {
                    removed,
                    sources,
                    tls: peer_tls.as_ref().map(tls::Tls::acceptor),
                },
                inputs.clone(),
            )),
        ];
        let client_acceptor = client_tls.as_ref().map(tls::Tls::acceptor);
        let service = service::Service::new(
            inputs.clone(),
            shared.clone(),
            config.clone(),
            me,
            client_tls,
        );
        let api = api::Api::new(service.clone());
        tasks.push(tokio::spawn(api.clone().publisher()));
        tasks.push(tokio::spawn(api.clone().watch_pump()));
        tasks.push(tokio::spawn(api.clone().watch_quota()));
        tasks.push(tokio::spawn(api.clone().check_corruption()));
        let limits = http_serve::ConnectionLimits {
            connections_max: client_connections_bound(config.client_connections_max),
            header_timeout: config.client_header_timeout,
            idle_timeout: config.client_idle_timeout,
        };
        let (http_stop, stopped) = oneshot::channel::<()>();
        let etcd = etcd::Etcd::new(service.clone(), api.watch_pump_handle());
        let grpc = etcd.clone().router();
        let router = api.router().merge(etcd.gateway());
        let http = tokio::spawn(async move {
            http_serve::serve(
                client_listener,
                router,
                grpc,
                client_acceptor,
                limits,
                stopped,
            )
            .await;
        });
        tracing::info!(
            name = %meta.name,
            id = meta.id,
            cluster = format!("{:016x}", meta.cluster_id),
            client = %config.advertise_client,
            peer = %config.advertise_peer,
            "raftkv node started"
        );
        Ok(Server {
            inputs,
            driver: Some(driver),
            http_stop: Some(http_stop),
            http,
            exit: Some(exit),
            tasks,
            meta,
            shared,
        })
    }

    /// The node's identity.
    pub fn meta(&self) -> &NodeMeta {
        &self.meta
    }

    /// Resolves if the node stops by itself (its WAL failed), with what failed.
    pub async fn stopped(&mut self) -> String {
        let outcome = match self.exit.take() {
            Some(exit) => exit.await.ok().flatten(),
            None => None,
        };
        outcome.unwrap_or_else(|| "the driver stopped".to_string())
    }

    /// Stops cleanly: no new client requests, leadership handed to an up-to-date voter, the
    /// driver stopped (every acknowledged write is already synced).
    pub async fn shutdown(mut self) {
        // No new connections; watch streams end; requests in flight finish (bounded), while the
        // driver still leads and commits them.
        if let Some(stop) = self.http_stop.take() {
            let _ = stop.send(());
        }
        self.shared.stopping.send_replace(true);
        if tokio::time::timeout(SHUTDOWN_DRAIN_TIMEOUT, &mut self.http)
            .await
            .is_err()
        {
            tracing::warn!("client requests still open after {SHUTDOWN_DRAIN_TIMEOUT:?}; closing");
            self.http.abort();
        }
        let (done, stopped) = oneshot::channel();
        if self.inputs.send(Input::Shutdown { done }).is_ok() {
            let _ = stopped.await;
        }
        for task in &self.tasks {
            task.abort();
        }
        if let Some(driver) = self.driver.take() {
            let _ = tokio::task::spawn_blocking(move || driver.join()).await;
        }
    }
}

/// The client connection bound: `wanted`, lowered so that with `DESCRIPTORS_RESERVED` kept for
/// the WAL, snapshots and peers the process stays under its open-file limit (read from
/// `/proc/self/limits`; when that cannot be read, `wanted` as is). Logs the outcome.
fn client_connections_bound(wanted: usize) -> usize {
    let limit = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|line| line.starts_with("Max open files"))
                .and_then(|line| line.split_whitespace().nth(3))
                .and_then(|soft| soft.parse::<usize>().ok())
        });
    let bound = match limit {
        Some(limit) => wanted.min(limit.saturating_sub(config::DESCRIPTORS_RESERVED).max(1)),
        None => wanted,
    };
    tracing::info!(
        open_files_limit = ?limit,
        reserved = config::DESCRIPTORS_RESERVED,
        client_connections_max = bound,
        "client connection bound"
    );
    bound
}

/// A per-process seed for the core's election jitter.
fn seed(id: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut state = nanos ^ id ^ u64::from(std::process::id());
    raftkv_raft::splitmix64(&mut state)
}

/// Loads the node's identity, or creates it by bootstrapping or joining.
async fn identity(config: &ServerConfig, tls: Option<&tls::Tls>) -> Result<NodeMeta> {
    if let Some(meta) = meta::load(&config.data_dir)? {
        if meta.name != config.name {
            return Err(ServerError::DataDir {
                dir: config.data_dir.clone(),
                reason: format!(
                    "holds node `{}`, not `{}`; pass --name {} or another --data-dir",
                    meta.name, config.name, meta.name
                ),
            });
        }
        tracing::info!(
            data_dir = %config.data_dir.display(),
            "resuming the node in the data dir; bootstrap flags (--initial-cluster, --join) are ignored"
        );
        return Ok(meta);
    }
    let meta = match &config.bootstrap {
        Bootstrap::InitialCluster(initial) => {
            let members = initial_members(initial);
            tracing::info!(members = initial.len(), "bootstrapping a new cluster");
            NodeMeta {
                version: META_VERSION,
                name: config.name.clone(),
                id: node_id(&config.name),
                cluster_id: cluster_id(initial),
                initial_voters: members.iter().map(|m| m.id).collect(),
                members,
            }
        }
        Bootstrap::Join(url) => {
            let me = Member {
                id: node_id(&config.name),
                name: config.name.clone(),
                peer_url: config.advertise_peer.clone(),
                client_url: config.advertise_client.clone(),
            };
            let joined = api::join(url, &me, tls).await?;
            tracing::info!(via = %url, id = joined.id, "joined the cluster as a learner");
            NodeMeta {
                version: META_VERSION,
                name: config.name.clone(),
                id: joined.id,
                cluster_id: joined.cluster_id,
                initial_voters: Vec::new(),
                members: joined.members,
            }
        }
    };
    meta::store(&config.data_dir, &meta)?;
    Ok(meta)
}
