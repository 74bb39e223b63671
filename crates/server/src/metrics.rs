//! Counters the driver and transport bump, exposed at `GET /metrics` in the Prometheus text
//! format together with the node's gauges (term, indexes, role).
//!
//! Plain atomics: bumping one never blocks the hot path, and reading them for a scrape needs no
//! lock.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::node::NodeStatus;

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
}

impl Metrics {
    /// Adds one to a counter.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
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
