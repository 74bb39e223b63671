//! Snapshots and log compaction (§7): taking a snapshot of applied state, sending it in bounded
//! chunks to a follower whose next entry was compacted, receiving and restoring one.
//!
//! Invariants: a snapshot never goes backwards (one at or below the commit index is ignored); every
//! snapshot carries the membership as of its index, with voters (a node refuses to describe one
//! where it does not know the membership); restoring one replaces the log, the commit index and the
//! membership with the snapshot's; a follower in the snapshot state gets no appends until it
//! acknowledges the snapshot's index; chunks go one at a time and a transfer resumes from the last
//! acknowledged offset.

use bytes::{Bytes, BytesMut};

use crate::config::MutationKind;
use crate::error::{Error, Result};
use crate::membership::ConfPoint;
use crate::message::{
    AppendEntriesResponse, InstallSnapshot, InstallSnapshotResponse, MessageBody,
};
use crate::raft::Raft;
use crate::storage::Storage;
use crate::tracker::ProgressState;
use crate::types::{Index, NodeId, Snapshot, SnapshotMetadata};

/// A snapshot being received, chunk by chunk.
#[derive(Debug)]
pub(crate) struct IncomingSnapshot {
    /// What it covers.
    metadata: SnapshotMetadata,
    /// Its announced size.
    total_bytes: u64,
    /// Bytes received so far, in order.
    data: BytesMut,
}

impl<S: Storage> Raft<S> {
    /// Describes a snapshot of the state machine at `index` (applied, ahead of the last snapshot)
    /// carrying `data`; the application stores it and compacts its log with it
    /// (`MemStorage::compact`). The core forgets configurations up to `index`.
    pub fn create_snapshot(&mut self, index: Index, data: Bytes) -> Result<Snapshot> {
        if index > self.raft_log.applied() {
            return Err(Error::SnapshotIndex {
                index,
                reason: "not applied yet",
            });
        }
        if index < self.raft_log.first_index() {
            return Err(Error::SnapshotIndex {
                index,
                reason: "at or below the latest snapshot",
            });
        }
        let term = self
            .raft_log
            .term(index)
            .map_err(|_| Error::SnapshotIndex {
                index,
                reason: "not in the log",
            })?;
        let conf_state = self.conf_state_at(index);
        if conf_state.voters.is_empty() {
            // A node that started empty learns the membership only from the entry that adds it
            // (or a snapshot): below that entry it does not know who voted, and a snapshot without
            // voters is one no follower can install (a leader would offer it for ever).
            return Err(Error::SnapshotIndex {
                index,
                reason: "the membership there is unknown to this node (it joined later)",
            });
        }
        self.compact_conf_history(index, term);
        Ok(Snapshot {
            metadata: SnapshotMetadata {
                index,
                term,
                conf_state,
            },
            data,
        })
    }

    /// Starts sending the latest stored snapshot to `to`, whose next entry is compacted. A
    /// snapshot storage cannot read back now is not sent: the next probe of `to` tries again.
    pub(crate) fn send_snapshot(&mut self, to: NodeId) -> bool {
        let Ok(snapshot) = self.raft_log.storage().snapshot() else {
            return false;
        };
        if snapshot.metadata.index == 0 {
            return false; // storage compacted nothing it can send yet
        }
        let Some(pr) = self.tracker.get_mut(to) else {
            return false;
        };
        pr.become_snapshot(snapshot);
        self.send_snapshot_chunk(to);
        true
    }

    /// Sends the chunk after the offset `to` acknowledged last.
    pub(crate) fn send_snapshot_chunk(&mut self, to: NodeId) {
        let chunk_max = self.config.snapshot_chunk_bytes_max;
        let Some(transfer) = self
            .tracker
            .get(to)
            .and_then(|pr| pr.snapshot_transfer.as_ref())
        else {
            return;
        };
        let total = transfer.snapshot.data.len() as u64;
        let offset = transfer.acked_offset.min(total);
        let end = total.min(offset + chunk_max);
        let body = MessageBody::InstallSnapshot(Box::new(InstallSnapshot {
            metadata: transfer.snapshot.metadata.clone(),
            total_bytes: total,
            offset,
            data: transfer.snapshot.data.slice(offset as usize..end as usize),
        }));
        self.send(to, body);
    }

    /// Leader: the follower has the snapshot's bytes up to `next_offset`.
    pub(crate) fn handle_snapshot_response(&mut self, from: NodeId, r: &InstallSnapshotResponse) {
        let Some(pr) = self.tracker.get_mut(from) else {
            return;
        };
        pr.recent_active = true;
        let Some(transfer) = pr.snapshot_transfer.as_mut() else {
            return;
        };
        if pr.state != ProgressState::Snapshot || transfer.snapshot.metadata.index != r.index {
            return;
        }
        let total = transfer.snapshot.data.len() as u64;
        let next_offset = r.next_offset.min(total);
        if next_offset == transfer.acked_offset {
            return; // the answer to a duplicate: the chunk after it is on its way already
        }
        transfer.acked_offset = next_offset;
        transfer.acked_since_heartbeat = true;
        if next_offset < total {
            self.send_snapshot_chunk(from);
        }
    }

    /// Leader, on a heartbeat answer from `to` in the snapshot state: sends the chunk at the
    /// acknowledged offset again unless the transfer moved since the previous heartbeat answer
    /// (a chunk or its answer may be lost; a live transfer is left alone).
    pub(crate) fn resume_snapshot(&mut self, to: NodeId) {
        let Some(transfer) = self
            .tracker
            .get_mut(to)
            .and_then(|pr| pr.snapshot_transfer.as_mut())
        else {
            return;
        };
        if std::mem::take(&mut transfer.acked_since_heartbeat) {
            return;
        }
        self.send_snapshot_chunk(to);
    }

    /// Follower: one chunk of a snapshot from the leader.
    pub(crate) fn handle_install_snapshot(&mut self, from: NodeId, s: InstallSnapshot) {
        let index = s.metadata.index;
        if index > self.raft_log.committed() && self.raft_log.match_term(index, s.metadata.term) {
            // We hold the snapshot's last entry already (Figure 13, rule 6): keep the log after it,
            // which we may have acknowledged, and just learn that it is committed.
            self.raft_log.commit_to(index);
            self.incoming_snapshot = None;
        }
        let committed = self.raft_log.committed();
        if index <= committed {
            // Stale or already installed: tell the leader where we are (snapshots never go back).
            self.incoming_snapshot = None;
            let body = MessageBody::AppendEntriesResponse(AppendEntriesResponse::Accepted {
                match_index: committed,
            });
            self.send(from, body);
            return;
        }
        let continues = self.incoming_snapshot.as_ref().is_some_and(|incoming| {
            incoming.metadata == s.metadata
                && incoming.total_bytes == s.total_bytes
                && incoming.data.len() as u64 == s.offset
        });
        let fresh = s.offset == 0 && !continues;
        if fresh {
            self.incoming_snapshot = Some(IncomingSnapshot {
                metadata: s.metadata.clone(),
                total_bytes: s.total_bytes,
                data: BytesMut::new(),
            });
        }
        if fresh || continues {
            if let Some(incoming) = self.incoming_snapshot.as_mut() {
                let room = incoming.total_bytes - incoming.data.len() as u64;
                if s.data.len() as u64 <= room {
                    incoming.data.extend_from_slice(&s.data);
                } else {
                    self.incoming_snapshot = None; // longer than announced: start over
                }
            }
        }
        let this_snapshot = self
            .incoming_snapshot
            .as_ref()
            .filter(|incoming| incoming.metadata == s.metadata);
        let complete = this_snapshot.is_some_and(|i| i.data.len() as u64 == i.total_bytes);
        let next_offset = this_snapshot.map_or(0, |i| i.data.len() as u64);
        if complete {
            if let Some(incoming) = self.incoming_snapshot.take() {
                self.restore(Snapshot {
                    metadata: incoming.metadata,
                    data: incoming.data.freeze(),
                });
                // Acknowledged only once the snapshot is durable (this goes after persistence).
                let body = MessageBody::AppendEntriesResponse(AppendEntriesResponse::Accepted {
                    match_index: index,
                });
                self.send(from, body);
                return;
            }
        }
        // Out of order (a lost or duplicated chunk) or not done: say what we have.
        let body =
            MessageBody::InstallSnapshotResponse(InstallSnapshotResponse { index, next_offset });
        self.send(from, body);
    }

    /// Replaces the log, commit index and membership with `snapshot`'s.
    fn restore(&mut self, snapshot: Snapshot) {
        let point = ConfPoint {
            index: snapshot.metadata.index,
            term: snapshot.metadata.term,
            conf_state: snapshot.metadata.conf_state.clone(),
        };
        self.raft_log.restore(snapshot);
        if !self.config.mutated(MutationKind::SnapshotKeepsOldConf) {
            self.reset_conf(point);
        }
    }
}
