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
        /// Bytes proposed but not yet committed.
        uncommitted_bytes: u64,
        /// `Config::uncommitted_bytes_max`.
        limit: u64,
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
}

/// Result alias for the core.
pub type Result<T, E = Error> = std::result::Result<T, E>;
