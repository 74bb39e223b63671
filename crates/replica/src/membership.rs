//! Membership on the leader: joins and operator additions (a learner first, promoted once caught
//! up, unless added as a learner on purpose: then held until promoted explicitly), removals, raw
//! configuration changes, members publishing their addresses, and handing leadership over on
//! shutdown.
//!
//! Invariants: a voter is never re-added under the same id (with an empty log it could vote a
//! leader in that lacks committed entries); a learner becomes a voter only once its log is within
//! `PROMOTE_LAG_ENTRIES` of the commit index, by the leader's own promotion or an explicit one;
//! a held learner is promoted only explicitly; one change at a time (the core's rule).

use raftkv_raft::{Index, MemberChange, NodeId, Role, Storage};

use crate::error::RequestError;
use crate::members::Member;
use crate::output::{Answer, Event, Own, RequestId};
use crate::replica::{PROMOTE_LAG_ENTRIES, Replica};
use crate::state::Command;

impl<S: Storage> Replica<S> {
    /// Adds a member as a learner and records its addresses; answered once the configuration
    /// entry is applied. Returns the entry's index, or the refusal (which is also the reply).
    pub fn join(&mut self, id: RequestId, member: Member) -> Result<Index, RequestError> {
        self.add_member(id, member, false)
    }

    /// As [`Replica::join`]; a `held` learner is not promoted when it catches up, only by
    /// [`Replica::promote_member`] (etcd's `member add --learner`). The hold is proposed before
    /// the configuration change, so no leader ever sees the learner unheld.
    pub fn add_member(
        &mut self,
        id: RequestId,
        member: Member,
        held: bool,
    ) -> Result<Index, RequestError> {
        let raft = self.raft();
        let conf = raft.tracker().conf_state();
        let refused = if let Some(reason) = member.invalid() {
            Some(RequestError::Invalid(reason))
        } else if raft.role() != Role::Leader {
            Some(RequestError::NotLeader {
                leader: raft.leader(),
            })
        } else if conf.learners.contains(&member.id) {
            // A retried join of a learner: it does not vote, so even a wiped one is harmless.
            let index = raft.raft_log().committed();
            self.reply(id, Ok(Answer::Membership { index }));
            return Ok(index);
        } else if conf.is_voter(member.id) {
            Some(RequestError::Conflict(format!(
                "`{}` is already a voter; if it lost its data, remove it first \
                 and join it under a new name",
                member.name
            )))
        } else {
            None
        };
        if let Some(error) = refused {
            self.reply(id, Err(error.clone()));
            return Err(error);
        }
        let node = member.id;
        if held
            && self
                .propose_own(Own::Hold(node), Command::hold_learner(node))
                .is_none()
        {
            let error = RequestError::Unavailable("the hold on its promotion was refused".into());
            self.reply(id, Err(error.clone()));
            return Err(error);
        }
        let index = self.change_membership(id, vec![MemberChange::AddLearner(node)])?;
        // Its addresses; if this proposal is refused, the node publishes them itself.
        self.propose_own(Own::Publish(node), Command::publish(member));
        Ok(index)
    }

    /// Removes a member (voter or learner); answered once the configuration entry is applied.
    pub fn remove_member(&mut self, id: RequestId, node: NodeId) {
        let raft = self.raft();
        if raft.role() != Role::Leader {
            let leader = raft.leader();
            self.reply(id, Err(RequestError::NotLeader { leader }));
            return;
        }
        if !raft.tracker().conf_state().members().contains(&node) {
            let message = format!("node {node} is not a member of the configuration");
            self.reply(id, Err(RequestError::Invalid(message)));
            return;
        }
        let _ = self.change_membership(id, vec![MemberChange::Remove(node)]);
    }

    /// Makes learner `node` a voter (etcd's `member promote`), if its log has caught up; answered
    /// once the configuration entry is applied. Returns the entry's index, or the refusal (which
    /// is also the reply).
    pub fn promote_member(&mut self, id: RequestId, node: NodeId) -> Result<Index, RequestError> {
        let raft = self.raft();
        let tracker = raft.tracker();
        let refused = if raft.role() != Role::Leader {
            Some(RequestError::NotLeader {
                leader: raft.leader(),
            })
        } else if !tracker.conf_state().learners.contains(&node) {
            Some(RequestError::NotALearner(node))
        } else if !self.caught_up(node) {
            Some(RequestError::LearnerBehind(node))
        } else {
            None
        };
        if let Some(error) = refused {
            self.reply(id, Err(error.clone()));
            return Err(error);
        }
        self.change_membership(id, vec![MemberChange::AddVoter(node)])
    }

    /// Leader: whether learner `node`'s log is recent and within `PROMOTE_LAG_ENTRIES` of the
    /// commit index.
    fn caught_up(&self, node: NodeId) -> bool {
        let raft = self.raft();
        let committed = raft.raft_log().committed();
        raft.tracker().get(node).is_some_and(|p| {
            p.recent_active && p.match_index > 0 && p.match_index + PROMOTE_LAG_ENTRIES >= committed
        })
    }

    /// Proposes a configuration change as given; answered once applied. Returns the index of
    /// its entry, or why it was refused (which is also the reply).
    pub fn change_membership(
        &mut self,
        id: RequestId,
        changes: Vec<MemberChange>,
    ) -> Result<Index, RequestError> {
        match self.node.propose_conf_change(changes) {
            Ok(index) => {
                self.track_write(index, id, true);
                Ok(index)
            }
            Err(e) => {
                let error = RequestError::from(e);
                self.reply(id, Err(error.clone()));
                Err(error)
            }
        }
    }

    /// Leader: proposes promoting a learner whose log has caught up (unless it is held), once
    /// its addition is applied here.
    pub(crate) fn promote_caught_up_learners(&mut self) {
        let raft = self.raft();
        let tracker = raft.tracker();
        let conf = tracker.conf_state();
        if conf.is_joint() {
            return;
        }
        // Only once this node has applied the configuration in effect: the registry then also
        // holds everything proposed before it, a learner's hold included (the core's
        // configuration moves when its entry is appended; the applied state lags behind).
        let state = self.state();
        if state.applied() < raft.conf_index() {
            return;
        }
        let ready =
            conf.learners.iter().copied().find(|&id| {
                (!state.registry.is_held(id) || self.ignore_hold()) && self.caught_up(id)
            });
        drop(state);
        if let Some(node) = ready {
            let refused = self
                .node
                .propose_conf_change(vec![MemberChange::AddVoter(node)])
                .err()
                .map(|e| e.to_string());
            self.out.events.push(Event::Proposed {
                what: Own::Promotion(node),
                refused,
            });
        }
    }

    /// Leader: makes sure the registry has this node's current addresses (retried every
    /// election timeout until it has).
    pub(crate) fn publish_self(&mut self) {
        let Some(me) = self.settings.me.clone() else {
            return;
        };
        if self.state().registry.get(self.id) == Some(&me) {
            return;
        }
        let due = self
            .published_at
            .is_none_or(|at| self.ticks >= at + self.election_ticks);
        if due {
            self.published_at = Some(self.ticks);
            let id = self.id;
            self.propose_own(Own::Publish(id), Command::publish(me));
        }
    }

    /// The up-to-date voter to hand leadership to, if this node leads and has one.
    pub(crate) fn transfer_target(&self) -> Option<NodeId> {
        let raft = self.raft();
        if raft.role() != Role::Leader {
            return None;
        }
        let tracker = raft.tracker();
        tracker
            .conf_state()
            .voters
            .iter()
            .filter(|&&id| id != self.id)
            .filter_map(|&id| tracker.get(id).map(|p| (p.match_index, id)))
            .max()
            .map(|(_, id)| id)
    }

    #[cfg(feature = "mutations")]
    fn ignore_hold(&self) -> bool {
        self.settings.mutation == Some(crate::replica::Mutation::IgnoreHold)
    }

    #[cfg(not(feature = "mutations"))]
    fn ignore_hold(&self) -> bool {
        false
    }
}
