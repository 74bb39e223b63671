//! The node's view of the whole log: the stable part in `Storage` and the unstable tail in memory,
//! with the commit and apply cursors (§5.3, Figure 2 "Volatile state on all servers").
//!
//! Invariants: `applied <= applying <= committed <= last_index()`; `committed` never decreases and
//! an entry at or below it is never overwritten; entries are handed out for applying only once they
//! are durable in this node's own log (etcd #14370).

use crate::error::StorageError;
use crate::log_unstable::Unstable;
use crate::storage::Storage;
use crate::types::{Entry, Index, Snapshot, Term};

/// Stable log + unstable tail + cursors.
pub struct RaftLog<S: Storage> {
    /// The durable log, as the application persisted it.
    storage: S,
    /// Entries appended but not yet reported durable.
    unstable: Unstable,
    /// Highest index known committed (Figure 2's commitIndex).
    committed: Index,
    /// Highest index handed to the application for applying.
    applying: Index,
    /// Highest index the application reported applied (Figure 2's lastApplied).
    applied: Index,
}

impl<S: Storage> RaftLog<S> {
    /// Opens the log over `storage`, resuming from the stored commit index and `applied`.
    pub fn new(storage: S, applied: Index) -> Self {
        let compacted = storage.first_index() - 1;
        // The stored commit index can be ahead of the stored entries after a crash between the
        // two writes, and the application may have applied (committed, durable) entries before
        // the hard state naming them committed was saved: trust neither beyond the log.
        let applied = applied.max(compacted).min(storage.last_index());
        let committed = storage
            .initial_state()
            .hard_state
            .commit
            .min(storage.last_index())
            .max(applied);
        let unstable = Unstable::new(storage.last_index() + 1);
        RaftLog {
            storage,
            unstable,
            committed,
            applying: applied,
            applied,
        }
    }

    /// The storage under the log.
    pub fn storage(&self) -> &S {
        &self.storage
    }

    /// Mutable access to the storage, for the application to persist a `Ready` into.
    pub fn storage_mut(&mut self) -> &mut S {
        &mut self.storage
    }

    /// Highest committed index.
    pub fn committed(&self) -> Index {
        self.committed
    }

    /// Highest index the application reported applied.
    pub fn applied(&self) -> Index {
        self.applied
    }

    /// First index in the log (after the latest snapshot, pending or stored).
    pub fn first_index(&self) -> Index {
        self.unstable
            .snapshot_first_index()
            .unwrap_or_else(|| self.storage.first_index())
    }

    /// Last index in the log (unstable tail first).
    pub fn last_index(&self) -> Index {
        self.unstable
            .last_index()
            .unwrap_or_else(|| self.storage.last_index())
    }

    /// Term of the entry at `index` (0 for index 0).
    pub fn term(&self, index: Index) -> Result<Term, StorageError> {
        if index == 0 {
            return Ok(0);
        }
        if let Some(term) = self.unstable.term(index) {
            return Ok(term);
        }
        let first = self.first_index();
        if index < first.saturating_sub(1) {
            return Err(StorageError::Compacted {
                index,
                first_index: first,
            });
        }
        if index > self.last_index() {
            return Err(StorageError::Unavailable {
                index,
                last_index: self.last_index(),
            });
        }
        self.storage.term(index)
    }

    /// Term of the last entry.
    pub fn last_term(&self) -> Term {
        let last = self.last_index();
        self.term(last)
            .unwrap_or_else(|e| panic!("cannot read the term of the last entry {last}: {e}"))
    }

    /// Whether the log holds an entry at `index` with `term`.
    pub fn match_term(&self, index: Index, term: Term) -> bool {
        self.term(index).is_ok_and(|t| t == term)
    }

    /// Election restriction (§5.4.1): a log ending in `(last_index, last_term)` is at least as
    /// up-to-date as ours — compare the last terms first, then the last indexes.
    pub fn is_up_to_date(&self, last_index: Index, last_term: Term) -> bool {
        let our_term = self.last_term();
        last_term > our_term || (last_term == our_term && last_index >= self.last_index())
    }

    /// The last index durable and valid in this node's own log: stable entries not about to be
    /// overwritten by the unstable tail.
    pub fn persisted_index(&self) -> Index {
        if self.unstable.snapshot().is_some() {
            // Storage still holds the log the snapshot replaces: only its compacted prefix counts.
            return self.storage.first_index() - 1;
        }
        match self.unstable.first_index() {
            Some(first) => self.storage.last_index().min(first - 1),
            None => self.storage.last_index(),
        }
    }

    /// Replaces the log with a snapshot from the leader (pending persistence); the snapshot's
    /// index becomes committed. The caller checked that it is ahead of the commit index.
    pub fn restore(&mut self, snapshot: Snapshot) {
        let index = snapshot.metadata.index;
        assert!(
            index > self.committed,
            "restoring snapshot {index} at or below the commit index {}",
            self.committed
        );
        self.unstable.restore(snapshot);
        self.committed = index;
        self.applying = index;
    }

    /// A snapshot waiting to be persisted, handed out once.
    pub fn take_snapshot_to_persist(&mut self) -> Option<Snapshot> {
        self.unstable.take_snapshot_to_persist()
    }

    /// Whether a snapshot waits to be handed out.
    pub fn has_snapshot_to_persist(&self) -> bool {
        self.unstable.has_snapshot_to_persist()
    }

    /// The snapshot at `index` is durable and restored into the state machine.
    pub fn stable_snapshot_to(&mut self, index: Index) {
        self.unstable.stable_snapshot_to(index);
        self.applied = self.applied.max(index.min(self.applying));
    }

    /// Entries in `[lo, hi)` up to `max_bytes` (at least one when `lo < hi`).
    pub fn slice(&self, lo: Index, hi: Index, max_bytes: u64) -> Result<Vec<Entry>, StorageError> {
        if lo >= hi {
            return Ok(Vec::new());
        }
        let first = self.first_index();
        if lo < first {
            return Err(StorageError::Compacted {
                index: lo,
                first_index: first,
            });
        }
        let last = self.last_index();
        assert!(
            hi <= last + 1,
            "slice [{lo}, {hi}) past the last index {last}"
        );
        let unstable_first = self.unstable.first_index().unwrap_or(last + 1);
        let mut out = Vec::new();
        if lo < unstable_first {
            let stable_hi = hi.min(unstable_first);
            out = self.storage.entries(lo, stable_hi, max_bytes)?;
            if lo + (out.len() as u64) < stable_hi {
                return Ok(out); // the byte limit stopped the read
            }
        }
        if hi > unstable_first {
            let mut used: u64 = out.iter().map(Entry::size_bytes).sum();
            for entry in self.unstable.slice(lo.max(unstable_first), hi) {
                used += entry.size_bytes();
                if !out.is_empty() && used > max_bytes {
                    break;
                }
                out.push(entry.clone());
            }
        }
        Ok(out)
    }

    /// The first index of the first entry in `entries` that is not in our log with the same term
    /// (a conflict, or the first new entry); `None` when all are already there.
    fn find_conflict(&self, entries: &[Entry]) -> Option<Index> {
        entries
            .iter()
            .find(|e| !self.match_term(e.index, e.term))
            .map(|e| e.index)
    }

    /// AppendEntries receiver rules 2–5 (Figure 2): if our log matches at `(prev_index, prev_term)`,
    /// drop a conflicting suffix, append what is new, advance the commit index to
    /// min(leader_commit, index of the last new entry) and return that last index.
    /// `None` when the log does not match at `prev_index`.
    pub fn maybe_append(
        &mut self,
        prev_index: Index,
        prev_term: Term,
        leader_commit: Index,
        entries: &[Entry],
    ) -> Option<Index> {
        if !self.match_term(prev_index, prev_term) {
            return None;
        }
        let last_new = prev_index + entries.len() as u64;
        if let Some(conflict) = self.find_conflict(entries) {
            assert!(
                conflict > self.committed,
                "entry {conflict} conflicts with the committed prefix (commit index {})",
                self.committed
            );
            let start = (conflict - prev_index - 1) as usize;
            self.append(&entries[start..]);
        }
        self.commit_to(leader_commit.min(last_new));
        Some(last_new)
    }

    /// Appends entries at the end of the log (or over a conflicting, uncommitted suffix).
    pub fn append(&mut self, entries: &[Entry]) -> Index {
        if let Some(first) = entries.first() {
            assert!(
                first.index > self.committed,
                "appending at {} would overwrite committed entries (commit index {})",
                first.index,
                self.committed
            );
            assert!(
                first.index <= self.last_index() + 1,
                "appending at {} leaves a gap after {}",
                first.index,
                self.last_index()
            );
            self.unstable.truncate_and_append(entries);
        }
        self.last_index()
    }

    /// Advances the commit index; never moves it back.
    pub fn commit_to(&mut self, index: Index) {
        if index > self.committed {
            assert!(
                index <= self.last_index(),
                "commit index {index} is past the last index {}",
                self.last_index()
            );
            self.committed = index;
        }
    }

    /// Unstable entries not yet handed out for persistence.
    pub fn entries_to_persist(&self) -> &[Entry] {
        self.unstable.entries_to_persist()
    }

    /// Marks the unstable entries as handed out for persistence.
    pub fn accept_persisting(&mut self) {
        self.unstable.accept_in_progress();
    }

    /// The application made entries up to `(index, term)` durable.
    pub fn stable_to(&mut self, index: Index, term: Term) {
        self.unstable.stable_to(index, term);
    }

    /// Highest index that may be handed out for applying: committed and durable here.
    fn max_appliable(&self) -> Index {
        self.committed.min(self.persisted_index())
    }

    /// Whether committed, durable entries wait to be handed out for applying.
    pub fn has_entries_to_apply(&self) -> bool {
        self.max_appliable() > self.applying
    }

    /// Committed, durable entries not yet handed out, up to `max_bytes`; marks them as applying.
    pub fn take_entries_to_apply(&mut self, max_bytes: u64) -> Vec<Entry> {
        let hi = self.max_appliable() + 1;
        if self.applying + 1 >= hi {
            return Vec::new();
        }
        let entries = self
            .slice(self.applying + 1, hi, max_bytes)
            .unwrap_or_else(|e| panic!("cannot read committed entries to apply: {e}"));
        if let Some(last) = entries.last() {
            self.applying = last.index;
        }
        entries
    }

    /// The application applied everything up to `index`.
    pub fn applied_to(&mut self, index: Index) {
        assert!(
            index <= self.applying,
            "applied {index} but only entries up to {} were handed out",
            self.applying
        );
        self.applied = self.applied.max(index);
    }

    /// First index of the run of entries with `term` that ends at `index` (terms never decrease
    /// along a log, so this is a binary search). Used for the follower's conflict hint.
    pub fn first_index_of_term(&self, term: Term, index: Index) -> Index {
        let (mut lo, mut hi) = (self.first_index(), index);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.term(mid) {
                Ok(t) if t < term => lo = mid + 1,
                _ => hi = mid,
            }
        }
        lo
    }

    /// The last index at or before `index` whose entry has `term`, if our log holds one: where a
    /// leader resumes after a follower reported a conflict in `term` (§5.3 optimization).
    pub fn last_index_of_term(&self, term: Term, index: Index) -> Option<Index> {
        let index = index.min(self.last_index());
        let (mut lo, mut hi) = (self.first_index(), index + 1);
        // Find the first index in [lo, hi) whose term is greater than `term`.
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.term(mid) {
                Ok(t) if t <= term => lo = mid + 1,
                _ => hi = mid,
            }
        }
        let candidate = lo.checked_sub(1)?;
        (candidate >= self.first_index() && self.match_term(candidate, term)).then_some(candidate)
    }
}
