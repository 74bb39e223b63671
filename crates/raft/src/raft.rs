//! One node's Raft state and the rules every role shares: terms (§5.1), role transitions
//! (`become_*`), the logical clock (`tick_*`) and the dispatch of incoming messages (`step`).
//! Role-specific handling lives in `election.rs`, `leader.rs` and `follower.rs`.
//!
//! Invariants: `term` never decreases; `vote` is set at most once per term; at most one role at a
//! time; a leader's `leader` is itself. Every message leaves through `send`, which keeps a message
//! that depends on not-yet-durable state (anything a non-leader sends) apart from one that may leave
//! at once (a leader's appends and heartbeats).

use crate::config::Config;
use crate::error::{Error, Result};
use crate::membership::ConfPoint;
use crate::message::{
    AppendEntriesResponse, HeartbeatResponse, Message, MessageBody, RequestVoteResponse,
};
use crate::raft_log::RaftLog;
use crate::read_only::{ReadMode, ReadOnly, ReadState};
use crate::rng::Rng;
use crate::snapshot::IncomingSnapshot;
use crate::storage::{RaftState, Storage};
use crate::tracker::ProgressTracker;
use crate::types::{ConfState, HardState, NodeId, Role, SoftState, Term};

/// One Raft node's state machine.
pub struct Raft<S: Storage> {
    /// This node.
    pub(crate) id: NodeId,
    /// Current term (persistent).
    pub(crate) term: Term,
    /// Who this node voted for in `term` (persistent).
    pub(crate) vote: Option<NodeId>,
    /// Role in `term`.
    pub(crate) role: Role,
    /// The leader of `term` as far as this node knows.
    pub(crate) leader: Option<NodeId>,
    /// The log, its commit and apply cursors.
    pub(crate) raft_log: RaftLog<S>,
    /// Peers' progress (leader) and the vote tally (candidates).
    pub(crate) tracker: ProgressTracker,
    /// Ticks since the election clock last restarted. Followers and candidates: the current
    /// leader's last message, the last vote granted or the start of this node's last election,
    /// never a mere change of term (Figure 2, `follow_higher_term`). A leader: its last
    /// CheckQuorum round.
    pub(crate) election_elapsed: u32,
    /// Ticks since the leader's last heartbeat round.
    pub(crate) heartbeat_elapsed: u32,
    /// This term's election timeout, drawn from [T, 2T) so split votes resolve (§5.2).
    pub(crate) randomized_election_timeout: u32,
    /// The only source of randomness.
    pub(crate) rng: Rng,
    /// Timeouts, switches and limits.
    pub(crate) config: Config,
    /// Leader: the total `Entry::size_bytes` of its uncommitted tail, the entries after its commit
    /// index, whoever appended them (earlier leaders' included: `become_leader` counts them). It
    /// grows with every entry the leader appends and shrinks by exactly the entries each commit
    /// covers; 0 in other roles. `Config::uncommitted_bytes_max` bounds it.
    pub(crate) uncommitted_bytes: u64,
    /// Messages that may be sent at once.
    pub(crate) msgs: Vec<Message>,
    /// Messages that may leave only once the hard state and entries handed out with them are durable.
    pub(crate) msgs_after_persist: Vec<Message>,
    /// The current term and vote are known durable. A candidate becomes leader only then: elected
    /// on its own vote alone (a single voter) before that vote was durable, a node that crashed
    /// could be elected again in the same term and lead it twice, appending different entries at
    /// the same indexes. (Other voters' votes leave only once durable, and a candidate asks for
    /// them only once its own vote is.)
    pub(crate) term_durable: bool,
    /// Proposals were appended since the last broadcast; one batched broadcast goes out at `ready`.
    pub(crate) pending_bcast: bool,
    /// The membership at each configuration entry of the log, after the snapshot's (membership.rs).
    pub(crate) conf_history: Vec<ConfPoint>,
    /// The voter leadership is being handed to, while a transfer is under way.
    pub(crate) lead_transferee: Option<NodeId>,
    /// The leader's pending reads, heartbeat rounds and lease.
    pub(crate) read_only: ReadOnly,
    /// Reads released, waiting to be handed out in a `Ready`.
    pub(crate) read_states: Vec<ReadState>,
    /// A snapshot being received from the leader.
    pub(crate) incoming_snapshot: Option<IncomingSnapshot>,
    /// Restarted with history and not yet through an election timeout: under CheckQuorum, ignore
    /// vote requests as if in a leader's lease, since this node may have acknowledged a leader's
    /// heartbeat just before it crashed (a leader's read lease counts on that).
    pub(crate) restart_guard: bool,
}

impl<S: Storage> Raft<S> {
    /// A node restarting from `storage` (or starting empty), as a follower of its stored term.
    pub fn new(config: &Config, storage: S) -> Result<Self> {
        config.validate()?;
        let RaftState {
            hard_state,
            conf_state,
        } = storage.initial_state();
        let conf_state = if conf_state.voters.is_empty() {
            ConfState::from_voters(config.voters.iter().copied())
        } else {
            conf_state
        };
        let raft_log = RaftLog::new(storage, config.applied);
        let base_index = raft_log.first_index() - 1;
        let base_term = raft_log.term(base_index).unwrap_or(0);
        let mut raft = Raft {
            id: config.id,
            term: hard_state.term,
            vote: hard_state.vote,
            role: Role::Follower,
            leader: None,
            raft_log,
            tracker: ProgressTracker::new(
                &conf_state,
                config.inflight_msgs_max,
                config.inflight_bytes_max,
            ),
            election_elapsed: 0,
            heartbeat_elapsed: 0,
            randomized_election_timeout: config.election_timeout_ticks,
            rng: Rng::for_node(config.seed, config.id),
            config: config.clone(),
            uncommitted_bytes: 0,
            msgs: Vec::new(),
            msgs_after_persist: Vec::new(),
            term_durable: true,
            pending_bcast: false,
            conf_history: vec![ConfPoint {
                index: base_index,
                term: base_term,
                conf_state,
            }],
            lead_transferee: None,
            read_only: ReadOnly::default(),
            read_states: Vec::new(),
            incoming_snapshot: None,
            restart_guard: false,
        };
        raft.replay_conf_entries();
        raft.become_follower(hard_state.term, None);
        raft.restart_guard = hard_state.term > 0;
        Ok(raft)
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Current term.
    pub fn term(&self) -> Term {
        self.term
    }

    /// Vote cast in the current term.
    pub fn vote(&self) -> Option<NodeId> {
        self.vote
    }

    /// Current role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Known leader of the current term.
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }

    /// The log.
    pub fn raft_log(&self) -> &RaftLog<S> {
        &self.raft_log
    }

    /// Peers' progress and votes.
    pub fn tracker(&self) -> &ProgressTracker {
        &self.tracker
    }

    /// This term's randomized election timeout, in ticks.
    pub fn randomized_election_timeout(&self) -> u32 {
        self.randomized_election_timeout
    }

    /// Leader: bytes of the entries after its commit index (`Entry::size_bytes` of each); 0 in
    /// other roles.
    pub fn uncommitted_bytes(&self) -> u64 {
        self.uncommitted_bytes
    }

    /// The state that must be durable.
    pub fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            vote: self.vote,
            commit: self.raft_log.committed(),
        }
    }

    /// Role, leader and term.
    pub fn soft_state(&self) -> SoftState {
        SoftState {
            role: self.role,
            leader: self.leader,
            term: self.term,
        }
    }

    /// Whether this node may campaign: voters of its latest configuration, and voters of the
    /// configuration before it while the latest is not known committed (thesis §4.2.2: a server
    /// not in its own latest configuration still starts elections, as it may be the only one
    /// holding that configuration's entry, e.g. a leader that just removed itself; its own vote
    /// does not count).
    pub(crate) fn promotable(&self) -> bool {
        if self.tracker.config().contains(self.id) {
            return true;
        }
        match self.conf_history.as_slice() {
            [.., previous, latest] => {
                latest.index > self.raft_log.committed() && previous.conf_state.is_voter(self.id)
            }
            _ => false,
        }
    }

    /// The lead transfer target, while a transfer is under way.
    pub fn lead_transferee(&self) -> Option<NodeId> {
        self.lead_transferee
    }

    /// Queues a message from this node in its current term.
    pub(crate) fn send(&mut self, to: NodeId, body: MessageBody) {
        let term = self.term;
        self.send_in_term(to, term, body);
    }

    /// Queues a message carrying `term` (a pre-vote asks about the next term; a pre-vote grant
    /// answers in it). A leader's messages need nothing it has not persisted (a leader's term is
    /// durable), every other role's may depend on a vote, term or entries just handed out for
    /// persistence.
    pub(crate) fn send_in_term(&mut self, to: NodeId, term: Term, body: MessageBody) {
        let message = Message {
            from: self.id,
            to,
            term,
            body,
        };
        if self.role == Role::Leader {
            self.msgs.push(message);
        } else {
            self.msgs_after_persist.push(message);
        }
    }

    /// Resets per-term state; moving to a new term clears the vote.
    fn reset(&mut self, term: Term) {
        if term != self.term {
            assert!(
                term > self.term,
                "term went backwards: {} -> {term}",
                self.term
            );
            self.term = term;
            self.vote = None;
            self.term_durable = false;
        }
        self.leader = None;
        self.election_elapsed = 0;
        self.heartbeat_elapsed = 0;
        self.reset_randomized_election_timeout();
        self.tracker.reset_votes();
        self.uncommitted_bytes = 0;
        self.pending_bcast = false;
        self.lead_transferee = None;
        self.reset_reads();
    }

    /// Draws a new election timeout in [T, 2T).
    pub(crate) fn reset_randomized_election_timeout(&mut self) {
        let base = u64::from(self.config.election_timeout_ticks);
        // In [T, 2T), and 2T fits in u32 because the setting is a u32 well below half of it in
        // practice; saturate to keep the arithmetic total anyway.
        let drawn = self.rng.in_range(base, 2 * base);
        self.randomized_election_timeout = u32::try_from(drawn).unwrap_or(u32::MAX);
    }

    /// Becomes a follower in `term`, of `leader` if known.
    pub fn become_follower(&mut self, term: Term, leader: Option<NodeId>) {
        self.reset(term);
        self.role = Role::Follower;
        self.leader = leader;
    }

    /// Becomes a pre-candidate: asks for pre-votes without touching the term or vote.
    pub(crate) fn become_pre_candidate(&mut self) {
        assert_ne!(self.role, Role::Leader, "a leader cannot pre-campaign");
        self.restart_guard = false;
        self.role = Role::PreCandidate;
        self.leader = None;
        self.election_elapsed = 0;
        self.reset_randomized_election_timeout();
        self.tracker.reset_votes();
    }

    /// Becomes a candidate: next term, votes for itself (§5.2).
    pub(crate) fn become_candidate(&mut self) {
        assert_ne!(self.role, Role::Leader, "a leader cannot campaign");
        let term = self.term + 1;
        self.reset(term);
        self.restart_guard = false;
        self.vote = Some(self.id);
        self.role = Role::Candidate;
    }

    /// Advances the logical clock by one tick.
    pub fn tick(&mut self) {
        match self.role {
            Role::Leader => self.tick_heartbeat(),
            _ => self.tick_election(),
        }
    }

    /// Follower / candidate clock: start an election when the timeout passes (§5.2).
    fn tick_election(&mut self) {
        self.election_elapsed += 1;
        if self.election_elapsed >= self.config.election_timeout_ticks {
            self.restart_guard = false;
        }
        if self.election_elapsed >= self.randomized_election_timeout && self.promotable() {
            self.election_elapsed = 0;
            self.start_election();
        }
    }

    /// Leader clock: heartbeats, and CheckQuorum once per election timeout.
    fn tick_heartbeat(&mut self) {
        self.heartbeat_elapsed += 1;
        self.election_elapsed += 1;
        self.tick_read_lease();
        if self.election_elapsed >= self.config.election_timeout_ticks {
            self.election_elapsed = 0;
            self.abort_transfer();
            if self.config.check_quorum && !self.tracker.quorum_active(self.id) {
                // Forget the leader (ourselves), or PreVote could deadlock (etcd #8334).
                let term = self.term;
                self.become_follower(term, None);
                return;
            }
        }
        if self.heartbeat_elapsed >= self.config.heartbeat_interval_ticks {
            self.heartbeat_elapsed = 0;
            self.bcast_heartbeat();
        }
    }

    /// Whether this node heard from a live leader within the election timeout: under CheckQuorum
    /// it then ignores vote requests, so a partitioned node cannot depose a working leader.
    pub(crate) fn in_lease(&self) -> bool {
        self.config.check_quorum
            && (self.leader.is_some() || self.restart_guard)
            && self.election_elapsed < self.config.election_timeout_ticks
    }

    /// Handles one message from a peer.
    pub fn step(&mut self, m: Message) -> Result<()> {
        validate_message(&m, self.id)?;
        if m.term > self.term {
            match &m.body {
                MessageBody::RequestVote(rv) if !rv.leader_transfer && self.in_lease() => {
                    return Ok(());
                }
                // Only the leader of our current term hands leadership over (transfer.rs).
                MessageBody::TimeoutNow => return Ok(()),
                // A pre-vote asks about a term nobody has entered yet; a granted pre-vote answers in it.
                MessageBody::RequestVote(rv) if rv.pre_vote => {}
                MessageBody::RequestVoteResponse(r) if r.pre_vote && r.granted => {}
                MessageBody::AppendEntries(_)
                | MessageBody::Heartbeat(_)
                | MessageBody::InstallSnapshot(_) => self.become_follower(m.term, Some(m.from)),
                _ => self.follow_higher_term(m.term),
            }
        } else if m.term < self.term {
            self.answer_stale(&m);
            return Ok(());
        }
        match m.body {
            MessageBody::RequestVote(rv) => self.handle_request_vote(m.from, m.term, &rv),
            MessageBody::ReadIndex(r) if self.role == Role::Leader => {
                // A follower's read: refused reads are simply not answered; it retries.
                let _ = self.leader_read(r.context, m.from, ReadMode::ReadIndex);
            }
            body => match self.role {
                Role::Leader => self.step_leader(m.from, body),
                Role::Candidate | Role::PreCandidate => self.step_candidate(m.from, m.term, body),
                Role::Follower => self.step_follower(m.from, body),
            },
        }
        Ok(())
    }

    /// `term`, above ours, came from a node that is not its leader (a vote request outside any
    /// lease, or an answer): become a follower in that term, but keep the election clock running.
    /// Figure 2 restarts it only on hearing from the current leader, granting a vote
    /// (`handle_request_vote`) or starting an election. Restarted on every higher term, the clock
    /// of the only node that could win (its log ahead of the others') was held off for as long as
    /// candidates that could not win kept campaigning, each with a new term (PreVote off; seed
    /// 51825, a joint configuration in which the voter being removed and another one, both behind,
    /// campaigned in turn); and a candidate that learned each new term only from the refusal of
    /// the voter it needed restarted its clock on that answer, so that voter, campaigning on its own
    /// clock, always took the next term first (seed 54464).
    fn follow_higher_term(&mut self, term: Term) {
        let elapsed = self.election_elapsed;
        let timeout = self.randomized_election_timeout;
        self.become_follower(term, None);
        self.election_elapsed = elapsed;
        self.randomized_election_timeout = timeout;
    }

    /// A request from an older term is answered with the current term, so the sender learns it is
    /// stale (§5.1); stale answers are dropped.
    fn answer_stale(&mut self, m: &Message) {
        match &m.body {
            MessageBody::RequestVote(rv) => {
                let body = MessageBody::RequestVoteResponse(RequestVoteResponse {
                    pre_vote: rv.pre_vote,
                    granted: false,
                });
                self.send(m.from, body);
            }
            MessageBody::AppendEntries(a) => {
                let hint = self.conflict_hint(a.prev_log_index);
                let body = MessageBody::AppendEntriesResponse(AppendEntriesResponse::Rejected {
                    rejected_index: a.prev_log_index,
                    hint,
                });
                self.send(m.from, body);
            }
            MessageBody::Heartbeat(h) => {
                let body = MessageBody::HeartbeatResponse(HeartbeatResponse { round: h.round });
                self.send(m.from, body);
            }
            MessageBody::InstallSnapshot(_) => {
                let body = MessageBody::HeartbeatResponse(HeartbeatResponse { round: 0 });
                self.send(m.from, body);
            }
            _ => {}
        }
    }
}

/// Terms at or above this are refused: no real cluster gets near, and it keeps `term + 1` total.
pub const TERM_MAX: Term = 1 << 62;
/// Indexes at or above this are refused: no real log gets near, and it keeps index arithmetic total.
pub const INDEX_MAX: u64 = 1 << 62;

/// Rejects messages whose shape no correct peer produces, before they touch any state: a garbled
/// or hostile message must be an error, never a panic.
fn validate_message(m: &Message, me: NodeId) -> Result<()> {
    let malformed = |reason| Err(Error::MalformedMessage(reason));
    if m.from == 0 || m.from == me || m.to != me {
        return malformed("sender is 0 or this node itself, or the message is for another node");
    }
    if m.term >= TERM_MAX {
        return malformed("term out of range");
    }
    let from_leader = matches!(
        m.body,
        MessageBody::AppendEntries(_)
            | MessageBody::Heartbeat(_)
            | MessageBody::InstallSnapshot(_)
            | MessageBody::TimeoutNow
    );
    if from_leader && m.term == 0 {
        return malformed("a leader's message in term 0");
    }
    if let MessageBody::AppendEntries(a) = &m.body {
        let mut prev_term = a.prev_log_term;
        for (i, entry) in a.entries.iter().enumerate() {
            if Some(entry.index) != a.prev_log_index.checked_add(i as u64 + 1) {
                return malformed("entries are not contiguous after prev_log_index");
            }
            if entry.term < prev_term || entry.term > m.term {
                return malformed("entry terms decrease or exceed the leader's term");
            }
            prev_term = entry.term;
        }
        if a.prev_log_index >= INDEX_MAX {
            return malformed("prev_log_index out of range");
        }
        if a.prev_log_term > m.term {
            return malformed("prev_log_term exceeds the leader's term");
        }
    }
    if let MessageBody::InstallSnapshot(s) = &m.body {
        let end = s.offset.checked_add(s.data.len() as u64);
        if end.is_none_or(|end| end > s.total_bytes) || s.metadata.term > m.term {
            return malformed("snapshot chunk past its announced size, or of a future term");
        }
        if s.metadata.index == 0
            || s.metadata.index >= INDEX_MAX
            || s.metadata.conf_state.voters.is_empty()
        {
            return malformed("snapshot at index 0 or without voters");
        }
    }
    Ok(())
}
