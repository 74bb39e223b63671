//! Membership changes by joint consensus (thesis §4.3) and learners.
//!
//! A configuration takes effect on a node as soon as its entry is in the node's log, committed or
//! not (thesis §4.1), so every append and truncation keeps `conf_history` in step with the log, and
//! a restart replays the configuration entries after the snapshot.
//!
//! Invariants: `conf_history` is never empty; its first point is the snapshot's (or bootstrap)
//! membership; later points are exactly the configuration entries in the log, in index order; the
//! tracker always follows the last point. At most one change is in flight: a leader refuses a new
//! one while the last configuration entry is uncommitted or the configuration is joint, and before
//! it has committed an entry of its own term (the single-server change bug, raft-dev 2015).

use crate::config::MutationKind;
use crate::error::{Error, Result};
use crate::raft::Raft;
use crate::storage::Storage;
use crate::types::{ConfState, Entry, EntryKind, Index, MemberChange, Role, Term};

/// The membership as of one index of the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfPoint {
    /// Index of the configuration entry (or of the snapshot for the first point).
    pub index: Index,
    /// Its term, to tell whether the log still holds that entry.
    pub term: Term,
    /// The membership from there on.
    pub conf_state: ConfState,
}

impl<S: Storage> Raft<S> {
    /// The membership in effect: the last configuration in the log.
    pub fn conf_state(&self) -> &ConfState {
        &self.current_conf().conf_state
    }

    /// The index of the entry (or snapshot) the membership in effect comes from: a node whose
    /// state machine has applied this far has seen every entry proposed before it.
    pub fn conf_index(&self) -> Index {
        self.current_conf().index
    }

    fn current_conf(&self) -> &ConfPoint {
        self.conf_history
            .last()
            .unwrap_or_else(|| panic!("the configuration history is never empty"))
    }

    /// The membership as of `index` (for a snapshot taken there).
    pub(crate) fn conf_state_at(&self, index: Index) -> ConfState {
        self.conf_history
            .iter()
            .rev()
            .find(|p| p.index <= index)
            .unwrap_or(&self.conf_history[0])
            .conf_state
            .clone()
    }

    /// Re-reads the configuration entries of the log after the first point (on restart).
    pub(crate) fn replay_conf_entries(&mut self) {
        let mut next = self.conf_history[0].index + 1;
        let last = self.raft_log.last_index();
        while next <= last {
            let batch = self
                .raft_log
                .slice(next, last + 1, self.config.apply_bytes_max)
                .unwrap_or_else(|e| panic!("cannot read the log to restore membership: {e}"));
            next += batch.len() as u64;
            self.record_conf_entries(&batch);
        }
        self.sync_tracker_conf();
    }

    /// Keeps the membership in step with the log after `entries` were appended (possibly over a
    /// truncated suffix): drops configurations whose entries are gone, adds new ones.
    pub(crate) fn on_entries_appended(&mut self, entries: &[Entry]) {
        while self.conf_history.len() > 1 {
            let point = self.current_conf();
            if point.index <= self.raft_log.last_index()
                && self.raft_log.match_term(point.index, point.term)
            {
                break;
            }
            self.conf_history.pop();
        }
        self.record_conf_entries(entries);
        self.sync_tracker_conf();
    }

    fn record_conf_entries(&mut self, entries: &[Entry]) {
        for entry in entries {
            let EntryKind::ConfChange(conf_state) = &entry.kind else {
                continue;
            };
            if entry.index <= self.current_conf().index
                || !self.raft_log.match_term(entry.index, entry.term)
            {
                continue;
            }
            self.conf_history.push(ConfPoint {
                index: entry.index,
                term: entry.term,
                conf_state: conf_state.as_ref().clone(),
            });
        }
    }

    fn sync_tracker_conf(&mut self) {
        if self.tracker.conf_state() != self.conf_state() {
            let conf_state = self.conf_state().clone();
            let next_index = self.raft_log.last_index() + 1;
            self.tracker.apply_conf(&conf_state, next_index);
        }
    }

    /// Replaces the membership with a snapshot's (openraft#1808 lost data by keeping the old one).
    pub(crate) fn reset_conf(&mut self, point: ConfPoint) {
        self.conf_history = vec![point];
        self.sync_tracker_conf();
    }

    /// Folds configuration points up to a new snapshot at `index` into the first point.
    pub(crate) fn compact_conf_history(&mut self, index: Index, term: Term) {
        let conf_state = self.conf_state_at(index);
        self.conf_history.retain(|p| p.index > index);
        self.conf_history.insert(
            0,
            ConfPoint {
                index,
                term,
                conf_state,
            },
        );
    }

    /// Proposes a membership change: enter the joint configuration with `changes` applied; the
    /// leader leaves it by itself once that entry commits.
    pub fn propose_conf_change(&mut self, changes: Vec<MemberChange>) -> Result<Index> {
        self.check_can_propose()?;
        if !self
            .raft_log
            .match_term(self.raft_log.committed(), self.term)
        {
            return Err(Error::ConfChangeTooEarly);
        }
        if self.current_conf().index > self.raft_log.committed() || self.conf_state().is_joint() {
            return Err(Error::ConfChangeInProgress);
        }
        let mut joint = self
            .conf_state()
            .enter_joint(&changes)
            .map_err(Error::InvalidConfChange)?;
        if self.config.mutated(MutationKind::NoJointConsensus) {
            joint = joint.leave_joint();
        }
        Ok(self.append_conf_change(joint))
    }

    fn append_conf_change(&mut self, conf_state: ConfState) -> Index {
        let index = self.raft_log.last_index() + 1;
        let entry = Entry::conf_change(index, self.term, conf_state);
        self.append_own(&entry);
        self.on_entries_appended(std::slice::from_ref(&entry));
        self.pending_bcast = true;
        index
    }

    /// Leader, after its commit index advanced: leave a committed joint configuration, and step
    /// down once a configuration without this node as a voter has committed.
    pub(crate) fn maybe_finish_conf_change(&mut self) {
        if self.role != Role::Leader || self.current_conf().index > self.raft_log.committed() {
            return;
        }
        if self.conf_state().is_joint() {
            let new = self.conf_state().leave_joint();
            self.append_conf_change(new);
            self.flush_proposals();
        } else if !self.conf_state().voters.contains(&self.id) {
            let term = self.term;
            self.become_follower(term, None);
        }
    }
}
