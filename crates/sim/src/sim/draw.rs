//! What the swarm's faults pick: membership changes (raw changes, joins, held learners to
//! promote), leadership transfer targets and partition shapes, each drawn from the seeded RNG
//! over the current leader's configuration.

use raftkv_raft::{MemberChange, NodeId};

use super::{Simulation, VOTERS_MAX};
use crate::network::PartitionShape;

impl Simulation {
    /// A membership change for `leader`'s configuration: add a spare or a removed node (as learner
    /// or voter), promote a learner, demote or remove a voter (the leader too), remove a learner;
    /// sometimes two of these at once. Keeps at least one and at most `VOTERS_MAX` voters.
    pub(super) fn draw_membership_change(&mut self, leader: NodeId) -> Option<Vec<MemberChange>> {
        let conf = self.nodes[leader as usize - 1].conf_state()?.clone();
        let members = conf.members();
        let mut options = Vec::new();
        for id in 1..=self.nodes.len() as NodeId {
            if conf.voters.contains(&id) {
                options.push(MemberChange::Remove(id));
                options.push(MemberChange::AddLearner(id));
            } else if conf.learners.contains(&id) {
                options.push(MemberChange::AddVoter(id));
                options.push(MemberChange::Remove(id));
            } else if !members.contains(&id) {
                options.push(MemberChange::AddLearner(id));
                options.push(MemberChange::AddVoter(id));
            }
        }
        let count = if self.rng.chance(self.config.faults.multi_member) {
            2
        } else {
            1
        };
        let mut changes: Vec<MemberChange> = Vec::new();
        for _ in 0..count {
            let change = self.rng.pick(&options)?;
            options.retain(|c| c.node() != change.node());
            changes.push(change);
        }
        let voters = conf.enter_joint(&changes).ok()?.voters.len();
        (1..=VOTERS_MAX).contains(&voters).then_some(changes)
    }

    /// A held learner of `leader`'s configuration.
    pub(super) fn draw_held_learner(&mut self, leader: NodeId) -> Option<NodeId> {
        let conf = self.nodes[leader as usize - 1].conf_state()?;
        let held: Vec<NodeId> = conf
            .learners
            .iter()
            .copied()
            .filter(|id| self.held.contains(id))
            .collect();
        self.rng.pick(&held)
    }

    /// A node outside `leader`'s configuration that may join.
    pub(super) fn draw_joiner(&mut self, leader: NodeId) -> Option<NodeId> {
        let members = self.nodes[leader as usize - 1].conf_state()?.members();
        let outside: Vec<NodeId> = (1..=self.nodes.len() as NodeId)
            .filter(|id| !members.contains(id))
            .collect();
        self.rng.pick(&outside)
    }

    /// A voter of `leader`'s configuration, other than itself, to hand leadership to.
    pub(super) fn draw_transfer_target(&mut self, leader: NodeId) -> Option<NodeId> {
        let conf = self.nodes[leader as usize - 1].conf_state()?;
        let voters: Vec<NodeId> = conf
            .voters
            .iter()
            .copied()
            .filter(|&v| v != leader)
            .collect();
        self.rng.pick(&voters)
    }

    /// A partition shape: the leader cut off with probability `leader_bias`, else a random shape
    /// over the nodes that ever were members (there are at least two).
    pub(super) fn draw_partition(&mut self) -> PartitionShape {
        if let Some(leader) = self.current_leader()
            && self.rng.chance(self.config.faults.leader_bias)
        {
            return PartitionShape::Isolate(leader);
        }
        let mut ids: Vec<NodeId> = self.involved.iter().copied().collect();
        for i in (1..ids.len()).rev() {
            let j = self.rng.below(i + 1);
            ids.swap(i, j);
        }
        let n = ids.len();
        match self.rng.below(5) {
            0 => PartitionShape::Isolate(ids[0]),
            1 => PartitionShape::Isolate(self.current_leader().unwrap_or(ids[0])),
            2 => {
                let minority = self.rng.range(1, (n as u64 - 1).div_ceil(2).max(1)) as usize;
                let (a, b) = ids.split_at(minority.min(n - 1));
                PartitionShape::Split(a.to_vec(), b.to_vec())
            }
            3 => PartitionShape::OneWay(ids[0], ids[1]),
            _ if n >= 3 => {
                let left = self.rng.range(1, n as u64 - 2) as usize;
                PartitionShape::Bridge {
                    bridge: ids[0],
                    left: ids[1..=left].to_vec(),
                    right: ids[left + 1..].to_vec(),
                }
            }
            _ => PartitionShape::OneWay(ids[1], ids[0]),
        }
    }
}
