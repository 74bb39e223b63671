//! Applying lock-session commands (see `locks`): creating a session (with a lease for its TTL),
//! acquiring and releasing keys (alone, or inside a transaction through `lock_in`, where a
//! refusal fails the whole transaction), and ending sessions, by destruction or with their lease,
//! which releases or deletes every key they hold in the same revision as whatever else the
//! command deletes.

use std::collections::BTreeSet;

use bytes::Bytes;

use crate::command::{
    LeaseGrantRequest, LockRequest, LockResponse, LockSessionCreateRequest,
    LockSessionCreateResponse, LockSessionDestroyResponse,
};
use crate::locks::{DELETE, LockSession, LockSessionId, LockSessions};
use crate::mvcc::{KeyEntry, KeyHistory, KeyMeta, WriteBatch};
use crate::{KeyValue, KvError, KvStore, Result};

/// A key a session held when it ended, and the session's lock delay in milliseconds.
pub(crate) type Ended = (Bytes, u64);

/// Ends sessions `ids` within `batch`: each key one holds is released (its session cleared) or
/// deleted, as the session's behavior says; keys in `deleting` (deleted by the same command
/// anyway) are left to it. Returns the keys the sessions held.
pub(crate) fn end_lock_sessions_in(
    lock_sessions: &LockSessions,
    batch: &mut WriteBatch<'_>,
    ids: &[LockSessionId],
    deleting: &BTreeSet<Bytes>,
) -> Vec<Ended> {
    let mut ended = Vec::new();
    for &id in ids {
        let Some(session) = lock_sessions.get(id) else {
            continue;
        };
        for key in lock_sessions.held(id) {
            ended.push((key.clone(), session.lock_delay_ms));
            if deleting.contains(&key) {
                continue;
            }
            if session.behavior == DELETE {
                batch.delete(&key).expect("a held key is live");
                continue;
            }
            let current = batch
                .mvcc()
                .history(&key)
                .and_then(KeyHistory::live)
                .cloned()
                .expect("a held key is live");
            let meta = KeyMeta {
                session: 0,
                ..current.meta()
            };
            batch.put(&key, current.value, current.lease, meta);
        }
    }
    ended
}

impl KvStore {
    /// After a commit that ended sessions `ids`: forgets them and starts their keys' lock
    /// delays on this node's clock.
    pub(crate) fn finish_lock_sessions(&mut self, ids: &[LockSessionId], ended: Vec<Ended>) {
        for &id in ids {
            if self.lock_sessions.remove(id).is_some() {
                self.lock_sessions.changed(self.applied_index);
            }
        }
        for (key, delay_ms) in ended {
            if delay_ms > 0 {
                let until = self.clock_ms.saturating_add(delay_ms);
                self.lock_sessions.delay(key, until);
            }
        }
    }

    pub(crate) fn execute_lock_session_create(
        &mut self,
        index: u64,
        create: LockSessionCreateRequest,
    ) -> Result<LockSessionCreateResponse> {
        let max = self.limits.lock_sessions_max;
        if self.lock_sessions.len() as u64 >= max {
            return Err(KvError::LockSessionLimit { max });
        }
        let lease = match create.ttl_ms {
            0 => 0,
            ttl_ms => {
                self.execute_lease_grant(index, LeaseGrantRequest { id: 0, ttl_ms })?
                    .id
            }
        };
        self.lock_sessions.insert(LockSession {
            id: index,
            name: create.name,
            node: create.node,
            behavior: create.behavior,
            lock_delay_ms: create.lock_delay_ms,
            ttl_ms: create.ttl_ms,
            lease,
        });
        self.lock_sessions.changed(index);
        Ok(LockSessionCreateResponse { id: index, lease })
    }

    /// Ends session `id` (nothing if it does not exist) and its lease, with any keys attached to
    /// the lease.
    pub(crate) fn execute_lock_session_destroy(
        &mut self,
        id: LockSessionId,
    ) -> LockSessionDestroyResponse {
        let Some(lease) = self.lock_sessions.get(id).map(|s| s.lease) else {
            return LockSessionDestroyResponse { ended: 0 };
        };
        let ended = self.end_leases(&[lease], Some(id));
        LockSessionDestroyResponse {
            ended: ended.released,
        }
    }

    /// Acquires `lock.key` for its session (unless another session holds it), or releases it
    /// (if the session holds it), writing the value and flags with it.
    pub(crate) fn execute_lock(&mut self, lock: &LockRequest) -> Result<LockResponse> {
        self.check_lock(lock)?;
        let mut batch = self.mvcc.begin();
        let kv = lock_in(&mut batch, lock);
        let committed = batch.commit();
        self.after_commit(committed);
        Ok(LockResponse {
            succeeded: kv.is_some(),
            kv,
        })
    }

    /// Checks a lock request against the store before it applies: its session exists.
    pub(crate) fn check_lock(&self, lock: &LockRequest) -> Result<()> {
        match self.lock_sessions.get(lock.session) {
            Some(_) => Ok(()),
            None => Err(KvError::LockSessionNotFound { id: lock.session }),
        }
    }
}

/// Applies `lock` (its session checked by `check_lock`) in `batch`: acquires the key unless
/// another session holds it, or releases it if this session holds it. Returns the key as
/// written (without its value), or `None` (nothing written) if the lock was refused.
pub(crate) fn lock_in(batch: &mut WriteBatch<'_>, lock: &LockRequest) -> Option<KeyValue> {
    let current = batch
        .mvcc()
        .history(&lock.key)
        .and_then(KeyHistory::live)
        .cloned();
    let held = current.as_ref().map(KeyEntry::meta).unwrap_or_default();
    let meta = if lock.release {
        if held.session != lock.session {
            return None;
        }
        KeyMeta {
            flags: lock.flags,
            session: 0,
            ..held
        }
    } else {
        if held.session != 0 && held.session != lock.session {
            return None;
        }
        let lock_index = match held.session == lock.session {
            true => held.lock_index,
            false => held.lock_index.saturating_add(1),
        };
        KeyMeta {
            flags: lock.flags,
            lock_index,
            session: lock.session,
        }
    };
    let lease = current.map_or(0, |c| c.lease);
    batch.put(&lock.key, lock.value.clone(), lease, meta);
    let written = batch.mvcc().history(&lock.key).and_then(KeyHistory::live);
    Some(written.expect("just written").to_kv(&lock.key, true))
}
