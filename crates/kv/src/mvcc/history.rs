//! One key's history: its versions in revision order ([`KeyHistory`] of [`KeyEntry`]).
//!
//! Invariants (checked on restore, asserted on write):
//! - entries are in strictly increasing `mod_revision`, the last one is `current`;
//! - a tombstone (`version == 0`: value empty, create revision 0, no lease) never follows a
//!   tombstone, and is never the first entry;
//! - a live entry after a live one has `version + 1` and the same `create_revision`; a live entry
//!   after a tombstone has version 1 and `create_revision == mod_revision`.
//!
//! The latest entry lives inline (`current`) so the common key with no retained history costs no
//! allocation beyond its key and value; older entries (kept until compaction) sit in `older`,
//! boxed so the common case costs one pointer (8 bytes) in the index instead of a `Vec` (24).

use bytes::Bytes;

use crate::command::KeyValue;
use crate::{LeaseId, Revision};

/// One version of a key, or its deletion (a tombstone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyEntry {
    /// The value (empty in a tombstone).
    pub(crate) value: Bytes,
    /// Revision that created this generation of the key (0 in a tombstone).
    pub(crate) create_revision: Revision,
    /// Revision of this change.
    pub(crate) mod_revision: Revision,
    /// Puts since creation, from 1; 0 marks a tombstone.
    pub(crate) version: i64,
    /// Attached lease (0: none, always in a tombstone).
    pub(crate) lease: LeaseId,
    /// Consul's extras (`None` when all are 0, as in every tombstone and every etcd write): one
    /// pointer in the common case.
    pub(crate) meta: Option<Box<KeyMeta>>,
}

/// Consul's per-version extras of a key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct KeyMeta {
    /// `Flags`: an opaque number a client stores with the value.
    pub(crate) flags: u64,
    /// `LockIndex`: how many times the key was acquired by a lock session (this generation).
    pub(crate) lock_index: u64,
    /// `Session`: the lock session holding the key (0: none).
    pub(crate) session: u64,
}

impl KeyMeta {
    /// The extras as a `KeyEntry` stores them.
    pub(crate) fn boxed(self) -> Option<Box<KeyMeta>> {
        (self != KeyMeta::default()).then(|| Box::new(self))
    }
}

impl KeyEntry {
    /// A deletion at `revision`.
    pub(crate) fn tombstone(revision: Revision) -> Self {
        KeyEntry {
            value: Bytes::new(),
            create_revision: 0,
            mod_revision: revision,
            version: 0,
            lease: 0,
            meta: None,
        }
    }

    /// The entry's extras (all 0 when it has none).
    pub(crate) fn meta(&self) -> KeyMeta {
        self.meta.as_deref().copied().unwrap_or_default()
    }

    /// Whether this entry is a deletion.
    pub(crate) fn is_tombstone(&self) -> bool {
        self.version == 0
    }

    /// The client view of this entry for `key` (without the value if `keys_only`).
    pub(crate) fn to_kv(&self, key: &Bytes, keys_only: bool) -> KeyValue {
        KeyValue {
            key: key.clone(),
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
            version: self.version,
            value: if keys_only {
                Bytes::new()
            } else {
                self.value.clone()
            },
            lease: self.lease,
            flags: self.meta().flags,
            lock_index: self.meta().lock_index,
            session: self.meta().session,
        }
    }

    /// Whether `self` may follow `prev` (`None`: first entry) in a history (module invariants).
    pub(crate) fn may_follow(&self, prev: Option<&KeyEntry>) -> bool {
        let shape = if self.is_tombstone() {
            self.value.is_empty()
                && self.create_revision == 0
                && self.lease == 0
                && self.meta.is_none()
        } else {
            self.version > 0
                && self.create_revision > 0
                && self.create_revision <= self.mod_revision
        };
        shape
            && match prev {
                None => !self.is_tombstone(),
                Some(p) if p.mod_revision >= self.mod_revision => false,
                Some(p) if p.is_tombstone() => {
                    !self.is_tombstone()
                        && self.version == 1
                        && self.create_revision == self.mod_revision
                }
                Some(p) => {
                    self.is_tombstone()
                        || (self.version == p.version + 1
                            && self.create_revision == p.create_revision)
                }
            }
    }
}

/// A key's retained history (module invariants).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyHistory {
    current: KeyEntry,
    /// Older entries, oldest first; `None` when there are none (never `Some` of an empty vec).
    #[expect(
        clippy::box_collection,
        reason = "8 bytes in every B-tree slot instead of 24; most keys have no older entries"
    )]
    older: Option<Box<Vec<KeyEntry>>>,
}

impl KeyHistory {
    /// A history of one entry.
    pub(crate) fn new(entry: KeyEntry) -> Self {
        KeyHistory {
            current: entry,
            older: None,
        }
    }

    /// The latest entry (maybe a tombstone).
    pub(crate) fn current(&self) -> &KeyEntry {
        &self.current
    }

    /// The latest entry if the key exists now.
    pub(crate) fn live(&self) -> Option<&KeyEntry> {
        (!self.current.is_tombstone()).then_some(&self.current)
    }

    /// The key as of `revision`: the latest entry at or before it, unless that is a deletion.
    pub(crate) fn at(&self, revision: Revision) -> Option<&KeyEntry> {
        let entry = if self.current.mod_revision <= revision {
            &self.current
        } else {
            let older = self.older();
            let n = older.partition_point(|e| e.mod_revision <= revision);
            older.get(n.checked_sub(1)?)?
        };
        (!entry.is_tombstone()).then_some(entry)
    }

    /// The change made exactly at `revision`, and the entry before it (if retained).
    pub(crate) fn change_at(&self, revision: Revision) -> Option<(&KeyEntry, Option<&KeyEntry>)> {
        if self.current.mod_revision == revision {
            return Some((&self.current, self.older().last()));
        }
        let older = self.older();
        let n = older.partition_point(|e| e.mod_revision < revision);
        let entry = older.get(n).filter(|e| e.mod_revision == revision)?;
        Some((entry, n.checked_sub(1).map(|p| &older[p])))
    }

    /// All entries, oldest first.
    pub(crate) fn entries(&self) -> impl Iterator<Item = &KeyEntry> {
        self.older().iter().chain(std::iter::once(&self.current))
    }

    /// Number of entries.
    pub(crate) fn len(&self) -> usize {
        self.older().len() + 1
    }

    /// Appends a change (it must follow the current entry).
    pub(crate) fn push(&mut self, entry: KeyEntry) {
        assert!(
            entry.may_follow(Some(&self.current)),
            "history order broken: {entry:?} after {:?}",
            self.current
        );
        let prev = std::mem::replace(&mut self.current, entry);
        self.older.get_or_insert_with(Box::default).push(prev);
    }

    /// Undoes the change at `revision` (which must be the current entry). Returns the removed
    /// entry, and whether the history is now empty (the key must be removed).
    pub(crate) fn pop(&mut self, revision: Revision) -> (KeyEntry, bool) {
        assert_eq!(
            self.current.mod_revision, revision,
            "only the latest change can be undone"
        );
        let Some(older) = self.older.as_mut() else {
            return (self.current.clone(), true);
        };
        let prev = older.pop().expect("older is never empty");
        if older.is_empty() {
            self.older = None;
        }
        (std::mem::replace(&mut self.current, prev), false)
    }

    /// Drops what no read at or after `revision` needs: entries before the latest one at or before
    /// `revision`, and that one too if it is a deletion. Returns whether nothing is left.
    pub(crate) fn compact(&mut self, revision: Revision) -> bool {
        let at_or_before = self.older().partition_point(|e| e.mod_revision <= revision)
            + usize::from(self.current.mod_revision <= revision);
        let Some(latest) = at_or_before.checked_sub(1) else {
            return false;
        };
        let latest_is_tombstone = self
            .entries()
            .nth(latest)
            .is_some_and(KeyEntry::is_tombstone);
        let keep_from = latest + usize::from(latest_is_tombstone);
        let older_len = self.older().len();
        if keep_from > older_len {
            return true;
        }
        if keep_from == older_len {
            self.older = None;
        } else if let Some(older) = self.older.as_mut() {
            older.drain(..keep_from);
            if older.capacity() > 4 * older.len() {
                older.shrink_to_fit();
            }
        }
        false
    }

    fn older(&self) -> &[KeyEntry] {
        self.older.as_deref().map_or(&[], Vec::as_slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(rev: Revision, create: Revision, version: i64) -> KeyEntry {
        KeyEntry {
            value: Bytes::from(format!("v{rev}")),
            create_revision: create,
            mod_revision: rev,
            version,
            lease: 0,
            meta: None,
        }
    }

    #[test]
    fn reads_at_revisions_and_compacts() {
        let mut h = KeyHistory::new(live(2, 2, 1));
        h.push(live(4, 2, 2));
        h.push(KeyEntry::tombstone(6));
        h.push(live(8, 8, 1));
        assert_eq!(h.at(1), None);
        assert_eq!(h.at(3).unwrap().mod_revision, 2);
        assert_eq!(h.at(5).unwrap().mod_revision, 4);
        assert_eq!(h.at(7), None);
        assert_eq!(h.at(9).unwrap().version, 1);
        let (entry, prev) = h.change_at(6).unwrap();
        assert!(entry.is_tombstone() && prev.unwrap().mod_revision == 4);
        assert!(h.change_at(5).is_none());
        assert!(!h.compact(5));
        assert_eq!(
            h.entries().map(|e| e.mod_revision).collect::<Vec<_>>(),
            [4, 6, 8]
        );
        assert!(!h.compact(7));
        assert_eq!(h.entries().map(|e| e.mod_revision).collect::<Vec<_>>(), [8]);
        h.push(KeyEntry::tombstone(9));
        assert!(h.compact(9));
    }

    #[test]
    fn may_follow_checks_versions() {
        assert!(!KeyEntry::tombstone(1).may_follow(None));
        assert!(live(3, 1, 2).may_follow(Some(&live(1, 1, 1))));
        assert!(!live(3, 2, 2).may_follow(Some(&live(1, 1, 1))));
        assert!(!live(3, 3, 2).may_follow(Some(&KeyEntry::tombstone(2))));
        assert!(!KeyEntry::tombstone(3).may_follow(Some(&KeyEntry::tombstone(2))));
    }
}
