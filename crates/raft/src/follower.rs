//! The follower's side of replication (§5.3): accepting or rejecting AppendEntries, heartbeats.
//!
//! Invariants: a follower appends only after its log matches the leader's at `prev_log_index`
//! (Log Matching); it truncates only an uncommitted conflicting suffix; its commit index moves to
//! min(leader_commit, last new entry), never backwards; its answers leave only once what they
//! acknowledge is durable (they go through `msgs_after_persist`).

use crate::message::{
    AppendEntries, AppendEntriesResponse, ConflictHint, Heartbeat, HeartbeatResponse, MessageBody,
};
use crate::raft::Raft;
use crate::storage::Storage;
use crate::types::{Index, NodeId};

impl<S: Storage> Raft<S> {
    /// Follower's handling of messages of its own term.
    pub(crate) fn step_follower(&mut self, from: NodeId, body: MessageBody) {
        match body {
            MessageBody::AppendEntries(a) => {
                self.election_elapsed = 0;
                self.leader = Some(from);
                self.handle_append_entries(from, &a);
            }
            MessageBody::Heartbeat(h) => {
                self.election_elapsed = 0;
                self.leader = Some(from);
                self.handle_heartbeat(from, &h);
            }
            MessageBody::InstallSnapshot(s) => {
                self.election_elapsed = 0;
                self.leader = Some(from);
                self.handle_install_snapshot(from, *s);
            }
            MessageBody::TimeoutNow => self.handle_timeout_now(from),
            MessageBody::ReadIndexResponse(r) => self.handle_read_index_response(&r),
            _ => {}
        }
    }

    /// AppendEntries receiver (Figure 2).
    pub(crate) fn handle_append_entries(&mut self, from: NodeId, a: &AppendEntries) {
        let committed = self.raft_log.committed();
        let resp = if a.prev_log_index < committed {
            // Everything up to our commit index matches any leader's log already.
            AppendEntriesResponse::Accepted {
                match_index: committed,
            }
        } else {
            match self.raft_log.maybe_append(
                a.prev_log_index,
                a.prev_log_term,
                a.leader_commit,
                &a.entries,
            ) {
                Some(last_new) => {
                    self.on_entries_appended(&a.entries);
                    AppendEntriesResponse::Accepted {
                        match_index: last_new,
                    }
                }
                None => AppendEntriesResponse::Rejected {
                    rejected_index: a.prev_log_index,
                    hint: self.conflict_hint(a.prev_log_index),
                },
            }
        };
        self.send(from, MessageBody::AppendEntriesResponse(resp));
    }

    /// What a rejection tells the leader: the term of our entry at `index` and the first index we
    /// hold of that term, or our last index + 1 if our log is shorter.
    pub(crate) fn conflict_hint(&self, index: Index) -> ConflictHint {
        let last = self.raft_log.last_index();
        if index > last {
            return ConflictHint {
                term: None,
                first_index: last + 1,
            };
        }
        match self.raft_log.term(index) {
            Ok(term) => ConflictHint {
                term: Some(term),
                first_index: self.raft_log.first_index_of_term(term, index),
            },
            // Compacted: everything there is committed; resume after our commit index.
            Err(_) => ConflictHint {
                term: None,
                first_index: self.raft_log.committed() + 1,
            },
        }
    }

    /// Heartbeat: learn the commit index (capped by the leader at what we hold) and answer.
    pub(crate) fn handle_heartbeat(&mut self, from: NodeId, h: &Heartbeat) {
        let commit = h.commit.min(self.raft_log.last_index());
        self.raft_log.commit_to(commit);
        let body = MessageBody::HeartbeatResponse(HeartbeatResponse { round: h.round });
        self.send(from, body);
    }
}
