//! [`KeyIndex`]: every key's history in key order, as a two-level copy-on-write B-tree, so a
//! consistent copy of the whole index costs one small clone and a snapshot can be written from it
//! on another thread while the store moves on.
//!
//! ## Design
//!
//! The keys are split by key range into leaves of at most [`LEAF_KEYS_MAX`] keys, each an
//! `Arc<BTreeMap<key, history>>`; a top-level `BTreeMap` finds a key's leaf by the leaf's lower
//! bound (the first leaf's bound is the empty key, so every key has a leaf). Cloning the index
//! clones only the top level (one `Arc` per leaf: about a thousand for a million keys). A write
//! to a leaf that a clone still shares copies that leaf first (`Arc::make_mut`), so after a
//! snapshot the copying is spread over the writes that follow, a leaf at a time, and a leaf
//! nobody shares is written in place as in a plain `BTreeMap`.
//!
//! ## Cost
//!
//! A lookup is two B-tree searches (the top level, then the leaf) instead of one: the same
//! number of key comparisons. A leaf holds between [`LEAF_KEYS_MIN`] and [`LEAF_KEYS_MAX`] keys
//! (the first leaf may hold fewer), so the top level has at most one entry per `LEAF_KEYS_MIN`
//! keys.
//!
//! ## Invariants
//!
//! - `leaves` is never empty and its first bound is the empty key;
//! - every key of a leaf is at or above the leaf's bound and below the next leaf's bound;
//! - every leaf but the first holds at least one key (and normally `LEAF_KEYS_MIN`);
//! - `len` is the number of keys over all leaves.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;

use super::KeyHistory;
use crate::key_range::KeyBounds;

/// Most keys a leaf holds; a leaf that grows past it splits in two.
pub(crate) const LEAF_KEYS_MAX: usize = 512;
/// Fewest keys a leaf (other than the first) keeps; one that shrinks below merges into its left
/// neighbour.
pub(crate) const LEAF_KEYS_MIN: usize = LEAF_KEYS_MAX / 8;

type Leaf = BTreeMap<Bytes, KeyHistory>;

/// The key index (module docs).
#[derive(Debug, Clone)]
pub(crate) struct KeyIndex {
    /// Leaves by lower bound.
    leaves: BTreeMap<Bytes, Arc<Leaf>>,
    /// Keys over all leaves.
    len: usize,
}

impl Default for KeyIndex {
    fn default() -> Self {
        KeyIndex {
            leaves: BTreeMap::from([(Bytes::new(), Arc::default())]),
            len: 0,
        }
    }
}

impl KeyIndex {
    /// An index of `keys`, given in strictly increasing key order.
    pub(crate) fn from_sorted(keys: impl IntoIterator<Item = (Bytes, KeyHistory)>) -> Self {
        let mut index = KeyIndex {
            leaves: BTreeMap::new(),
            len: 0,
        };
        let mut bound = Bytes::new();
        let mut leaf = Leaf::new();
        for (key, history) in keys {
            if leaf.len() == LEAF_KEYS_MAX / 2 {
                index
                    .leaves
                    .insert(bound, Arc::new(std::mem::take(&mut leaf)));
                bound = key.clone();
            }
            leaf.insert(key, history);
            index.len += 1;
        }
        index.leaves.insert(bound, Arc::new(leaf));
        index
    }

    /// Number of keys.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The bound of the leaf that holds (or would hold) `key`.
    fn bound_of(&self, key: &[u8]) -> &Bytes {
        self.leaves
            .range::<[u8], _>((Bound::Unbounded, Bound::Included(key)))
            .next_back()
            .map(|(bound, _)| bound)
            .expect("the first leaf's bound is the empty key")
    }

    /// The leaf that holds (or would hold) `key`.
    fn leaf_of(&self, key: &[u8]) -> &Leaf {
        &self.leaves[self.bound_of(key)]
    }

    /// A key's history.
    pub(crate) fn get(&self, key: &[u8]) -> Option<&KeyHistory> {
        self.leaf_of(key).get(key)
    }

    /// A key's history, to change it (copies its leaf first if a clone shares it).
    pub(crate) fn get_mut(&mut self, key: &[u8]) -> Option<&mut KeyHistory> {
        if !self.leaf_of(key).contains_key(key) {
            return None;
        }
        let bound = self.bound_of(key).clone();
        let leaf = self.leaves.get_mut(&bound).expect("the bound is a leaf's");
        Arc::make_mut(leaf).get_mut(key)
    }

    /// Adds a key that is not in the index.
    pub(crate) fn insert(&mut self, key: Bytes, history: KeyHistory) {
        let bound = self.bound_of(&key).clone();
        let leaf = Arc::make_mut(self.leaves.get_mut(&bound).expect("the bound is a leaf's"));
        assert!(leaf.insert(key, history).is_none(), "key inserted twice");
        self.len += 1;
        if leaf.len() > LEAF_KEYS_MAX {
            let middle = leaf
                .keys()
                .nth(leaf.len() / 2)
                .cloned()
                .expect("a full leaf has a middle key");
            let upper = leaf.split_off(&middle);
            self.leaves.insert(middle, Arc::new(upper));
        }
    }

    /// Removes a key; returns its history.
    pub(crate) fn remove(&mut self, key: &[u8]) -> Option<KeyHistory> {
        if !self.leaf_of(key).contains_key(key) {
            return None;
        }
        let bound = self.bound_of(key).clone();
        let leaf = Arc::make_mut(self.leaves.get_mut(&bound).expect("the bound is a leaf's"));
        let history = leaf.remove(key);
        self.len -= 1;
        if leaf.len() < LEAF_KEYS_MIN && !bound.is_empty() {
            self.merge_left(bound);
        }
        history
    }

    /// Moves the keys of the leaf at `bound` into its left neighbour (splitting that again if it
    /// grows too large).
    fn merge_left(&mut self, bound: Bytes) {
        let leaf = self.leaves.remove(&bound).expect("the bound is a leaf's");
        let left_bound = self.bound_of(&bound).clone();
        let left = Arc::make_mut(
            self.leaves
                .get_mut(&left_bound)
                .expect("the bound is a leaf's"),
        );
        left.extend(Arc::unwrap_or_clone(leaf));
        if left.len() > LEAF_KEYS_MAX {
            let middle = left
                .keys()
                .nth(left.len() / 2)
                .cloned()
                .expect("a full leaf has a middle key");
            let upper = left.split_off(&middle);
            self.leaves.insert(middle, Arc::new(upper));
        }
    }

    /// The keys in `bounds`, in key order.
    pub(crate) fn range<'a>(
        &'a self,
        bounds: KeyBounds<'a>,
    ) -> impl Iterator<Item = (&'a Bytes, &'a KeyHistory)> + 'a {
        let first = match bounds.0 {
            Bound::Included(key) | Bound::Excluded(key) => self.bound_of(key).as_ref(),
            Bound::Unbounded => &[][..],
        };
        let end = bounds.1;
        self.leaves
            .range::<[u8], _>((Bound::Included(first), Bound::Unbounded))
            .take_while(move |(bound, _)| match end {
                Bound::Included(end) => bound.as_ref() <= end,
                Bound::Excluded(end) => bound.as_ref() < end,
                Bound::Unbounded => true,
            })
            .flat_map(move |(_, leaf)| leaf.range::<[u8], _>(bounds))
    }

    /// Every key, in key order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&Bytes, &KeyHistory)> {
        self.leaves.values().flat_map(|leaf| leaf.iter())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;
    use crate::mvcc::KeyEntry;

    fn history(n: u64) -> KeyHistory {
        KeyHistory::new(KeyEntry {
            value: Bytes::from(n.to_string()),
            create_revision: 1,
            mod_revision: 1,
            version: 1,
            lease: 0,
            meta: None,
        })
    }

    fn key(n: u16) -> Bytes {
        Bytes::from(n.to_be_bytes().to_vec())
    }

    fn check_invariants(index: &KeyIndex) {
        let bounds: Vec<&Bytes> = index.leaves.keys().collect();
        assert!(bounds[0].is_empty());
        for (i, (bound, leaf)) in index.leaves.iter().enumerate() {
            if i > 0 {
                assert!(!leaf.is_empty(), "an empty leaf past the first");
            }
            assert!(leaf.len() <= LEAF_KEYS_MAX);
            let next = bounds.get(i + 1);
            for k in leaf.keys() {
                assert!(k >= bound && next.is_none_or(|n| k < *n));
            }
        }
        assert_eq!(index.iter().count(), index.len());
    }

    proptest! {
        /// The index answers every operation as a plain `BTreeMap` does, and a clone taken at
        /// any moment keeps what it saw while the original changes.
        #[test]
        fn the_index_behaves_as_a_btreemap(ops in prop::collection::vec((any::<bool>(), 0u16..3000), 1..4000), snapshot_at in 0usize..4000) {
            let mut index = KeyIndex::default();
            let mut model = BTreeMap::new();
            let mut frozen = None;
            for (i, (insert, k)) in ops.iter().enumerate() {
                if i == snapshot_at {
                    frozen = Some((index.clone(), model.clone()));
                }
                let k = key(*k);
                if *insert {
                    if let Some(h) = index.get_mut(&k) {
                        *h = history(u64::from(i as u32));
                        model.insert(k, i);
                    } else {
                        index.insert(k.clone(), history(i as u64));
                        model.insert(k, i);
                    }
                } else {
                    prop_assert_eq!(index.remove(&k).is_some(), model.remove(&k).is_some());
                }
            }
            check_invariants(&index);
            let keys: Vec<&Bytes> = index.iter().map(|(k, _)| k).collect();
            let expected: Vec<&Bytes> = model.keys().collect();
            prop_assert_eq!(keys, expected);
            let (lo, hi) = (key(700), key(2100));
            let bounds = (Bound::Included(lo.as_ref()), Bound::Excluded(hi.as_ref()));
            let ranged: Vec<&Bytes> = index.range(bounds).map(|(k, _)| k).collect();
            let expected: Vec<&Bytes> = model.range(lo.clone()..hi.clone()).map(|(k, _)| k).collect();
            prop_assert_eq!(ranged, expected);
            if let Some((old, old_model)) = frozen {
                check_invariants(&old);
                let keys: Vec<&Bytes> = old.iter().map(|(k, _)| k).collect();
                let expected: Vec<&Bytes> = old_model.keys().collect();
                prop_assert_eq!(keys, expected);
            }
        }
    }

    #[test]
    fn bulk_built_index_splits_into_half_full_leaves() {
        let index = KeyIndex::from_sorted((0..5000).map(|n| (key(n), history(u64::from(n)))));
        check_invariants(&index);
        assert_eq!(index.len(), 5000);
        assert_eq!(index.leaves.len(), 5000 / (LEAF_KEYS_MAX / 2) + 1);
        assert!(index.get(&key(4321)).is_some());
    }
}
