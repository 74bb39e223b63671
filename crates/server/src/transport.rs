//! The peer transport: one long-lived TCP connection per peer and direction carrying batches of
//! Raft messages in checksummed frames (see `codec`).
//!
//! Outbound, each peer has a task and a bounded queue. The driver never waits on the network:
//! when a peer's queue is full (the peer is slow or down) messages for it are dropped, and Raft's
//! own retries (heartbeats, probes, snapshot resumption from the acknowledged offset) recover.
//! A broken connection is re-dialled with exponential backoff.
//!
//! With peer TLS (`--peer-cert-file` ...), every connection is TLS both ways: the dialling member
//! verifies the listener's certificate against the peer CA and presents its own, which the
//! listener verifies when `--peer-client-cert-auth` is on, before any byte of the handshake.
//!
//! Inbound, a connection starts with a handshake naming the cluster and both nodes, sent within
//! `INBOUND_HANDSHAKE_TIMEOUT`; a node of another cluster, a removed node, or a connection meant
//! for another node is refused. Garbage, a bad checksum or an oversized frame closes that
//! connection and nothing else. Before that, at accept, `peer_sources` refuses addresses that are
//! not members' and addresses whose handshakes kept failing. Handshakes in progress are bounded
//! (`PEER_HANDSHAKES_MAX`), and established connections per member separately
//! (`PEER_CONNECTIONS_PER_MEMBER_MAX`), so a flood of junk connections cannot take a member's
//! place; refusals are logged as summaries.

use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::BytesMut;
use raftkv_raft::{Message, MessageBody, NodeId};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};

use crate::codec::{FRAME_BYTES_MAX, decode_frame, encode_frame};
use crate::error::{Result, ServerError};
use crate::log_limit::LogLimit;
use crate::metrics::Metrics;
use crate::node::{Input, Shared};
use crate::peer_sources::SourceFilter;
use crate::tls::Tls;
use prometheus_client::metrics::gauge::Gauge;

/// Messages queued for one peer before new ones are dropped.
pub const PEER_QUEUE_MSGS_MAX: usize = 1024;
/// Messages batched into one frame.
pub const FRAME_MSGS_MAX: usize = 256;
/// Bytes of entries and snapshot data batched into one frame (a single larger message still goes
/// alone, up to `FRAME_BYTES_MAX`).
pub const FRAME_BATCH_BYTES_MAX: u64 = 4 * 1024 * 1024;
/// Inbound peer connections in their handshake at once (each holds a slot for at most
/// `INBOUND_HANDSHAKE_TIMEOUT`); more are refused.
pub const PEER_HANDSHAKES_MAX: usize = 64;
/// Established inbound connections per member (it keeps one; the rest covers reconnects), so
/// junk connections can never take a member's place.
pub const PEER_CONNECTIONS_PER_MEMBER_MAX: usize = 4;
/// Time an inbound connection has to send its handshake.
pub const INBOUND_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(1);
/// Time an inbound connection has to finish its TLS handshake (with peer TLS).
pub const INBOUND_TLS_TIMEOUT: Duration = Duration::from_secs(3);
/// How often refused peer connections are summarized in the log.
pub const PEER_REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);
/// First and last delay between reconnection attempts.
pub const RECONNECT_BACKOFF_MIN: Duration = Duration::from_millis(50);
/// Longest delay between reconnection attempts.
pub const RECONNECT_BACKOFF_MAX: Duration = Duration::from_secs(2);
/// A connection that stayed up this long resets the reconnect backoff.
pub const STABLE_CONNECTION: Duration = Duration::from_secs(1);
/// An inbound connection silent this long is closed (its peer vanished without a reset); the
/// peer reconnects when it has something to say.
pub const PEER_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Time allowed to connect to a peer.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Snapshot bytes sent per second to one peer at most, so catching up a follower does not starve
/// the replication traffic on the same link.
pub const SNAPSHOT_BYTES_PER_SEC_MAX: u64 = 64 * 1024 * 1024;

/// First bytes of every peer connection.
const HANDSHAKE_MAGIC: [u8; 4] = *b"RKV1";
/// Handshake length: magic, cluster id, sender id, receiver id.
const HANDSHAKE_BYTES: usize = 4 + 8 + 8 + 8;

/// Where peers listen, by node id (`host:port`). Shared with the driver, which updates it as the
/// member registry changes.
pub type PeerAddrs = Arc<RwLock<HashMap<NodeId, String>>>;

/// A peer connection: TCP, or TLS over TCP.
trait PeerIo: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> PeerIo for T {}
type PeerStream = Box<dyn PeerIo>;

/// Whether a node id was removed from the cluster (its connections are refused).
pub type RemovedCheck = Arc<dyn Fn(NodeId) -> bool + Send + Sync>;

/// Who may connect to the peer port.
pub struct PeerChecks {
    /// Refuses removed members at the handshake.
    pub removed: RemovedCheck,
    /// Refuses non-member addresses and repeated failures at accept.
    pub sources: Arc<SourceFilter>,
    /// With peer TLS: the listener's side (which may require a peer certificate).
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

/// The sending half, used by the driver thread.
pub struct Transport {
    /// This node.
    id: NodeId,
    /// This cluster.
    cluster_id: u64,
    /// Peer addresses.
    addrs: PeerAddrs,
    /// Queue into each peer's connection task, with the gauge of its length.
    peers: Mutex<HashMap<NodeId, (mpsc::Sender<Message>, Gauge)>>,
    /// The runtime peer tasks run on.
    runtime: tokio::runtime::Handle,
    /// Where dropped messages are counted.
    shared: Arc<Shared>,
    /// With peer TLS: how connections to peers are made.
    tls: Option<Tls>,
}

impl Transport {
    /// A transport for node `id` of `cluster_id`.
    pub fn new(
        id: NodeId,
        cluster_id: u64,
        addrs: PeerAddrs,
        runtime: tokio::runtime::Handle,
        shared: Arc<Shared>,
        tls: Option<Tls>,
    ) -> Self {
        Transport {
            id,
            cluster_id,
            addrs,
            peers: Mutex::new(HashMap::new()),
            runtime,
            shared,
            tls,
        }
    }

    /// Queues `messages` for their peers without waiting. A message for a peer whose queue is
    /// full is dropped (Raft retries).
    pub fn send(&self, messages: Vec<Message>) {
        if messages.is_empty() {
            return;
        }
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        for message in messages {
            let to = message.to;
            if to == self.id {
                continue;
            }
            let (queue, length) = peers.entry(to).or_insert_with(|| self.spawn_peer(to));
            let sent = queue.try_send(message);
            length.set((PEER_QUEUE_MSGS_MAX - queue.capacity()) as i64);
            match sent {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(m)) => {
                    Metrics::bump(&self.shared.metrics.peer_messages_dropped);
                    tracing::debug!(peer = to, kind = m.body.name(), "peer queue full; dropped");
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    peers.remove(&to);
                }
            }
        }
    }

    fn spawn_peer(&self, to: NodeId) -> (mpsc::Sender<Message>, Gauge) {
        let (tx, rx) = mpsc::channel(PEER_QUEUE_MSGS_MAX);
        let handshake = encode_handshake(self.cluster_id, self.id, to);
        let tls = self.tls.clone();
        self.runtime
            .spawn(peer_sender(to, handshake, self.addrs.clone(), tls, rx));
        let length = self
            .shared
            .metrics
            .observed
            .peer_send_queue
            .get_or_create(&crate::metrics::peer_label(to))
            .clone();
        (tx, length)
    }
}

fn encode_handshake(cluster_id: u64, from: NodeId, to: NodeId) -> [u8; HANDSHAKE_BYTES] {
    let mut out = [0u8; HANDSHAKE_BYTES];
    out[..4].copy_from_slice(&HANDSHAKE_MAGIC);
    out[4..12].copy_from_slice(&cluster_id.to_le_bytes());
    out[12..20].copy_from_slice(&from.to_le_bytes());
    out[20..28].copy_from_slice(&to.to_le_bytes());
    out
}

fn decode_handshake(bytes: &[u8; HANDSHAKE_BYTES]) -> Result<(u64, NodeId, NodeId)> {
    if bytes[..4] != HANDSHAKE_MAGIC {
        return Err(ServerError::Handshake(
            "not a raftkv peer (bad magic); is a client talking to the peer port?".into(),
        ));
    }
    let word = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[at..at + 8]);
        u64::from_le_bytes(b)
    };
    Ok((word(4), word(12), word(20)))
}

/// One peer's outbound connection: dial, handshake, then write batches until the connection
/// breaks; repeat with backoff. Ends when the transport drops the queue.
async fn peer_sender(
    to: NodeId,
    handshake: [u8; HANDSHAKE_BYTES],
    addrs: PeerAddrs,
    tls: Option<Tls>,
    mut queue: mpsc::Receiver<Message>,
) {
    let mut backoff = RECONNECT_BACKOFF_MIN;
    loop {
        let addr = addrs
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&to)
            .cloned();
        let stream = match addr {
            Some(addr) => {
                let dialled = tokio::time::timeout(HANDSHAKE_TIMEOUT, dial(&addr, tls.as_ref()));
                match dialled.await {
                    Ok(Ok(stream)) => Some((addr, stream)),
                    Ok(Err(error)) if tls.is_some() => {
                        tracing::debug!(peer = to, %addr, %error, "TLS connection failed");
                        None
                    }
                    _ => None,
                }
            }
            None => None,
        };
        let Some((addr, mut stream)) = stream else {
            // Unreachable: drop what is queued (it is stale by the time we connect) and wait.
            if drain_for(&mut queue, backoff).await.is_err() {
                return;
            }
            backoff = (backoff * 2).min(RECONNECT_BACKOFF_MAX);
            continue;
        };
        if stream.write_all(&handshake).await.is_err() {
            if drain_for(&mut queue, backoff).await.is_err() {
                return;
            }
            backoff = (backoff * 2).min(RECONNECT_BACKOFF_MAX);
            continue;
        }
        tracing::info!(peer = to, %addr, "connected to peer");
        let connected_at = tokio::time::Instant::now();
        let mut buf = BytesMut::new();
        let mut batch = Vec::new();
        loop {
            let Some(first) = queue.recv().await else {
                return;
            };
            let mut bytes = first.body.entries_bytes();
            batch.push(first);
            while batch.len() < FRAME_MSGS_MAX && bytes < FRAME_BATCH_BYTES_MAX {
                match queue.try_recv() {
                    Ok(m) => {
                        bytes += m.body.entries_bytes();
                        batch.push(m);
                    }
                    Err(_) => break,
                }
            }
            let mut snapshot_bytes = 0;
            for m in &batch {
                if let MessageBody::InstallSnapshot(chunk) = &m.body {
                    snapshot_bytes += chunk.data.len() as u64;
                    let end = chunk.offset + chunk.data.len() as u64;
                    if chunk.offset == 0 || end >= chunk.total_bytes {
                        tracing::info!(
                            peer = to,
                            index = chunk.metadata.index,
                            offset = chunk.offset,
                            total = chunk.total_bytes,
                            "sending snapshot"
                        );
                    } else {
                        tracing::debug!(peer = to, offset = chunk.offset, "snapshot chunk");
                    }
                }
            }
            buf.clear();
            encode_frame(&batch, &mut buf);
            batch.clear();
            if buf.len() > FRAME_BYTES_MAX + 8 {
                tracing::warn!(
                    peer = to,
                    bytes = buf.len(),
                    "frame over the limit; dropped"
                );
                continue;
            }
            if let Err(e) = stream.write_all(&buf).await {
                tracing::info!(peer = to, %addr, error = %e, "disconnected from peer");
                // A connection that broke at once (refused handshake, peer restarting) is
                // retried with growing backoff; one that lived a while is retried at once.
                if connected_at.elapsed() < STABLE_CONNECTION {
                    backoff = (backoff * 2).min(RECONNECT_BACKOFF_MAX);
                    if drain_for(&mut queue, backoff).await.is_err() {
                        return;
                    }
                } else {
                    backoff = RECONNECT_BACKOFF_MIN;
                }
                break;
            }
            if snapshot_bytes > 0 {
                let pace = snapshot_bytes as f64 / SNAPSHOT_BYTES_PER_SEC_MAX as f64;
                tokio::time::sleep(Duration::from_secs_f64(pace)).await;
            }
        }
    }
}

/// Connects to the peer at `addr`, over TLS when `tls` is given.
async fn dial(addr: &str, tls: Option<&Tls>) -> std::io::Result<PeerStream> {
    let stream = TcpStream::connect(addr).await?;
    let _ = stream.set_nodelay(true);
    Ok(match tls {
        Some(tls) => Box::new(tls.connect(addr, stream).await?),
        None => Box::new(stream),
    })
}

/// Discards queued messages for `wait`; `Err` once the queue is closed.
async fn drain_for(queue: &mut mpsc::Receiver<Message>, wait: Duration) -> Result<(), ()> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, queue.recv()).await {
            Ok(Some(_)) => {}
            Ok(None) => return Err(()),
            Err(_) => return Ok(()),
        }
    }
}

/// Accepts peer connections: each gets a handshake slot (`PEER_HANDSHAKES_MAX`, for at most
/// `INBOUND_HANDSHAKE_TIMEOUT`); a member that completes the handshake moves to its own slots
/// (`PEER_CONNECTIONS_PER_MEMBER_MAX`), so junk never takes a member's place. Refusals and
/// failed handshakes are logged as summaries.
pub async fn serve_peers(
    listener: TcpListener,
    id: NodeId,
    cluster_id: u64,
    checks: PeerChecks,
    inputs: SyncSender<Input>,
) {
    let PeerChecks {
        removed,
        sources,
        tls,
    } = checks;
    let handshakes = Arc::new(Semaphore::new(PEER_HANDSHAKES_MAX));
    let established: Arc<Mutex<BTreeMap<NodeId, usize>>> = Arc::default();
    let refused = Arc::new(Mutex::new(LogLimit::new(
        "peer connections refused",
        PEER_REFUSAL_LOG_INTERVAL,
    )));
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                lock(&refused).note(&format!("accept failed: {e}"));
                tokio::time::sleep(RECONNECT_BACKOFF_MIN).await;
                continue;
            }
        };
        if let Err(refusal) = sources.check(remote.ip(), tokio::time::Instant::now()) {
            lock(&refused).note(&format!("{remote}: {refusal}"));
            continue;
        }
        let Ok(handshake) = handshakes.clone().try_acquire_owned() else {
            lock(&refused).note(&format!("{remote}: every handshake slot is taken"));
            continue;
        };
        let (removed, inputs) = (removed.clone(), inputs.clone());
        let (established, refused) = (established.clone(), refused.clone());
        let (sources, tls) = (sources.clone(), tls.clone());
        tokio::spawn(async move {
            let stream: PeerStream = match tls {
                None => Box::new(stream),
                Some(tls) => {
                    match tokio::time::timeout(INBOUND_TLS_TIMEOUT, tls.accept(stream)).await {
                        Ok(Ok(stream)) => Box::new(stream),
                        outcome => {
                            let why = match outcome {
                                Ok(Err(e)) => format!("TLS handshake failed: {e}"),
                                _ => "no TLS handshake in time".to_string(),
                            };
                            sources.failed(remote.ip(), tokio::time::Instant::now());
                            lock(&refused).note(&format!("{remote}: {why}"));
                            return;
                        }
                    }
                }
            };
            let from = match accept_handshake(stream, id, cluster_id, &removed).await {
                Ok(accepted) => accepted,
                Err(e) => {
                    sources.failed(remote.ip(), tokio::time::Instant::now());
                    lock(&refused).note(&format!("{remote}: {e}"));
                    return;
                }
            };
            sources.succeeded(remote.ip());
            drop(handshake);
            let (mut stream, from) = from;
            let Some(_slot) = MemberSlot::take(&established, from) else {
                lock(&refused).note(&format!(
                    "{remote}: node {from} already has {PEER_CONNECTIONS_PER_MEMBER_MAX} connections"
                ));
                return;
            };
            if let Err(e) = serve_peer(&mut stream, id, from, inputs, &removed).await {
                tracing::warn!(%remote, error = %e, "peer connection closed");
            }
        });
    }
}

/// A lock that a panic elsewhere does not poison for good.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// One of a member's established-connection slots, given back on drop.
struct MemberSlot {
    established: Arc<Mutex<BTreeMap<NodeId, usize>>>,
    member: NodeId,
}

impl MemberSlot {
    fn take(established: &Arc<Mutex<BTreeMap<NodeId, usize>>>, member: NodeId) -> Option<Self> {
        let mut counts = lock(established);
        let count = counts.entry(member).or_insert(0);
        if *count >= PEER_CONNECTIONS_PER_MEMBER_MAX {
            return None;
        }
        *count += 1;
        Some(MemberSlot {
            established: established.clone(),
            member,
        })
    }
}

impl Drop for MemberSlot {
    fn drop(&mut self) {
        let mut counts = lock(&self.established);
        if let Some(count) = counts.get_mut(&self.member) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.member);
            }
        }
    }
}

/// Reads and checks an inbound connection's handshake; the connection and the member it is from.
async fn accept_handshake(
    mut stream: PeerStream,
    id: NodeId,
    cluster_id: u64,
    removed: &RemovedCheck,
) -> Result<(PeerStream, NodeId)> {
    let mut handshake = [0u8; HANDSHAKE_BYTES];
    tokio::time::timeout(INBOUND_HANDSHAKE_TIMEOUT, stream.read_exact(&mut handshake))
        .await
        .map_err(|_| ServerError::Handshake("no handshake in time".into()))??;
    let (peer_cluster, from, to) = decode_handshake(&handshake)?;
    if peer_cluster != cluster_id {
        return Err(ServerError::Handshake(format!(
            "node {from} belongs to cluster {peer_cluster:x}, this is cluster {cluster_id:x}; \
             it was started with another --initial-cluster or data dir"
        )));
    }
    if to != id {
        return Err(ServerError::Handshake(format!(
            "node {from} meant to reach node {to}, this is node {id}; check the peer URLs"
        )));
    }
    if removed(from) {
        return Err(ServerError::Handshake(removed_message(from)));
    }
    Ok((stream, from))
}

/// Why a removed member's connection is refused.
fn removed_message(from: NodeId) -> String {
    format!(
        "node {from} was removed from the cluster; wipe its data dir and --join again to bring \
         it back"
    )
}

async fn serve_peer(
    stream: &mut PeerStream,
    id: NodeId,
    from: NodeId,
    inputs: SyncSender<Input>,
    removed: &RemovedCheck,
) -> Result<()> {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        while let Some(messages) = decode_frame(&mut buf)? {
            // A member removed while connected is cut off as it would be refused at a handshake.
            if removed(from) {
                return Err(ServerError::Handshake(removed_message(from)));
            }
            if let Some(bad) = messages.iter().find(|m| m.from != from || m.to != id) {
                return Err(ServerError::Malformed(format!(
                    "message from {} to {} on the connection from {from} to {id}",
                    bad.from, bad.to
                )));
            }
            deliver(&inputs, messages)?;
        }
        match tokio::time::timeout(PEER_IDLE_TIMEOUT, stream.read_buf(&mut buf)).await {
            Ok(read) => {
                if read? == 0 {
                    return Ok(());
                }
            }
            Err(_) => return Ok(()),
        }
    }
}

/// Hands messages to the driver; drops them if its queue is full (Raft retries every message).
fn deliver(inputs: &SyncSender<Input>, messages: Vec<Message>) -> Result<()> {
    match inputs.try_send(Input::Peer(messages)) {
        Ok(()) => Ok(()),
        Err(TrySendError::Full(Input::Peer(dropped))) => {
            let kinds: Vec<&str> = dropped.iter().map(|m| m.body.name()).collect();
            tracing::debug!(?kinds, "driver queue full; peer messages dropped");
            Ok(())
        }
        Err(_) => Err(ServerError::Stopped),
    }
}
