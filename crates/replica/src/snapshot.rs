//! Snapshots off the node loop (§7): once `Settings::snapshot_entries` entries were applied since
//! the last snapshot (and, with `Settings::snapshot_log_fraction`, enough of their bytes to pay
//! for the next one), the engine takes a copy-on-write view of the state in one short step and
//! asks the driver to encode and write it (`SnapshotTask`); once the driver reports the file
//! durable, the engine tells it to compact the log up to it.
//!
//! Invariants: at most one snapshot is produced at a time; the log is compacted only up to a
//! written snapshot above the current one, and never while a leader's snapshot is being
//! installed (that replaces the log anyway).

use raftkv_raft::{Index, Snapshot, Storage};

use crate::output::{Event, SnapshotTask};
use crate::replica::Replica;

impl<S: Storage> Replica<S> {
    /// Asks for a snapshot when enough entries were applied since the last one.
    pub(crate) fn maybe_snapshot(&mut self) {
        let every = self.settings.snapshot_entries;
        if every == 0 || self.snapshot_pending.is_some() {
            return;
        }
        let applied = self.raft().raft_log().applied();
        if applied < self.snapshot_index + every {
            return;
        }
        let fraction = self.settings.snapshot_log_fraction;
        if fraction > 0
            && self.log_bytes_since_snapshot.saturating_mul(fraction) < self.snapshot_bytes
        {
            return;
        }
        let view = {
            let state = self.state();
            if state.applied() != applied {
                return;
            }
            state.view()
        };
        match self.node.create_snapshot(applied, bytes::Bytes::new()) {
            Ok(snapshot) => {
                self.snapshot_pending = Some(applied);
                self.log_bytes_since_snapshot = 0;
                self.out
                    .events
                    .push(Event::SnapshotRequested { index: applied });
                self.out.snapshot_tasks.push(SnapshotTask {
                    metadata: snapshot.metadata,
                    view,
                });
            }
            Err(e) => self.skip_snapshot(applied, e.to_string()),
        }
    }

    /// The driver wrote and synced the snapshot a `SnapshotTask` asked for: the log may be
    /// compacted up to it (`Output::compact`).
    pub fn snapshot_written(&mut self, snapshot: Snapshot) {
        let index = snapshot.metadata.index;
        if self.snapshot_pending == Some(index) {
            self.snapshot_pending = None;
        }
        if index <= self.snapshot_index {
            self.skip_snapshot(index, "a newer snapshot is already in storage".into());
        } else if self.in_flight.iter().any(|f| f.snapshot.is_some()) {
            self.skip_snapshot(
                index,
                "a snapshot from the leader is being installed".into(),
            );
        } else {
            self.snapshot_index = index;
            self.snapshot_bytes = snapshot.data.len() as u64;
            self.out.events.push(Event::SnapshotTaken {
                index,
                term: snapshot.metadata.term,
                bytes: snapshot.data.len(),
            });
            self.out.compact.push(snapshot);
        }
    }

    /// The driver could not produce the snapshot at `index`; a later one will be asked for.
    pub fn snapshot_failed(&mut self, index: Index, reason: String) {
        if self.snapshot_pending == Some(index) {
            self.snapshot_pending = None;
        }
        self.skip_snapshot(index, reason);
    }

    fn skip_snapshot(&mut self, index: Index, reason: String) {
        self.out
            .events
            .push(Event::SnapshotSkipped { index, reason });
    }
}
