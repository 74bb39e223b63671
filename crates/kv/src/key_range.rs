//! Key ranges in etcd's convention, and [`prefix_end`].
//!
//! A request names keys by `key` and `range_end`:
//! - `range_end` empty: the single key `key`;
//! - `range_end == [0]` (`"\0"`): every key `>= key`;
//! - otherwise the half-open interval `[key, range_end)`, empty when `range_end <= key`.
//!
//! A prefix `p` is the range `[p, prefix_end(p))`. Keys compare as plain bytes.

use std::ops::Bound;

use bytes::Bytes;

/// The range end that selects every key starting with `prefix` (etcd's `GetPrefixRangeEnd`):
/// the prefix with its last byte below `0xff` incremented and any trailing `0xff` bytes dropped.
/// A prefix of only `0xff` bytes (or an empty one) has no such end: the result is `"\0"`, meaning
/// "every key from `prefix` on".
pub fn prefix_end(prefix: &[u8]) -> Bytes {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Bytes::from(end);
        }
    }
    Bytes::from_static(b"\0")
}

/// Start and end bounds of a non-empty range, for `BTreeMap::range`.
pub(crate) type KeyBounds<'a> = (Bound<&'a [u8]>, Bound<&'a [u8]>);

/// A parsed `key`/`range_end` pair. Invariant: `Single` ranges have a non-empty key only if the
/// request was valid; `Interval` may be empty (end <= start).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum KeyRange {
    /// Exactly one key.
    Single(Bytes),
    /// `[start, end)`, or `[start, ∞)` when `end` is `None`.
    Interval {
        /// First key (inclusive).
        start: Bytes,
        /// End (exclusive); `None` for unbounded.
        end: Option<Bytes>,
    },
}

impl KeyRange {
    /// Parses etcd's `key`/`range_end` convention (module docs).
    pub(crate) fn new(key: &Bytes, range_end: &Bytes) -> KeyRange {
        if range_end.is_empty() {
            KeyRange::Single(key.clone())
        } else if range_end.as_ref() == b"\0" {
            KeyRange::Interval {
                start: key.clone(),
                end: None,
            }
        } else {
            KeyRange::Interval {
                start: key.clone(),
                end: Some(range_end.clone()),
            }
        }
    }

    /// Whether `key` is in the range.
    pub(crate) fn contains(&self, key: &[u8]) -> bool {
        match self {
            KeyRange::Single(k) => k.as_ref() == key,
            KeyRange::Interval { start, end } => {
                key >= start.as_ref() && end.as_ref().is_none_or(|e| key < e.as_ref())
            }
        }
    }

    /// Whether the range selects no key at all.
    pub(crate) fn is_empty(&self) -> bool {
        match self {
            KeyRange::Single(_) => false,
            KeyRange::Interval { start, end } => end.as_ref().is_some_and(|e| e <= start),
        }
    }

    /// Bounds for `BTreeMap::range`; `None` when the range is empty (`BTreeMap::range` panics on
    /// inverted bounds).
    pub(crate) fn bounds(&self) -> Option<KeyBounds<'_>> {
        if self.is_empty() {
            return None;
        }
        Some(match self {
            KeyRange::Single(k) => (Bound::Included(k.as_ref()), Bound::Included(k.as_ref())),
            KeyRange::Interval { start, end } => (
                Bound::Included(start.as_ref()),
                end.as_ref()
                    .map_or(Bound::Unbounded, |e| Bound::Excluded(e.as_ref())),
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_follows_etcd() {
        assert_eq!(prefix_end(b"abc"), Bytes::from_static(b"abd"));
        assert_eq!(prefix_end(b"a\xff"), Bytes::from_static(b"b"));
        assert_eq!(prefix_end(b"\xff\xff"), Bytes::from_static(b"\0"));
        assert_eq!(prefix_end(b""), Bytes::from_static(b"\0"));
    }

    #[test]
    fn ranges_contain() {
        let b = |s: &'static str| Bytes::from_static(s.as_bytes());
        let single = KeyRange::new(&b("b"), &b(""));
        let interval = KeyRange::new(&b("a"), &b("c"));
        let open = KeyRange::new(&b("c"), &b("\0"));
        let empty = KeyRange::new(&b("c"), &b("a"));
        assert!(single.contains(b"b") && !single.contains(b"ba"));
        assert!(interval.contains(b"a") && interval.contains(b"bzz") && !interval.contains(b"c"));
        assert!(open.contains(b"c") && open.contains(b"\xff\xff") && !open.contains(b"b"));
        assert!(empty.is_empty() && empty.bounds().is_none() && !empty.contains(b"b"));
    }
}
