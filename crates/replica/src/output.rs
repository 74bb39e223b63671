//! What the engine hands its driver: messages to send, storage writes to perform in order,
//! snapshots to encode and write, log compactions, replies by request id, and events.
//!
//! Invariant: `Persist`s are numbered in the order they were taken and must be completed
//! (`Replica::persisted`) in that order; nothing in a `Persist`'s promises leaves before it.

use bytes::Bytes;
use raftkv_kv::KvError;
use raftkv_raft::{
    ConfState, Entry, HardState, Index, Message, NodeId, Role, Snapshot, SnapshotMetadata, Term,
};

use crate::error::RequestError;
use crate::state::{Applied, StateView};

/// A client request's number, chosen by the driver; replies carry it back.
pub type RequestId = u64;

/// A storage write: persist the snapshot (if any), then the entries and the hard state, durably,
/// then report it with `Replica::persisted(seq)`.
#[derive(Debug, Default)]
pub struct Persist {
    /// Its place in the order of writes.
    pub seq: u64,
    /// The hard state, when it changed.
    pub hard_state: Option<HardState>,
    /// Entries to append (possibly replacing a conflicting suffix).
    pub entries: Vec<Entry>,
    /// A snapshot from the leader that replaces the log.
    pub snapshot: Option<Snapshot>,
}

impl Persist {
    /// Whether there is nothing to write (the completion still must be reported, in order).
    pub fn is_empty(&self) -> bool {
        self.hard_state.is_none() && self.entries.is_empty() && self.snapshot.is_none()
    }
}

/// A snapshot to produce: encode the view (off the node loop), write and sync it as the
/// snapshot described by `metadata`, then report it with `Replica::snapshot_written`.
#[derive(Debug)]
pub struct SnapshotTask {
    /// Index, term and configuration of the snapshot.
    pub metadata: SnapshotMetadata,
    /// The state at `metadata.index`.
    pub view: StateView,
}

impl SnapshotTask {
    /// The [`State::digest`](crate::State::digest) of the state the snapshot shows (proportional
    /// to the store's size: off the node loop).
    pub fn digest(&self) -> u64 {
        self.view.digest()
    }

    /// The snapshot, encoded (proportional to the store's size).
    pub fn encode(&self) -> Snapshot {
        Snapshot {
            metadata: self.metadata.clone(),
            data: self.view.encode(),
        }
    }
}

/// The answer to a client request.
#[derive(Clone, Debug)]
pub enum Answer {
    /// A proposal was applied, with this result.
    Applied {
        /// The entry that carried it.
        index: Index,
        /// Its term.
        term: Term,
        /// What applying it produced.
        applied: Applied,
    },
    /// A read may be served from the local state now: it has applied the read index.
    Read {
        /// The index the state had applied when the read was released.
        applied: Index,
    },
    /// A keep-alive reached the leader's store: the lease's TTL in milliseconds, or why not.
    KeepAlive(Result<u64, KvError>),
    /// A membership change was applied at this index.
    Membership {
        /// The configuration entry's index.
        index: Index,
    },
}

/// What applying one entry did, for a driver that checks it (the simulator).
#[derive(Clone, Debug)]
pub struct ApplyRecord {
    /// The entry.
    pub entry: Entry,
    /// What it produced.
    pub applied: Applied,
    /// The key-value request was a retry of its session's last write (answered from the table).
    pub retry: bool,
    /// The leases a revoke or an expiry deleted, with their keys (read before it applied; a
    /// lease already gone is not listed).
    pub lease_keys: Vec<(i64, Vec<Bytes>)>,
    /// The store's revision before the entry.
    pub revision_before: i64,
    /// `State::digest` after the entry.
    pub digest: u64,
}

/// Something the engine did or decided, for logs, metrics and checkers.
#[derive(Clone, Debug)]
pub enum Event {
    /// Role, leader or term changed.
    RoleChanged {
        /// The new role.
        role: Role,
        /// The term.
        term: Term,
        /// The leader known now.
        leader: Option<NodeId>,
    },
    /// A new leader extended every lease by this much before serving anything.
    LeasesPromoted {
        /// The extension in milliseconds.
        extend_ms: u64,
    },
    /// The leader proposed revoking an expired lease (`entry` is `None` when the core refused).
    LeaseRevokeProposed {
        /// The lease.
        lease: i64,
        /// The entry that carries the revoke.
        entry: Option<(Index, Term)>,
    },
    /// The state has applied every entry up to `index` (once per applied batch).
    AppliedTo {
        /// The last applied index.
        index: Index,
    },
    /// One entry was applied (only with `Settings::record_applies`).
    Applied(Box<ApplyRecord>),
    /// A configuration entry took effect.
    MembershipApplied {
        /// Its index.
        index: Index,
        /// The configuration.
        conf: ConfState,
    },
    /// The member registry changed (a publish, a configuration, an installed snapshot).
    RegistryChanged,
    /// A corruption-check point was applied: `view` is the state as of `index`, to be hashed
    /// (`StateView::digest`, off the node loop) and compared with the other members' hashes at
    /// the same index.
    HashCheckpoint {
        /// The check point's index.
        index: Index,
        /// The state as of it (boxed: it is large, and the event rare).
        view: Box<StateView>,
    },
    /// An entry whose payload no node can decode was applied as a no-op.
    Undecodable {
        /// Its index.
        index: Index,
    },
    /// A snapshot from the leader replaced the state.
    SnapshotInstalled {
        /// Its index.
        index: Index,
        /// Its term.
        term: Term,
        /// `State::digest` after it.
        digest: u64,
    },
    /// The engine started: its state machine is the snapshot in storage (index 0: empty), before
    /// any entry of the log is applied.
    Recovered {
        /// The snapshot's index.
        index: Index,
        /// Its term.
        term: Term,
        /// `State::digest` of the state restored from it.
        digest: u64,
    },
    /// A snapshot of this node's state was asked for (its `SnapshotTask` is in the same
    /// output; `SnapshotTask::digest` hashes the state it shows).
    SnapshotRequested {
        /// Its index.
        index: Index,
    },
    /// A snapshot was written and the log is compacted up to it.
    SnapshotTaken {
        /// Its index.
        index: Index,
        /// Its term.
        term: Term,
        /// Its size.
        bytes: usize,
    },
    /// A snapshot was not used.
    SnapshotSkipped {
        /// Its index.
        index: Index,
        /// Why.
        reason: String,
    },
    /// Something the engine proposed on its own was proposed, or refused by the core.
    Proposed {
        /// What it was.
        what: Own,
        /// The core's refusal, if any.
        refused: Option<String>,
    },
}

/// What the engine proposes on its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Own {
    /// Revoking a batch of expired leases.
    LeaseExpiry {
        /// How many.
        leases: usize,
    },
    /// Dropping key-value history up to a revision.
    HistoryCompaction(i64),
    /// Making a caught-up learner a voter.
    Promotion(NodeId),
    /// A member's addresses (this node's, or a joining node's).
    Publish(NodeId),
    /// Holding a learner added as a learner back from promotion.
    Hold(NodeId),
    /// Handing leadership to a voter on shutdown.
    Transfer(NodeId),
}

impl std::fmt::Display for Own {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Own::LeaseExpiry { leases } => write!(f, "revoke of {leases} expired leases"),
            Own::HistoryCompaction(revision) => {
                write!(f, "compaction of history up to revision {revision}")
            }
            Own::Promotion(node) => write!(f, "promotion of caught-up learner {node}"),
            Own::Publish(node) => write!(f, "addresses of member {node}"),
            Own::Hold(node) => write!(f, "hold on promoting learner {node}"),
            Own::Transfer(node) => write!(f, "leadership transfer to {node} on shutdown"),
        }
    }
}

/// Everything the engine produced since the last `Replica::take_output`.
#[derive(Debug, Default)]
pub struct Output {
    /// Messages that may leave now.
    pub messages: Vec<Message>,
    /// Storage writes, in order.
    pub persist: Vec<Persist>,
    /// Snapshots to encode and write.
    pub snapshot_tasks: Vec<SnapshotTask>,
    /// Written snapshots to compact the log up to (their files are durable).
    pub compact: Vec<Snapshot>,
    /// Replies to client requests.
    pub replies: Vec<(RequestId, Result<Answer, RequestError>)>,
    /// Events, in order.
    pub events: Vec<Event>,
}

impl Output {
    /// Whether there is nothing in it.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
            && self.persist.is_empty()
            && self.snapshot_tasks.is_empty()
            && self.compact.is_empty()
            && self.replies.is_empty()
            && self.events.is_empty()
    }
}
