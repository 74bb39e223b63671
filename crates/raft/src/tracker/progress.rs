//! What the leader knows of one follower's log (Figure 2's nextIndex and matchIndex) and how it
//! sends to it: probing one message at a time, or pipelining within the in-flight window.
//!
//! Invariants: `match_index < next_index`; `match_index` never decreases while this node leads.

use super::inflights::Inflights;
use crate::types::{Index, Snapshot};

/// How the leader is sending to a follower.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressState {
    /// Where the follower's log matches is unknown: one message at a time, backing up on rejection.
    Probe,
    /// The follower's log matches up to `match_index`: stream entries optimistically.
    Replicate,
    /// The follower needs entries the leader compacted: a snapshot is on its way, nothing else.
    Snapshot,
}

/// A snapshot being sent to one follower.
#[derive(Clone, Debug)]
pub struct SnapshotTransfer {
    /// The snapshot (its data is shared, not copied).
    pub snapshot: Snapshot,
    /// Bytes the follower acknowledged: the next chunk starts here. One chunk is in flight at a
    /// time: only an answer that moves this sends the next one, so a duplicated chunk (a resend
    /// after a heartbeat) is answered but never multiplies the chunks in flight.
    pub acked_offset: u64,
    /// Whether an answer moved `acked_offset` since the last heartbeat answer. If none did, the
    /// chunk in flight or its answer may be lost, and the next heartbeat answer sends it again.
    pub acked_since_heartbeat: bool,
}

/// The leader's view of one peer.
#[derive(Clone, Debug)]
pub struct Progress {
    /// Highest index known replicated (and durable) on the peer.
    pub match_index: Index,
    /// Index of the next entry to send.
    pub next_index: Index,
    /// Probe or replicate.
    pub state: ProgressState,
    /// In the probe state: a message is out and the next waits for an answer (or a heartbeat tick).
    pub probe_sent: bool,
    /// Messages in flight in the replicate state.
    pub inflights: Inflights,
    /// The peer answered since the last CheckQuorum round.
    pub recent_active: bool,
    /// In the snapshot state: the snapshot being sent.
    pub snapshot_transfer: Option<Box<SnapshotTransfer>>,
}

impl Progress {
    /// A peer of a new leader: nothing known, next entry right after the leader's last.
    pub fn new(next_index: Index, inflight_msgs_max: usize, inflight_bytes_max: u64) -> Self {
        Progress {
            match_index: 0,
            next_index,
            state: ProgressState::Probe,
            probe_sent: false,
            inflights: Inflights::new(inflight_msgs_max, inflight_bytes_max),
            recent_active: false,
            snapshot_transfer: None,
        }
    }

    /// Whether the leader must hold back appends to this peer for now.
    pub fn is_paused(&self) -> bool {
        match self.state {
            ProgressState::Probe => self.probe_sent,
            ProgressState::Replicate => self.inflights.full(),
            ProgressState::Snapshot => true,
        }
    }

    /// Index of the snapshot being sent, in the snapshot state.
    pub fn pending_snapshot(&self) -> Option<Index> {
        self.snapshot_transfer
            .as_ref()
            .map(|t| t.snapshot.metadata.index)
    }

    /// Switches to sending `snapshot`.
    pub fn become_snapshot(&mut self, snapshot: Snapshot) {
        self.state = ProgressState::Snapshot;
        self.probe_sent = false;
        self.inflights.reset();
        self.snapshot_transfer = Some(Box::new(SnapshotTransfer {
            snapshot,
            acked_offset: 0,
            acked_since_heartbeat: false,
        }));
    }

    /// Switches to probing from just after the match index.
    pub fn become_probe(&mut self) {
        self.state = ProgressState::Probe;
        self.probe_sent = false;
        self.next_index = self.match_index + 1;
        self.inflights.reset();
        self.snapshot_transfer = None;
    }

    /// Switches to pipelined replication from just after the match index.
    pub fn become_replicate(&mut self) {
        self.state = ProgressState::Replicate;
        self.probe_sent = false;
        self.next_index = self.match_index + 1;
        self.inflights.reset();
        self.snapshot_transfer = None;
    }

    /// Records that an append ending at `last_index` carrying `bytes` was sent.
    pub fn sent_append(&mut self, last_index: Index, entry_count: usize, bytes: u64) {
        match self.state {
            ProgressState::Replicate => {
                if entry_count > 0 {
                    self.next_index = last_index + 1;
                    self.inflights.add(last_index, bytes);
                }
            }
            ProgressState::Probe => self.probe_sent = true,
            ProgressState::Snapshot => {}
        }
    }

    /// The peer acknowledged a match up to `index`. Returns whether that was news.
    pub fn maybe_update(&mut self, index: Index) -> bool {
        let updated = index > self.match_index;
        if updated {
            self.match_index = index;
            self.probe_sent = false;
        }
        self.next_index = self.next_index.max(index + 1);
        updated
    }

    /// The peer rejected an append at `rejected_index`; back up to `hint_next`. Returns false when
    /// the rejection is stale (about a message older than what is known now: delayed, duplicated or
    /// reordered) or impossible, and then changes nothing.
    pub fn maybe_decrease_to(&mut self, rejected_index: Index, hint_next: Index) -> bool {
        if rejected_index <= self.match_index {
            return false; // the peer matched at or beyond that point since
        }
        match self.state {
            ProgressState::Replicate => {
                if rejected_index >= self.next_index {
                    return false; // about an index never sent
                }
                self.become_probe();
            }
            // Appends stopped while the snapshot is on its way: any rejection is stale.
            ProgressState::Snapshot => return false,
            ProgressState::Probe => {
                if self.next_index.checked_sub(1) != Some(rejected_index) {
                    return false;
                }
                self.probe_sent = false;
            }
        }
        // match_index < rejected_index here, so the range is never empty.
        self.next_index = hint_next.min(rejected_index).max(self.match_index + 1);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probing(match_index: Index, next_index: Index) -> Progress {
        let mut pr = Progress::new(next_index, 8, 1 << 20);
        pr.match_index = match_index;
        pr
    }

    #[test]
    fn delayed_duplicate_rejection_in_probe_is_ignored() {
        // Simulator seed 0: after a rejection at 24 moved next to 24 (match 23), a late rejection
        // at 23 arrives; it once made the leader panic.
        let mut pr = probing(23, 24);
        assert!(!pr.maybe_decrease_to(23, 23));
        assert_eq!((pr.match_index, pr.next_index), (23, 24));
    }

    #[test]
    fn rejection_never_moves_next_below_match() {
        let mut pr = probing(5, 11);
        assert!(pr.maybe_decrease_to(10, 2));
        assert_eq!(pr.next_index, 6);
    }

    #[test]
    fn rejection_of_an_index_never_sent_is_ignored() {
        let mut pr = probing(5, 6);
        pr.become_replicate();
        assert!(!pr.maybe_decrease_to(u64::MAX - 1, u64::MAX));
        assert_eq!(pr.next_index, 6);
    }
}
