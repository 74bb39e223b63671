//! The one error type of the state machine, [`KvError`].
//!
//! Every variant is a condition a caller can cause (a bad request, a compacted revision, a missing
//! lease); broken invariants panic instead. Each message says what went wrong, the limit or the
//! revision involved, and what to do about it. Errors are `Clone + PartialEq` so tests compare
//! them and the session table can cache them as a write's original answer; `command::wire`
//! encodes them for the log, snapshots and the network.

use crate::{ClientId, LeaseId, Revision, WatchId};

/// `Result` with [`KvError`].
pub type Result<T, E = KvError> = std::result::Result<T, E>;

/// Errors of the key-value state machine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    /// A read or watch asked for a revision whose history compaction has dropped.
    #[error(
        "revision {revision} has been compacted (history is kept from revision {compacted_revision}); \
         read at or after revision {compacted_revision}, or re-read the current state"
    )]
    Compacted {
        /// The revision asked for.
        revision: Revision,
        /// The store's compacted revision: the oldest revision still readable.
        compacted_revision: Revision,
    },
    /// A read or compaction named a revision the store has not reached yet.
    #[error(
        "revision {revision} is in the future (the store is at revision {current_revision}); \
         use a revision at most {current_revision}, or 0 for the current one"
    )]
    FutureRevision {
        /// The revision asked for.
        revision: Revision,
        /// The store's current revision.
        current_revision: Revision,
    },
    /// A put that keeps the key's value or lease (`ignore_value`, `ignore_lease`) names a key that
    /// does not exist.
    #[error("key not found: a put that keeps the current value or lease needs an existing key")]
    KeyNotFound,
    /// A put keeps the key's value (`ignore_value`) and gives one too.
    #[error("a put that keeps the current value (ignore_value) must not give a value")]
    ValueProvided,
    /// A put keeps the key's lease (`ignore_lease`) and gives one too.
    #[error("a put that keeps the current lease (ignore_lease) must not give a lease")]
    LeaseProvided,
    /// No lock session has this id (it never existed, or it ended).
    #[error("invalid session \"{id}\": no such lock session (it ended, or never existed)")]
    LockSessionNotFound {
        /// The session id the request named.
        id: u64,
    },
    /// A lock acquired in a transaction is held by another session, or a lock released in one is
    /// not held by the releasing session: the transaction changed nothing.
    #[error(
        "failed to {verb} key {key:?}, {why}",
        verb = if *release { "unlock" } else { "lock" },
        why = if *release {
            "lock isn't held, or is held by another session"
        } else {
            "lock is already held"
        }
    )]
    LockRefused {
        /// The key (lossily as UTF-8).
        key: String,
        /// Whether it was a release (else an acquisition).
        release: bool,
    },
    /// As many lock sessions exist as [`crate::Limits::lock_sessions_max`] allows.
    #[error("too many lock sessions (the limit is {max}); destroy unused sessions first")]
    LockSessionLimit {
        /// The limit.
        max: u64,
    },
    /// A key was empty where one is required (puts, single-key reads).
    #[error(
        "the key is empty; keys must be 1 or more bytes (an empty key is allowed only as the start of a range with a range end)"
    )]
    EmptyKey,
    /// A key (or range end) is longer than [`crate::Limits::key_bytes_max`].
    #[error(
        "key of {bytes} bytes is larger than the limit of {max} bytes (key_bytes_max); use shorter keys"
    )]
    KeyTooLarge {
        /// Size of the key.
        bytes: u64,
        /// The limit.
        max: u64,
    },
    /// A value is longer than [`crate::Limits::value_bytes_max`].
    #[error(
        "value of {bytes} bytes is larger than the limit of {max} bytes (value_bytes_max); \
         split it over several keys"
    )]
    ValueTooLarge {
        /// Size of the value.
        bytes: u64,
        /// The limit.
        max: u64,
    },
    /// An encoded request is longer than [`crate::Limits::request_bytes_max`].
    #[error(
        "request of {bytes} bytes is larger than the limit of {max} bytes (request_bytes_max); \
         split it into several requests"
    )]
    RequestTooLarge {
        /// Encoded size of the request.
        bytes: u64,
        /// The limit.
        max: u64,
    },
    /// A transaction has more compares, or more operations in one branch, than
    /// [`crate::Limits::txn_ops_max`].
    #[error(
        "transaction has {ops} {what}, more than the limit of {max} (txn_ops_max); \
         split it into several transactions"
    )]
    TooManyOps {
        /// Which list is too long: `"compares"`, `"success operations"` or `"failure operations"`.
        what: String,
        /// Its length.
        ops: u64,
        /// The limit.
        max: u64,
    },
    /// A range result (or the ranges of one transaction together) would exceed
    /// [`crate::Limits::range_bytes_max`]. Nothing was changed.
    #[error(
        "range result of at least {bytes} bytes is larger than the limit of {max} bytes \
         (range_bytes_max); set a limit and page through the range, or ask for keys_only/count_only"
    )]
    RangeTooLarge {
        /// Bytes the result had reached when it was cut off.
        bytes: u64,
        /// The limit.
        max: u64,
    },
    /// A request is well-formed but its arguments make no sense (two writes to one key in a
    /// transaction, a negative revision, a zero TTL, a sequence number without a client id...).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The lease does not exist (never granted, revoked or expired).
    #[error(
        "lease {id} not found: it was never granted, or has been revoked or expired; grant a new lease"
    )]
    LeaseNotFound {
        /// The lease asked for.
        id: LeaseId,
    },
    /// A lease with this id already exists.
    #[error("lease {id} already exists; choose another id, or 0 to let the store pick one")]
    LeaseExists {
        /// The lease id asked for.
        id: LeaseId,
    },
    /// As many leases exist as [`crate::Limits::leases_max`] allows.
    #[error("too many leases (the limit is {max}, leases_max); revoke unused leases first")]
    LeaseLimit {
        /// The limit.
        max: u64,
    },
    /// The client's session does not exist: it was never opened, or it has expired (idle, or
    /// expired explicitly). The outcome of the write is unknown to the client.
    #[error(
        "client session {client_id} not found (never opened, or expired); open a new session; \
         a write retried from the old session may or may not have been applied"
    )]
    SessionNotFound {
        /// The client id the request carried.
        client_id: ClientId,
    },
    /// As many client sessions are open as [`crate::Limits::sessions_max`] allows.
    #[error(
        "too many client sessions (the limit is {max}, sessions_max); close idle sessions, or wait \
         for them to expire"
    )]
    SessionLimit {
        /// The limit.
        max: u64,
    },
    /// A write carried a sequence number older than the last one the session applied, so its
    /// answer is no longer known (only the latest answer is kept).
    #[error(
        "sequence number {seq} of client {client_id} is older than its last applied one ({last_seq}); \
         the answer of an older request is no longer kept: the client must not reuse sequence numbers"
    )]
    StaleSequence {
        /// The client.
        client_id: ClientId,
        /// The sequence number of the request.
        seq: u64,
        /// The session's last applied sequence number.
        last_seq: u64,
    },
    /// A command could not be decoded: it is not a valid encoding of a request.
    #[error("malformed command: {0}")]
    Malformed(String),
    /// A command was encoded by a newer (or unknown) version of the format.
    #[error(
        "command format version {version} is not supported (this node understands version {supported}); \
         upgrade this node before the cluster uses the new format"
    )]
    UnsupportedVersion {
        /// The version in the command.
        version: u32,
        /// The version this code writes and reads.
        supported: u32,
    },
    /// A snapshot stream is damaged, truncated, of an unknown format, or violates the store's
    /// invariants.
    #[error("corrupt snapshot: {0}; fetch a fresh snapshot from the leader")]
    CorruptSnapshot(String),
    /// Reading a snapshot stream failed.
    #[error("reading the snapshot failed: {0}")]
    SnapshotIo(String),
    /// No watch with this id exists on this node (never created, cancelled, or already reported
    /// as cancelled).
    #[error("watch {id} not found (cancelled or never created); create a new watch")]
    WatchNotFound {
        /// The watch id.
        id: WatchId,
    },
    /// As many watches exist on this node as [`crate::Limits::watches_max`] allows.
    #[error(
        "too many watches on this node (the limit is {max}, watches_max); cancel unused watches"
    )]
    WatchLimit {
        /// The limit.
        max: u64,
    },
}
