//! Election Safety (Raft paper §5.2, Figure 3): at most one leader can be elected in a given term.
//!
//! Owns the record of every (term, leader) pair ever observed. Nodes are observed after every
//! input they handle, and a node only becomes leader while handling an input, so no leadership,
//! however brief, goes unseen. Membership changes do not weaken the property: joint consensus
//! (thesis §4.3) keeps any two electing quorums overlapping, so one leader per term still holds
//! across configurations, and the record covers every node that ever led, members or not.

use std::collections::BTreeMap;

use raftkv_raft::{NodeId, Raft, Role, Storage, Term};

use super::{CheckResult, Property, Violation};

/// Every leader seen, by term.
#[derive(Debug, Default)]
pub struct ElectionSafety {
    /// The first leader observed in each term.
    leaders: BTreeMap<Term, NodeId>,
}

impl ElectionSafety {
    /// Records `raft` if it leads; a second leader in the same term is a violation.
    pub fn observe<S: Storage>(&mut self, raft: &Raft<S>) -> CheckResult {
        if raft.role() != Role::Leader {
            return Ok(());
        }
        let term = raft.term();
        let leader = *self.leaders.entry(term).or_insert(raft.id());
        if leader != raft.id() {
            return Err(Violation::new(
                Property::ElectionSafety,
                format!(
                    "two leaders in term {term}: node {leader} and node {}",
                    raft.id()
                ),
            ));
        }
        Ok(())
    }
}
