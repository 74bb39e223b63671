//! Durability of acknowledged writes: once a client is told a write succeeded, the entry carrying
//! it stays on the disks of a majority of voters, whatever crashes and restarts follow (it was
//! committed, and a committed entry is durable on a majority and never removed, §5.4), and at the
//! end every member's log holds it.
//!
//! With membership changes the majority is one of the voters (the incoming half) of the latest
//! committed configuration: when a configuration entry commits, a majority of each of its halves
//! holds it and therefore every entry before it; a write committed after it was committed under it
//! or under a joint configuration whose incoming half it is. Disks never lose what they synced, so
//! such a majority keeps holding the write. A disk holds a write in its log, or in its snapshot
//! when the snapshot covers the write's index (State Machine Safety checks that a snapshot is the
//! committed state at its index).
//!
//! Owns the list of acknowledged entries (index, term). Disks are the nodes' durable images,
//! `MemStorage`s holding exactly what was synced.

use std::collections::BTreeMap;

use raftkv_raft::{ConfState, Entry, Index, MemStorage, NodeId, Storage, Term};

use super::{CheckResult, Property, Violation};

/// Acknowledged writes.
#[derive(Debug, Default)]
pub struct Durability {
    /// Index -> (term, description) of every entry whose write a client saw acknowledged.
    acknowledged: BTreeMap<Index, (Term, String)>,
}

/// Whether a durable image holds `(index, term)`, in its log or covered by its snapshot.
fn holds(disk: &MemStorage, index: Index, term: Term) -> bool {
    disk.term(index).ok() == Some(term) || disk.first_index() > index
}

impl Durability {
    /// No acknowledged writes yet.
    pub fn new() -> Self {
        Durability::default()
    }

    /// A client saw the write at `(index, term)` succeed.
    pub fn on_acknowledged(&mut self, index: Index, term: Term, what: String) {
        self.acknowledged.insert(index, (term, what));
    }

    /// Every acknowledged write is on a majority of the voters of `conf` (the latest committed
    /// configuration), judged by their `disks`.
    pub fn check(&self, disks: &[(NodeId, &MemStorage)], conf: &ConfState) -> CheckResult {
        let voters: Vec<(NodeId, &MemStorage)> = disks
            .iter()
            .filter(|(id, _)| conf.voters.contains(id))
            .copied()
            .collect();
        let majority = conf.voters.len() / 2 + 1;
        for (&index, (term, what)) in &self.acknowledged {
            let holders: Vec<NodeId> = voters
                .iter()
                .filter(|(_, disk)| holds(disk, index, *term))
                .map(|(id, _)| *id)
                .collect();
            if holders.len() < majority {
                return Err(Violation::new(
                    Property::Durability,
                    format!(
                        "acknowledged write {what} at (index {index}, term {term}) is durable only \
                         on nodes {holders:?}, fewer than a majority of {majority} of the voters \
                         {:?}",
                        conf.voters
                    ),
                ));
            }
        }
        Ok(())
    }

    /// At the end of a run: the log of every member (`logs`, each with the index of its first
    /// entry) holds every acknowledged write, or its snapshot covers it.
    pub fn check_final(&self, logs: &[(NodeId, Index, &[Entry])]) -> CheckResult {
        for (&index, (term, what)) in &self.acknowledged {
            for &(node, first, log) in logs {
                if index < first {
                    continue;
                }
                let held = log.get((index - first) as usize).map(|e| e.term);
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

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use raftkv_raft::{HardState, Snapshot, SnapshotMetadata};

    use super::*;

    fn disk(terms: &[Term], snapshot_index: Index) -> MemStorage {
        let entries: Vec<Entry> = terms
            .iter()
            .enumerate()
            .map(|(i, &t)| Entry::new(i as u64 + 1, t, Bytes::new()))
            .collect();
        let mut disk = MemStorage::with_log(entries, HardState::default());
        if snapshot_index > 0 {
            let term = disk.term(snapshot_index).unwrap_or(0);
            disk.compact(Snapshot {
                metadata: SnapshotMetadata {
                    index: snapshot_index,
                    term,
                    conf_state: ConfState::from_voters([1, 2, 3]),
                },
                data: Bytes::new(),
            });
        }
        disk
    }

    #[test]
    fn a_write_must_stay_on_a_majority_of_the_committed_voters() {
        let mut durability = Durability::new();
        durability.on_acknowledged(2, 1, "put".into());
        let voters = ConfState::from_voters([1, 2, 3]);
        let (full, compacted, short) = (disk(&[1, 1, 1], 0), disk(&[1, 1, 1], 2), disk(&[1], 0));
        // Held in a log, or covered by a snapshot: both count.
        assert!(
            durability
                .check(&[(1, &full), (2, &compacted), (3, &short)], &voters)
                .is_ok()
        );
        assert!(
            durability
                .check(&[(1, &full), (2, &short), (3, &short)], &voters)
                .is_err()
        );
        // Holders outside the committed configuration do not count.
        let moved = ConfState::from_voters([3, 4, 5]);
        let disks = [(1, &full), (2, &full), (3, &short), (4, &short), (5, &full)];
        assert!(durability.check(&disks, &moved).is_err());
    }
}
