//! The unstable tail of the log: entries the core has appended that are not yet known durable.
//!
//! Invariants: `entries` are contiguous from `offset`, and follow `snapshot` when there is one
//! (`offset == snapshot index + 1`); `in_progress` is the last index handed out
//! for persistence, with `offset - 1 <= in_progress <= last index`. Entries leave the tail only once
//! the application reports them durable (`stable_to`) with the term they were handed out with, so a
//! late report about an entry that was since overwritten is ignored.

use crate::types::{Entry, Index, Snapshot, Term};

/// Entries (and possibly a snapshot from the leader) not yet durable.
#[derive(Debug)]
pub struct Unstable {
    /// A snapshot received from the leader that replaces the log, until it is durable.
    snapshot: Option<Snapshot>,
    /// The snapshot was handed out for persistence.
    snapshot_in_progress: bool,
    /// Contiguous entries starting at `offset`.
    entries: Vec<Entry>,
    /// Index of `entries[0]` (or where the next entry will go when empty).
    offset: Index,
    /// Entries up to here were handed out in a `Ready` and are being persisted.
    in_progress: Index,
}

impl Unstable {
    /// An empty tail whose first entry will have index `offset`.
    pub fn new(offset: Index) -> Self {
        Unstable {
            snapshot: None,
            snapshot_in_progress: false,
            entries: Vec::new(),
            offset,
            in_progress: offset - 1,
        }
    }

    /// Index of the first unstable entry, if any.
    pub fn first_index(&self) -> Option<Index> {
        (!self.entries.is_empty()).then_some(self.offset)
    }

    /// First index of the log when a pending snapshot replaced it.
    pub fn snapshot_first_index(&self) -> Option<Index> {
        self.snapshot.as_ref().map(|s| s.metadata.index + 1)
    }

    /// Index of the last unstable entry, or of the pending snapshot.
    pub fn last_index(&self) -> Option<Index> {
        if self.entries.is_empty() {
            self.snapshot.as_ref().map(|s| s.metadata.index)
        } else {
            Some(self.offset + self.entries.len() as u64 - 1)
        }
    }

    /// Term of the entry at `index` if the tail (or its pending snapshot) holds it.
    pub fn term(&self, index: Index) -> Option<Term> {
        if let Some(snapshot) = &self.snapshot {
            if snapshot.metadata.index == index {
                return Some(snapshot.metadata.term);
            }
        }
        self.get(index).map(|e| e.term)
    }

    /// The pending snapshot, if any.
    pub fn snapshot(&self) -> Option<&Snapshot> {
        self.snapshot.as_ref()
    }

    /// The pending snapshot if it was not yet handed out for persistence; marks it handed out.
    pub fn take_snapshot_to_persist(&mut self) -> Option<Snapshot> {
        if self.snapshot_in_progress {
            return None;
        }
        self.snapshot_in_progress = true;
        self.snapshot.clone()
    }

    /// Whether a snapshot waits to be handed out for persistence.
    pub fn has_snapshot_to_persist(&self) -> bool {
        self.snapshot.is_some() && !self.snapshot_in_progress
    }

    /// Replaces the whole log with `snapshot`, pending persistence.
    pub fn restore(&mut self, snapshot: Snapshot) {
        self.offset = snapshot.metadata.index + 1;
        self.in_progress = snapshot.metadata.index;
        self.entries.clear();
        self.snapshot = Some(snapshot);
        self.snapshot_in_progress = false;
    }

    /// The pending snapshot at `index` is durable.
    pub fn stable_snapshot_to(&mut self, index: Index) {
        if self
            .snapshot
            .as_ref()
            .is_some_and(|s| s.metadata.index == index)
        {
            self.snapshot = None;
            self.snapshot_in_progress = false;
        }
    }

    fn get(&self, index: Index) -> Option<&Entry> {
        let pos = index.checked_sub(self.offset)?;
        self.entries.get(pos as usize)
    }

    /// Entries in `[lo, hi)`; the caller makes sure the tail holds them all.
    pub fn slice(&self, lo: Index, hi: Index) -> &[Entry] {
        assert!(
            lo >= self.offset && hi <= self.offset + self.entries.len() as u64 && lo <= hi,
            "unstable slice [{lo}, {hi}) out of [{}, {})",
            self.offset,
            self.offset + self.entries.len() as u64
        );
        &self.entries[(lo - self.offset) as usize..(hi - self.offset) as usize]
    }

    /// Entries not yet handed out for persistence.
    pub fn entries_to_persist(&self) -> &[Entry] {
        let start = (self.in_progress + 1 - self.offset) as usize;
        &self.entries[start..]
    }

    /// Marks every entry as handed out for persistence.
    pub fn accept_in_progress(&mut self) {
        if let Some(last) = self.last_index() {
            self.in_progress = last;
        }
    }

    /// The application made everything up to `(index, term)` durable: drop it from the tail.
    /// Ignored when the tail no longer holds that entry with that term (it was overwritten).
    pub fn stable_to(&mut self, index: Index, term: Term) {
        if self.term(index) != Some(term) {
            return;
        }
        let count = (index + 1 - self.offset) as usize;
        self.entries.drain(..count);
        self.offset = index + 1;
        self.in_progress = self.in_progress.max(index);
    }

    /// Appends `entries`, first dropping any held entries at or after the first new index.
    /// The caller guarantees the new entries follow on from the log (tail or storage).
    pub fn truncate_and_append(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else {
            return;
        };
        let after = first.index;
        let end = self.offset + self.entries.len() as u64;
        if after == end {
            self.entries.extend_from_slice(entries);
        } else if after <= self.offset {
            // Replaces the whole tail (and possibly stable entries, which storage truncates on write).
            assert!(
                self.snapshot.is_none(),
                "entries at {after} would overwrite a pending snapshot ending at {}",
                self.offset - 1
            );
            self.offset = after;
            self.entries.clear();
            self.entries.extend_from_slice(entries);
        } else {
            self.entries.truncate((after - self.offset) as usize);
            self.entries.extend_from_slice(entries);
        }
        self.in_progress = self.in_progress.min(after - 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn entries(range: std::ops::RangeInclusive<u64>, term: Term) -> Vec<Entry> {
        range.map(|i| Entry::new(i, term, Bytes::new())).collect()
    }

    #[test]
    fn stable_to_drops_persisted_prefix() {
        let mut u = Unstable::new(1);
        u.truncate_and_append(&entries(1..=3, 1));
        u.accept_in_progress();
        u.stable_to(2, 1);
        assert_eq!(u.first_index(), Some(3));
        assert!(u.entries_to_persist().is_empty());
    }

    #[test]
    fn stable_to_with_wrong_term_is_ignored() {
        let mut u = Unstable::new(1);
        u.truncate_and_append(&entries(1..=3, 1));
        u.stable_to(2, 2);
        assert_eq!(u.first_index(), Some(1));
    }

    #[test]
    fn truncation_rewinds_in_progress() {
        let mut u = Unstable::new(1);
        u.truncate_and_append(&entries(1..=5, 1));
        u.accept_in_progress();
        u.truncate_and_append(&entries(3..=4, 2));
        assert_eq!(u.last_index(), Some(4));
        let again: Vec<u64> = u.entries_to_persist().iter().map(|e| e.index).collect();
        assert_eq!(
            again,
            vec![3, 4],
            "replaced entries must be persisted again"
        );
    }

    #[test]
    fn truncation_before_offset_replaces_the_tail() {
        let mut u = Unstable::new(5);
        u.truncate_and_append(&entries(5..=6, 1));
        u.truncate_and_append(&entries(3..=3, 2));
        assert_eq!((u.first_index(), u.last_index()), (Some(3), Some(3)));
    }
}
