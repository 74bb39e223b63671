//! The multi-version key index: every key's history, the store revision, the compacted revision,
//! and a revision-ordered changelog.
//!
//! ## Design
//!
//! - `keys: KeyIndex` (a copy-on-write B-tree, `index`) in key order: ranges and prefixes are
//!   ordered scans, a current read of a key is one lookup, a read at a past revision one more
//!   binary search in the key's (short) retained history. A copy of the index costs one small
//!   clone, so a snapshot is written from a consistent copy while the store moves on. Values live
//!   inline in the history, so reads never chase a second index (etcd keeps key → revisions in
//!   memory and revision → value in bbolt; with everything in memory one map is both faster and
//!   smaller).
//! - Generations are implicit: a tombstone ends one, the next put starts one
//!   (`create_revision == mod_revision`, version 1), which is all etcd's explicit generations
//!   record.
//! - `changelog[i]` lists (sorted) the keys changed at revision `compacted + 1 + i`. Revisions
//!   are dense (a revision exists only if something changed, except [`INITIAL_REVISION`], the
//!   empty store's, as in etcd, whose clients expect a first write at revision 2), so this is a
//!   deque indexed by
//!   revision. It makes watch catch-up cost proportional to the changes read, not to the key
//!   space, and compaction visit only the keys changed since the last compaction.
//!
//! ## Cost
//!
//! Per key: the key and value allocations, a shared-buffer header (the changelog and lease sets
//! share the key's bytes), one B-tree slot of 32 + 80 bytes (key handle, `KeyHistory`), plus 72
//! bytes per retained older version. Measured by `benches/kv.rs` at one million 12-byte keys
//! with 100-byte values: about 400 bytes of resident memory per key. A put or read of one key is
//! one B-tree search; a range of n keys one search and n steps; compaction to `r` visits only the
//! keys changed since the previous compaction.
//!
//! ## Invariants
//!
//! - `changelog.len() == revision - compacted`, every element but [`INITIAL_REVISION`]'s
//!   non-empty, every element sorted, and a key is
//!   in `changelog` at revision `r` iff its history has an entry with `mod_revision == r`.
//! - Every history entry has `mod_revision <= revision`; only a history's first entry may have
//!   `mod_revision <= compacted`, and then it is live (reads at `compacted` need it).
//! - `live` is the number of keys whose current entry is not a tombstone.
//! - A key changes at most once per revision (the write batch relies on it to undo).

mod history;
mod index;

use std::collections::{BTreeMap, VecDeque};

use bytes::Bytes;

pub(crate) use history::{KeyEntry, KeyHistory, KeyMeta};
pub(crate) use index::KeyIndex;

use crate::command::{RangeRequest, RangeResponse, SortOrder, SortTarget};
use crate::key_range::KeyRange;
use crate::{INITIAL_REVISION, KvError, LeaseId, Result, Revision};

/// Bytes a key-value adds to a range result besides its key and value (for
/// [`crate::Limits::range_bytes_max`]).
pub(crate) const KV_OVERHEAD_BYTES: u64 = 32;

/// The index (module docs).
#[derive(Debug, Clone)]
pub(crate) struct Mvcc {
    keys: KeyIndex,
    changelog: VecDeque<Box<[Bytes]>>,
    revision: Revision,
    compacted: Revision,
    live: u64,
    /// Bytes of the keys that exist now and of their values (what a storage quota limits).
    live_bytes: u64,
}

/// What a range may still add to its answer, in bytes (one budget is shared by all the ranges
/// of a transaction).
#[derive(Debug)]
pub(crate) struct RangeBudget {
    used: u64,
    max: u64,
}

impl RangeBudget {
    pub(crate) fn new(max: u64) -> Self {
        RangeBudget { used: 0, max }
    }

    fn spend(&mut self, bytes: u64) -> Result<()> {
        self.used += bytes;
        if self.used > self.max {
            return Err(KvError::RangeTooLarge {
                bytes: self.used,
                max: self.max,
            });
        }
        Ok(())
    }
}

impl Default for Mvcc {
    /// An empty index at [`INITIAL_REVISION`], which changed no key.
    fn default() -> Self {
        Mvcc {
            keys: KeyIndex::default(),
            changelog: VecDeque::from([Box::default()]),
            revision: INITIAL_REVISION,
            compacted: 0,
            live: 0,
            live_bytes: 0,
        }
    }
}

impl Mvcc {
    /// The current revision ([`INITIAL_REVISION`] before the first write).
    pub(crate) fn revision(&self) -> Revision {
        self.revision
    }

    /// The compacted revision: reads below it fail.
    pub(crate) fn compacted(&self) -> Revision {
        self.compacted
    }

    /// Keys whose current entry is live.
    pub(crate) fn live_keys(&self) -> u64 {
        self.live
    }

    /// Bytes of the keys that exist now and of their values.
    pub(crate) fn live_bytes(&self) -> u64 {
        self.live_bytes
    }

    /// Keys in the index, including deleted ones whose history is still retained.
    pub(crate) fn indexed_keys(&self) -> usize {
        self.keys.len()
    }

    /// All keys and histories, in key order.
    pub(crate) fn histories(&self) -> impl Iterator<Item = (&Bytes, &KeyHistory)> {
        self.keys.iter()
    }

    /// A copy of the key index (cheap: see `index`).
    pub(crate) fn key_index(&self) -> KeyIndex {
        self.keys.clone()
    }

    /// A key's history.
    pub(crate) fn history(&self, key: &[u8]) -> Option<&KeyHistory> {
        self.keys.get(key)
    }

    /// The revision a read asking for `revision` is served at (0: current), or why it cannot be.
    pub(crate) fn read_revision(&self, revision: Revision) -> Result<Revision> {
        match revision {
            0 => Ok(self.revision),
            r if r > self.revision => Err(KvError::FutureRevision {
                revision: r,
                current_revision: self.revision,
            }),
            r if r < self.compacted => Err(KvError::Compacted {
                revision: r,
                compacted_revision: self.compacted,
            }),
            r => Ok(r),
        }
    }

    /// The keys changed at `revision` (which must be in `(compacted, revision]`), sorted.
    pub(crate) fn changes_at(&self, revision: Revision) -> &[Bytes] {
        assert!(
            revision > self.compacted && revision <= self.revision,
            "revision {revision} not in the changelog"
        );
        &self.changelog[(revision - self.compacted - 1) as usize]
    }

    /// Live keys in `range` as of `revision` (`None`: now, including uncommitted writes of an
    /// open batch), in key order.
    pub(crate) fn scan<'a>(
        &'a self,
        range: &'a KeyRange,
        revision: Option<Revision>,
    ) -> impl Iterator<Item = (&'a Bytes, &'a KeyEntry)> + 'a {
        range.bounds().into_iter().flat_map(move |bounds| {
            self.keys.range(bounds).filter_map(move |(key, history)| {
                let entry = match revision {
                    None => history.live(),
                    Some(r) => history.at(r),
                };
                entry.map(|e| (key, e))
            })
        })
    }

    /// Serves a range read (the request was validated), spending `budget`.
    pub(crate) fn range(
        &self,
        req: &RangeRequest,
        budget: &mut RangeBudget,
    ) -> Result<RangeResponse> {
        let at = match req.revision {
            0 => None,
            r => Some(self.read_revision(r)?),
        };
        let range = KeyRange::new(&req.key, &req.range_end);
        let limit = if req.limit == 0 { u64::MAX } else { req.limit };
        // A sorted answer needs every key first; the limit applies after sorting.
        let order = req.effective_order();
        let mut response = RangeResponse {
            revision: self.revision,
            ..Default::default()
        };
        for (key, entry) in self.scan(&range, at) {
            response.count += 1;
            if req.count_only {
                continue;
            }
            if !req.keeps(entry.mod_revision, entry.create_revision) {
                continue;
            }
            if order.is_none() && response.kvs.len() as u64 >= limit {
                response.more = true;
                continue;
            }
            let kv = entry.to_kv(key, req.keys_only);
            budget.spend(key.len() as u64 + kv.value.len() as u64 + KV_OVERHEAD_BYTES)?;
            response.kvs.push(kv);
        }
        if let Some((target, order)) = order {
            match target {
                SortTarget::Key => response.kvs.sort_by(|a, b| a.key.cmp(&b.key)),
                SortTarget::Version => response.kvs.sort_by_key(|kv| kv.version),
                SortTarget::Create => response.kvs.sort_by_key(|kv| kv.create_revision),
                SortTarget::Mod => response.kvs.sort_by_key(|kv| kv.mod_revision),
                SortTarget::Value => response.kvs.sort_by(|a, b| a.value.cmp(&b.value)),
            }
            if order == SortOrder::Descend {
                response.kvs.reverse();
            }
            if response.kvs.len() as u64 > limit {
                response.kvs.truncate(limit as usize);
                response.more = true;
            }
        }
        Ok(response)
    }

    /// Starts a write batch at the next revision.
    pub(crate) fn begin(&mut self) -> WriteBatch<'_> {
        let revision = self.revision + 1;
        WriteBatch {
            mvcc: self,
            revision,
            changed: Vec::new(),
            lease_moves: Vec::new(),
            session_moves: Vec::new(),
        }
    }

    /// Drops history below `revision` (module docs of `history`).
    pub(crate) fn compact(&mut self, revision: Revision) -> Result<()> {
        if revision > self.revision {
            return Err(KvError::FutureRevision {
                revision,
                current_revision: self.revision,
            });
        }
        if revision <= self.compacted {
            return Err(KvError::Compacted {
                revision,
                compacted_revision: self.compacted,
            });
        }
        while self.compacted < revision {
            let keys = self
                .changelog
                .pop_front()
                .expect("changelog covers (compacted, revision]");
            self.compacted += 1;
            for key in keys.iter() {
                // A key changed at several revisions of the window may be gone already.
                let Some(history) = self.keys.get_mut(key) else {
                    continue;
                };
                if history.compact(revision) {
                    self.keys.remove(key);
                }
            }
        }
        Ok(())
    }

    /// Rebuilds an index from histories read from a snapshot, checking every invariant.
    pub(crate) fn from_histories(
        keys: BTreeMap<Bytes, KeyHistory>,
        revision: Revision,
        compacted: Revision,
    ) -> std::result::Result<Mvcc, String> {
        if compacted < 0 || compacted > revision {
            return Err(format!(
                "compacted revision {compacted} outside 0..={revision}"
            ));
        }
        let revisions = usize::try_from(revision - compacted).map_err(|e| e.to_string())?;
        // Every revision but the initial one changed a key.
        let empty_revisions = usize::from(compacted < INITIAL_REVISION);
        if revisions > keys.values().map(KeyHistory::len).sum::<usize>() + empty_revisions {
            return Err(format!("{revisions} revisions but fewer changes"));
        }
        let mut changelog: Vec<Vec<Bytes>> = vec![Vec::new(); revisions];
        let mut live = 0;
        let mut live_bytes = 0;
        for (key, history) in &keys {
            let mut prev: Option<&KeyEntry> = None;
            for (i, entry) in history.entries().enumerate() {
                if !entry.may_follow(prev)
                    || entry.mod_revision > revision
                    || entry.mod_revision < 1
                {
                    return Err(format!("key {key:?}: bad entry {entry:?} after {prev:?}"));
                }
                if entry.mod_revision <= compacted {
                    if i > 0 {
                        return Err(format!(
                            "key {key:?}: two entries at or below the compacted revision"
                        ));
                    }
                } else {
                    changelog[(entry.mod_revision - compacted - 1) as usize].push(key.clone());
                }
                prev = Some(entry);
            }
            live += u64::from(history.live().is_some());
            live_bytes += history.live().map_or(0, |e| entry_bytes(key, e));
        }
        if let Some(i) = changelog
            .iter()
            .enumerate()
            .position(|(i, keys)| keys.is_empty() && compacted + 1 + i as i64 != INITIAL_REVISION)
        {
            return Err(format!(
                "revision {} changed no key",
                compacted + 1 + i as i64
            ));
        }
        let changelog = changelog.into_iter().map(Vec::into_boxed_slice).collect();
        Ok(Mvcc {
            keys: KeyIndex::from_sorted(keys),
            changelog,
            revision,
            compacted,
            live,
            live_bytes,
        })
    }
}

/// The writes of one command, all at one revision. Reads through [`WriteBatch::mvcc`] see them.
/// [`WriteBatch::commit`] makes them a revision, [`WriteBatch::rollback`] undoes them; dropping a
/// batch with writes in it otherwise is a bug (asserted).
#[must_use = "commit or roll back the batch"]
pub(crate) struct WriteBatch<'a> {
    mvcc: &'a mut Mvcc,
    revision: Revision,
    changed: Vec<Bytes>,
    lease_moves: Vec<LeaseMove>,
    session_moves: Vec<SessionMove>,
}

/// A key whose lock session changed in a batch: `from` no longer holds it, `to` does (0: none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SessionMove {
    pub(crate) key: Bytes,
    pub(crate) from: u64,
    pub(crate) to: u64,
}

/// A key whose lease changed in a batch: detach it from `from`, attach it to `to` (0: none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LeaseMove {
    pub(crate) key: Bytes,
    pub(crate) from: LeaseId,
    pub(crate) to: LeaseId,
}

/// What a committed batch did.
#[derive(Debug)]
pub(crate) struct Committed {
    /// Keys whose lease attachment changed (or that were re-put under a lease).
    pub(crate) lease_moves: Vec<LeaseMove>,
    /// Keys whose lock session changed.
    pub(crate) session_moves: Vec<SessionMove>,
}

impl WriteBatch<'_> {
    /// The index, including this batch's writes.
    pub(crate) fn mvcc(&self) -> &Mvcc {
        self.mvcc
    }

    /// Puts `value` at `key` (not yet changed in this batch). Returns the previous live entry.
    pub(crate) fn put(
        &mut self,
        key: &Bytes,
        value: Bytes,
        lease: LeaseId,
        meta: KeyMeta,
    ) -> Option<KeyEntry> {
        let revision = self.revision;
        let value_len = value.len();
        let new = |prev: Option<&KeyEntry>| KeyEntry {
            value,
            create_revision: prev.map_or(revision, |p| p.create_revision),
            mod_revision: revision,
            version: prev.map_or(1, |p| p.version + 1),
            lease,
            meta: meta.boxed(),
        };
        let prev = match self.mvcc.keys.get_mut(key.as_ref()) {
            Some(history) => {
                let prev = history.live().cloned();
                history.push(new(prev.as_ref()));
                prev
            }
            None => {
                self.mvcc
                    .keys
                    .insert(key.clone(), KeyHistory::new(new(None)));
                None
            }
        };
        self.mvcc.live += u64::from(prev.is_none());
        self.mvcc.live_bytes += (key.len() + value_len) as u64;
        self.mvcc.live_bytes -= prev.as_ref().map_or(0, |p| entry_bytes(key, p));
        self.changed.push(key.clone());
        let from = prev.as_ref().map_or(0, |p| p.lease);
        if from != 0 || lease != 0 {
            self.lease_moves.push(LeaseMove {
                key: key.clone(),
                from,
                to: lease,
            });
        }
        let from = prev.as_ref().map_or(0, |p| p.meta().session);
        if from != meta.session {
            self.session_moves.push(SessionMove {
                key: key.clone(),
                from,
                to: meta.session,
            });
        }
        prev
    }

    /// Deletes `key` if it exists (and was not changed in this batch). Returns the deleted entry.
    pub(crate) fn delete(&mut self, key: &Bytes) -> Option<KeyEntry> {
        let history = self.mvcc.keys.get_mut(key.as_ref())?;
        let prev = history.live()?.clone();
        history.push(KeyEntry::tombstone(self.revision));
        self.mvcc.live -= 1;
        self.mvcc.live_bytes -= entry_bytes(key, &prev);
        self.changed.push(key.clone());
        if prev.lease != 0 {
            self.lease_moves.push(LeaseMove {
                key: key.clone(),
                from: prev.lease,
                to: 0,
            });
        }
        if prev.meta().session != 0 {
            self.session_moves.push(SessionMove {
                key: key.clone(),
                from: prev.meta().session,
                to: 0,
            });
        }
        Some(prev)
    }

    /// Deletes every live key in `range`. Returns the deleted keys and entries, in key order.
    pub(crate) fn delete_range(&mut self, range: &KeyRange) -> Vec<(Bytes, KeyEntry)> {
        let keys: Vec<Bytes> = self
            .mvcc
            .scan(range, None)
            .map(|(k, _)| k.clone())
            .collect();
        keys.into_iter()
            .map(|key| {
                let prev = self.delete(&key).expect("scanned keys are live");
                (key, prev)
            })
            .collect()
    }

    /// Makes the writes (if any) the next revision. Returns what moved between leases, or `None`
    /// if nothing changed.
    pub(crate) fn commit(mut self) -> Option<Committed> {
        if self.changed.is_empty() {
            return None;
        }
        self.changed.sort_unstable();
        debug_assert!(
            self.changed.windows(2).all(|w| w[0] < w[1]),
            "a key changed twice in one revision"
        );
        self.mvcc
            .changelog
            .push_back(std::mem::take(&mut self.changed).into_boxed_slice());
        self.mvcc.revision = self.revision;
        let lease_moves = std::mem::take(&mut self.lease_moves);
        let session_moves = std::mem::take(&mut self.session_moves);
        Some(Committed {
            lease_moves,
            session_moves,
        })
    }

    /// Undoes every write of the batch.
    pub(crate) fn rollback(mut self) {
        for key in std::mem::take(&mut self.changed).iter().rev() {
            let history = self
                .mvcc
                .keys
                .get_mut(key.as_ref())
                .expect("changed keys are indexed");
            let was_live = history.live().is_some();
            let bytes_before = history.live().map_or(0, |e| entry_bytes(key, e));
            let (_, now_empty) = history.pop(self.revision);
            let is_live = !now_empty && history.live().is_some();
            let bytes_after = if now_empty {
                0
            } else {
                history.live().map_or(0, |e| entry_bytes(key, e))
            };
            self.mvcc.live_bytes = self.mvcc.live_bytes - bytes_before + bytes_after;
            if now_empty {
                self.mvcc.keys.remove(key.as_ref());
            }
            match (was_live, is_live) {
                (true, false) => self.mvcc.live -= 1,
                (false, true) => self.mvcc.live += 1,
                _ => {}
            }
        }
    }
}

/// What a live entry counts against a storage quota: its key and value.
fn entry_bytes(key: &[u8], entry: &KeyEntry) -> u64 {
    (key.len() + entry.value.len()) as u64
}

impl Drop for WriteBatch<'_> {
    fn drop(&mut self) {
        assert!(
            self.changed.is_empty() || std::thread::panicking(),
            "a write batch was dropped without commit or rollback"
        );
    }
}
