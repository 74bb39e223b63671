//! What the driver shares with the protocol front ends: the replicated state, the status it
//! refreshes after every turn, the metrics, and the signals watchers and shutdown wait on.
//!
//! Invariant: every lock here is held briefly and never across an `.await`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use raftkv_raft::{Index, NodeId, Term};
use raftkv_replica::State;
use serde::Serialize;

use crate::metrics::Metrics;

/// What `/v1/status` shows; refreshed by the driver after every turn.
#[derive(Clone, Debug, Default, Serialize)]
pub struct NodeStatus {
    /// This node's id.
    pub id: NodeId,
    /// This member's name.
    pub name: String,
    /// The cluster id, in hex.
    pub cluster_id: String,
    /// follower, pre-candidate, candidate or leader.
    pub role: String,
    /// Current term.
    pub term: Term,
    /// The leader this node knows of.
    pub leader: Option<NodeId>,
    /// Highest index known committed.
    pub commit_index: Index,
    /// Highest index applied to the store.
    pub applied_index: Index,
    /// Index of the latest snapshot.
    pub snapshot_index: Index,
    /// Last index in the log.
    pub last_index: Index,
    /// Voters of the configuration (the incoming half while a change is in flight).
    pub voters: Vec<NodeId>,
    /// Voters of the outgoing configuration while a change is in flight.
    pub voters_outgoing: Vec<NodeId>,
    /// Learners.
    pub learners: Vec<NodeId>,
    /// Set when the WAL failed: the node serves nothing until restarted.
    pub wal_error: Option<String>,
}

/// Shared between the driver and the API.
pub struct Shared {
    /// The replicated state (key-value store and registry), shared with the engine; locked
    /// briefly, never across an await.
    pub state: Arc<Mutex<State>>,
    /// Latest status.
    pub status: Mutex<NodeStatus>,
    /// Milliseconds since `epoch` when the current WAL sync started; 0 when none is running.
    pub sync_started_ms: AtomicU64,
    /// Time origin for `sync_started_ms`.
    pub epoch: Instant,
    /// Counters for `/metrics`.
    pub metrics: Metrics,
    /// Milliseconds since `epoch` when this node last heard from the leader it knows (Consul's
    /// `X-Consul-LastContact`; a leader is its own contact).
    pub leader_contact_ms: AtomicU64,
    /// Woken after every applied batch (watchers poll the store then).
    pub applied: tokio::sync::Notify,
    /// The store's lock sessions index after the last applied batch, changed only when a session
    /// was created or ended (Consul's session reads block on it).
    pub sessions_index: tokio::sync::watch::Sender<u64>,
    /// Client requests in the driver's queue (bounded by `CLIENT_INPUTS_MAX`).
    pub client_inputs: std::sync::atomic::AtomicUsize,
    /// Set when the node starts shutting down: watch streams end.
    pub stopping: tokio::sync::watch::Sender<bool>,
    /// This member's latest corruption-check hashes.
    pub checkpoints: Arc<crate::corrupt_check::Checkpoints>,
}

impl Shared {
    /// The replicated state, locked (a poisoned lock is taken over: the driver asserts its own
    /// invariants, so a panic elsewhere left nothing half-applied).
    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The latest status, locked.
    pub fn status(&self) -> MutexGuard<'_, NodeStatus> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How long the current WAL sync has been running, if one is.
    pub fn sync_running_for(&self) -> Option<Duration> {
        let started = self.sync_started_ms.load(Ordering::Relaxed);
        (started != 0).then(|| {
            let now = self.epoch.elapsed().as_millis() as u64;
            Duration::from_millis(now.saturating_sub(started))
        })
    }
}
