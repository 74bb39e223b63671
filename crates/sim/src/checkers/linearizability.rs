//! Linearizability (Herlihy & Wing) of the clients' history for the key-value register workload,
//! checked with the Wing & Gong search as improved by Lowe ("Testing for linearizability", 2017):
//! memoization of visited (linearized set, register state) pairs, and per-key partitioning (a
//! history of independent registers is linearizable iff each register's sub-history is; Herlihy &
//! Wing's locality).
//!
//! Operations that failed did not happen and are left out. Operations with an unknown outcome may
//! have happened at any point after their invocation, or not at all: they are optional, with no
//! response time. An unknown get carries no information and is dropped; an unknown put whose value
//! no successful get ever returned is dropped too (leaving it out of any linearization never hurts,
//! since values are unique per put), which keeps the search small.
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
    let observed: BTreeSet<Value> = history
        .ops()
        .iter()
        .filter_map(|r| match r.outcome {
            Outcome::Ok {
                result: OpResult::Read(Some(v)),
                ..
            } => Some(v),
            _ => None,
        })
        .collect();
    let mut by_key: BTreeMap<Key, Vec<&OpRecord>> = BTreeMap::new();
    for record in history.ops() {
        by_key.entry(record.op.key()).or_default().push(record);
    }
    let mut report = Report::default();
    for (key, records) in by_key {
        let ops = search_ops(&records, &observed);
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

/// The operations of one key that the search must or may linearize.
fn search_ops(records: &[&OpRecord], observed: &BTreeSet<Value>) -> Vec<SearchOp> {
    records
        .iter()
        .filter_map(|r| match (r.outcome, r.op) {
            (Outcome::Ok { result, at }, op) => Some(SearchOp {
                call: r.invoked_at,
                ret: at,
                op,
                result: Some(result),
            }),
            (Outcome::Unknown | Outcome::Pending, op @ Op::Put { value, .. })
                if observed.contains(&value) =>
            {
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

/// The register model: the state after `op`, or `None` if `op` cannot return `result` in `state`.
fn step(state: Option<Value>, op: &SearchOp) -> Option<Option<Value>> {
    match (op.op, op.result) {
        (Op::Put { value, .. }, _) => Some(Some(value)),
        (Op::Get { .. }, Some(OpResult::Read(seen))) => (seen == state).then_some(state),
        (Op::Get { .. }, _) => Some(state),
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
