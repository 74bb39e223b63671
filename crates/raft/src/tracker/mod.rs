//! The leader's tracking of its peers (progress) and a candidate's tally of votes, over the
//! membership configuration (voters, joint or not, and learners).
//!
//! Invariant: there is exactly one `Progress` per member (voter of either half or learner), and
//! iteration is in id order (BTreeMap), so the messages a node emits are deterministic. Learners
//! have progress but never count toward a quorum or an election.

mod inflights;
mod progress;

use std::collections::BTreeMap;

pub use inflights::Inflights;
pub use progress::{Progress, ProgressState, SnapshotTransfer};

use crate::quorum::{JointConfig, MajorityConfig, VoteResult};
use crate::types::{ConfState, Index, NodeId};

/// Progress of every member and the votes of the current election.
#[derive(Clone, Debug)]
pub struct ProgressTracker {
    /// Who votes and counts toward commitment.
    config: JointConfig,
    /// The membership the config was built from (voters and learners).
    conf_state: ConfState,
    /// One entry per member.
    progress: BTreeMap<NodeId, Progress>,
    /// Answers received in the current (pre-)election.
    votes: BTreeMap<NodeId, bool>,
    /// Bounds each new `Progress` is given.
    inflight_msgs_max: usize,
    inflight_bytes_max: u64,
}

impl ProgressTracker {
    /// Tracks the members of `conf_state`; each progress starts empty.
    pub fn new(conf_state: &ConfState, inflight_msgs_max: usize, inflight_bytes_max: u64) -> Self {
        let mut tracker = ProgressTracker {
            config: JointConfig::default(),
            conf_state: ConfState::default(),
            progress: BTreeMap::new(),
            votes: BTreeMap::new(),
            inflight_msgs_max,
            inflight_bytes_max,
        };
        tracker.apply_conf(conf_state, 1);
        tracker
    }

    /// The voting configuration.
    pub fn config(&self) -> &JointConfig {
        &self.config
    }

    /// The membership tracked.
    pub fn conf_state(&self) -> &ConfState {
        &self.conf_state
    }

    /// Switches to `conf_state`: members that stay keep their progress, new ones start probing at
    /// `next_index`, removed ones are forgotten.
    pub fn apply_conf(&mut self, conf_state: &ConfState, next_index: Index) {
        self.config = JointConfig {
            incoming: MajorityConfig::new(conf_state.voters.iter().copied()),
            outgoing: MajorityConfig::new(conf_state.voters_outgoing.iter().copied()),
        };
        self.conf_state = conf_state.clone();
        let members = conf_state.members();
        self.progress.retain(|id, _| members.contains(id));
        for id in members {
            self.progress.entry(id).or_insert_with(|| {
                Progress::new(next_index, self.inflight_msgs_max, self.inflight_bytes_max)
            });
        }
    }

    /// Resets every progress to "nothing known, next is `next_index`" (a new leader's view).
    pub fn reset(&mut self, next_index: Index) {
        for pr in self.progress.values_mut() {
            *pr = Progress::new(next_index, self.inflight_msgs_max, self.inflight_bytes_max);
        }
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
