//! The vocabulary of the Raft paper as Rust types: node ids, terms, indexes, log entries, the
//! persistent hard state and the volatile soft state.
//!
//! Invariants owned here: index 0 and term 0 are "before the first entry" (the first real entry has
//! index 1 and a term of at least 1), and node id 0 is never a member.

use std::collections::BTreeSet;

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

/// What an entry carries.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// An application command (or an empty entry a new leader appends to commit its term).
    Normal,
    /// A membership change. It carries the whole membership from this entry on (not a delta), so a
    /// node replaying the log — a new member among them — needs no earlier configuration. It takes
    /// effect on every node as soon as it is appended (thesis §4.1).
    ConfChange(Box<ConfState>),
}

/// One member's change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MemberChange {
    /// Make `id` a voter (a new node, or the promotion of a learner).
    AddVoter(NodeId),
    /// Make `id` a learner: it receives the log but never votes and never counts (a new node, or the
    /// demotion of a voter).
    AddLearner(NodeId),
    /// Remove `id` from the cluster.
    Remove(NodeId),
}

impl MemberChange {
    /// The node the change is about.
    pub fn node(&self) -> NodeId {
        match *self {
            MemberChange::AddVoter(id)
            | MemberChange::AddLearner(id)
            | MemberChange::Remove(id) => id,
        }
    }
}

/// The membership of the cluster at some point of the log.
///
/// Invariants: a node is never both an incoming voter and a learner (while joint, a voter being
/// demoted is an outgoing voter and already a learner); `voters_outgoing` is empty unless the
/// configuration is joint.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ConfState {
    /// Voters of the (incoming) configuration.
    pub voters: BTreeSet<NodeId>,
    /// Voters of the outgoing configuration while joint; empty otherwise.
    pub voters_outgoing: BTreeSet<NodeId>,
    /// Non-voting members.
    pub learners: BTreeSet<NodeId>,
}

impl ConfState {
    /// A configuration of `voters` only.
    pub fn from_voters(voters: impl IntoIterator<Item = NodeId>) -> Self {
        ConfState {
            voters: voters.into_iter().collect(),
            ..ConfState::default()
        }
    }

    /// Whether this is the joint configuration C(old,new).
    pub fn is_joint(&self) -> bool {
        !self.voters_outgoing.is_empty()
    }

    /// Whether `id` votes in either half.
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.contains(&id) || self.voters_outgoing.contains(&id)
    }

    /// Every member: voters of both halves and learners.
    pub fn members(&self) -> BTreeSet<NodeId> {
        let mut all = self.voters.clone();
        all.extend(&self.voters_outgoing);
        all.extend(&self.learners);
        all
    }

    /// The joint configuration C(old,new) that applies `changes` to this one (thesis §4.3). Every
    /// change goes through it, single-member ones too, and the leader leaves it with a second entry
    /// once it commits.
    pub fn enter_joint(&self, changes: &[MemberChange]) -> Result<ConfState, &'static str> {
        if self.is_joint() {
            return Err("already in a joint configuration");
        }
        if changes.is_empty() {
            return Err("no change requested");
        }
        if changes.iter().any(|c| c.node() == 0) {
            return Err("node id 0 is not a valid member");
        }
        let mut next = ConfState {
            voters: self.voters.clone(),
            voters_outgoing: self.voters.clone(),
            learners: self.learners.clone(),
        };
        for change in changes {
            match *change {
                MemberChange::AddVoter(id) => {
                    next.learners.remove(&id);
                    next.voters.insert(id);
                }
                MemberChange::AddLearner(id) => {
                    next.voters.remove(&id);
                    next.learners.insert(id);
                }
                MemberChange::Remove(id) => {
                    next.voters.remove(&id);
                    next.learners.remove(&id);
                }
            }
        }
        if next.voters.is_empty() {
            return Err("the change would leave no voters");
        }
        Ok(next)
    }

    /// C(new): the joint configuration without its outgoing half.
    pub fn leave_joint(&self) -> ConfState {
        ConfState {
            voters: self.voters.clone(),
            voters_outgoing: BTreeSet::new(),
            learners: self.learners.clone(),
        }
    }
}

/// What a snapshot covers: the log up to `index` (of `term`) and the membership at that point.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct SnapshotMetadata {
    /// Last index the snapshot includes.
    pub index: Index,
    /// Term of that entry.
    pub term: Term,
    /// Membership as of `index`.
    pub conf_state: ConfState,
}

/// The state machine at `metadata.index`, opaque to Raft.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Snapshot {
    /// What it covers.
    pub metadata: SnapshotMetadata,
    /// The application's serialized state.
    pub data: Bytes,
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

    /// A membership change entry carrying the membership from `index` on.
    pub fn conf_change(index: Index, term: Term, conf_state: ConfState) -> Self {
        Entry {
            index,
            term,
            kind: EntryKind::ConfChange(Box::new(conf_state)),
            data: Bytes::new(),
        }
    }

    /// Bytes this entry counts against message, in-flight and uncommitted limits.
    pub fn size_bytes(&self) -> u64 {
        let changes = match &self.kind {
            EntryKind::ConfChange(conf) => 8 * conf.members().len() as u64,
            EntryKind::Normal => 0,
        };
        self.data.len() as u64 + ENTRY_OVERHEAD_BYTES + changes
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
