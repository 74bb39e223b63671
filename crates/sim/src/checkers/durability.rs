//! Durability of acknowledged writes: once a client is told a write succeeded, the entry carrying
//! it stays on the disks of a majority of nodes, whatever crashes and restarts follow (it was
//! committed, and a committed entry is durable on a majority and never removed, §5.4), and at the
//! end every node's log holds it.
//!
//! Owns the list of acknowledged entries (index, term). Disks are the nodes' `MemStorage`s, which
//! hold exactly what was persisted.

use std::collections::BTreeMap;

use raftkv_raft::{Entry, Index, MemStorage, NodeId, Storage, Term};

use super::{CheckResult, Property, Violation};

/// Acknowledged writes and the cluster size they must survive in.
#[derive(Debug)]
pub struct Durability {
    /// Index -> (term, description) of every entry whose write a client saw acknowledged.
    acknowledged: BTreeMap<Index, (Term, String)>,
    /// Number of voters; a majority is more than half.
    voters: usize,
}

impl Durability {
    /// Tracks acknowledged writes in a cluster of `voters`.
    pub fn new(voters: usize) -> Self {
        Durability {
            acknowledged: BTreeMap::new(),
            voters,
        }
    }

    /// A client saw the write at `(index, term)` succeed.
    pub fn on_acknowledged(&mut self, index: Index, term: Term, what: String) {
        self.acknowledged.insert(index, (term, what));
    }

    /// Every acknowledged write is on a majority of `disks`.
    pub fn check(&self, disks: &[(NodeId, &MemStorage)]) -> CheckResult {
        let majority = self.voters / 2 + 1;
        for (&index, (term, what)) in &self.acknowledged {
            let holders: Vec<NodeId> = disks
                .iter()
                .filter(|(_, disk)| disk.term(index).ok() == Some(*term))
                .map(|(id, _)| *id)
                .collect();
            if holders.len() < majority {
                return Err(Violation::new(
                    Property::Durability,
                    format!(
                        "acknowledged write {what} at (index {index}, term {term}) is durable only \
                         on nodes {holders:?}, fewer than a majority of {majority}"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// At the end of a run: every node's log holds every acknowledged write.
    pub fn check_final(&self, logs: &[(NodeId, &[Entry])]) -> CheckResult {
        for (&index, (term, what)) in &self.acknowledged {
            for (node, log) in logs {
                let held = log.get(index as usize - 1).map(|e| e.term);
                if held != Some(*term) {
                    return Err(Violation::new(
                        Property::Durability,
                        format!(
                            "acknowledged write {what} at (index {index}, term {term}) is missing \
                             from node {node}'s log at the end (it holds {held:?})"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}
