//! The vocabulary of the Raft paper as Rust types: node ids, terms, indexes, log entries, the
//! persistent hard state and the volatile soft state.
//!
//! Invariants owned here: index 0 and term 0 are "before the first entry" (the first real entry has
//! index 1 and a term of at least 1), and node id 0 is never a member.

use bytes::Bytes;

/// A member's identity. Never 0: 0 means "no node".
pub type NodeId = u64;
/// A Raft term (§5.1): a logical clock that only increases.
pub type Term = u64;
/// A position in the replicated log, starting at 1.
pub type Index = u64;

/// Bytes an entry costs beyond its payload when sizes are accounted (index, term, kind, framing).
/// Keeps empty entries from being free, so count limits and byte limits agree on what is large.
pub const ENTRY_OVERHEAD_BYTES: u64 = 24;

/// What an entry carries. Only normal entries exist so far; configuration changes join later.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// An application command (or an empty entry a new leader appends to commit its term).
    Normal,
}

/// One log entry (§5.3): a command stamped with the term of the leader that created it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Entry {
    /// Position in the log, unique per entry.
    pub index: Index,
    /// Term of the leader that appended the entry.
    pub term: Term,
    /// Kind of payload.
    pub kind: EntryKind,
    /// The command, opaque to Raft. Empty for a leader's no-op entry.
    pub data: Bytes,
}

impl Entry {
    /// A normal entry.
    pub fn new(index: Index, term: Term, data: Bytes) -> Self {
        Entry {
            index,
            term,
            kind: EntryKind::Normal,
            data,
        }
    }

    /// Bytes this entry counts against message, in-flight and uncommitted limits.
    pub fn size_bytes(&self) -> u64 {
        self.data.len() as u64 + ENTRY_OVERHEAD_BYTES
    }
}

/// State that must be durable before the messages that depend on it are sent (Figure 2,
/// "Persistent state on all servers"; the commit index is stored too so a restart re-applies less).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct HardState {
    /// Latest term this server has seen.
    pub term: Term,
    /// The candidate that received this server's vote in `term`, if any.
    pub vote: Option<NodeId>,
    /// Highest index known committed. Informational on restart: it never exceeds what a quorum holds.
    pub commit: Index,
}

/// The role a node plays in its current term (§5.1), with PreCandidate for PreVote (thesis §9.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Passive: answers leaders and candidates.
    Follower,
    /// Asking for pre-votes without having bumped its term.
    PreCandidate,
    /// Asking for votes in a term it started.
    Candidate,
    /// Handles proposals and replicates the log.
    Leader,
}

/// Volatile state the application may want to observe: who leads, and what this node is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SoftState {
    /// This node's role.
    pub role: Role,
    /// The leader this node knows of in `term`, if any.
    pub leader: Option<NodeId>,
    /// The node's current term.
    pub term: Term,
}
