//! Counters the driver and transport bump, exposed at `GET /metrics` in the Prometheus text
//! format together with the node's gauges (term, indexes, role), then the latency histograms and
//! operator gauges of [`Observed`] (kept by `prometheus-client`).
//!
//! Plain atomics and the client's lock-free metrics: recording never blocks the hot path, and a
//! scrape takes no lock the node loop needs.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use raftkv_raft::{Message, MessageBody, NodeId};

use crate::node::NodeStatus;

/// Smallest latency bucket: 50 µs (a fast fsync, an in-memory read).
const LATENCY_BUCKET_MIN_SECONDS: f64 = 0.000_05;
/// Latency buckets, each twice the one before: 50 µs up to about 27 s.
const LATENCY_BUCKETS: u16 = 20;
/// An apply step longer than this counts as slow (etcd's "apply request took too long").
pub const SLOW_APPLY: Duration = Duration::from_millis(100);

/// The label set of a request's latency: its operation.
pub type OpLabel = Vec<(&'static str, &'static str)>;
/// The label set of a per-peer metric: the peer's node id in hex.
pub type PeerLabel = Vec<(&'static str, String)>;

/// The label of peer `id`.
pub fn peer_label(id: u64) -> PeerLabel {
    vec![("peer", format!("{id:016x}"))]
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(
        LATENCY_BUCKET_MIN_SECONDS,
        2.0,
        LATENCY_BUCKETS,
    ))
}

/// Latency histograms, operator gauges and event counters.
#[derive(Debug)]
pub struct Observed {
    /// Where they are registered (for the scrape).
    registry: Registry,
    /// One WAL `fdatasync` (a group commit of every write since the last).
    pub wal_fsync_seconds: Histogram,
    /// One step of the node loop that applied entries (with the output it produced).
    pub apply_seconds: Histogram,
    /// Taking a snapshot: from the engine's request to the file being durable.
    pub snapshot_seconds: Histogram,
    /// A client request through the service layer, by operation (`put`, `txn`, `range`, ...).
    pub request_seconds: Family<OpLabel, Histogram, fn() -> Histogram>,
    /// Leader: a heartbeat's round trip to a peer (from the first unanswered heartbeat to its
    /// answer), by peer.
    pub peer_round_trip_seconds: Family<PeerLabel, Histogram, fn() -> Histogram>,
    /// Leader: entries a peer's log lacks (the leader's last index minus its match index), by
    /// peer; cleared when this node stops leading.
    pub peer_replication_lag: Family<PeerLabel, Gauge>,
    /// Messages waiting in a peer's send queue (bounded by `PEER_QUEUE_MSGS_MAX`), by peer.
    pub peer_send_queue: Family<PeerLabel, Gauge>,
    /// Live keys (set at each scrape).
    pub keys: Gauge,
    /// Bytes of the live keys and values (set at each scrape; what the quota limits).
    pub live_bytes: Gauge,
    /// Live leases (set at each scrape).
    pub leases: Gauge,
    /// Open watches (set at each scrape).
    pub watchers: Gauge,
    /// Times this node saw leadership move (another leader, or none).
    pub leader_changes: Counter,
    /// Client writes that failed (not leader, no quorum, refused, timed out).
    pub proposals_failed: Counter,
    /// Apply steps slower than [`SLOW_APPLY`].
    pub slow_applies: Counter,
}

impl Default for Observed {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("raftkv");
        let observed = Observed {
            registry: Registry::default(),
            wal_fsync_seconds: latency_histogram(),
            apply_seconds: latency_histogram(),
            snapshot_seconds: latency_histogram(),
            request_seconds: Family::new_with_constructor(latency_histogram),
            peer_round_trip_seconds: Family::new_with_constructor(latency_histogram),
            peer_replication_lag: Family::default(),
            peer_send_queue: Family::default(),
            keys: Gauge::default(),
            live_bytes: Gauge::default(),
            leases: Gauge::default(),
            watchers: Gauge::default(),
            leader_changes: Counter::default(),
            proposals_failed: Counter::default(),
            slow_applies: Counter::default(),
        };
        registry.register(
            "wal_fsync_seconds",
            "WAL fdatasync latency",
            observed.wal_fsync_seconds.clone(),
        );
        registry.register(
            "apply_seconds",
            "Latency of a node loop step that applied entries",
            observed.apply_seconds.clone(),
        );
        registry.register(
            "snapshot_seconds",
            "Time to take a snapshot, request to durable file",
            observed.snapshot_seconds.clone(),
        );
        registry.register(
            "request_seconds",
            "Client request latency by operation",
            observed.request_seconds.clone(),
        );
        registry.register(
            "peer_round_trip_seconds",
            "Heartbeat round trip to a peer (leader only)",
            observed.peer_round_trip_seconds.clone(),
        );
        registry.register(
            "peer_replication_lag",
            "Entries a peer's log lacks behind the leader's (leader only)",
            observed.peer_replication_lag.clone(),
        );
        registry.register(
            "peer_send_queue",
            "Messages waiting in a peer's send queue",
            observed.peer_send_queue.clone(),
        );
        registry.register("keys", "Live keys", observed.keys.clone());
        registry.register(
            "live_bytes",
            "Bytes of the live keys and values",
            observed.live_bytes.clone(),
        );
        registry.register("leases", "Live leases", observed.leases.clone());
        registry.register("watchers", "Open watches", observed.watchers.clone());
        registry.register(
            "leader_changes",
            "Times leadership moved, as this node saw it",
            observed.leader_changes.clone(),
        );
        registry.register(
            "proposals_failed",
            "Client writes that failed",
            observed.proposals_failed.clone(),
        );
        registry.register(
            "slow_applies",
            "Apply steps slower than 100 ms",
            observed.slow_applies.clone(),
        );
        Observed {
            registry,
            ..observed
        }
    }
}

impl Observed {
    /// Records one request of operation `op` that took `took`.
    pub fn request(&self, op: &'static str, took: Duration) {
        self.request_seconds
            .get_or_create(&vec![("op", op)])
            .observe(took.as_secs_f64());
    }

    /// The registered metrics in the text format (without OpenMetrics' `# EOF`, as the scrape
    /// goes on with nothing after it but is served as Prometheus text).
    fn render(&self, out: &mut String) {
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_ok() {
            out.push_str(text.trim_end().trim_end_matches("# EOF"));
        }
    }
}

/// Per-peer metrics the driver keeps: heartbeat round trips, and handles on the lag gauges so
/// that setting one is an atomic store, not a lookup.
#[derive(Debug, Default)]
pub struct PeerObserver {
    /// When the first heartbeat each peer has not answered yet left.
    heartbeats: HashMap<NodeId, Instant>,
    /// The lag gauge of each peer (leader only).
    lags: HashMap<NodeId, Gauge>,
}

impl PeerObserver {
    /// Notes the heartbeats among `messages`, about to leave.
    pub fn sent(&mut self, messages: &[Message]) {
        for m in messages {
            if let MessageBody::Heartbeat(_) = m.body {
                self.heartbeats.entry(m.to).or_insert_with(Instant::now);
            }
        }
    }

    /// Records the round trip of each heartbeat answered among `messages`.
    pub fn received(&mut self, messages: &[Message], observed: &Observed) {
        for m in messages {
            if let MessageBody::HeartbeatResponse(_) = m.body {
                if let Some(sent) = self.heartbeats.remove(&m.from) {
                    observed
                        .peer_round_trip_seconds
                        .get_or_create(&peer_label(m.from))
                        .observe(sent.elapsed().as_secs_f64());
                }
            }
        }
    }

    /// Sets peer `id`'s replication lag.
    pub fn lag(&mut self, id: NodeId, entries: u64, observed: &Observed) {
        self.lags
            .entry(id)
            .or_insert_with(|| {
                observed
                    .peer_replication_lag
                    .get_or_create(&peer_label(id))
                    .clone()
            })
            .set(i64::try_from(entries).unwrap_or(i64::MAX));
    }

    /// This node no longer leads: no lag to report, no heartbeat in flight.
    pub fn not_leading(&mut self, observed: &Observed) {
        if !self.lags.is_empty() {
            self.lags.clear();
            observed.peer_replication_lag.clear();
        }
        self.heartbeats.clear();
    }
}

/// The node's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Client writes proposed by this node.
    pub proposals: AtomicU64,
    /// Entries applied to the state machine.
    pub applied_entries: AtomicU64,
    /// Linearizable or lease reads served.
    pub reads: AtomicU64,
    /// Client requests forwarded to the leader.
    pub forwarded: AtomicU64,
    /// WAL syncs (each covers a whole `Ready`: group commit).
    pub wal_syncs: AtomicU64,
    /// Total time spent in WAL syncs, in microseconds.
    pub wal_sync_micros: AtomicU64,
    /// Snapshots taken by this node.
    pub snapshots_taken: AtomicU64,
    /// Snapshots installed from the leader.
    pub snapshots_installed: AtomicU64,
    /// Peer messages dropped because a queue was full.
    pub peer_messages_dropped: AtomicU64,
    /// Histograms, gauges and event counters.
    pub observed: Observed,
}

impl Metrics {
    /// Adds one to a counter.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Records one WAL sync that took `took`: the counters and the histogram.
    pub fn record_wal_sync(&self, took: Duration) {
        Metrics::bump(&self.wal_syncs);
        self.wal_sync_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        self.observed.wal_fsync_seconds.observe(took.as_secs_f64());
    }

    /// The scrape: counters and the status gauges, Prometheus text format 0.0.4.
    pub fn render(&self, status: &NodeStatus) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
            let _ = writeln!(out, "# HELP raftkv_{name} {help}");
            let _ = writeln!(out, "# TYPE raftkv_{name} {kind}");
            let _ = writeln!(out, "raftkv_{name} {value}");
        };
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        metric("term", "gauge", "Current Raft term.", status.term);
        metric(
            "is_leader",
            "gauge",
            "1 if this node is the leader.",
            u64::from(status.role == "leader"),
        );
        metric(
            "commit_index",
            "gauge",
            "Highest committed index.",
            status.commit_index,
        );
        metric(
            "applied_index",
            "gauge",
            "Highest applied index.",
            status.applied_index,
        );
        metric(
            "snapshot_index",
            "gauge",
            "Index of the latest snapshot.",
            status.snapshot_index,
        );
        metric(
            "last_index",
            "gauge",
            "Last index in the log.",
            status.last_index,
        );
        metric(
            "wal_failed",
            "gauge",
            "1 if the write-ahead log failed (the node serves nothing until restarted).",
            u64::from(status.wal_error.is_some()),
        );
        metric(
            "proposals_total",
            "counter",
            "Client writes proposed.",
            get(&self.proposals),
        );
        metric(
            "applied_entries_total",
            "counter",
            "Entries applied to the store.",
            get(&self.applied_entries),
        );
        metric(
            "reads_total",
            "counter",
            "Reads through a read barrier.",
            get(&self.reads),
        );
        metric(
            "forwarded_total",
            "counter",
            "Requests forwarded to the leader.",
            get(&self.forwarded),
        );
        metric(
            "wal_syncs_total",
            "counter",
            "WAL syncs.",
            get(&self.wal_syncs),
        );
        metric(
            "wal_sync_microseconds_total",
            "counter",
            "Time spent in WAL syncs.",
            get(&self.wal_sync_micros),
        );
        metric(
            "snapshots_taken_total",
            "counter",
            "Snapshots taken.",
            get(&self.snapshots_taken),
        );
        metric(
            "snapshots_installed_total",
            "counter",
            "Snapshots installed from the leader.",
            get(&self.snapshots_installed),
        );
        metric(
            "peer_messages_dropped_total",
            "counter",
            "Peer messages dropped on a full queue.",
            get(&self.peer_messages_dropped),
        );
        self.observed.render(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scrape_names_every_metric_once_with_its_value() {
        let metrics = Metrics::default();
        Metrics::bump(&metrics.proposals);
        Metrics::bump(&metrics.proposals);
        let status = NodeStatus {
            term: 3,
            role: "leader".into(),
            ..NodeStatus::default()
        };
        let text = metrics.render(&status);
        assert!(text.contains("raftkv_term 3\n"), "{text}");
        assert!(text.contains("raftkv_is_leader 1\n"), "{text}");
        assert!(text.contains("raftkv_proposals_total 2\n"), "{text}");
        assert_eq!(text.matches("# TYPE raftkv_term ").count(), 1);
    }
}
