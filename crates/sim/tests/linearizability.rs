//! The linearizability checker on hand-made histories, linearizable and not.

use raftkv_sim::Property;
use raftkv_sim::checkers::linearizability::check;
use raftkv_sim::history::{History, OpRecord, Outcome};
use raftkv_sim::kv::{Op, OpResult};

fn put(client: u32, key: u32, value: u64, invoked_at: u64, ok_at: Option<u64>) -> OpRecord {
    record(
        client,
        Op::Put { key, value },
        invoked_at,
        ok_at.map(|at| (OpResult::Written, at)),
    )
}

fn get(client: u32, key: u32, seen: Option<u64>, invoked_at: u64, ok_at: u64) -> OpRecord {
    record(
        client,
        Op::Get { key },
        invoked_at,
        Some((OpResult::Read(seen), ok_at)),
    )
}

fn record(client: u32, op: Op, invoked_at: u64, end: Option<(OpResult, u64)>) -> OpRecord {
    OpRecord {
        client,
        request: invoked_at,
        op,
        invoked_at,
        outcome: match end {
            Some((result, at)) => Outcome::Ok { result, at },
            None => Outcome::Unknown,
        },
    }
}

fn linearizable(ops: Vec<OpRecord>) -> bool {
    match check(&History::from_records(ops)) {
        Ok(report) => {
            assert!(report.inconclusive.is_empty());
            true
        }
        Err(v) => {
            assert_eq!(v.property, Property::Linearizability);
            false
        }
    }
}

#[test]
fn sequential_history_is_linearizable() {
    assert!(linearizable(vec![
        put(1, 0, 10, 1, Some(2)),
        get(2, 0, Some(10), 3, 4),
        put(1, 0, 11, 5, Some(6)),
        get(2, 0, Some(11), 7, 8),
    ]));
}

#[test]
fn stale_read_is_not_linearizable() {
    assert!(!linearizable(vec![
        put(1, 0, 10, 1, Some(2)),
        put(1, 0, 11, 3, Some(4)),
        get(2, 0, Some(10), 5, 6),
    ]));
}

#[test]
fn reading_a_value_never_written_is_not_linearizable() {
    assert!(!linearizable(vec![get(2, 0, Some(99), 1, 2)]));
    assert!(!linearizable(vec![
        put(1, 0, 10, 1, Some(2)),
        get(2, 0, None, 3, 4),
    ]));
}

#[test]
fn concurrent_operations_may_take_effect_in_either_order() {
    // The get overlaps both puts and sees the first; then a later get sees the second.
    assert!(linearizable(vec![
        put(1, 0, 10, 1, Some(5)),
        put(3, 0, 11, 2, Some(6)),
        get(2, 0, Some(10), 3, 7),
        get(2, 0, Some(11), 8, 9),
    ]));
    // Two sequential reads cannot see the two overlapping writes in both orders.
    assert!(!linearizable(vec![
        put(1, 0, 10, 1, Some(10)),
        put(3, 0, 11, 2, Some(10)),
        get(2, 0, Some(10), 3, 4),
        get(2, 0, Some(11), 5, 6),
        get(4, 0, Some(10), 7, 8),
    ]));
}

#[test]
fn an_unknown_write_may_happen_late_or_never() {
    // Seen long after its client gave up: it happened, late.
    assert!(linearizable(vec![
        put(1, 0, 10, 1, None),
        get(2, 0, None, 2, 3),
        get(2, 0, Some(10), 20, 21),
    ]));
    // Never seen: it did not happen.
    assert!(linearizable(vec![
        put(1, 0, 10, 1, Some(2)),
        put(1, 0, 11, 3, None),
        get(2, 0, Some(10), 4, 5),
    ]));
    // But it cannot take effect before it was invoked.
    assert!(!linearizable(vec![
        get(2, 0, Some(10), 1, 2),
        put(1, 0, 10, 3, None),
    ]));
}

#[test]
fn keys_are_independent() {
    assert!(linearizable(vec![
        put(1, 0, 10, 1, Some(2)),
        put(1, 1, 20, 3, Some(4)),
        get(2, 1, Some(20), 5, 6),
        get(2, 0, Some(10), 7, 8),
    ]));
    assert!(!linearizable(vec![
        put(1, 0, 10, 1, Some(2)),
        put(1, 1, 20, 3, Some(4)),
        get(2, 0, Some(20), 5, 6),
    ]));
}

#[test]
fn a_failed_write_never_happened() {
    let mut failed = put(1, 0, 10, 1, None);
    failed.outcome = Outcome::Fail;
    assert!(!linearizable(vec![failed, get(2, 0, Some(10), 3, 4)]));
}
