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
    /// The replica cannot go on (a snapshot it cannot restore).
    #[error(transparent)]
    Replica(#[from] raftkv_replica::ReplicaError),
    /// The node is shutting down or its driver stopped.
    #[error("the node is stopping")]
    Stopped,
}

/// Result with a [`ServerError`].
pub type Result<T, E = ServerError> = std::result::Result<T, E>;

pub use raftkv_replica::RequestError;
