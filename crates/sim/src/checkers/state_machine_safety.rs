//! State Machine Safety (Raft paper §5.4.3, Figure 3): if a server has applied a log entry at a
//! given index to its state machine, no other server will ever apply a different log entry for the
//! same index. Also checks that each node applies in log order, one index after the other, and
//! that state machines agree: the state a node reaches after applying index `i` equals the state
//! the first node reached there (compared by digest: the real store's `state_hash`, over every
//! key's history, leases and sessions), a snapshot a node takes at `i` is that state,
//! and a snapshot a node restores (from the leader, or from its disk on restart) is the state at
//! its index (§7: a snapshot is exactly the committed prefix it replaces).
//!
//! Owns the reference history: the first entry applied at every index cluster-wide, the state
//! digest after it, and the membership it left (the latest committed configuration); and each
//! node's last applied index.

use std::collections::BTreeMap;

use raftkv_raft::{ConfState, Entry, EntryKind, Index, NodeId, Term};

use super::{CheckResult, Property, Violation};

/// One index of the reference history.
#[derive(Debug)]
struct Applied {
    /// The entry first applied there.
    entry: Entry,
    /// Digest of the state machine after applying it.
    digest: u64,
}

/// Applied entries and states, cluster-wide and per node.
#[derive(Debug)]
pub struct StateMachineSafety {
    /// The reference at index `i` is `applied[i - 1]`.
    applied: Vec<Applied>,
    /// Digest of the empty state machine (the state "at index 0").
    empty_digest: u64,
    /// Each node's last applied index since it (re)started or restored a snapshot.
    last_applied: BTreeMap<NodeId, Index>,
    /// The membership of the cluster's first configuration.
    bootstrap: ConfState,
}

impl StateMachineSafety {
    /// A history starting from an empty state machine of digest `empty_digest`, in a cluster
    /// bootstrapped with `bootstrap`.
    pub fn new(empty_digest: u64, bootstrap: ConfState) -> Self {
        StateMachineSafety {
            applied: Vec::new(),
            empty_digest,
            last_applied: BTreeMap::new(),
            bootstrap,
        }
    }

    /// The reference state digest at `index`, if some node applied that far.
    fn digest_at(&self, index: Index) -> Option<u64> {
        if index == 0 {
            return Some(self.empty_digest);
        }
        self.applied.get(index as usize - 1).map(|a| a.digest)
    }

    /// The term of the entry applied at `index`, if some node applied that far.
    pub fn term_at(&self, index: Index) -> Option<Term> {
        let position = index.checked_sub(1)? as usize;
        self.applied.get(position).map(|a| a.entry.term)
    }

    /// Highest index applied anywhere.
    pub fn applied_index(&self) -> Index {
        self.applied.len() as Index
    }

    /// The latest configuration applied anywhere (so committed), or the bootstrap one.
    pub fn committed_conf(&self) -> &ConfState {
        self.applied
            .iter()
            .rev()
            .find_map(|a| match &a.entry.kind {
                EntryKind::ConfChange(conf) => Some(conf.as_ref()),
                EntryKind::Normal => None,
            })
            .unwrap_or(&self.bootstrap)
    }

    /// `node` applied `entry`, which left its state machine with digest `digest`.
    pub fn on_apply(&mut self, node: NodeId, entry: &Entry, digest: u64) -> CheckResult {
        let last = self.last_applied.entry(node).or_insert(0);
        if entry.index != *last + 1 {
            return Err(Violation::new(
                Property::StateMachineSafety,
                format!(
                    "node {node} applied index {} right after index {}: not in log order",
                    entry.index, *last
                ),
            ));
        }
        *last = entry.index;
        match self.applied.get(entry.index as usize - 1) {
            Some(first) if first.entry != *entry => Err(Violation::new(
                Property::StateMachineSafety,
                format!(
                    "node {node} applied (index {}, term {}) where (index {}, term {}) was applied \
                     before{}",
                    entry.index,
                    entry.term,
                    first.entry.index,
                    first.entry.term,
                    if first.entry.term == entry.term {
                        " with other data"
                    } else {
                        ""
                    }
                ),
            )),
            Some(first) if first.digest != digest => Err(Violation::new(
                Property::StateMachineSafety,
                format!(
                    "node {node} reached a different state after applying index {} than the \
                     first node that applied it",
                    entry.index
                ),
            )),
            Some(_) => Ok(()),
            None => {
                self.applied.push(Applied {
                    entry: entry.clone(),
                    digest,
                });
                Ok(())
            }
        }
    }

    /// `node` replaced its state machine with a snapshot at `(index, term)` of digest `digest`
    /// (from the leader, or from its own disk on restart; index 0: an empty state machine).
    pub fn on_restore(
        &mut self,
        node: NodeId,
        index: Index,
        term: Term,
        digest: u64,
    ) -> CheckResult {
        self.check_snapshot(node, "restored", index, term, digest)?;
        self.last_applied.insert(node, index);
        Ok(())
    }

    /// `node` took a snapshot of its state machine at `(index, term)`, of digest `digest`.
    pub fn on_snapshot(
        &mut self,
        node: NodeId,
        index: Index,
        term: Term,
        digest: u64,
    ) -> CheckResult {
        self.check_snapshot(node, "took", index, term, digest)
    }

    fn check_snapshot(
        &self,
        node: NodeId,
        what: &str,
        index: Index,
        term: Term,
        digest: u64,
    ) -> CheckResult {
        let fail = |reason: String| {
            Err(Violation::new(
                Property::StateMachineSafety,
                format!("node {node} {what} a snapshot at (index {index}, term {term}) {reason}"),
            ))
        };
        let Some(reference) = self.digest_at(index) else {
            return fail(format!(
                "beyond every index applied anywhere ({})",
                self.applied_index()
            ));
        };
        if index > 0 && self.term_at(index) != Some(term) {
            return fail(format!(
                "where the entry applied was of term {:?}",
                self.term_at(index)
            ));
        }
        if reference != digest {
            return fail("whose state differs from the state applied at that index".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    #[test]
    fn different_entries_at_one_index_are_caught() {
        let mut sms = StateMachineSafety::new(0, ConfState::from_voters([1, 2, 3]));
        let e = |i, t| Entry::new(i, t, Bytes::new());
        assert!(sms.on_apply(1, &e(1, 1), 11).is_ok());
        assert!(sms.on_apply(2, &e(1, 1), 11).is_ok());
        assert!(sms.on_apply(3, &e(1, 2), 11).is_err());
        assert!(sms.on_apply(1, &e(3, 1), 33).is_err(), "skipped index 2");
        assert!(sms.on_apply(4, &e(1, 1), 99).is_err(), "diverging state");
    }

    #[test]
    fn snapshots_must_be_the_state_at_their_index() {
        let mut sms = StateMachineSafety::new(0, ConfState::from_voters([1]));
        let e = |i, t| Entry::new(i, t, Bytes::new());
        for i in 1..=3 {
            assert!(sms.on_apply(1, &e(i, 1), 10 + i).is_ok());
        }
        assert!(sms.on_snapshot(1, 2, 1, 12).is_ok());
        assert!(sms.on_snapshot(1, 2, 1, 13).is_err(), "wrong state");
        assert!(sms.on_restore(2, 3, 2, 13).is_err(), "wrong term");
        assert!(
            sms.on_restore(2, 4, 1, 14).is_err(),
            "beyond what was applied"
        );
        assert!(sms.on_restore(2, 3, 1, 13).is_ok());
        assert!(
            sms.on_apply(2, &e(4, 1), 14).is_ok(),
            "applies on from the snapshot"
        );
        assert!(sms.on_restore(3, 0, 0, 0).is_ok(), "a restart from nothing");
    }
}
