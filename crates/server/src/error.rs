//! The server's errors: what went wrong, where, and what the operator or client can do.

use std::path::PathBuf;

/// Errors of the server crate.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A peer sent bytes that are not a valid frame or message; the connection is closed.
    #[error("malformed peer data: {0}")]
    Malformed(String),
    /// A peer's handshake named another cluster or an unexpected node.
    #[error("peer handshake refused: {0}")]
    Handshake(String),
    /// The settings are unusable.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The data directory cannot be used.
    #[error("data directory {dir}: {reason}")]
    DataDir {
        /// The directory.
        dir: PathBuf,
        /// What is wrong and what to do.
        reason: String,
    },
    /// The write-ahead log failed; the node stops rather than acknowledge what it may have lost.
    #[error("write-ahead log: {0}")]
    Wal(#[from] raftkv_wal::WalError),
    /// The Raft core refused a request.
    #[error(transparent)]
    Raft(#[from] raftkv_raft::Error),
    /// Joining a cluster failed.
    #[error("joining the cluster failed: {0}")]
    Join(String),
    /// Network or file I/O.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The node is shutting down or its driver stopped.
    #[error("the node is stopping")]
    Stopped,
}

/// Result with a [`ServerError`].
pub type Result<T, E = ServerError> = std::result::Result<T, E>;

/// Why a client request did not succeed, in terms the HTTP API maps to statuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// This node cannot serve it; the leader (if known) can.
    #[error("this node is not the leader (leader: {leader:?})")]
    NotLeader {
        /// The leader this node knows of.
        leader: Option<raftkv_raft::NodeId>,
    },
    /// No leader, no quorum, overloaded, or a change already in progress: retry shortly.
    #[error("unavailable: {0}; retry shortly")]
    Unavailable(String),
    /// The request certainly did not take effect (its entry was overwritten by a new leader).
    #[error("the write was not committed (leadership changed); it did not happen, retry it")]
    NotCommitted,
    /// The outcome is unknown: it may or may not have been applied.
    #[error("outcome unknown: {0}")]
    Unknown(String),
    /// The request is over a limit.
    #[error("too large: {0}")]
    TooLarge(String),
    /// The request is malformed or refused by the store.
    #[error("{0}")]
    Invalid(String),
}

impl From<raftkv_raft::Error> for RequestError {
    fn from(error: raftkv_raft::Error) -> Self {
        match error {
            raftkv_raft::Error::NotLeader { leader } => RequestError::NotLeader { leader },
            other => RequestError::Unavailable(other.to_string()),
        }
    }
}
