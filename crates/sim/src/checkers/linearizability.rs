//! Linearizability (Herlihy & Wing) of the clients' history for the key-value register workload,
//! checked with the Wing & Gong search as improved by Lowe ("Testing for linearizability", 2017):
//! memoization of visited (linearized set, register state) pairs, and per-key partitioning (a
//! history of independent registers is linearizable iff each register's sub-history is; Herlihy &
//! Wing's locality).
//!
//! The model is one register per key, holding a value or nothing: a put writes its value; a
//! delete writes "nothing" and answers whether the key existed; a compare-and-swap writes its
//! value iff the register holds the expected value (or nothing, when it expects nothing), and
//! otherwise answers what it found; a get answers the register's value. A lease revoked on expiry
//! deletes each of its keys (a system operation between the revoke's proposal and its first
//! application). A revoke deletes several keys atomically; checking each key alone is weaker than
//! checking them together, never stronger, so no violation is reported that is not one.
//!
//! Operations that failed did not happen and are left out; so are puts refused for want of their
//! lease and every other refused command (a refused command changes nothing). Operations with an
//! unknown outcome may have happened at any point after their invocation, or not at all: they are
//! optional, with no response time. An unknown get carries no information and is dropped; an
//! unknown put or compare-and-swap whose value nothing ever observed (no get, no failed
//! compare-and-swap found it, no compare-and-swap expected it) is dropped too, unless a delete of
//! its key found the key there (a delete that answers "it existed" observes that some value was
//! there, not which): values are unique per write, so leaving such a write out of a
//! linearization changes the register only while nothing looks at it. Unknown deletes stay.
//!
//! Invariant: the search is exact up to `STATE_BUDGET` visited states per key; past it the key is
//! reported as inconclusive, never as a violation.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use crate::history::{History, OpRecord, Outcome};
use crate::kv::{Key, Op, OpResult, Value};

use super::{Property, Violation};

/// Most (linearized set, state) pairs visited for one key before giving up on it.
pub const STATE_BUDGET: usize = 2_000_000;

/// What a successful check found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Keys whose sub-history was checked.
    pub keys: usize,
    /// Operations taken into the search.
    pub ops: usize,
    /// Keys where the search ran out of budget (neither proven nor refuted).
    pub inconclusive: Vec<Key>,
}

/// One operation of a key's sub-history, as the search sees it.
#[derive(Clone, Copy, Debug)]
struct SearchOp {
    /// Invocation time.
    call: u64,
    /// Response time; `u64::MAX` when unknown (the operation is optional).
    ret: u64,
    /// What it does.
    op: Op,
    /// What it returned (ignored for optional operations).
    result: Option<OpResult>,
}

impl SearchOp {
    fn required(&self) -> bool {
        self.ret != u64::MAX
    }
}

/// Checks the whole history.
pub fn check(history: &History) -> Result<Report, Violation> {
    let observed: BTreeSet<Value> = history.ops().iter().flat_map(observed_values).collect();
    let mut by_key: BTreeMap<Key, Vec<&OpRecord>> = BTreeMap::new();
    for record in history.ops() {
        if let Some(key) = record.op.key() {
            by_key.entry(key).or_default().push(record);
        }
    }
    let mut report = Report::default();
    for (key, records) in by_key {
        // Deletes that found the key observe that some value was there.
        let existence_seen = records.iter().any(|r| {
            matches!(
                r.outcome,
                Outcome::Ok {
                    result: OpResult::Deleted(true),
                    ..
                }
            )
        });
        let ops = search_ops(&records, &observed, existence_seen);
        report.keys += 1;
        report.ops += ops.len();
        match search(&ops) {
            Some(true) => {}
            Some(false) => return Err(violation(key, &records)),
            None => report.inconclusive.push(key),
        }
    }
    Ok(report)
}

/// The values an operation shows someone saw in a register (or relied on being there).
fn observed_values(record: &OpRecord) -> Vec<Value> {
    let mut values = Vec::new();
    if let Outcome::Ok { result, .. } = record.outcome
        && let OpResult::Read(Some(v)) | OpResult::NotSwapped(Some(v)) = result
    {
        values.push(v);
    }
    if let Op::Cas {
        expected: Some(v), ..
    } = record.op
    {
        values.push(v);
    }
    values
}

/// The operations of one key that the search must or may linearize.
fn search_ops(
    records: &[&OpRecord],
    observed: &BTreeSet<Value>,
    existence_seen: bool,
) -> Vec<SearchOp> {
    records
        .iter()
        .filter_map(|r| match (r.outcome, r.op) {
            (
                Outcome::Ok {
                    result: OpResult::NoLease | OpResult::Refused,
                    ..
                },
                _,
            ) => None,
            (Outcome::Ok { result, at }, op) => Some(SearchOp {
                call: r.invoked_at,
                ret: at,
                op,
                result: Some(result),
            }),
            (
                Outcome::Unknown | Outcome::Pending,
                op @ (Op::Put { value, .. } | Op::Cas { value, .. }),
            ) if existence_seen || observed.contains(&value) => Some(SearchOp {
                call: r.invoked_at,
                ret: u64::MAX,
                op,
                result: None,
            }),
            (Outcome::Unknown | Outcome::Pending, op @ (Op::Delete { .. } | Op::Revoke { .. })) => {
                Some(SearchOp {
                    call: r.invoked_at,
                    ret: u64::MAX,
                    op,
                    result: None,
                })
            }
            _ => None,
        })
        .collect()
}

/// The register model: the state after `op`, or `None` if `op` cannot return its result in
/// `state` (an optional operation has no result: it may only take effect, as it would have).
fn step(state: Option<Value>, op: &SearchOp) -> Option<Option<Value>> {
    match (op.op, op.result) {
        (Op::Put { value, .. }, _) => Some(Some(value)),
        (Op::Delete { .. } | Op::Revoke { .. }, Some(OpResult::Deleted(existed))) => {
            (state.is_some() == existed).then_some(None)
        }
        (Op::Delete { .. } | Op::Revoke { .. }, _) => Some(None),
        (Op::Cas { expected, .. }, Some(OpResult::NotSwapped(found))) => {
            (state == found && found != expected).then_some(state)
        }
        (
            Op::Cas {
                expected, value, ..
            },
            _,
        ) => (state == expected).then_some(Some(value)),
        (Op::Get { .. }, Some(OpResult::Read(seen))) => (seen == state).then_some(state),
        (Op::Get { .. } | Op::LeaseGrant { .. } | Op::SessionOpen, _) => Some(state),
    }
}

/// Depth-first search for a linearization. `Some(true)`: found; `Some(false)`: none exists;
/// `None`: budget exhausted.
fn search(ops: &[SearchOp]) -> Option<bool> {
    let required = ops.iter().filter(|o| o.required()).count();
    let words = ops.len().div_ceil(64).max(1);
    let mut visited: HashSet<(Vec<u64>, Option<Value>)> = HashSet::new();
    // Each frame: (linearized set, state, number of required ops linearized).
    let mut stack = vec![(vec![0u64; words], None::<Value>, 0usize)];
    while let Some((done, state, count)) = stack.pop() {
        if count == required {
            return Some(true);
        }
        if visited.len() > STATE_BUDGET {
            return None;
        }
        let is_done = |i: usize| done[i / 64] & (1 << (i % 64)) != 0;
        // An operation can go next only if it was invoked before every pending one returned.
        let horizon = (0..ops.len())
            .filter(|&i| !is_done(i))
            .map(|i| ops[i].ret)
            .min()
            .unwrap_or(u64::MAX);
        for i in (0..ops.len()).filter(|&i| !is_done(i) && ops[i].call < horizon) {
            let Some(next) = step(state, &ops[i]) else {
                continue;
            };
            let mut next_done = done.clone();
            next_done[i / 64] |= 1 << (i % 64);
            if visited.insert((next_done.clone(), next)) {
                let next_count = count + usize::from(ops[i].required());
                stack.push((next_done, next, next_count));
            }
        }
    }
    Some(false)
}

/// A readable account of a key's sub-history that has no linearization.
fn violation(key: Key, records: &[&OpRecord]) -> Violation {
    const SHOWN: usize = 40;
    let mut lines: Vec<String> = records
        .iter()
        .take(SHOWN)
        .map(|r| format!("  {r}"))
        .collect();
    if records.len() > SHOWN {
        lines.push(format!("  ... and {} more", records.len() - SHOWN));
    }
    Violation::new(
        Property::Linearizability,
        format!(
            "the history of key k{key} has no linearization ({} operations):\n{}",
            records.len(),
            lines.join("\n")
        ),
    )
}
