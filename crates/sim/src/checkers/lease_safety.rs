//! Lease safety and liveness: a lease is never revoked on expiry before its TTL has passed since
//! it was last renewed, and once faults stop, a lease no one keeps alive is revoked in time.
//!
//! Times are in the store's milliseconds of virtual time (`kv::ms`); "before" and "after" between
//! events are decided by history stamps (`History::stamp`), one global strictly increasing
//! sequence, so events of the same instant are ordered too.
//!
//! Definitions. A lease is *renewed*
//! - when its grant is first applied on any node (at time `g`): every node that applies the grant
//!   sets the deadline `clock + ttl` from its own clock then, which is `g` or later;
//! - by every keep-alive the current leader acknowledged (at time `k`: the simulator hands a
//!   keep-alive to the leader's store at once, so the invoke time is when the leader set the
//!   deadline `k + ttl`).
//!
//! A lease is *revoked* by the first application of a revoke entry that found it (the revoke
//! a leader proposed at time `p` when the lease had expired on its store).
//!
//! - **Safety (no early expiry)**: for every renewal at time `r` stamped before the proposal,
//!   `p >= r + ttl`; and no keep-alive was acknowledged after the proposal and before the revoke
//!   was first applied (that client was told its lease lives `ttl` more, and it was revoked).
//!   The leader that proposes a revoke had a deadline at most `p` on its store, and every
//!   renewal before `p` set a deadline at least `r + ttl` on every store that could have
//!   proposed it, given the rules the driver keeps: a new leader extends every deadline to
//!   `now + ttl + election timeout` before it does anything (`lease_promote`), and serves
//!   keep-alives only once it has applied an entry of its own term (so every revoke an earlier
//!   leader proposed that will ever commit is applied by then).
//! - **Liveness (expiry happens)**: in the final quiet period nobody keeps a lease alive; the
//!   current leader proposes (or tries to: the core refuses proposals during a leadership
//!   transfer, and the store retries after `lease_revoke_retry_ms`) the revoke of every lease by
//!   `max(quiet start, last renewal, latest
//!   application of its grant on any node, the leader's election) + ttl + extension +
//!   REVOKE_SLACK_MS`, where `extension` is the election timeout a new leader adds (the leader's
//!   own deadline is at most `ttl + extension` after the latest of these), and the cluster has
//!   not converged until every lease is revoked (so the revokes commit and apply within the
//!   quiet period's bound).
//!
//! Owns, per lease: its TTL, its renewals, its revocation; and every revoke proposal by its entry.

use std::collections::BTreeMap;

use raftkv_raft::{Index, Term};

use super::{CheckResult, Property, Violation};
use crate::kv::LeaseId;

/// What the leader may take beyond a lease's deadline to propose its revoke once faults stop: its
/// next tick after the deadline (in milliseconds; ticks are 100 ms), with a margin.
pub const REVOKE_SLACK_MS: u64 = 200;

/// A renewal of a lease: when, in virtual milliseconds and in history order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Renewal {
    /// Virtual milliseconds.
    at_ms: u64,
    /// History stamp.
    stamp: u64,
    /// A grant (else a keep-alive).
    grant: bool,
}

/// One lease, as granted.
#[derive(Clone, Debug)]
struct LeaseRecord {
    /// Its TTL.
    ttl_ms: u64,
    /// Its renewals, in order.
    renewals: Vec<Renewal>,
    /// When it was revoked (first application of the revoke), if it was.
    revoked_ms: Option<u64>,
    /// When a leader last proposed its revoke, or tried to.
    proposed_ms: Option<u64>,
    /// When a node last applied its grant (a node's deadline starts there).
    applied_ms: u64,
}

/// A revoke a leader proposed.
#[derive(Clone, Copy, Debug)]
pub struct Proposal {
    /// The lease.
    pub lease: LeaseId,
    /// When (virtual milliseconds).
    pub at_ms: u64,
    /// When, in history order.
    pub stamp: u64,
}

/// The lease checker (module docs).
#[derive(Debug, Default)]
pub struct LeaseSafety {
    leases: BTreeMap<LeaseId, LeaseRecord>,
    /// Every revoke proposed, by its entry.
    proposals: BTreeMap<(Index, Term, LeaseId), Proposal>,
    /// Keep-alives acknowledged.
    pub keep_alives: u64,
}

impl LeaseSafety {
    /// No leases yet.
    pub fn new() -> Self {
        LeaseSafety::default()
    }

    /// The grant of `lease` was first applied.
    pub fn on_granted(&mut self, lease: LeaseId, ttl_ms: u64, at_ms: u64, stamp: u64) {
        let renewal = Renewal {
            at_ms,
            stamp,
            grant: true,
        };
        self.leases.insert(
            lease,
            LeaseRecord {
                ttl_ms,
                renewals: vec![renewal],
                revoked_ms: None,
                proposed_ms: None,
                applied_ms: at_ms,
            },
        );
    }

    /// A node applied the grant of `lease` (the first application anywhere is `on_granted`).
    pub fn on_grant_applied(&mut self, lease: LeaseId, at_ms: u64) {
        if let Some(record) = self.leases.get_mut(&lease) {
            record.applied_ms = record.applied_ms.max(at_ms);
        }
    }

    /// The current leader acknowledged a keep-alive of `lease`.
    pub fn on_keep_alive(&mut self, lease: LeaseId, at_ms: u64, stamp: u64) {
        self.keep_alives += 1;
        if let Some(record) = self.leases.get_mut(&lease) {
            record.renewals.push(Renewal {
                at_ms,
                stamp,
                grant: false,
            });
        }
    }

    /// A leader proposed the revoke of `lease` as `entry` (index, term), or tried to (`None`:
    /// the core refused the proposal).
    pub fn on_proposed(&mut self, entry: Option<(Index, Term)>, proposal: Proposal) {
        if let Some(record) = self.leases.get_mut(&proposal.lease) {
            record.proposed_ms = Some(proposal.at_ms);
        }
        if let Some((index, term)) = entry {
            self.proposals
                .insert((index, term, proposal.lease), proposal);
        }
    }

    /// The revoke entry `(index, term)` was first applied and revoked `lease`. Returns its
    /// proposal.
    pub fn on_revoked(
        &mut self,
        index: Index,
        term: Term,
        lease: LeaseId,
        at_ms: u64,
        stamp: u64,
    ) -> Result<Proposal, Violation> {
        let fail = |detail: String| Err(Violation::new(Property::LeaseSafety, detail));
        let Some(proposal) = self.proposals.get(&(index, term, lease)).copied() else {
            let proposed: Vec<LeaseId> = self
                .proposals
                .range((index, term, LeaseId::MIN)..=(index, term, LeaseId::MAX))
                .map(|(&(_, _, lease), _)| lease)
                .collect();
            return fail(if proposed.is_empty() {
                format!(
                    "lease {lease} was revoked by entry ({index}, {term}), which no leader proposed"
                )
            } else {
                format!(
                    "entry ({index}, {term}) revoked lease {lease}; it was proposed for leases {proposed:?}"
                )
            });
        };
        let Some(record) = self.leases.get_mut(&lease) else {
            return fail(format!("lease {lease} was revoked but never granted"));
        };
        if let Some(earlier) = record.revoked_ms {
            return fail(format!(
                "lease {lease} was revoked twice ({earlier} ms, {at_ms} ms)"
            ));
        }
        record.revoked_ms = Some(at_ms);
        let ttl = record.ttl_ms;
        for renewal in &record.renewals {
            let what = if renewal.grant {
                "granted"
            } else {
                "kept alive"
            };
            // A grant precedes every revoke of its lease (the leader knew the lease), even one
            // proposed within the same step as the grant's first application.
            let before = renewal.grant || renewal.stamp < proposal.stamp;
            if before && proposal.at_ms < renewal.at_ms + ttl {
                return fail(format!(
                    "lease {lease} (ttl {ttl} ms) was {what} at {} ms and its revoke proposed at \
                     {} ms, {} ms later (entry ({index}, {term}), first applied at {at_ms} ms)",
                    renewal.at_ms,
                    proposal.at_ms,
                    proposal.at_ms - renewal.at_ms
                ));
            }
            if !before && renewal.stamp < stamp {
                return fail(format!(
                    "lease {lease} (ttl {ttl} ms) was {what} at {} ms while its revoke, proposed \
                     at {} ms as entry ({index}, {term}), was in flight; it was first applied at \
                     {at_ms} ms",
                    renewal.at_ms, proposal.at_ms
                ));
            }
        }
        Ok(proposal)
    }

    /// Leases granted and not revoked.
    pub fn live(&self) -> usize {
        self.leases
            .values()
            .filter(|l| l.revoked_ms.is_none())
            .count()
    }

    /// Leases granted, and leases revoked.
    pub fn counts(&self) -> (usize, usize) {
        let revoked = self
            .leases
            .values()
            .filter(|l| l.revoked_ms.is_some())
            .count();
        (self.leases.len(), revoked)
    }

    /// Liveness in the quiet period: at `now_ms`, every lease past its bound (module docs) is
    /// revoked or its revoke was proposed since the bound's start, given when the quiet period
    /// began and when the current leader was elected.
    pub fn check_expiry(
        &self,
        now_ms: u64,
        quiet_since_ms: u64,
        leader_since_ms: u64,
        extension_ms: u64,
    ) -> CheckResult {
        for (lease, record) in &self.leases {
            if record.revoked_ms.is_some() {
                continue;
            }
            let renewed = record.renewals.iter().map(|r| r.at_ms).max().unwrap_or(0);
            let from = quiet_since_ms
                .max(renewed)
                .max(record.applied_ms)
                .max(leader_since_ms);
            if record.proposed_ms.is_some_and(|at| at >= from) {
                continue;
            }
            let bound = from + record.ttl_ms + extension_ms + REVOKE_SLACK_MS;
            if now_ms > bound {
                return Err(Violation::new(
                    Property::Liveness,
                    format!(
                        "lease {lease} (ttl {} ms, last renewed at {renewed} ms): no revoke \
                         proposed by {now_ms} ms, past its bound of {bound} ms (faults stopped \
                         at {quiet_since_ms} ms, the leader was elected at {leader_since_ms} ms)",
                        record.ttl_ms
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proposal(lease: LeaseId, at_ms: u64, stamp: u64) -> Proposal {
        Proposal {
            lease,
            at_ms,
            stamp,
        }
    }

    #[test]
    fn one_entry_may_revoke_the_leases_proposed_with_it_and_no_other() {
        let mut leases = LeaseSafety::new();
        for lease in [1, 2, 3] {
            leases.on_granted(lease, 1000, 100, 1);
        }
        leases.on_proposed(Some((10, 2)), proposal(1, 1200, 2));
        leases.on_proposed(Some((10, 2)), proposal(2, 1200, 3));
        assert!(leases.on_revoked(10, 2, 1, 1300, 4).is_ok());
        assert!(leases.on_revoked(10, 2, 2, 1300, 5).is_ok());
        let violation = leases.on_revoked(10, 2, 3, 1300, 6).unwrap_err();
        assert!(
            violation.detail.contains("proposed for leases [1, 2]"),
            "{violation:?}"
        );
    }

    #[test]
    fn a_revoke_proposed_before_the_ttl_passed_is_caught() {
        let mut leases = LeaseSafety::new();
        leases.on_granted(1, 1000, 100, 1);
        leases.on_keep_alive(1, 600, 2);
        leases.on_proposed(Some((10, 2)), proposal(1, 1500, 3));
        let violation = leases.on_revoked(10, 2, 1, 1600, 4).unwrap_err();
        assert_eq!(violation.property, Property::LeaseSafety);

        let mut leases = LeaseSafety::new();
        leases.on_granted(1, 1000, 100, 1);
        leases.on_keep_alive(1, 600, 2);
        leases.on_proposed(Some((10, 2)), proposal(1, 1600, 3));
        assert!(leases.on_revoked(10, 2, 1, 1700, 4).is_ok());
        assert_eq!(leases.live(), 0);
    }

    #[test]
    fn a_keep_alive_acknowledged_while_the_revoke_is_in_flight_is_caught() {
        let mut leases = LeaseSafety::new();
        leases.on_granted(1, 1000, 100, 1);
        leases.on_proposed(Some((10, 2)), proposal(1, 1100, 2));
        leases.on_keep_alive(1, 1150, 3);
        assert!(leases.on_revoked(10, 2, 1, 1200, 4).is_err());
        // A keep-alive after the revoke was applied does not count (the lease was gone).
        let mut leases = LeaseSafety::new();
        leases.on_granted(1, 1000, 100, 1);
        leases.on_proposed(Some((10, 2)), proposal(1, 1100, 2));
        assert!(leases.on_revoked(10, 2, 1, 1200, 3).is_ok());
        leases.on_keep_alive(1, 1250, 4);
    }

    #[test]
    fn revokes_nobody_proposed_or_repeated_are_caught() {
        let mut leases = LeaseSafety::new();
        leases.on_granted(1, 1000, 100, 1);
        assert!(leases.on_revoked(10, 2, 1, 5000, 2).is_err());
        leases.on_proposed(Some((11, 2)), proposal(1, 4000, 3));
        leases.on_proposed(Some((12, 2)), proposal(1, 4000, 4));
        assert!(leases.on_revoked(11, 2, 1, 5000, 5).is_ok());
        assert!(leases.on_revoked(12, 2, 1, 5000, 6).is_err());
    }

    #[test]
    fn leases_must_expire_once_faults_stop() {
        let mut leases = LeaseSafety::new();
        leases.on_granted(1, 1000, 100, 1);
        leases.on_keep_alive(1, 3000, 2);
        // Quiet from 4000 ms (after the renewal and the election), ttl 1000 ms, extension
        // 1000 ms: bound 6000 ms + slack.
        assert!(
            leases
                .check_expiry(6000 + REVOKE_SLACK_MS, 4000, 3500, 1000)
                .is_ok()
        );
        let late = leases.check_expiry(6001 + REVOKE_SLACK_MS, 4000, 3500, 1000);
        assert_eq!(late.unwrap_err().property, Property::Liveness);
        // A revoke proposed before the quiet period does not count; one proposed since does, or a
        // proposal the core refused (tried in time; the store retries).
        leases.on_proposed(Some((20, 3)), proposal(1, 3900, 3));
        assert!(
            leases
                .check_expiry(7000 + REVOKE_SLACK_MS, 4000, 3500, 1000)
                .is_err()
        );
        leases.on_proposed(None, proposal(1, 6600, 4));
        assert!(
            leases
                .check_expiry(7000 + REVOKE_SLACK_MS, 4000, 3500, 1000)
                .is_ok()
        );
    }
}
