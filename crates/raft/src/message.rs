//! The messages Raft nodes exchange (§5, Figure 2, plus PreVote from the thesis §9.6).
//!
//! Every message carries the sender's term. A message from a higher term makes the receiver adopt
//! that term (except a pre-vote request, which asks about a term nobody has entered yet); a request
//! from a lower term is answered with the receiver's term so the stale sender learns of it.

use bytes::Bytes;

use crate::types::{Entry, Index, NodeId, SnapshotMetadata, Term};

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
    /// Answer to a heartbeat: the follower is alive (CheckQuorum), still follows this leader in
    /// `round` (ReadIndex, leases) and is ready for more.
    HeartbeatResponse(HeartbeatResponse),
    /// One chunk of a snapshot, for a follower whose next entry the leader has compacted (§7).
    InstallSnapshot(Box<InstallSnapshot>),
    /// A follower received snapshot bytes up to `next_offset` and wants the rest from there.
    InstallSnapshotResponse(InstallSnapshotResponse),
    /// A follower asks the leader for a read index on behalf of its client (follower reads).
    ReadIndex(ReadIndex),
    /// The leader's answer: the read index to wait for.
    ReadIndexResponse(ReadIndexResponse),
    /// Leadership transfer (thesis §3.10): the leader tells an up-to-date follower to campaign now.
    TimeoutNow,
}

/// Arguments of RequestVote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestVote {
    /// A pre-vote asks "would you vote for me?" without anyone changing term.
    pub pre_vote: bool,
    /// The election follows a leadership transfer: voters answer even within a leader's lease.
    pub leader_transfer: bool,
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
    /// The leader's heartbeat round: answers to it confirm leadership as of when it was sent.
    pub round: u64,
}

/// Answer to a heartbeat.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeartbeatResponse {
    /// The round answered.
    pub round: u64,
}

/// One chunk of a snapshot. Chunks go one at a time; a lost one is sent again from the offset the
/// follower last acknowledged, so a transfer resumes instead of restarting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstallSnapshot {
    /// What the snapshot covers.
    pub metadata: SnapshotMetadata,
    /// Size of the whole snapshot data.
    pub total_bytes: u64,
    /// Where `data` starts in the snapshot data.
    pub offset: u64,
    /// The chunk.
    pub data: Bytes,
}

/// Progress of a snapshot transfer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstallSnapshotResponse {
    /// Index of the snapshot being received.
    pub index: Index,
    /// Bytes received so far: the leader continues from here.
    pub next_offset: u64,
}

/// A follower's request for a read index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadIndex {
    /// The follower's own identifier of the read, echoed in the answer.
    pub context: u64,
}

/// The leader's read index for a follower's read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadIndexResponse {
    /// The follower's identifier of the read.
    pub context: u64,
    /// Serve the read once the state machine has applied this index.
    pub index: Index,
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
            MessageBody::HeartbeatResponse(_) => "HeartbeatResponse",
            MessageBody::InstallSnapshot(_) => "InstallSnapshot",
            MessageBody::InstallSnapshotResponse(_) => "InstallSnapshotResponse",
            MessageBody::ReadIndex(_) => "ReadIndex",
            MessageBody::ReadIndexResponse(_) => "ReadIndexResponse",
            MessageBody::TimeoutNow => "TimeoutNow",
        }
    }

    /// Bytes of entry or snapshot payload the message carries (what message limits count).
    pub fn entries_bytes(&self) -> u64 {
        match self {
            MessageBody::AppendEntries(a) => a.entries.iter().map(Entry::size_bytes).sum(),
            MessageBody::InstallSnapshot(s) => s.data.len() as u64,
            _ => 0,
        }
    }
}
