//! Leases: replicated lease state (id, TTL, attached keys) and node-local deadlines.
//!
//! ## What is replicated and what is not
//!
//! Grant and revoke go through the log; a lease's id, TTL and keys are replicated state (in the
//! snapshot and the state hash). The keys are not stored separately in snapshots: they are the
//! keys whose current entry names the lease.
//!
//! Deadlines are node-local bookkeeping in milliseconds of the caller's clock, never in the state
//! hash or snapshot (etcd's lessor works the same way). A node sets a lease's deadline to
//! `clock + ttl` when it applies the grant (the clock being the last `set_clock`), and the leader
//! moves it to `now + ttl` on keep-alive (which does not go through the log). When a node becomes
//! leader it calls `promote(now, extend)`: every deadline becomes `now + ttl + extend`, so no lease
//! expires before its holder had a full TTL plus an election timeout to reach the new leader. The
//! remaining TTL is not checkpointed through the log (etcd's optional lease checkpoints), so after
//! a leader change a lease may live up to one TTL longer than on the old leader: never shorter.
//! A snapshot restore sets no deadline (they are unknown); `promote` sets them all.
//!
//! Expiry is decided by the leader alone: [`Leases::expired`] lists leases past their deadline, the
//! leader proposes a revoke for each, and every node deletes the same keys at the same revision
//! when it applies the revoke. A listed lease is listed again only after `lease_revoke_retry_ms`
//! (its revoke may be lost in a leader change). A listed lease is being revoked: `keep_alive`
//! refuses it (as if it were gone, which it is about to be) until `promote`, because renewing it
//! would promise its holder a TTL that the revoke in flight cuts short (etcd's lessor likewise
//! answers the renewal of an expired lease only once its revoke is done). If the revoke is lost
//! in a leader change, the next leader's `promote` makes the lease renewable again.
//!
//! Invariants: `by_deadline` holds exactly `(deadline_ms, id)` of every lease with a deadline; every
//! key in a lease's key set is live and its current entry names the lease, and vice versa.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use crate::LeaseId;

/// One lease.
#[derive(Debug, Clone)]
pub(crate) struct Lease {
    /// Time to live, in milliseconds (replicated).
    pub(crate) ttl_ms: u64,
    /// Keys attached to the lease (replicated; derived from the keys' current entries).
    pub(crate) keys: BTreeSet<Bytes>,
    /// When the lease expires in this node's clock (node-local; `None` until known).
    deadline_ms: Option<u64>,
    /// [`Leases::expired`] listed it: its revoke is in flight, it cannot be renewed (node-local).
    revoking: bool,
}

/// What [`crate::KvStore::lease_time_to_live`] reports about a lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseStatus {
    /// The lease id.
    pub id: LeaseId,
    /// Its TTL, in milliseconds.
    pub ttl_ms: u64,
    /// Milliseconds left before this node considers it expired (`None`: no deadline is known on
    /// this node, e.g. a follower after a snapshot restore).
    pub remaining_ms: Option<u64>,
    /// Keys attached to it, in key order.
    pub keys: Vec<Bytes>,
}

/// All leases (module docs).
#[derive(Debug, Clone, Default)]
pub(crate) struct Leases {
    leases: BTreeMap<LeaseId, Lease>,
    by_deadline: BTreeSet<(u64, LeaseId)>,
}

impl Leases {
    /// Number of leases.
    pub(crate) fn len(&self) -> usize {
        self.leases.len()
    }

    /// Whether the lease exists.
    pub(crate) fn contains(&self, id: LeaseId) -> bool {
        self.leases.contains_key(&id)
    }

    /// A lease.
    pub(crate) fn get(&self, id: LeaseId) -> Option<&Lease> {
        self.leases.get(&id)
    }

    /// All leases in id order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&LeaseId, &Lease)> {
        self.leases.iter()
    }

    /// The id a grant of id 0 at log index `index` gets: the index, or the next free id after it.
    pub(crate) fn free_id(&self, index: u64) -> LeaseId {
        let mut id = i64::try_from(index).unwrap_or(i64::MAX).max(1);
        while self.leases.contains_key(&id) {
            id = id.checked_add(1).unwrap_or(1);
        }
        id
    }

    /// Adds a lease (the id is free) with a deadline of `deadline_ms`, if known.
    pub(crate) fn grant(&mut self, id: LeaseId, ttl_ms: u64, deadline_ms: Option<u64>) {
        let lease = Lease {
            ttl_ms,
            keys: BTreeSet::new(),
            deadline_ms: None,
            revoking: false,
        };
        assert!(
            self.leases.insert(id, lease).is_none(),
            "lease {id} granted twice"
        );
        self.set_deadline(id, deadline_ms);
    }

    /// Removes a lease whose keys are all gone.
    pub(crate) fn remove(&mut self, id: LeaseId) {
        let lease = self
            .leases
            .remove(&id)
            .expect("removing a lease that exists");
        assert!(
            lease.keys.is_empty(),
            "lease {id} removed with keys attached"
        );
        if let Some(deadline) = lease.deadline_ms {
            self.by_deadline.remove(&(deadline, id));
        }
    }

    /// Attaches `key` to lease `id` (which exists).
    pub(crate) fn attach(&mut self, id: LeaseId, key: Bytes) {
        self.leases
            .get_mut(&id)
            .expect("attaching to an existing lease")
            .keys
            .insert(key);
    }

    /// Detaches `key` from lease `id`.
    pub(crate) fn detach(&mut self, id: LeaseId, key: &Bytes) {
        let lease = self
            .leases
            .get_mut(&id)
            .expect("keys are attached to existing leases");
        assert!(lease.keys.remove(key), "key was not attached to lease {id}");
    }

    fn set_deadline(&mut self, id: LeaseId, deadline_ms: Option<u64>) {
        let lease = self.leases.get_mut(&id).expect("lease exists");
        if let Some(old) = lease.deadline_ms {
            self.by_deadline.remove(&(old, id));
        }
        lease.deadline_ms = deadline_ms;
        if let Some(new) = deadline_ms {
            self.by_deadline.insert((new, id));
        }
    }

    /// Renews a lease's deadline to `now_ms + ttl`. Returns the TTL, or `None` if there is no
    /// such lease or it is being revoked.
    pub(crate) fn keep_alive(&mut self, id: LeaseId, now_ms: u64) -> Option<u64> {
        let lease = self.leases.get(&id).filter(|l| !l.revoking)?;
        let ttl_ms = lease.ttl_ms;
        self.set_deadline(id, Some(now_ms.saturating_add(ttl_ms)));
        Some(ttl_ms)
    }

    /// Sets every deadline to `now_ms + ttl + extend_ms`, and makes every lease renewable again
    /// (module docs).
    pub(crate) fn promote(&mut self, now_ms: u64, extend_ms: u64) {
        let ids: Vec<(LeaseId, u64)> = self.leases.iter().map(|(id, l)| (*id, l.ttl_ms)).collect();
        for lease in self.leases.values_mut() {
            lease.revoking = false;
        }
        for (id, ttl_ms) in ids {
            self.set_deadline(
                id,
                Some(now_ms.saturating_add(ttl_ms).saturating_add(extend_ms)),
            );
        }
    }

    /// Up to `max` leases whose deadline is at or before `now_ms`, earliest first; each is listed
    /// again only after `retry_ms`.
    pub(crate) fn expired(&mut self, now_ms: u64, max: usize, retry_ms: u64) -> Vec<LeaseId> {
        let ids: Vec<LeaseId> = self
            .by_deadline
            .iter()
            .take_while(|(deadline, _)| *deadline <= now_ms)
            .take(max)
            .map(|(_, id)| *id)
            .collect();
        for id in &ids {
            self.set_deadline(*id, Some(now_ms.saturating_add(retry_ms.max(1))));
            if let Some(lease) = self.leases.get_mut(id) {
                lease.revoking = true;
            }
        }
        ids
    }

    /// The status of a lease at `now_ms`.
    pub(crate) fn status(&self, id: LeaseId, now_ms: u64) -> Option<LeaseStatus> {
        let lease = self.leases.get(&id)?;
        Some(LeaseStatus {
            id,
            ttl_ms: lease.ttl_ms,
            remaining_ms: lease.deadline_ms.map(|d| d.saturating_sub(now_ms)),
            keys: lease.keys.iter().cloned().collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_order_expiry_and_retry() {
        let mut leases = Leases::default();
        leases.grant(1, 100, Some(100));
        leases.grant(2, 50, Some(50));
        leases.grant(3, 500, None);
        assert_eq!(leases.expired(49, 10, 30), Vec::<LeaseId>::new());
        assert_eq!(leases.expired(100, 10, 30), vec![2, 1]);
        assert_eq!(
            leases.expired(110, 10, 30),
            Vec::<LeaseId>::new(),
            "retried only after 30 ms"
        );
        assert_eq!(leases.expired(130, 1, 30), vec![1], "at most max");
        assert_eq!(leases.keep_alive(2, 200), None, "being revoked");
        leases.promote(1000, 10);
        assert_eq!(
            leases.keep_alive(2, 1000),
            Some(50),
            "renewable under the new leader"
        );
        leases.promote(1000, 10);
        assert_eq!(leases.status(3, 1000).unwrap().remaining_ms, Some(510));
        assert_eq!(leases.expired(1060, 10, 30), vec![2]);
        assert_eq!(leases.free_id(2), 4);
    }
}
