//! The leader's tracking of its peers (progress) and a candidate's tally of votes, over the
//! voting configuration.
//!
//! Invariant: there is exactly one `Progress` per voter, and iteration is in id order (BTreeMap), so
//! the messages a node emits are deterministic.

mod inflights;
mod progress;

use std::collections::BTreeMap;

pub use inflights::Inflights;
pub use progress::{Progress, ProgressState};

use crate::quorum::{MajorityConfig, VoteResult};
use crate::types::{Index, NodeId};

/// Progress of every member and the votes of the current election.
#[derive(Clone, Debug)]
pub struct ProgressTracker {
    /// Who votes and counts toward commitment.
    config: MajorityConfig,
    /// One entry per member.
    progress: BTreeMap<NodeId, Progress>,
    /// Answers received in the current (pre-)election.
    votes: BTreeMap<NodeId, bool>,
    /// Bounds each new `Progress` is given.
    inflight_msgs_max: usize,
    inflight_bytes_max: u64,
}

impl ProgressTracker {
    /// Tracks `voters`; each progress starts empty.
    pub fn new(voters: &[NodeId], inflight_msgs_max: usize, inflight_bytes_max: u64) -> Self {
        let config = MajorityConfig::new(voters.iter().copied());
        let mut tracker = ProgressTracker {
            config,
            progress: BTreeMap::new(),
            votes: BTreeMap::new(),
            inflight_msgs_max,
            inflight_bytes_max,
        };
        tracker.reset(1);
        tracker
    }

    /// The voting configuration.
    pub fn config(&self) -> &MajorityConfig {
        &self.config
    }

    /// Resets every progress to "nothing known, next is `next_index`" (a new leader's view).
    pub fn reset(&mut self, next_index: Index) {
        self.progress = self
            .config
            .voters()
            .iter()
            .map(|&id| {
                let pr = Progress::new(next_index, self.inflight_msgs_max, self.inflight_bytes_max);
                (id, pr)
            })
            .collect();
    }

    /// The progress of `id`, if it is a member.
    pub fn get(&self, id: NodeId) -> Option<&Progress> {
        self.progress.get(&id)
    }

    /// Mutable progress of `id`, if it is a member.
    pub fn get_mut(&mut self, id: NodeId) -> Option<&mut Progress> {
        self.progress.get_mut(&id)
    }

    /// Member ids, in order.
    pub fn ids(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.progress.keys().copied()
    }

    /// Every member's progress, in id order.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&NodeId, &mut Progress)> {
        self.progress.iter_mut()
    }

    /// Highest index a quorum of voters has durably (§5.3).
    pub fn committed_index(&self) -> Index {
        self.config
            .committed_index(|id| self.progress.get(&id).map(|p| p.match_index))
    }

    /// Whether a quorum of voters was active since the last check (CheckQuorum), counting `me`.
    /// Clears the activity flags for the next round.
    pub fn quorum_active(&mut self, me: NodeId) -> bool {
        let active = self
            .config
            .has_quorum(|id| id == me || self.progress.get(&id).is_some_and(|p| p.recent_active));
        for (&id, pr) in self.progress.iter_mut() {
            pr.recent_active = id == me;
        }
        active
    }

    /// Clears the tally for a new election.
    pub fn reset_votes(&mut self) {
        self.votes.clear();
    }

    /// Records `id`'s answer (the first answer per voter counts) and returns the outcome so far.
    pub fn record_vote(&mut self, id: NodeId, granted: bool) -> VoteResult {
        if self.config.contains(id) {
            self.votes.entry(id).or_insert(granted);
        }
        self.config.vote_result(|v| self.votes.get(&v).copied())
    }
}
