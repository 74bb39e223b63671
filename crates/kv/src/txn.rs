//! Evaluation of a transaction's compares against the current state (etcd's semantics).
//!
//! A compare over a range holds if it holds for every live key in the range. A missing key (or an
//! empty range) compares as version, create revision, mod revision, lease and lock session 0; a
//! value compare with a missing key never holds (whatever the operator). Values compare as plain
//! bytes.

use std::cmp::Ordering;

use crate::command::{Compare, CompareOp, CompareTarget};
use crate::key_range::KeyRange;
use crate::mvcc::{KeyEntry, Mvcc};

/// Whether `compare` holds now (the compare was validated: it has a target and a known operator).
pub(crate) fn compare_holds(mvcc: &Mvcc, compare: &Compare) -> bool {
    let op = CompareOp::try_from(compare.op).expect("validated compare operator");
    let target = compare.target.as_ref().expect("validated compare target");
    let range = KeyRange::new(&compare.key, &compare.range_end);
    let mut keys = mvcc.scan(&range, None).peekable();
    if keys.peek().is_none() {
        return match target {
            CompareTarget::Value(_) => false,
            _ => holds(op, target, None),
        };
    }
    keys.all(|(_, entry)| holds(op, target, Some(entry)))
}

fn holds(op: CompareOp, target: &CompareTarget, entry: Option<&KeyEntry>) -> bool {
    let number = |f: fn(&KeyEntry) -> i64| entry.map_or(0, f);
    let ordering = match target {
        CompareTarget::Version(v) => number(|e| e.version).cmp(v),
        CompareTarget::CreateRevision(r) => number(|e| e.create_revision).cmp(r),
        CompareTarget::ModRevision(r) => number(|e| e.mod_revision).cmp(r),
        CompareTarget::Lease(l) => number(|e| e.lease).cmp(l),
        CompareTarget::Session(s) => entry.map_or(0, |e| e.meta().session).cmp(s),
        CompareTarget::Value(v) => match entry {
            Some(e) => e.value.as_ref().cmp(v.as_ref()),
            None => return false,
        },
    };
    match op {
        CompareOp::Equal => ordering == Ordering::Equal,
        CompareOp::NotEqual => ordering != Ordering::Equal,
        CompareOp::Greater => ordering == Ordering::Greater,
        CompareOp::Less => ordering == Ordering::Less,
    }
}
