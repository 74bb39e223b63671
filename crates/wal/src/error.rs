//! The one error type of the WAL. Every variant says what failed, where (directory, file, byte
//! offset) and, when the operator has something to do, what.

use std::io;
use std::path::PathBuf;

use raftkv_raft::Index;

/// Errors of the write-ahead log and its snapshot files.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// A file-system call failed.
    #[error("{op} failed on {path}: {source}")]
    Io {
        /// What was being done (`"sync"`, `"rename"`, ...).
        op: &'static str,
        /// The file or directory it was done on.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// An earlier write or sync failed. Whatever it was writing may or may not be on disk, so the
    /// WAL refuses every later call instead of pretending the data is safe.
    #[error(
        "the WAL in {dir} has stopped after a failed write or sync ({what}); nothing written since the \
         last successful sync may be assumed durable. Restart the process: recovery keeps everything \
         that was synced"
    )]
    Failed {
        /// The data directory.
        dir: PathBuf,
        /// The failure that stopped it.
        what: String,
    },
    /// Synced data does not read back as it was written.
    #[error(
        "corrupt WAL data in {file} at byte offset {offset}: {reason}. This node's log cannot be \
         trusted: remove the data directory {dir} and re-join the node so the leader re-replicates it"
    )]
    Corrupt {
        /// The data directory.
        dir: PathBuf,
        /// The damaged file.
        file: PathBuf,
        /// Where in it the damage starts.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// Another process (or another `Wal` in this one) has the data directory open.
    #[error(
        "the data directory {dir} is locked by another process (its LOCK file is held); stop the other \
         raftkv server using it, or give this one a different data directory"
    )]
    Locked {
        /// The data directory.
        dir: PathBuf,
    },
    /// The data directory was written for a different cluster or by an unknown format version.
    #[error(
        "{file} belongs to another cluster or format: {reason}; use a data directory of this cluster"
    )]
    Foreign {
        /// The segment whose header did not match.
        file: PathBuf,
        /// What did not match.
        reason: String,
    },
    /// `append` was given entries that do not continue the log.
    #[error(
        "entries starting at index {first} do not fit the log (held {first_index}..={last_index}): they \
         must be contiguous and start after the snapshot and at most one past the last index"
    )]
    NotContiguous {
        /// Index of the offending entry.
        first: Index,
        /// First index held.
        first_index: Index,
        /// Last index held.
        last_index: Index,
    },
    /// `compact` was asked to go past the log or with a term the log does not have there.
    #[error("cannot compact to index {index}: {reason}")]
    Compact {
        /// The snapshot's index.
        index: Index,
        /// Why not.
        reason: &'static str,
    },
    /// A record would exceed `RECORD_BYTES_MAX`, or a snapshot `WalOptions::snapshot_bytes_max`.
    #[error("{what} of {size_bytes} bytes exceeds the limit of {limit_bytes} bytes")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// Its size.
        size_bytes: u64,
        /// The limit.
        limit_bytes: u64,
    },
    /// The options cannot work.
    #[error("invalid WAL options: {0}")]
    InvalidOptions(&'static str),
    /// The group-commit writer thread is gone (the front end was shut down or panicked).
    #[error("the group-commit writer has stopped; the WAL is closed")]
    Closed,
}

impl WalError {
    /// An `Io` error for `op` on `path`.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        WalError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// Result alias of the WAL.
pub type Result<T, E = WalError> = std::result::Result<T, E>;
