//! Leadership transfer (thesis §3.10): the leader stops taking proposals, brings the target's log
//! up to date, and sends it TimeoutNow; the target campaigns at once, skipping PreVote, and its
//! vote requests are answered even within a leader's lease. A transfer not done within an election
//! timeout is abandoned and proposals resume.
//!
//! Invariant: a node campaigns on TimeoutNow only when it comes from the leader of its current
//! term; from anyone else, or from a higher term, it is ignored.

use crate::election::Campaign;
use crate::error::{Error, Result};
use crate::message::MessageBody;
use crate::raft::Raft;
use crate::storage::Storage;
use crate::types::{NodeId, Role};

impl<S: Storage> Raft<S> {
    /// Starts handing leadership to the voter `target`.
    pub fn transfer_leader(&mut self, target: NodeId) -> Result<()> {
        if self.role != Role::Leader {
            return Err(Error::NotLeader {
                leader: self.leader,
            });
        }
        if target == self.id {
            return Ok(());
        }
        if !self.tracker.config().incoming.contains(target) {
            return Err(Error::NotAVoter(target));
        }
        if self.lead_transferee == Some(target) {
            return Ok(());
        }
        self.lead_transferee = Some(target);
        // The transfer has one election timeout to complete.
        self.election_elapsed = 0;
        self.maybe_send_timeout_now(target);
        Ok(())
    }

    /// Sends TimeoutNow once the target holds the whole log; otherwise sends it what it misses.
    pub(crate) fn maybe_send_timeout_now(&mut self, target: NodeId) {
        let last_index = self.raft_log.last_index();
        let Some(pr) = self.tracker.get(target) else {
            return;
        };
        if pr.match_index == last_index {
            self.note_timeout_now_sent();
            self.send(target, MessageBody::TimeoutNow);
        } else {
            self.send_append(target, true);
        }
    }

    /// Gives up a transfer that did not complete in time.
    pub(crate) fn abort_transfer(&mut self) {
        self.lead_transferee = None;
    }

    /// Follower: the leader hands over; campaign now. Only the leader of our current term may
    /// say so: a TimeoutNow from anyone else (a deposed leader's late message, a node that never
    /// led) is ignored, as its election would skip PreVote and override every voter's lease.
    pub(crate) fn handle_timeout_now(&mut self, from: NodeId) {
        if self.leader == Some(from) && self.promotable() {
            self.campaign(Campaign::Transfer);
        }
    }
}
