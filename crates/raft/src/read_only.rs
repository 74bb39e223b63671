//! Linearizable reads without writing to the log (thesis §6.4): ReadIndex, leases, follower reads.
//!
//! ReadIndex: the leader records its commit index as the read's index, confirms it still leads
//! with a heartbeat round that a quorum answers, and only then releases the read; the application
//! serves it once it has applied up to the index. A new leader first commits an entry of its own
//! term (until then it does not know the latest commit index), so earlier reads wait for that.
//!
//! Leases: under CheckQuorum, followers ignore vote requests for an election timeout after hearing
//! from the leader. So once a quorum answered a heartbeat round sent at tick t, no other leader can
//! exist before t + election timeout; the leader serves reads without a round trip until
//! t + election timeout - `lease_drift_margin_ticks`. Never during a leadership transfer (the
//! target's election ignores leases).
//!
//! Invariants: a read is released only by the leader that recorded it, in the term it recorded
//! it, after a round sent after it was recorded; a deposed leader drops its pending reads, so they
//! never complete; the queue is bounded by `pending_reads_max`.

use std::collections::{BTreeMap, VecDeque};

use crate::config::MutationKind;
use crate::error::{Error, Result};
use crate::message::{MessageBody, ReadIndex, ReadIndexResponse};
use crate::raft::Raft;
use crate::storage::Storage;
use crate::types::{Index, NodeId, Role};

/// How a read confirms that the state it sees is current.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadMode {
    /// A heartbeat round answered by a quorum (ReadIndex).
    ReadIndex,
    /// The leader's lease when it holds (no round trip); otherwise as `ReadIndex`.
    Lease,
}

/// A read released by Raft: serve it once the state machine has applied `index`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadState {
    /// The application's identifier of the read.
    pub context: u64,
    /// The state machine must have applied at least this index.
    pub index: Index,
}

/// A read waiting for confirmation.
#[derive(Clone, Copy, Debug)]
struct PendingRead {
    /// The identifier of whoever asked.
    context: u64,
    /// Who asked: this leader or a follower.
    from: NodeId,
    /// The commit index when the read was recorded.
    index: Index,
    /// The first heartbeat round sent after it was recorded; its confirmation releases the read.
    round: u64,
}

/// The leader's read bookkeeping; reset whenever the node changes role or term.
#[derive(Debug, Default)]
pub(crate) struct ReadOnly {
    /// Reads that arrived before this leader committed an entry of its term.
    waiting_for_commit: Vec<(u64, NodeId)>,
    /// Reads waiting for their round, in round order.
    pending: VecDeque<PendingRead>,
    /// Highest round each peer answered.
    acked_round: BTreeMap<NodeId, u64>,
    /// The last heartbeat round sent.
    round: u64,
    /// Rounds not yet confirmed, with the tick each was sent at (for the lease).
    round_sent_tick: VecDeque<(u64, u64)>,
    /// Ticks since this node became leader.
    ticks: u64,
    /// The lease holds while `ticks` is below this.
    lease_until_tick: u64,
    /// A read was recorded since the last round: send one at the next `ready`.
    needs_round: bool,
    /// TimeoutNow went out in this term: an election ignoring leases may follow at any time, even
    /// after the transfer was abandoned, so no more lease reads in this term.
    timeout_now_sent: bool,
}

impl ReadOnly {
    fn len(&self) -> usize {
        self.waiting_for_commit.len() + self.pending.len()
    }
}

impl<S: Storage> Raft<S> {
    /// Asks for a read index for the read `context`. On the leader it is released through
    /// `Ready::read_states`; on a follower the leader is asked and the answer released the same way.
    pub fn read_index(&mut self, context: u64, mode: ReadMode) -> Result<()> {
        match self.role {
            Role::Leader => self.leader_read(context, self.id, mode),
            _ => match self.leader {
                Some(leader) => {
                    self.send(leader, MessageBody::ReadIndex(ReadIndex { context }));
                    Ok(())
                }
                None => Err(Error::NotLeader { leader: None }),
            },
        }
    }

    /// A read from this leader or, through a `ReadIndex` message, from a follower.
    pub(crate) fn leader_read(&mut self, context: u64, from: NodeId, mode: ReadMode) -> Result<()> {
        if self.read_only.len() >= self.config.pending_reads_max {
            return Err(Error::TooManyReads {
                limit: self.config.pending_reads_max,
            });
        }
        let committed = self.raft_log.committed();
        if !self.raft_log.match_term(committed, self.term) {
            self.read_only.waiting_for_commit.push((context, from));
            return Ok(());
        }
        if (mode == ReadMode::Lease && self.lease_holds())
            || self.config.mutated(MutationKind::ReadWithoutRound)
        {
            self.release_read(context, from, committed);
            return Ok(());
        }
        let round = self.read_only.round + 1;
        self.read_only.pending.push_back(PendingRead {
            context,
            from,
            index: committed,
            round,
        });
        self.read_only.needs_round = true;
        Ok(())
    }

    /// Whether this leader's lease holds now.
    pub(crate) fn lease_holds(&self) -> bool {
        self.config.check_quorum
            && ((self.lead_transferee.is_none() && !self.read_only.timeout_now_sent)
                || self.config.mutated(MutationKind::LeaseDuringTransfer))
            && self.read_only.ticks < self.read_only.lease_until_tick
    }

    fn release_read(&mut self, context: u64, from: NodeId, index: Index) {
        if from == self.id {
            self.read_states.push(ReadState { context, index });
        } else {
            self.send(
                from,
                MessageBody::ReadIndexResponse(ReadIndexResponse { context, index }),
            );
        }
    }

    /// Leader: its first entry of the term committed; reads waiting for that get their index.
    pub(crate) fn on_term_committed(&mut self) {
        let waiting = std::mem::take(&mut self.read_only.waiting_for_commit);
        for (context, from) in waiting {
            // The queue had room when each was recorded; they only move.
            let round = self.read_only.round + 1;
            let index = self.raft_log.committed();
            self.read_only.pending.push_back(PendingRead {
                context,
                from,
                index,
                round,
            });
            self.read_only.needs_round = true;
        }
    }

    /// Leader: starts a new heartbeat round; returns its number.
    pub(crate) fn next_round(&mut self) -> u64 {
        let lease = u64::from(self.config.election_timeout_ticks);
        let ro = &mut self.read_only;
        // A round unconfirmed for longer than a lease can no longer extend it: forget it, so a
        // leader that hears from no quorum keeps a bounded history.
        while ro
            .round_sent_tick
            .front()
            .is_some_and(|&(_, sent)| sent + lease < ro.ticks)
        {
            ro.round_sent_tick.pop_front();
        }
        ro.round += 1;
        ro.needs_round = false;
        ro.round_sent_tick.push_back((ro.round, ro.ticks));
        ro.round
    }

    /// Leader: sends a round now if reads wait for one.
    pub(crate) fn flush_reads(&mut self) {
        if self.role == Role::Leader && self.read_only.needs_round {
            self.bcast_heartbeat();
        }
    }

    /// Whether reads wait for a heartbeat round to be sent.
    pub(crate) fn read_only_needs_round(&self) -> bool {
        self.read_only.needs_round
    }

    /// Leader: TimeoutNow was sent in this term.
    pub(crate) fn note_timeout_now_sent(&mut self) {
        self.read_only.timeout_now_sent = true;
    }

    /// Leader: one more tick of leadership (the lease's clock).
    pub(crate) fn tick_read_lease(&mut self) {
        self.read_only.ticks += 1;
    }

    /// Leader: `from` answered `round`. Releases every read whose round a quorum has answered and
    /// extends the lease from the send time of that round.
    pub(crate) fn on_round_acked(&mut self, from: NodeId, round: u64) {
        if round > self.read_only.round {
            return; // from a previous leadership of ours: not a confirmation of this one
        }
        let acked = self.read_only.acked_round.entry(from).or_insert(0);
        *acked = (*acked).max(round);
        self.advance_reads();
    }

    /// Releases reads confirmed by a quorum.
    pub(crate) fn advance_reads(&mut self) {
        let me = self.id;
        let current = self.read_only.round;
        let confirmed = self.tracker.config().committed_index(|id| {
            if id == me {
                Some(current)
            } else {
                self.read_only.acked_round.get(&id).copied()
            }
        });
        let lease =
            u64::from(self.config.election_timeout_ticks - self.config.lease_drift_margin_ticks);
        while let Some(&(round, sent_tick)) = self.read_only.round_sent_tick.front() {
            if round > confirmed {
                break;
            }
            self.read_only.round_sent_tick.pop_front();
            let until = sent_tick + lease;
            self.read_only.lease_until_tick = self.read_only.lease_until_tick.max(until);
        }
        while let Some(read) = self.read_only.pending.front().copied() {
            if read.round > confirmed {
                break;
            }
            self.read_only.pending.pop_front();
            self.release_read(read.context, read.from, read.index);
        }
    }

    /// Follower: the leader's answer to a forwarded read.
    pub(crate) fn handle_read_index_response(&mut self, r: &ReadIndexResponse) {
        self.read_states.push(ReadState {
            context: r.context,
            index: r.index,
        });
    }

    /// Forgets every pending read (a role or term change): they never complete.
    pub(crate) fn reset_reads(&mut self) {
        self.read_only = ReadOnly::default();
    }
}
