//! The leader's side of log replication (§5.3) and commitment (§5.4.2): proposals, AppendEntries
//! and heartbeats to each follower under its progress state, answers, and advancing the commit index.
//!
//! Invariants: the leader never overwrites or deletes its own entries (Leader Append-Only); it
//! commits an index only when a quorum's durable match reaches it *and* the entry there is of the
//! current term (Figure 8); it counts itself toward the quorum only up to its own durable index.

use bytes::Bytes;

use crate::config::MutationKind;
use crate::error::{Error, Result};
use crate::message::{
    AppendEntries, AppendEntriesResponse, ConflictHint, Heartbeat, HeartbeatResponse, MessageBody,
};
use crate::raft::Raft;
use crate::storage::Storage;
use crate::tracker::ProgressState;
use crate::types::{Entry, Index, NodeId, Role};

impl<S: Storage> Raft<S> {
    /// Becomes leader of the current term: resets every follower's progress and appends an empty
    /// entry of the new term, so that earlier entries can commit through it (§5.4.2, §8).
    pub(crate) fn become_leader(&mut self) {
        assert_eq!(
            self.role,
            Role::Candidate,
            "only a candidate can become leader"
        );
        let term = self.term;
        self.become_follower(term, None); // resets timers and tallies; same term keeps the vote
        self.role = Role::Leader;
        self.leader = Some(self.id);
        let last_index = self.raft_log.last_index();
        self.tracker.reset(last_index + 1);
        let persisted = self.raft_log.persisted_index();
        let id = self.id;
        if let Some(own) = self.tracker.get_mut(id) {
            own.become_replicate();
            own.maybe_update(persisted);
            own.recent_active = true;
        }
        // Entries of earlier terms after the commit index are uncommitted too: the limit counts
        // them from the start, or a new leader could hold twice its limit.
        let committed = self.raft_log.committed();
        self.uncommitted_bytes = self.entries_bytes(committed + 1, last_index + 1);
        let noop = Entry::new(last_index + 1, term, Bytes::new());
        self.append_own(&noop);
    }

    /// Appends an entry of the leader's own (its empty entry, a proposal, a configuration change)
    /// and counts it in the uncommitted tail.
    pub(crate) fn append_own(&mut self, entry: &Entry) {
        self.uncommitted_bytes += entry.size_bytes();
        self.raft_log.append(std::slice::from_ref(entry));
    }

    /// Total `size_bytes` of the entries in `[lo, hi)`, all in the log.
    fn entries_bytes(&self, lo: Index, hi: Index) -> u64 {
        let mut total = 0;
        let mut next = lo;
        while next < hi {
            let batch = self
                .raft_log
                .slice(next, hi, self.config.apply_bytes_max)
                .unwrap_or_else(|e| panic!("leader cannot read its own entries from {next}: {e}"));
            next += batch.len() as u64;
            total += batch.iter().map(Entry::size_bytes).sum::<u64>();
        }
        total
    }

    /// Appends a client's command to the leader's log. Replication is batched: the entries
    /// proposed before the next `ready` go out together.
    pub fn propose(&mut self, data: Bytes) -> Result<Index> {
        self.check_can_propose()?;
        let index = self.raft_log.last_index() + 1;
        let entry = Entry::new(index, self.term, data);
        let size = entry.size_bytes();
        // One proposal is always admitted onto an empty uncommitted tail, however large.
        if self.uncommitted_bytes > 0
            && self.uncommitted_bytes + size > self.config.uncommitted_bytes_max
        {
            return Err(Error::Overloaded {
                uncommitted_bytes: self.uncommitted_bytes,
                limit: self.config.uncommitted_bytes_max,
            });
        }
        self.append_own(&entry);
        self.pending_bcast = true;
        Ok(index)
    }

    /// Proposals go to the leader, and not while it hands leadership over.
    pub(crate) fn check_can_propose(&self) -> Result<()> {
        if self.role != Role::Leader {
            return Err(Error::NotLeader {
                leader: self.leader,
            });
        }
        if self.lead_transferee.is_some() {
            return Err(Error::TransferInProgress);
        }
        Ok(())
    }

    /// Sends the proposals appended since the last broadcast.
    pub(crate) fn flush_proposals(&mut self) {
        if std::mem::take(&mut self.pending_bcast) && self.role == Role::Leader {
            self.bcast_append(false);
        }
    }

    /// Sends every follower what it is missing, as far as its progress state allows; with
    /// `send_if_empty`, an empty append carries a new commit index to followers that are up to date.
    pub(crate) fn bcast_append(&mut self, send_if_empty: bool) {
        let peers: Vec<NodeId> = self.tracker.ids().filter(|&id| id != self.id).collect();
        for peer in peers {
            if self.send_append(peer, send_if_empty) {
                while self.send_append(peer, false) {}
            }
        }
    }

    /// Sends one AppendEntries to `to` if its progress allows. Returns whether it sent.
    pub(crate) fn send_append(&mut self, to: NodeId, send_if_empty: bool) -> bool {
        let last_index = self.raft_log.last_index();
        let Some(pr) = self.tracker.get(to) else {
            return false;
        };
        if pr.is_paused() {
            return false;
        }
        let next = pr.next_index;
        let prev_log_index = next - 1;
        if next < self.raft_log.first_index() {
            // The entries it needs are compacted: only a snapshot can bring it up to date.
            self.send_snapshot(to);
            return false; // no appends follow a snapshot
        }
        let prev_log_term = self.raft_log.term(prev_log_index).unwrap_or_else(|e| {
            panic!("leader cannot read the term at {prev_log_index} for follower {to}: {e}")
        });
        let hi = (last_index + 1).min(next.saturating_add(self.config.msg_entries_max as u64));
        let entries = self
            .raft_log
            .slice(next, hi, self.config.msg_bytes_max)
            .unwrap_or_else(|e| panic!("leader cannot read entries from {next} for {to}: {e}"));
        if entries.is_empty() && !send_if_empty {
            return false;
        }
        let bytes = entries.iter().map(Entry::size_bytes).sum();
        let last_sent = entries.last().map_or(prev_log_index, |e| e.index);
        let count = entries.len();
        if let Some(pr) = self.tracker.get_mut(to) {
            pr.sent_append(last_sent, count, bytes);
        }
        let body = MessageBody::AppendEntries(AppendEntries {
            prev_log_index,
            prev_log_term,
            entries,
            leader_commit: self.raft_log.committed(),
        });
        self.send(to, body);
        true
    }

    /// Heartbeats to every follower, each with the commit index capped at what it holds, as a new
    /// round that confirms leadership for reads.
    pub(crate) fn bcast_heartbeat(&mut self) {
        let round = self.next_round();
        let committed = self.raft_log.committed();
        let peers: Vec<(NodeId, Index)> = self
            .tracker
            .iter_mut()
            .filter(|(id, _)| **id != self.id)
            .map(|(&id, pr)| (id, pr.match_index.min(committed)))
            .collect();
        for (peer, commit) in peers {
            self.send(peer, MessageBody::Heartbeat(Heartbeat { commit, round }));
        }
        self.advance_reads(); // a lone voter confirms its own rounds
    }

    /// Leader's handling of messages of its own term.
    pub(crate) fn step_leader(&mut self, from: NodeId, body: MessageBody) {
        match body {
            MessageBody::AppendEntriesResponse(resp) => self.handle_append_response(from, resp),
            MessageBody::HeartbeatResponse(r) => self.handle_heartbeat_response(from, &r),
            MessageBody::InstallSnapshotResponse(r) => self.handle_snapshot_response(from, &r),
            // Another leader in our term cannot exist (Election Safety); vote answers are late.
            _ => {}
        }
    }

    fn handle_append_response(&mut self, from: NodeId, resp: AppendEntriesResponse) {
        let last_index = self.raft_log.last_index();
        match resp {
            AppendEntriesResponse::Accepted { match_index } => {
                let Some(pr) = self.tracker.get_mut(from) else {
                    return;
                };
                pr.recent_active = true;
                let was_paused = pr.is_paused();
                if match_index > last_index || !pr.maybe_update(match_index) {
                    return; // stale, duplicated or bogus
                }
                match pr.state {
                    ProgressState::Probe => pr.become_replicate(),
                    ProgressState::Replicate => pr.inflights.free_to(match_index),
                    ProgressState::Snapshot => {
                        if pr
                            .pending_snapshot()
                            .is_some_and(|index| match_index >= index)
                        {
                            pr.become_replicate();
                        }
                    }
                }
                if self.lead_transferee == Some(from) {
                    self.maybe_send_timeout_now(from);
                }
                if self.maybe_commit() {
                    self.on_commit_advanced();
                } else {
                    // A follower we held back may have missed a commit index broadcast meanwhile.
                    if self.send_append(from, was_paused) {
                        while self.send_append(from, false) {}
                    }
                }
            }
            AppendEntriesResponse::Rejected {
                rejected_index,
                hint,
            } => {
                let next = self.next_index_from_hint(rejected_index, hint);
                let Some(pr) = self.tracker.get_mut(from) else {
                    return;
                };
                pr.recent_active = true;
                if pr.maybe_decrease_to(rejected_index, next) {
                    self.send_append(from, true);
                }
            }
        }
    }

    /// Where to resume after a rejection at `rejected_index`: just after our last entry of the
    /// follower's conflicting term if we hold that term, else the first index of that term in the
    /// follower's log; past the follower's last entry when its log is shorter. Skips a whole term
    /// per round trip.
    fn next_index_from_hint(&self, rejected_index: Index, hint: ConflictHint) -> Index {
        match hint.term {
            None => hint.first_index,
            Some(term) => match self.raft_log.last_index_of_term(term, rejected_index) {
                Some(index) => index + 1,
                None => hint.first_index,
            },
        }
    }

    fn handle_heartbeat_response(&mut self, from: NodeId, r: &HeartbeatResponse) {
        let last_index = self.raft_log.last_index();
        let Some(pr) = self.tracker.get_mut(from) else {
            return;
        };
        pr.recent_active = true;
        pr.probe_sent = false;
        match pr.state {
            // A chunk or the final acknowledgement may have been lost: resume from the last offset.
            ProgressState::Snapshot => self.resume_snapshot(from),
            ProgressState::Replicate | ProgressState::Probe => {
                if pr.state == ProgressState::Replicate && pr.inflights.full() {
                    pr.inflights.free_first_one();
                }
                // Behind: send what it misses, or an empty append if everything we sent was
                // lost, so that its rejection puts us back on track.
                if pr.match_index < last_index {
                    self.send_append(from, true);
                }
            }
        }
        self.on_round_acked(from, r.round);
    }

    /// Advances the commit index to the highest index a quorum holds durably, provided that
    /// entry is of the current term (§5.4.2). Returns whether it advanced.
    pub(crate) fn maybe_commit(&mut self) -> bool {
        let index = self.tracker.committed_index();
        if index <= self.raft_log.committed() {
            return false;
        }
        let past_terms_allowed = self.config.mutated(MutationKind::CommitPastTerm);
        if !past_terms_allowed && !self.raft_log.match_term(index, self.term) {
            return false;
        }
        let newly_committed = self.entries_bytes(self.raft_log.committed() + 1, index + 1);
        self.raft_log.commit_to(index);
        self.uncommitted_bytes = self
            .uncommitted_bytes
            .checked_sub(newly_committed)
            .unwrap_or_else(|| {
                panic!(
                    "uncommitted bytes {} below the {newly_committed} bytes just committed",
                    self.uncommitted_bytes
                )
            });
        true
    }

    /// The commit index advanced: tell the followers, release reads that waited for this term's
    /// first commit, finish a membership change.
    pub(crate) fn on_commit_advanced(&mut self) {
        self.bcast_append(true);
        self.on_term_committed();
        self.maybe_finish_conf_change();
    }

    /// The leader's own entries up to its durable index count toward the quorum.
    pub(crate) fn on_own_persisted(&mut self) {
        let persisted = self.raft_log.persisted_index();
        let id = self.id;
        let updated = self
            .tracker
            .get_mut(id)
            .is_some_and(|own| own.maybe_update(persisted));
        if updated && self.maybe_commit() {
            self.on_commit_advanced();
        }
    }
}
