//! Leader election (§5.2) with the election restriction (§5.4.1) and PreVote (thesis §9.6):
//! starting an election, answering (pre-)vote requests, and counting answers.
//!
//! Invariants: a node grants at most one real vote per term, and only to a candidate whose log is at
//! least as up-to-date as its own and that is a voter of its configuration (either half while joint)
//! or has a log strictly ahead of its own (it may hold the entry that added it); the grant leaves
//! only after the vote is durable (it is sent through `msgs_after_persist`). A pre-vote changes no
//! state on either side. A vote request from a higher term moves a node to that term only outside
//! a leader's lease (unless it follows a transfer); the election clock restarts only on hearing
//! from the leader, granting a vote or starting an election (Figure 2), never merely on a higher
//! term.

use crate::config::MutationKind;
use crate::message::{MessageBody, RequestVote, RequestVoteResponse};
use crate::quorum::VoteResult;
use crate::raft::Raft;
use crate::storage::Storage;
use crate::types::{NodeId, Role, Term};

/// Which kind of election to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Campaign {
    /// Ask for pre-votes first; bump the term only if a quorum would vote.
    PreElection,
    /// Bump the term and ask for votes.
    Election,
    /// As `Election`, on the leader's request (TimeoutNow): voters answer even within a lease.
    Transfer,
}

impl<S: Storage> Raft<S> {
    /// The election timeout passed: campaign, through PreVote when it is on.
    pub(crate) fn start_election(&mut self) {
        if self.config.pre_vote {
            self.campaign(Campaign::PreElection);
        } else {
            self.campaign(Campaign::Election);
        }
    }

    /// Becomes (pre-)candidate, votes for itself and asks every other voter.
    pub(crate) fn campaign(&mut self, kind: Campaign) {
        if !self.promotable() {
            return;
        }
        let (pre_vote, term) = match kind {
            Campaign::PreElection => {
                self.become_pre_candidate();
                (true, self.term + 1)
            }
            Campaign::Election | Campaign::Transfer => {
                self.become_candidate();
                (false, self.term)
            }
        };
        let leader_transfer = kind == Campaign::Transfer;
        if self.tracker.record_vote(self.id, true) == VoteResult::Won {
            // A single voter wins with its own vote alone. A pre-vote changes nothing and wins at
            // once; a real vote counts only once durable (`on_term_durable`), like every other
            // voter's: elected on a vote a crash could erase, the node could be elected again in
            // the same term and lead it twice.
            if self.role == Role::PreCandidate || self.term_durable {
                self.on_election_won();
            }
            return;
        }
        let last_log_index = self.raft_log.last_index();
        let last_log_term = self.raft_log.last_term();
        let me = self.id;
        let voters = self.tracker.config().voters();
        for voter in voters.into_iter().filter(|&v| v != me) {
            let body = MessageBody::RequestVote(RequestVote {
                pre_vote,
                leader_transfer,
                last_log_index,
                last_log_term,
            });
            self.send_in_term(voter, term, body);
        }
    }

    /// The current term and this node's vote in it are durable. A lone voter's election waits for
    /// this.
    pub(crate) fn on_term_durable(&mut self) {
        self.term_durable = true;
        if self.role == Role::Candidate
            && self.tracker.record_vote(self.id, true) == VoteResult::Won
        {
            self.on_election_won();
        }
    }

    /// A quorum granted: a pre-candidate runs the real election, a candidate leads.
    fn on_election_won(&mut self) {
        match self.role {
            Role::PreCandidate => self.campaign(Campaign::Election),
            Role::Candidate => {
                self.become_leader();
                self.bcast_append(false);
            }
            role => panic!("won an election as {role:?}"),
        }
    }

    /// Whether `candidate` may be a voter, as far as this node can tell: a voter of its
    /// configuration (either half while joint), or a candidate whose log is strictly ahead of its
    /// own. A server answers without consulting its configuration in thesis §4.1, for a reason that
    /// still holds: a candidate added by an entry we have not received yet may need our vote (a new
    /// server that knows no configuration, a voter that lagged through several changes), and its
    /// log, holding that entry, is then ahead of ours. A candidate outside our configuration with a
    /// log not ahead of ours either holds our configuration, in which it is no voter (a removed
    /// server campaigning on its previous configuration, thesis §4.2.2), or fails the election
    /// restriction anyway: it never gets our vote.
    fn may_be_voter(&self, candidate: NodeId, rv: &RequestVote) -> bool {
        let ours = (self.raft_log.last_term(), self.raft_log.last_index());
        self.tracker.config().contains(candidate) || (rv.last_log_term, rv.last_log_index) > ours
    }

    /// RequestVote receiver (Figure 2): grant if the candidate may be a voter (`may_be_voter`; a
    /// voter holding the same log as a refused one can be elected instead), we have not voted for
    /// someone else this term (or, for a pre-vote, the candidate's term is ahead of ours) and the
    /// candidate's log is at least as up-to-date as ours (§5.4.1). A learner answers too (thesis
    /// §4.1): it may have been promoted by an entry it has not received yet; a candidate counts
    /// only its voters' votes.
    pub(crate) fn handle_request_vote(&mut self, from: NodeId, term: Term, rv: &RequestVote) {
        let may_be_voter = self.may_be_voter(from, rv);
        let can_vote = self.vote == Some(from)
            || (self.vote.is_none() && self.leader.is_none())
            || (rv.pre_vote && term > self.term);
        let can_vote = may_be_voter && (can_vote || self.config.mutated(MutationKind::DoubleVote));
        let up_to_date = self
            .raft_log
            .is_up_to_date(rv.last_log_index, rv.last_log_term)
            || self.config.mutated(MutationKind::NoElectionRestriction);
        let granted = can_vote && up_to_date;
        let reply_term = if granted && rv.pre_vote {
            term
        } else {
            self.term
        };
        if granted && !rv.pre_vote {
            self.election_elapsed = 0;
            self.vote = Some(from);
        }
        let body = MessageBody::RequestVoteResponse(RequestVoteResponse {
            pre_vote: rv.pre_vote,
            granted,
        });
        self.send_in_term(from, reply_term, body);
    }

    /// Candidate and pre-candidate: count answers; a leader of this term makes us its follower.
    pub(crate) fn step_candidate(&mut self, from: NodeId, term: Term, body: MessageBody) {
        match body {
            MessageBody::AppendEntries(a) => {
                self.become_follower(term, Some(from));
                self.handle_append_entries(from, &a);
            }
            MessageBody::Heartbeat(h) => {
                self.become_follower(term, Some(from));
                self.handle_heartbeat(from, &h);
            }
            MessageBody::InstallSnapshot(s) => {
                self.become_follower(term, Some(from));
                self.handle_install_snapshot(from, *s);
            }
            MessageBody::RequestVoteResponse(r) => {
                if r.pre_vote != (self.role == Role::PreCandidate) {
                    return; // an answer to an election we are no longer running
                }
                match self.tracker.record_vote(from, r.granted) {
                    VoteResult::Won => {
                        // Votes answer requests that left only once our term and vote were durable.
                        self.term_durable |= self.role == Role::Candidate;
                        self.on_election_won();
                    }
                    VoteResult::Lost => {
                        let term = self.term;
                        self.become_follower(term, None);
                    }
                    VoteResult::Pending => {}
                }
            }
            _ => {}
        }
    }
}
