//! Every limit of the state machine, as named settings with the unit last ([`Limits`]), and their
//! defaults as named constants (close to etcd's where etcd has one).
//!
//! Invariant: every node of a cluster uses the same `Limits`. The apply-time checks (sizes,
//! operation counts, range result size, lease and session counts) are part of the replicated
//! semantics: two nodes with different limits could answer the same command differently and
//! diverge. The watch limits are node-local and may differ.

/// Default [`Limits::key_bytes_max`]: 32 KiB.
pub const KEY_BYTES_MAX_DEFAULT: u64 = 32 * 1024;
/// Default [`Limits::value_bytes_max`]: 1 MiB.
pub const VALUE_BYTES_MAX_DEFAULT: u64 = 1024 * 1024;
/// Default [`Limits::request_bytes_max`]: 1.5 MiB (etcd's `--max-request-bytes`).
pub const REQUEST_BYTES_MAX_DEFAULT: u64 = 3 * 512 * 1024;
/// Default [`Limits::txn_ops_max`]: 128 (etcd's `--max-txn-ops`).
pub const TXN_OPS_MAX_DEFAULT: u64 = 128;
/// Most levels of transactions nested in one another (a bound on the recursion of validating
/// and applying one; far beyond what etcd's recipes use).
pub const TXN_NESTING_MAX: usize = 32;
/// Default [`Limits::range_bytes_max`]: 4 MiB.
pub const RANGE_BYTES_MAX_DEFAULT: u64 = 4 * 1024 * 1024;
/// Default [`Limits::leases_max`]: one million.
pub const LEASES_MAX_DEFAULT: u64 = 1_000_000;
/// Default [`Limits::lease_ttl_ms_max`]: about 104 days (etcd allows more; a longer lease is a key
/// without a lease).
pub const LEASE_TTL_MS_MAX_DEFAULT: u64 = 9_000_000_000;
/// Default [`Limits::lease_revoke_retry_ms`]: 3 s (etcd's `expiredLeaseRetryInterval`).
pub const LEASE_REVOKE_RETRY_MS_DEFAULT: u64 = 3_000;
/// Default [`Limits::sessions_max`]: 10,000 client sessions.
pub const SESSIONS_MAX_DEFAULT: u64 = 10_000;
/// Default [`Limits::session_idle_entries_max`]: a session unused for a million log entries expires.
pub const SESSION_IDLE_ENTRIES_MAX_DEFAULT: u64 = 1_000_000;
/// Default [`Limits::lock_sessions_max`]: 10,000 lock sessions.
pub const LOCK_SESSIONS_MAX_DEFAULT: u64 = 10_000;
/// Longest name or node of a lock session, in bytes.
pub const LOCK_SESSION_NAME_BYTES_MAX: usize = 1024;
/// Default [`Limits::watches_max`]: 10,000 watches per node.
pub const WATCHES_MAX_DEFAULT: u64 = 10_000;
/// Default [`Limits::watch_pending_bytes_max`]: 16 MiB of events read ahead of a compaction per
/// watch.
pub const WATCH_PENDING_BYTES_MAX_DEFAULT: u64 = 16 * 1024 * 1024;
/// Default [`Limits::watch_catchup_revisions_max`]: revisions scanned per poll of a catching-up
/// watch.
pub const WATCH_CATCHUP_REVISIONS_MAX_DEFAULT: u64 = 10_000;

/// The limits of the state machine. Build with `Limits::default()` and override fields.
///
/// Sizes are in bytes, times in milliseconds of the caller's clock, counts are plain numbers.
/// Request limits are checked by [`crate::Request::validate`] (which the server calls before
/// proposing) and again when the command is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Longest key (and range end), in bytes.
    pub key_bytes_max: u64,
    /// Longest value, in bytes.
    pub value_bytes_max: u64,
    /// Longest encoded request (the Raft entry payload), in bytes.
    pub request_bytes_max: u64,
    /// Most compares in a transaction, and most operations in each of its branches.
    pub txn_ops_max: u64,
    /// Largest range result (keys and values, plus a fixed 32 bytes per key), in bytes; for a
    /// transaction, of all its ranges together. A larger result is an error: page with `limit`.
    pub range_bytes_max: u64,
    /// Most leases alive at once.
    pub leases_max: u64,
    /// Longest lease TTL, in milliseconds.
    pub lease_ttl_ms_max: u64,
    /// How long after [`crate::KvStore::expired_leases`] reported a lease it reports it again if
    /// it is still alive (its revoke may have been lost with a leader change), in milliseconds.
    /// Node-local.
    pub lease_revoke_retry_ms: u64,
    /// Most client sessions open at once (each keeps its last answer, so this bounds memory).
    pub sessions_max: u64,
    /// A session expires once this many log entries have been applied since its last request
    /// (0: sessions expire only explicitly).
    pub session_idle_entries_max: u64,
    /// Most lock sessions (Consul's sessions) at once.
    pub lock_sessions_max: u64,
    /// Most watches on this node. Node-local.
    pub watches_max: u64,
    /// Most event bytes read out of history for a watch that a compaction would overtake; a
    /// watch further behind ends with [`crate::KvError::Compacted`]. Node-local.
    pub watch_pending_bytes_max: u64,
    /// Most revisions one poll of a catching-up watch (one started in the past) scans, so a poll
    /// costs bounded work. Node-local.
    pub watch_catchup_revisions_max: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            key_bytes_max: KEY_BYTES_MAX_DEFAULT,
            value_bytes_max: VALUE_BYTES_MAX_DEFAULT,
            request_bytes_max: REQUEST_BYTES_MAX_DEFAULT,
            txn_ops_max: TXN_OPS_MAX_DEFAULT,
            range_bytes_max: RANGE_BYTES_MAX_DEFAULT,
            leases_max: LEASES_MAX_DEFAULT,
            lease_ttl_ms_max: LEASE_TTL_MS_MAX_DEFAULT,
            lease_revoke_retry_ms: LEASE_REVOKE_RETRY_MS_DEFAULT,
            sessions_max: SESSIONS_MAX_DEFAULT,
            session_idle_entries_max: SESSION_IDLE_ENTRIES_MAX_DEFAULT,
            lock_sessions_max: LOCK_SESSIONS_MAX_DEFAULT,
            watches_max: WATCHES_MAX_DEFAULT,
            watch_pending_bytes_max: WATCH_PENDING_BYTES_MAX_DEFAULT,
            watch_catchup_revisions_max: WATCH_CATCHUP_REVISIONS_MAX_DEFAULT,
        }
    }
}
