//! Lease time on the leader (etcd's lessor rules): a new leader extends every lease before it
//! serves anything, the leader revokes expired leases through the log (up to
//! `LEASE_EXPIRE_IDS_MAX` per entry, `LEASE_REVOKES_PER_TICK_MAX` per tick, so tens of thousands
//! expiring together are gone within a few ticks), and keep-alives renew a lease on the leader
//! only, outside the log.
//!
//! Invariants: no lease expires early because leadership moved (the new leader gives every lease
//! a fresh deadline plus one election timeout); a keep-alive is acknowledged only by a leader
//! that has applied an entry of its own term (by then every revoke an earlier leader proposed
//! that will ever commit is applied, so none takes effect after the renewal).

use raftkv_kv::LEASE_EXPIRE_IDS_MAX;
use raftkv_raft::{Role, Storage};

use crate::error::RequestError;
use crate::output::{Answer, Event, Own, RequestId};
use crate::replica::{LEASE_REVOKES_PER_TICK_MAX, Replica};
use crate::state::Command;

impl<S: Storage> Replica<S> {
    /// Renews a lease (leader only; not through the log, as in etcd).
    pub fn keep_alive(&mut self, now_ms: u64, id: RequestId, lease: i64) {
        let raft = self.raft();
        let log = raft.raft_log();
        let settled = log.term(log.applied()) == Ok(raft.term()) || self.early_keep_alive();
        let answer = if raft.role() == Role::Leader && !settled {
            Err(RequestError::Unavailable(
                "the new leader is not ready to renew leases yet".into(),
            ))
        } else if raft.role() == Role::Leader {
            let renewed = self.state().kv.lease_keep_alive(lease, now_ms);
            Ok(Answer::KeepAlive(renewed))
        } else {
            Err(RequestError::NotLeader {
                leader: raft.leader(),
            })
        };
        self.reply(id, answer);
    }

    /// A new leader extends every lease by an election timeout before it serves anything.
    pub(crate) fn promote_leases(&mut self, now_ms: u64) {
        if self.no_promote() {
            return;
        }
        let extend_ms = self.election_ticks * self.settings.tick_ms;
        self.state().kv.lease_promote(now_ms, extend_ms);
        self.out.events.push(Event::LeasesPromoted { extend_ms });
    }

    /// Leader: proposes revoking leases whose deadline passed, many per entry; every node then
    /// deletes their keys at the same revision.
    pub(crate) fn revoke_expired_leases(&mut self, now_ms: u64) {
        let expired = self
            .state()
            .kv
            .expired_leases(now_ms, LEASE_REVOKES_PER_TICK_MAX);
        for batch in expired.chunks(LEASE_EXPIRE_IDS_MAX) {
            let term = self.raft().term();
            let request = raftkv_kv::Request::lease_expire(batch.to_vec()).encode_to_vec();
            let index = self.propose_own(
                Own::LeaseExpiry {
                    leases: batch.len(),
                },
                Command::kv(request.into()),
            );
            for &lease in batch {
                self.out.events.push(Event::LeaseRevokeProposed {
                    lease,
                    entry: index.map(|index| (index, term)),
                });
            }
        }
    }

    #[cfg(feature = "mutations")]
    fn no_promote(&self) -> bool {
        self.settings.mutation == Some(crate::replica::Mutation::NoPromote)
    }

    #[cfg(not(feature = "mutations"))]
    fn no_promote(&self) -> bool {
        false
    }

    #[cfg(feature = "mutations")]
    fn early_keep_alive(&self) -> bool {
        self.settings.mutation == Some(crate::replica::Mutation::EarlyKeepAlive)
    }

    #[cfg(not(feature = "mutations"))]
    fn early_keep_alive(&self) -> bool {
        false
    }
}
