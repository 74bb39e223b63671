//! The messages Raft nodes exchange (§5, Figure 2, plus PreVote from the thesis §9.6).
//!
//! Every message carries the sender's term. A message from a higher term makes the receiver adopt
//! that term (except a pre-vote request, which asks about a term nobody has entered yet); a request
//! from a lower term is answered with the receiver's term so the stale sender learns of it.

use crate::types::{Entry, Index, NodeId, Term};

/// One message between two nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Sender.
    pub from: NodeId,
    /// Receiver.
    pub to: NodeId,
    /// Sender's term; for a pre-vote request, the term the sender would campaign in.
    pub term: Term,
    /// What the message says.
    pub body: MessageBody,
}

/// The kinds of messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MessageBody {
    /// RequestVote RPC (§5.2), or a pre-vote (thesis §9.6) when `pre_vote` is set.
    RequestVote(RequestVote),
    /// Answer to a (pre-)vote request.
    RequestVoteResponse(RequestVoteResponse),
    /// AppendEntries RPC (§5.3) carrying entries.
    AppendEntries(AppendEntries),
    /// Answer to AppendEntries.
    AppendEntriesResponse(AppendEntriesResponse),
    /// Leader's heartbeat (§5.2): asserts leadership and carries a commit index the receiver is known
    /// to hold. Kept apart from AppendEntries so it needs no log-matching check.
    Heartbeat(Heartbeat),
    /// Answer to a heartbeat: the follower is alive (CheckQuorum) and ready for more.
    HeartbeatResponse,
}

/// Arguments of RequestVote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestVote {
    /// A pre-vote asks "would you vote for me?" without anyone changing term.
    pub pre_vote: bool,
    /// Index of the candidate's last log entry (§5.4.1, election restriction).
    pub last_log_index: Index,
    /// Term of the candidate's last log entry.
    pub last_log_term: Term,
}

/// Result of RequestVote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestVoteResponse {
    /// Answers a pre-vote request.
    pub pre_vote: bool,
    /// The vote was granted.
    pub granted: bool,
}

/// Arguments of AppendEntries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendEntries {
    /// Index of the entry immediately preceding `entries`.
    pub prev_log_index: Index,
    /// Term of that entry: the follower accepts only if its log has it (Log Matching, §5.3).
    pub prev_log_term: Term,
    /// Entries to store, in order, starting at `prev_log_index + 1`. May be empty.
    pub entries: Vec<Entry>,
    /// Leader's commit index.
    pub leader_commit: Index,
}

/// Result of AppendEntries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppendEntriesResponse {
    /// The follower's log matches the leader's up to `match_index`, durably.
    Accepted {
        /// Highest index known to match the leader's log.
        match_index: Index,
    },
    /// The follower's log does not contain an entry at `rejected_index` with the leader's term.
    Rejected {
        /// The `prev_log_index` the leader sent.
        rejected_index: Index,
        /// Where the leader should look next.
        hint: ConflictHint,
    },
}

/// Tells the leader how far to back up after a rejection, one whole term per round trip (§5.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConflictHint {
    /// Term of the follower's conflicting entry at `rejected_index`; `None` if its log is shorter.
    pub term: Option<Term>,
    /// First index the follower holds with `term`, or its last index + 1 when `term` is `None`.
    pub first_index: Index,
}

/// Arguments of a heartbeat.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Heartbeat {
    /// min(leader's commit index, the receiver's match index): never beyond what it is known to hold.
    pub commit: Index,
}

impl MessageBody {
    /// A short, stable name for traces and logs.
    pub fn name(&self) -> &'static str {
        match self {
            MessageBody::RequestVote(r) if r.pre_vote => "RequestPreVote",
            MessageBody::RequestVote(_) => "RequestVote",
            MessageBody::RequestVoteResponse(r) if r.pre_vote => "RequestPreVoteResponse",
            MessageBody::RequestVoteResponse(_) => "RequestVoteResponse",
            MessageBody::AppendEntries(_) => "AppendEntries",
            MessageBody::AppendEntriesResponse(_) => "AppendEntriesResponse",
            MessageBody::Heartbeat(_) => "Heartbeat",
            MessageBody::HeartbeatResponse => "HeartbeatResponse",
        }
    }

    /// Bytes of entry payload the message carries (what message and in-flight limits count).
    pub fn entries_bytes(&self) -> u64 {
        match self {
            MessageBody::AppendEntries(a) => a.entries.iter().map(Entry::size_bytes).sum(),
            _ => 0,
        }
    }
}
