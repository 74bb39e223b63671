//! Membership requests a simulated node's engine is asked to carry out: raw configuration
//! changes, joins (held or not), promotions of held learners, leadership transfers.

use raftkv_raft::{Index, MemberChange, NodeId};
use raftkv_replica::RequestError;

use super::{NodeOutput, SimNode, Waiting, member};
use crate::network::Time;

impl SimNode {
    /// The leader is asked to change the membership.
    pub fn propose_conf_change(
        &mut self,
        changes: Vec<MemberChange>,
        now: Time,
        out: &mut NodeOutput,
    ) -> Result<Index, RequestError> {
        let (_, result) = self
            .submit(Waiting::Membership, |engine, id| {
                engine.change_membership(id, changes)
            })
            .ok_or(RequestError::NotLeader { leader: None })?;
        self.drain(now, out);
        result
    }

    /// The leader is asked to add `node` as a learner (promoted once caught up, unless `held`).
    /// Returns the index of its configuration entry, or the refusal.
    pub fn join(
        &mut self,
        node: NodeId,
        held: bool,
        now: Time,
        out: &mut NodeOutput,
    ) -> Result<Index, RequestError> {
        let (_, result) = self
            .submit(Waiting::Membership, |engine, id| {
                engine.add_member(id, member(node), held)
            })
            .ok_or(RequestError::NotLeader { leader: None })?;
        self.drain(now, out);
        result
    }

    /// The leader is asked to promote learner `node`. Returns the index of its configuration
    /// entry, or the refusal.
    pub fn promote(
        &mut self,
        node: NodeId,
        now: Time,
        out: &mut NodeOutput,
    ) -> Result<Index, RequestError> {
        let (_, result) = self
            .submit(Waiting::Membership, |engine, id| {
                engine.promote_member(id, node)
            })
            .ok_or(RequestError::NotLeader { leader: None })?;
        self.drain(now, out);
        result
    }

    /// The leader is asked to hand leadership to `target`.
    pub fn transfer_leader(
        &mut self,
        target: NodeId,
        now: Time,
        out: &mut NodeOutput,
    ) -> Result<(), RequestError> {
        let engine = self
            .running()
            .ok_or(RequestError::NotLeader { leader: None })?;
        let result = engine.transfer_leader(target);
        self.drain(now, out);
        result
    }
}
