//! [`KvStore`]: the state machine the server drives: replicated state (MVCC index, leases,
//! sessions, applied index) and node-local state (lease deadlines, the clock, watches).
//!
//! Invariants:
//! - replicated state changes only in [`KvStore::apply`] (and `restore`), as a function of the
//!   entries applied so far and the [`Limits`]; so every node that applied the same log holds the
//!   same replicated state and [`KvStore::state_hash`];
//! - node-local state never influences the replicated state, except that the deadline a grant
//!   starts with comes from `set_clock` (and deadlines are node-local anyway);
//! - `applied_index` only increases.

use crate::command::{RangeRequest, RangeResponse};
use crate::lease::{LeaseStatus, Leases};
use crate::locks::{LockSession, LockSessionId, LockSessions};
use crate::mvcc::{Mvcc, RangeBudget};
use crate::session::Sessions;
use crate::watch::{WatchDelivery, WatchId, WatchProgress, WatchRequest, WatchResponse, Watches};
use crate::{ClientId, KvError, LeaseId, Limits, Result, Revision};

/// The replicated key-value state machine (crate docs).
#[derive(Debug)]
pub struct KvStore {
    pub(crate) limits: Limits,
    /// Index of the last applied log entry (replicated).
    pub(crate) applied_index: u64,
    /// Keys, histories and revisions (replicated).
    pub(crate) mvcc: Mvcc,
    /// Leases: id, TTL, keys replicated; deadlines node-local.
    pub(crate) leases: Leases,
    /// Client sessions (replicated).
    pub(crate) sessions: Sessions,
    /// Lock sessions (replicated; which keys they hold is derived, lock delays node-local).
    pub(crate) lock_sessions: LockSessions,
    /// Watches (node-local).
    pub(crate) watches: Watches,
    /// The caller's clock as of the last `set_clock`, in milliseconds (node-local).
    pub(crate) clock_ms: u64,
}

impl KvStore {
    /// An empty store ([`crate::INITIAL_REVISION`], nothing applied).
    pub fn new(limits: Limits) -> Self {
        KvStore {
            limits,
            applied_index: 0,
            mvcc: Mvcc::default(),
            leases: Leases::default(),
            sessions: Sessions::default(),
            lock_sessions: LockSessions::default(),
            watches: Watches::default(),
            clock_ms: 0,
        }
    }

    /// A lock session by id.
    pub fn lock_session(&self, id: LockSessionId) -> Option<&LockSession> {
        self.lock_sessions.get(id)
    }

    /// The keys lock session `id` holds, in key order.
    pub fn lock_session_keys(&self, id: LockSessionId) -> Vec<bytes::Bytes> {
        self.lock_sessions.held(id)
    }

    /// The lock session lease `lease` keeps alive, if one does.
    pub fn lock_session_of_lease(&self, lease: LeaseId) -> Option<LockSessionId> {
        self.lock_sessions.by_lease(lease)
    }

    /// Every lock session, by id.
    pub fn lock_sessions(&self) -> impl Iterator<Item = &LockSession> {
        self.lock_sessions.iter()
    }

    /// The log index of the last entry that created or ended a lock session (0 if none): the
    /// index of Consul's session reads.
    pub fn lock_sessions_index(&self) -> u64 {
        self.lock_sessions.changed_index()
    }

    /// Whether `key` is within the lock delay of a session that ended, at `now_ms` on the clock
    /// `set_clock` is given: then it may not be acquired. The node that takes an acquire checks
    /// this before proposing it.
    pub fn lock_delayed(&mut self, key: &[u8], now_ms: u64) -> bool {
        self.lock_sessions.delayed(key, now_ms).is_some()
    }

    /// The limits this store enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Index of the last applied log entry (0: none).
    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    /// The current revision: [`crate::INITIAL_REVISION`] plus the number of write transactions that
    /// changed something.
    pub fn revision(&self) -> Revision {
        self.mvcc.revision()
    }

    /// The compacted revision: reads at revisions below it fail with [`KvError::Compacted`]
    /// (0: nothing compacted).
    pub fn compacted_revision(&self) -> Revision {
        self.mvcc.compacted()
    }

    /// Number of keys that exist now.
    pub fn len(&self) -> u64 {
        self.mvcc.live_keys()
    }

    /// Bytes of the keys that exist now and of their values (what a storage quota limits).
    pub fn live_bytes(&self) -> u64 {
        self.mvcc.live_bytes()
    }

    /// Whether no key exists now.
    pub fn is_empty(&self) -> bool {
        self.mvcc.live_keys() == 0
    }

    /// Number of keys the index holds, including deleted keys whose history is not compacted yet.
    pub fn indexed_keys(&self) -> usize {
        self.mvcc.indexed_keys()
    }

    /// A local (serializable) read of the applied state. For a linearizable read, serve it after
    /// applying up to the read index.
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse> {
        req.validate(&self.limits)?;
        self.mvcc
            .range(req, &mut RangeBudget::new(self.limits.range_bytes_max))
    }

    // ---- leases (node-local clock) ----

    /// Sets the caller's clock (milliseconds, any epoch, non-decreasing per node). Call it before
    /// applying entries: a lease granted by them gets its deadline from it.
    pub fn set_clock(&mut self, now_ms: u64) {
        self.clock_ms = now_ms;
    }

    /// Renews a lease on the leader (not through the log): its deadline becomes `now_ms + ttl`.
    /// Returns the TTL in milliseconds. Fails with [`KvError::LeaseNotFound`] for a lease that
    /// does not exist, or that [`KvStore::expired_leases`] listed (its revoke is in flight) and no
    /// [`KvStore::lease_promote`] has made renewable again.
    pub fn lease_keep_alive(&mut self, id: LeaseId, now_ms: u64) -> Result<u64> {
        self.leases
            .keep_alive(id, now_ms)
            .ok_or(KvError::LeaseNotFound { id })
    }

    /// Call when this node becomes leader: every lease's deadline becomes
    /// `now_ms + ttl + extend_ms` (pass one election timeout as `extend_ms`), so no client loses
    /// its lease to the leader change.
    pub fn lease_promote(&mut self, now_ms: u64, extend_ms: u64) {
        self.leases.promote(now_ms, extend_ms);
    }

    /// On the leader: up to `max` leases whose deadline has passed at `now_ms`, earliest first.
    /// Propose a [`crate::Request::lease_revoke`] for each; a lease listed here is listed again
    /// only after [`Limits::lease_revoke_retry_ms`] if it still exists then.
    pub fn expired_leases(&mut self, now_ms: u64, max: usize) -> Vec<LeaseId> {
        self.leases
            .expired(now_ms, max, self.limits.lease_revoke_retry_ms)
    }

    /// A lease's TTL, remaining time on this node's clock, and keys.
    pub fn lease_time_to_live(&self, id: LeaseId, now_ms: u64) -> Result<LeaseStatus> {
        self.leases
            .status(id, now_ms)
            .ok_or(KvError::LeaseNotFound { id })
    }

    /// The keys attached to lease `id`, in key order (none if it does not exist).
    pub fn lease_keys(&self, id: LeaseId) -> Vec<bytes::Bytes> {
        self.leases
            .get(id)
            .map(|lease| lease.keys.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Ids of all leases, in order.
    pub fn lease_ids(&self) -> Vec<LeaseId> {
        self.leases.iter().map(|(id, _)| *id).collect()
    }

    // ---- sessions ----

    /// Number of open client sessions.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// The last applied sequence number of a session, or `None` if it is not open.
    pub fn session_last_seq(&self, client_id: ClientId) -> Option<u64> {
        self.sessions.get(client_id).map(|s| s.last_seq)
    }

    // ---- watches (node-local) ----

    /// Creates a watch. Fails with [`KvError::Compacted`] if it starts at or below the compacted
    /// revision, [`KvError::WatchLimit`] if this node has too many.
    pub fn watch_create(&mut self, req: &WatchRequest) -> Result<WatchId> {
        self.watches.create(req, &self.mvcc, &self.limits)
    }

    /// Cancels a watch.
    pub fn watch_cancel(&mut self, id: WatchId) -> Result<()> {
        self.watches.cancel(id)
    }

    /// Takes the next events of watch `id`: whole revisions, about `max_events` (see
    /// [`crate::watch`]). `Ok(None)`: nothing new yet. An error (compaction overtook it) ends the
    /// watch.
    pub fn watch_poll(&mut self, id: WatchId, max_events: usize) -> Result<Option<WatchResponse>> {
        if !self.watches.exists(id) {
            return Err(KvError::WatchNotFound { id });
        }
        let mut deliveries = self.watch_poll_ready(|w| w == id, max_events);
        match deliveries.pop() {
            Some(delivery) => delivery.result.map(Some),
            None => Ok(None),
        }
    }

    /// Polls every watch `wanted` accepts that has something to deliver, once for all: watches
    /// of the same range at the same point share one delivery (see [`crate::watch`]).
    pub fn watch_poll_ready(
        &mut self,
        wanted: impl Fn(WatchId) -> bool,
        max_events: usize,
    ) -> Vec<WatchDelivery> {
        self.watches
            .poll_ready(wanted, max_events, &self.mvcc, &self.limits)
    }

    /// Where live watch `id` stands (`None`: no such live watch). A watch that is caught up
    /// and whose polls through `delivered_through` were all handed to its client has seen every
    /// event through the current revision: a progress notice at that revision is true.
    pub fn watch_progress(&self, id: WatchId) -> Option<WatchProgress> {
        self.watches.progress(id, self.mvcc.revision())
    }

    /// Number of watches on this node.
    pub fn watch_count(&self) -> usize {
        self.watches.len()
    }

    /// After restoring `self` from a snapshot, takes over the watches of the store it replaces,
    /// so they continue without a gap (they catch up from the old store's revision through this
    /// store's history; if that is compacted, their next poll reports [`KvError::Compacted`]).
    ///
    /// Panics if `self` is behind `old` (Raft installs only snapshots ahead of the applied state).
    pub fn adopt_watches(&mut self, old: &mut KvStore) {
        let old_revision = old.revision();
        assert!(
            self.revision() >= old_revision,
            "adopting watches from a store at revision {old_revision} into one at {}",
            self.revision()
        );
        self.watches.adopt(&mut old.watches);
    }

    // ---- state hash ----

    /// A 64-bit hash of the replicated state: applied index, revisions, every key's retained
    /// history, leases (id, TTL), sessions (id, last sequence, last activity, last answer), lock
    /// sessions. Equal
    /// replicated states hash equal on every node; node-local state (deadlines, clock, watches)
    /// is left out.
    pub fn state_hash(&self) -> u64 {
        crate::hash::state_hash(
            self.applied_index,
            self.mvcc.revision(),
            self.mvcc.compacted(),
            self.mvcc.indexed_keys(),
            self.mvcc.histories(),
            self.leases.iter().map(|(id, lease)| (*id, lease.ttl_ms)),
            self.leases.len(),
            &self.sessions,
            self.lock_sessions.iter(),
        )
    }
}
