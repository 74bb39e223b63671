//! Majority arithmetic (§5.2 votes, §5.3 commitment), kept apart so it can be checked against a
//! plain reference by property tests.

use std::collections::BTreeSet;

use crate::types::{Index, NodeId};

/// Outcome of an election so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VoteResult {
    /// Neither a majority of grants nor of rejections yet.
    Pending,
    /// A majority granted.
    Won,
    /// A majority rejected: the election cannot be won.
    Lost,
}

/// The voting configuration: one majority, or two while joint (thesis §4.3): a decision needs a
/// majority of the incoming voters *and*, while joint, of the outgoing ones.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JointConfig {
    /// C(new), or the only configuration.
    pub incoming: MajorityConfig,
    /// C(old) while joint; empty otherwise (an empty half agrees to everything).
    pub outgoing: MajorityConfig,
}

impl JointConfig {
    /// Whether `id` votes in either half.
    pub fn contains(&self, id: NodeId) -> bool {
        self.incoming.contains(id) || self.outgoing.contains(id)
    }

    /// Every voter of either half.
    pub fn voters(&self) -> BTreeSet<NodeId> {
        self.incoming
            .voters()
            .union(self.outgoing.voters())
            .copied()
            .collect()
    }

    /// Highest index both halves have committed.
    pub fn committed_index(&self, match_index: impl Fn(NodeId) -> Option<Index>) -> Index {
        let incoming = self.incoming.committed_index(&match_index);
        if self.outgoing.voters().is_empty() {
            return incoming;
        }
        incoming.min(self.outgoing.committed_index(&match_index))
    }

    /// The election's outcome: won only if both halves won, lost if either lost.
    pub fn vote_result(&self, vote: impl Fn(NodeId) -> Option<bool>) -> VoteResult {
        let incoming = self.incoming.vote_result(&vote);
        if self.outgoing.voters().is_empty() {
            return incoming;
        }
        match (incoming, self.outgoing.vote_result(&vote)) {
            (VoteResult::Won, VoteResult::Won) => VoteResult::Won,
            (VoteResult::Lost, _) | (_, VoteResult::Lost) => VoteResult::Lost,
            _ => VoteResult::Pending,
        }
    }

    /// Whether the voters `active` returns true for form a quorum of both halves.
    pub fn has_quorum(&self, active: impl Fn(NodeId) -> bool) -> bool {
        self.incoming.has_quorum(&active)
            && (self.outgoing.voters().is_empty() || self.outgoing.has_quorum(&active))
    }
}

/// A set of voters that decides by simple majority.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MajorityConfig {
    voters: BTreeSet<NodeId>,
}

impl MajorityConfig {
    /// The voters given.
    pub fn new(voters: impl IntoIterator<Item = NodeId>) -> Self {
        MajorityConfig {
            voters: voters.into_iter().collect(),
        }
    }

    /// The voter ids, in order.
    pub fn voters(&self) -> &BTreeSet<NodeId> {
        &self.voters
    }

    /// Whether `id` votes.
    pub fn contains(&self, id: NodeId) -> bool {
        self.voters.contains(&id)
    }

    /// How many voters make a majority.
    pub fn quorum(&self) -> usize {
        self.voters.len() / 2 + 1
    }

    /// The highest index that a majority of voters hold, given each voter's match index
    /// (`None` counts as 0). An empty configuration commits nothing.
    pub fn committed_index(&self, match_index: &impl Fn(NodeId) -> Option<Index>) -> Index {
        if self.voters.is_empty() {
            return 0;
        }
        let mut matched: Vec<Index> = self
            .voters
            .iter()
            .map(|&id| match_index(id).unwrap_or(0))
            .collect();
        matched.sort_unstable_by(|a, b| b.cmp(a));
        matched[self.quorum() - 1]
    }

    /// The election's outcome given each voter's answer (`None`: not answered).
    pub fn vote_result(&self, vote: &impl Fn(NodeId) -> Option<bool>) -> VoteResult {
        let (mut granted, mut rejected) = (0, 0);
        for &id in &self.voters {
            match vote(id) {
                Some(true) => granted += 1,
                Some(false) => rejected += 1,
                None => {}
            }
        }
        if granted >= self.quorum() {
            VoteResult::Won
        } else if rejected >= self.quorum() || self.voters.is_empty() {
            VoteResult::Lost
        } else {
            VoteResult::Pending
        }
    }

    /// Whether the voters `active` returns true for form a majority.
    pub fn has_quorum(&self, active: &impl Fn(NodeId) -> bool) -> bool {
        self.voters.iter().filter(|&&id| active(id)).count() >= self.quorum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Reference: the largest index that at least a majority of voters have reached.
    fn committed_reference(matched: &[Index]) -> Index {
        let quorum = matched.len() / 2 + 1;
        (0..=matched.iter().copied().max().unwrap_or(0))
            .filter(|&n| matched.iter().filter(|&&m| m >= n).count() >= quorum)
            .max()
            .unwrap_or(0)
    }

    proptest! {
        #[test]
        fn committed_index_matches_reference(matched in prop::collection::vec(0u64..20, 1..8)) {
            let config = MajorityConfig::new(1..=matched.len() as u64);
            let got = config.committed_index(&|id| matched.get(id as usize - 1).copied());
            prop_assert_eq!(got, committed_reference(&matched));
        }

        #[test]
        fn vote_result_matches_counting(votes in prop::collection::vec(prop::option::of(any::<bool>()), 1..8)) {
            let config = MajorityConfig::new(1..=votes.len() as u64);
            let quorum = votes.len() / 2 + 1;
            let granted = votes.iter().filter(|v| **v == Some(true)).count();
            let rejected = votes.iter().filter(|v| **v == Some(false)).count();
            let expected = if granted >= quorum {
                VoteResult::Won
            } else if rejected >= quorum {
                VoteResult::Lost
            } else {
                VoteResult::Pending
            };
            prop_assert_eq!(config.vote_result(&|id| votes[id as usize - 1]), expected);
        }
    }

    #[test]
    fn empty_configuration_commits_nothing_and_wins_nothing() {
        let config = MajorityConfig::default();
        assert_eq!(config.committed_index(&|_| Some(5)), 0);
        assert_eq!(config.vote_result(&|_| Some(true)), VoteResult::Lost);
    }

    proptest! {
        #[test]
        fn joint_commit_is_the_minimum_of_both_halves(
            matched in prop::collection::vec(0u64..20, 6),
            split in 1usize..5,
        ) {
            let outgoing = MajorityConfig::new(1..=split as u64 + 1);
            let incoming = MajorityConfig::new(split as u64..=6);
            let lookup = |id: NodeId| matched.get(id as usize - 1).copied();
            let joint = JointConfig { incoming: incoming.clone(), outgoing: outgoing.clone() };
            let expected = incoming.committed_index(&lookup).min(outgoing.committed_index(&lookup));
            prop_assert_eq!(joint.committed_index(lookup), expected);
        }
    }
}
