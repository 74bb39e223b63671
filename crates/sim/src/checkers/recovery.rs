//! Crash recovery of the write-ahead log (its contract, ARCHITECTURE.md "crates/wal"): what `save`
//! reported durable survives a crash at any byte, and nothing that was never written is returned.
//! Checked on every restart of a node running the WAL, against what the simulator knows: the
//! durable image (exactly what was synced), and every entry and snapshot handed to the WAL since
//! the last sync.
//!
//! - Nothing synced is lost: the recovered snapshot is at least the synced one; the term is at
//!   least the synced term, with the same vote in that term; every synced entry is still held (or
//!   covered by the snapshot), unless it was uncommitted and an entry written after the sync
//!   replaced it or one before it (a conflicting suffix being overwritten, cut mid-way).
//! - Nothing is invented: every recovered entry and snapshot was synced or written since.
//! - After a crash that kept no unsynced byte (and no partial sync since the last full one), the
//!   recovered hard state, snapshot and log are exactly the synced ones: what is lost is exactly
//!   what was not synced.
//!
//! Owns nothing across runs: the node's disk keeps the record and calls `check` on restart.

use std::collections::BTreeSet;

use raftkv_raft::{Entry, Index, MemStorage, Snapshot, Storage, Term};

/// Entries and snapshots handed to the WAL since the last full sync.
#[derive(Clone, Debug, Default)]
pub struct WrittenSince {
    /// (index, term) of every entry written.
    entries: BTreeSet<(Index, Term)>,
    /// (index, term) of every snapshot installed or compacted to.
    snapshots: BTreeSet<(Index, Term)>,
}

impl WrittenSince {
    /// `entries` were written.
    pub fn entries(&mut self, entries: &[Entry]) {
        self.entries
            .extend(entries.iter().map(|e| (e.index, e.term)));
    }

    /// `snapshot` was installed or compacted to.
    pub fn snapshot(&mut self, snapshot: &Snapshot) {
        self.snapshots
            .insert((snapshot.metadata.index, snapshot.metadata.term));
    }
}

/// The (index, term) of a storage's snapshot.
fn snapshot_point(image: &MemStorage) -> (Index, Term) {
    let index = image.first_index() - 1;
    (index, image.term(index).unwrap_or(0))
}

/// Checks a recovered log against the synced one (`durable`) and what was written since; with
/// `exact`, the two must be equal. The error says what broke the contract.
pub fn check(
    durable: &MemStorage,
    written: &WrittenSince,
    recovered: &MemStorage,
    exact: bool,
) -> Result<(), String> {
    let (synced_hs, recovered_hs) = (
        durable.initial_state().hard_state,
        recovered.initial_state().hard_state,
    );
    let (synced_snap, recovered_snap) = (snapshot_point(durable), snapshot_point(recovered));
    if recovered_snap.0 < synced_snap.0 {
        return Err(format!(
            "recovery lost the synced snapshot at {synced_snap:?} (it has {recovered_snap:?})"
        ));
    }
    if recovered_snap != synced_snap && !written.snapshots.contains(&recovered_snap) {
        return Err(format!(
            "recovery gave back a snapshot at {recovered_snap:?} that was never written"
        ));
    }
    if recovered_hs.term < synced_hs.term
        || (recovered_hs.term == synced_hs.term
            && synced_hs.vote.is_some()
            && recovered_hs.vote != synced_hs.vote)
    {
        return Err(format!(
            "recovery lost the synced hard state {synced_hs:?} (it has {recovered_hs:?})"
        ));
    }
    for entry in recovered.all_entries() {
        let key = (entry.index, entry.term);
        if durable.term(entry.index).ok() != Some(entry.term) && !written.entries.contains(&key) {
            return Err(format!(
                "recovery gave back entry {key:?}, which was never written"
            ));
        }
    }
    for entry in durable.all_entries() {
        if entry.index <= recovered_snap.0 || recovered.term(entry.index).ok() == Some(entry.term) {
            continue;
        }
        if entry.index <= synced_hs.commit || !overwritten_since(durable, written, recovered, entry)
        {
            return Err(format!(
                "recovery lost the synced entry ({}, {}) (commit index {}; it holds {:?})",
                entry.index,
                entry.term,
                synced_hs.commit,
                recovered.term(entry.index).ok()
            ));
        }
    }
    if exact {
        let same_log = durable.all_entries() == recovered.all_entries();
        if recovered_hs != synced_hs || recovered_snap != synced_snap || !same_log {
            return Err(format!(
                "after a crash that kept no unsynced byte, recovery gave back hard state \
                 {recovered_hs:?}, snapshot {recovered_snap:?} and {} entries, where \
                 {synced_hs:?}, {synced_snap:?} and {} entries were synced",
                recovered.all_entries().len(),
                durable.all_entries().len()
            ));
        }
    }
    Ok(())
}

/// Whether the recovered log replaced `entry` legitimately: at or before its index it holds an
/// entry that differs from the synced one there and was written after the sync (the start of a
/// conflicting suffix the leader sent, possibly cut short by the crash).
fn overwritten_since(
    durable: &MemStorage,
    written: &WrittenSince,
    recovered: &MemStorage,
    entry: &Entry,
) -> bool {
    let from = recovered.first_index().max(durable.first_index());
    let to = entry.index.min(recovered.last_index());
    (from..=to).any(|index| {
        let term = recovered.term(index).ok();
        term != durable.term(index).ok()
            && term.is_some_and(|t| written.entries.contains(&(index, t)))
    })
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use raftkv_raft::HardState;

    use super::*;

    fn storage(terms: &[Term], commit: Index) -> MemStorage {
        let entries: Vec<Entry> = terms
            .iter()
            .enumerate()
            .map(|(i, &t)| Entry::new(i as u64 + 1, t, Bytes::new()))
            .collect();
        let hs = HardState {
            term: terms.last().copied().unwrap_or(0),
            vote: None,
            commit,
        };
        MemStorage::with_log(entries, hs)
    }

    #[test]
    fn losing_what_was_synced_is_caught() {
        let durable = storage(&[1, 1, 1], 2);
        let nothing = WrittenSince::default();
        assert!(check(&durable, &nothing, &durable.clone(), true).is_ok());
        assert!(check(&durable, &nothing, &storage(&[1, 1], 2), false).is_err());
        assert!(
            check(&durable, &nothing, &storage(&[1, 1, 1, 1], 2), false).is_err(),
            "an entry never written"
        );
    }

    #[test]
    fn an_uncommitted_suffix_may_be_replaced_by_a_later_write() {
        let durable = storage(&[1, 1, 1], 1);
        let mut written = WrittenSince::default();
        written.entries(&[
            Entry::new(2, 2, Bytes::new()),
            Entry::new(3, 2, Bytes::new()),
        ]);
        // Torn after the first new entry: index 3 of term 1 is gone, replaced by the write at 2.
        assert!(check(&durable, &written, &storage(&[1, 2], 1), false).is_ok());
        // But not when nothing replaced it.
        assert!(check(&durable, &written, &storage(&[1, 1], 1), false).is_err());
        // Nor when the crash kept no unsynced byte.
        assert!(check(&durable, &written, &storage(&[1, 2], 1), true).is_err());
    }
}
