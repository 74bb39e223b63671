//! Errors a caller of the core can cause. Each leaves the node's state unchanged.
//! Violated invariants are not errors: they panic, so bad state never spreads.

use crate::types::{Index, NodeId};

/// Errors returned by the raft core.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Only the leader accepts proposals; forward to `leader` if one is known.
    #[error(
        "this node is not the leader (known leader: {leader:?}); send the request to the leader"
    )]
    NotLeader {
        /// The leader this node knows of in its current term.
        leader: Option<NodeId>,
    },
    /// The leader holds too many uncommitted bytes; retry once earlier proposals commit.
    #[error(
        "overloaded: {uncommitted_bytes} uncommitted bytes plus this proposal would pass the limit of {limit}; retry later"
    )]
    Overloaded {
        /// Bytes of the leader's uncommitted entries.
        uncommitted_bytes: u64,
        /// `Config::uncommitted_bytes_max`.
        limit: u64,
    },
    /// A leadership transfer is under way; proposals resume when it completes or is abandoned.
    #[error("a leadership transfer is in progress; retry shortly")]
    TransferInProgress,
    /// Leadership can be transferred only to a voter of the current configuration.
    #[error("node {0} is not a voter of the current configuration")]
    NotAVoter(NodeId),
    /// A membership change is still in flight; only one at a time.
    #[error("a membership change is already in progress; retry once it has committed")]
    ConfChangeInProgress,
    /// A new leader must commit an entry of its own term before changing membership (raft-dev 2015).
    #[error("the leader has not yet committed an entry of its term; retry shortly")]
    ConfChangeTooEarly,
    /// The membership change cannot be made.
    #[error("invalid membership change: {0}")]
    InvalidConfChange(&'static str),
    /// Too many reads wait for a read index; retry shortly.
    #[error("too many pending reads (limit {limit}); retry shortly")]
    TooManyReads {
        /// `Config::pending_reads_max`.
        limit: usize,
    },
    /// A snapshot can be taken only of applied state, ahead of the current snapshot.
    #[error("cannot snapshot at index {index}: {reason}")]
    SnapshotIndex {
        /// The index asked for.
        index: Index,
        /// Why it cannot be used.
        reason: &'static str,
    },
    /// The configuration cannot work; the message says which setting.
    #[error("invalid raft configuration: {0}")]
    InvalidConfig(&'static str),
    /// A peer's message has a shape no correct node sends; it was dropped.
    #[error("malformed message dropped: {0}")]
    MalformedMessage(&'static str),
    /// Storage could not serve a read.
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
}

/// Why a `Storage` could not serve a read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// The entry was compacted away into a snapshot.
    #[error("index {index} is compacted (first kept index is {first_index})")]
    Compacted {
        /// The index asked for.
        index: Index,
        /// The first index still in the log.
        first_index: Index,
    },
    /// The entry does not exist (yet).
    #[error("index {index} is unavailable (last index is {last_index})")]
    Unavailable {
        /// The index asked for.
        index: Index,
        /// The last index in the log.
        last_index: Index,
    },
    /// The stored snapshot could not be read back (its file is damaged or gone).
    #[error("the snapshot at index {index} cannot be read: {reason}")]
    SnapshotUnreadable {
        /// The snapshot's index.
        index: Index,
        /// What is wrong, and where.
        reason: String,
    },
}

/// Result alias for the core.
pub type Result<T, E = Error> = std::result::Result<T, E>;
