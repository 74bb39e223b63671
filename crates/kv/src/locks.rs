//! Consul's sessions and the locks they hold: a session is created through the log (optionally
//! with a TTL, kept by an etcd lease of its own), acquires keys (`Acquire`: the key's `session`
//! becomes it and its `lock_index` counts the acquisition), releases them, and when it is
//! destroyed or its lease expires every key it holds is released (its `session` cleared) or
//! deleted, as its behavior says, in one revision.
//!
//! Named lock sessions here, so they are not taken for the client sessions of exactly-once writes
//! (`session.rs`).
//!
//! What is replicated: the sessions (id, which is the log index that created them, name, node,
//! behavior, lock delay, TTL, lease). What is derived: which keys each session holds (from the keys' current entries, so
//! snapshots leave it out). What is node-local: lock delays. After a session ends, its keys may
//! not be acquired for its lock delay; every node records the delay on its own clock when it
//! applies the end, and the node that takes an acquire checks it before proposing (Consul keeps
//! lock delays in memory the same way), so apply never looks at a clock.
//!
//! Invariants: a key is in `held[s]` iff its current entry names session `s`; `by_lease` maps
//! exactly the leases of the sessions that have one.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use crate::LeaseId;

/// A lock session's id: the log index of the entry that created it.
pub type LockSessionId = u64;

/// What happens to a session's keys when it ends: released (`RELEASE`) or deleted (`DELETE`).
pub const RELEASE: i32 = 0;
/// The keys are deleted when the session ends.
pub const DELETE: i32 = 1;

/// A lock session.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct LockSession {
    /// Its id.
    #[prost(uint64, tag = "1")]
    pub id: LockSessionId,
    /// Its name (Consul's `Name`).
    #[prost(string, tag = "2")]
    pub name: String,
    /// The node it belongs to (Consul's `Node`).
    #[prost(string, tag = "3")]
    pub node: String,
    /// [`RELEASE`] or [`DELETE`].
    #[prost(int32, tag = "4")]
    pub behavior: i32,
    /// How long its keys may not be acquired after it ends, in milliseconds.
    #[prost(uint64, tag = "5")]
    pub lock_delay_ms: u64,
    /// Its time to live in milliseconds (0: until destroyed).
    #[prost(uint64, tag = "6")]
    pub ttl_ms: u64,
    /// The lease that keeps it alive (0: none).
    #[prost(int64, tag = "7")]
    pub lease: LeaseId,
}

/// The lock sessions of a store.
#[derive(Clone, Debug, Default)]
pub(crate) struct LockSessions {
    /// By id (replicated).
    sessions: BTreeMap<LockSessionId, LockSession>,
    /// Session by lease (replicated, derived from `sessions`).
    by_lease: BTreeMap<LeaseId, LockSessionId>,
    /// The keys each session holds (derived from the keys' current entries).
    held: BTreeMap<LockSessionId, BTreeSet<Bytes>>,
    /// Key → until when (this node's clock, ms) it may not be acquired (node-local).
    delays: BTreeMap<Bytes, u64>,
    /// The log index of the last entry that created or ended a session: what Consul's session
    /// reads answer as their index and block on. Carried in snapshots, so every member answers
    /// the same; an index of the log rather than state, so not hashed.
    changed_index: u64,
}

impl LockSessions {
    /// Number of sessions.
    pub(crate) fn len(&self) -> usize {
        self.sessions.len()
    }

    /// A session by id.
    pub(crate) fn get(&self, id: LockSessionId) -> Option<&LockSession> {
        self.sessions.get(&id)
    }

    /// Every session, by id.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &LockSession> {
        self.sessions.values()
    }

    /// The session a lease keeps alive.
    pub(crate) fn by_lease(&self, lease: LeaseId) -> Option<LockSessionId> {
        self.by_lease.get(&lease).copied()
    }

    /// The keys session `id` holds, in key order.
    pub(crate) fn held(&self, id: LockSessionId) -> Vec<Bytes> {
        self.held
            .get(&id)
            .map(|keys| keys.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The log index of the last creation or end of a session (see `changed_index`).
    pub(crate) fn changed_index(&self) -> u64 {
        self.changed_index
    }

    /// The sessions changed at log index `index`.
    pub(crate) fn changed(&mut self, index: u64) {
        self.changed_index = index;
    }

    /// Adds a session.
    pub(crate) fn insert(&mut self, session: LockSession) {
        if session.lease != 0 {
            self.by_lease.insert(session.lease, session.id);
        }
        self.sessions.insert(session.id, session);
    }

    /// Removes a session (its keys were released or deleted first).
    pub(crate) fn remove(&mut self, id: LockSessionId) -> Option<LockSession> {
        let session = self.sessions.remove(&id)?;
        self.by_lease.remove(&session.lease);
        debug_assert!(
            self.held.get(&id).is_none_or(BTreeSet::is_empty),
            "a session ends holding no key"
        );
        self.held.remove(&id);
        Some(session)
    }

    /// `key`'s current entry moved from session `from` to `to` (0: none).
    pub(crate) fn moved(&mut self, key: &Bytes, from: LockSessionId, to: LockSessionId) {
        if from != 0
            && let Some(keys) = self.held.get_mut(&from)
        {
            keys.remove(key);
            if keys.is_empty() {
                self.held.remove(&from);
            }
        }
        if to != 0 {
            self.held.entry(to).or_default().insert(key.clone());
        }
    }

    /// Records that `key` may not be acquired before `until_ms` (this node's clock).
    pub(crate) fn delay(&mut self, key: Bytes, until_ms: u64) {
        self.delays.insert(key, until_ms);
    }

    /// Until when `key` may not be acquired, if that is after `now_ms`; forgets past delays.
    pub(crate) fn delayed(&mut self, key: &[u8], now_ms: u64) -> Option<u64> {
        self.delays.retain(|_, until| *until > now_ms);
        self.delays.get(key).copied()
    }
}
