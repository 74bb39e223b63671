//! The linearizability checker on hand-made histories, linearizable and not: puts, gets, deletes,
//! compare-and-swaps and the deletes of a revoked lease.

use raftkv_sim::Property;
use raftkv_sim::checkers::linearizability::check;
use raftkv_sim::history::{History, OpRecord, Outcome};
use raftkv_sim::kv::{Op, OpResult};

fn put(client: u32, key: u32, value: u64, invoked_at: u64, ok_at: Option<u64>) -> OpRecord {
    record(
        client,
        Op::Put {
            key,
            value,
            lease: 0,
        },
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

fn delete(client: u32, key: u32, existed: bool, invoked_at: u64, ok_at: u64) -> OpRecord {
    record(
        client,
        Op::Delete { key },
        invoked_at,
        Some((OpResult::Deleted(existed), ok_at)),
    )
}

fn cas(
    client: u32,
    key: u32,
    (expected, value): (Option<u64>, u64),
    result: OpResult,
    invoked_at: u64,
    ok_at: u64,
) -> OpRecord {
    let op = Op::Cas {
        key,
        expected,
        value,
    };
    record(client, op, invoked_at, Some((result, ok_at)))
}

#[test]
fn a_delete_tells_whether_the_key_existed() {
    assert!(linearizable(vec![
        put(1, 0, 10, 1, Some(2)),
        delete(2, 0, true, 3, 4),
        delete(2, 0, false, 5, 6),
        get(1, 0, None, 7, 8),
    ]));
    assert!(!linearizable(vec![delete(2, 0, true, 1, 2)]));
    assert!(!linearizable(vec![
        put(1, 0, 10, 1, Some(2)),
        delete(2, 0, false, 3, 4),
    ]));
}

#[test]
fn a_delete_that_found_the_key_keeps_an_unknown_write_in_the_search() {
    // Nobody read 10, but the delete found something: only the unknown put can have written it.
    assert!(linearizable(vec![
        put(1, 0, 10, 1, None),
        delete(2, 0, true, 3, 4),
    ]));
}

#[test]
fn compare_and_swap_writes_only_when_it_finds_what_it_expects() {
    assert!(linearizable(vec![
        put(1, 0, 10, 1, Some(2)),
        cas(2, 0, (Some(10), 11), OpResult::Swapped, 3, 4),
        cas(2, 0, (Some(10), 12), OpResult::NotSwapped(Some(11)), 5, 6),
        get(1, 0, Some(11), 7, 8),
        cas(1, 0, (None, 13), OpResult::NotSwapped(Some(11)), 9, 10),
    ]));
    // It cannot succeed on a value that is gone, nor fail while its value is there.
    assert!(!linearizable(vec![
        put(1, 0, 10, 1, Some(2)),
        put(1, 0, 11, 3, Some(4)),
        cas(2, 0, (Some(10), 12), OpResult::Swapped, 5, 6),
    ]));
    assert!(!linearizable(vec![
        put(1, 0, 10, 1, Some(2)),
        cas(2, 0, (Some(10), 12), OpResult::NotSwapped(Some(10)), 3, 4),
    ]));
    // Expecting nothing succeeds only on a missing key.
    assert!(linearizable(vec![
        cas(2, 0, (None, 12), OpResult::Swapped, 1, 2),
        get(1, 0, Some(12), 3, 4),
    ]));
}

#[test]
fn a_revoked_lease_deletes_its_keys_between_proposal_and_application() {
    let revoke = |key, invoked_at, ok_at| {
        record(
            0,
            Op::Revoke { key, lease: 7 },
            invoked_at,
            Some((OpResult::Deleted(true), ok_at)),
        )
    };
    let leased = |value, invoked_at, ok_at| {
        record(
            1,
            Op::Put {
                key: 0,
                value,
                lease: 7,
            },
            invoked_at,
            Some((OpResult::Written, ok_at)),
        )
    };
    assert!(linearizable(vec![
        leased(10, 1, 2),
        get(2, 0, Some(10), 3, 6),
        revoke(0, 4, 7),
        get(2, 0, None, 8, 9),
    ]));
    // Not before it was proposed.
    assert!(!linearizable(vec![
        leased(10, 1, 2),
        get(2, 0, None, 3, 4),
        revoke(0, 5, 6),
    ]));
    // A put refused for want of its lease changed nothing.
    let refused = record(
        1,
        Op::Put {
            key: 0,
            value: 11,
            lease: 7,
        },
        10,
        Some((OpResult::NoLease, 11)),
    );
    assert!(linearizable(vec![
        leased(10, 1, 2),
        revoke(0, 4, 7),
        refused,
        get(2, 0, None, 12, 13),
    ]));
}
