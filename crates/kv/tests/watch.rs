//! Watch guarantees, one test each: ordered, exactly once, atomic per revision, resumable from any
//! revision, compaction reported, slow watchers read on, shared deliveries; plus a property test that any poll
//! pattern delivers exactly the history, gap-free.

use bytes::Bytes;
use proptest::prelude::*;
use raftkv_kv::*;

struct Node {
    store: KvStore,
    index: u64,
    log: Vec<Request>,
}

impl Node {
    fn new(limits: Limits) -> Self {
        Node {
            store: KvStore::new(limits),
            index: 0,
            log: Vec::new(),
        }
    }

    fn apply(&mut self, request: Request) -> Response {
        self.index += 1;
        self.log.push(request.clone());
        let response = self.store.apply(self.index, &request.encode_to_vec());
        assert!(response.result.is_ok(), "{request:?}: {response:?}");
        response
    }

    fn put(&mut self, key: &str, value: &str) -> Revision {
        self.apply(Request::put(key.to_owned(), value.to_owned()))
            .revision
    }

    /// Polls until nothing is left, checking the responses are contiguous.
    fn drain(&mut self, id: WatchId, max_events: usize) -> (Vec<WatchResponse>, Vec<Event>) {
        let mut responses: Vec<WatchResponse> = Vec::new();
        while let Some(r) = self.store.watch_poll(id, max_events).unwrap() {
            if let Some(prev) = responses.last() {
                assert_eq!(
                    r.from_revision,
                    prev.to_revision + 1,
                    "gap or overlap between responses"
                );
            }
            assert!(
                r.events
                    .iter()
                    .all(|e| (r.from_revision..=r.to_revision).contains(&e.revision()))
            );
            responses.push(r);
        }
        let events = responses.iter().flat_map(|r| r.events.clone()).collect();
        (responses, events)
    }
}

fn summary(events: &[Event]) -> Vec<(Revision, EventKind, String)> {
    events
        .iter()
        .map(|e| {
            (
                e.revision(),
                e.kind,
                String::from_utf8_lossy(&e.kv.key).into_owned(),
            )
        })
        .collect()
}

#[test]
fn events_come_in_revision_order_exactly_once() {
    let mut node = Node::new(Limits::default());
    let id = node.store.watch_create(&WatchRequest::prefix("k")).unwrap();
    node.put("k1", "a");
    node.put("x", "ignored");
    node.put("k2", "b");
    node.apply(Request::delete("k1"));
    let (responses, events) = node.drain(id, 100);
    assert_eq!(
        summary(&events),
        [
            (2, EventKind::Put, "k1".into()),
            (4, EventKind::Put, "k2".into()),
            (5, EventKind::Delete, "k1".into())
        ]
    );
    assert_eq!(
        (
            responses[0].from_revision,
            responses.last().unwrap().to_revision
        ),
        (2, 5)
    );
    // Nothing is delivered twice.
    assert_eq!(node.store.watch_poll(id, 100).unwrap(), None);
    node.put("k3", "c");
    let (responses, events) = node.drain(id, 100);
    assert_eq!(summary(&events), [(6, EventKind::Put, "k3".into())]);
    assert_eq!(
        responses[0].from_revision, 6,
        "the next response starts after the last one"
    );
}

#[test]
fn a_revision_is_never_split() {
    let mut node = Node::new(Limits::default());
    let id = node
        .store
        .watch_create(&WatchRequest::range("", "\0"))
        .unwrap();
    let puts = (0..5)
        .map(|i| PutRequest::new(format!("t{i}"), "v").into())
        .collect();
    node.apply(Request::txn(TxnRequest {
        compare: vec![],
        success: puts,
        failure: vec![],
    }));
    node.put("after", "v");
    // max_events 2 < 5 events of revision 2: the response still holds all of revision 2, and only it.
    let first = node.store.watch_poll(id, 2).unwrap().unwrap();
    assert_eq!(first.events.len(), 5);
    assert!(first.events.iter().all(|e| e.revision() == 2));
    assert_eq!((first.from_revision, first.to_revision), (2, 2));
    let second = node.store.watch_poll(id, 2).unwrap().unwrap();
    assert_eq!(
        summary(&second.events),
        [(3, EventKind::Put, "after".into())]
    );
}

#[test]
fn prev_kv_and_delete_events() {
    let mut node = Node::new(Limits::default());
    node.put("k", "old");
    let id = node
        .store
        .watch_create(&WatchRequest::key("k").with_prev_kv())
        .unwrap();
    node.put("k", "new");
    node.apply(Request::delete("k"));
    let (_, events) = node.drain(id, 10);
    assert_eq!(events[0].prev_kv.as_ref().unwrap().value, "old");
    assert_eq!(events[0].kv.version, 2);
    assert_eq!(events[1].kind, EventKind::Delete);
    assert_eq!(events[1].kv.value, Bytes::new());
    assert_eq!(events[1].prev_kv.as_ref().unwrap().value, "new");
}

#[test]
fn resumable_from_any_revision_after_a_disconnect() {
    let mut node = Node::new(Limits::default());
    for i in 0..20 {
        node.put(&format!("k{}", i % 4), &format!("v{i}"));
    }
    let id = node
        .store
        .watch_create(&WatchRequest::prefix("k").from_revision(1))
        .unwrap();
    let (_, all) = node.drain(id, 3);
    assert_eq!(all.len(), 20);
    // A client that saw up to revision r re-creates the watch from r + 1 and sees the rest.
    for r in 1..21 {
        let resumed = node
            .store
            .watch_create(&WatchRequest::prefix("k").from_revision(r + 1))
            .unwrap();
        let (_, rest) = node.drain(resumed, 7);
        assert_eq!(rest, all[r as usize - 1..], "resumed from {}", r + 1);
    }
    // Also on another node (same log): a restored one.
    let mut buf = Vec::new();
    node.store.write_snapshot(&mut buf).unwrap();
    let mut other = Node {
        store: KvStore::restore(&mut buf.as_slice(), Limits::default()).unwrap(),
        index: node.index,
        log: Vec::new(),
    };
    let resumed = other
        .store
        .watch_create(&WatchRequest::prefix("k").from_revision(12))
        .unwrap();
    assert_eq!(other.drain(resumed, 100).1, all[10..]);
}

#[test]
fn a_watch_in_the_future_waits_for_its_revision() {
    let mut node = Node::new(Limits::default());
    node.put("k", "1");
    let id = node
        .store
        .watch_create(&WatchRequest::key("k").from_revision(4))
        .unwrap();
    node.put("k", "2");
    assert_eq!(node.store.watch_poll(id, 10).unwrap(), None);
    node.put("k", "3");
    let r = node.store.watch_poll(id, 10).unwrap().unwrap();
    assert_eq!((r.from_revision, r.to_revision, r.events.len()), (4, 4, 1));
}

#[test]
fn compaction_is_reported() {
    let mut node = Node::new(Limits::default());
    for i in 0..10 {
        node.put("k", &i.to_string());
    }
    node.apply(Request::compact(5));
    let error = node
        .store
        .watch_create(&WatchRequest::key("k").from_revision(4))
        .unwrap_err();
    assert_eq!(
        error,
        KvError::Compacted {
            revision: 4,
            compacted_revision: 5
        }
    );
    assert!(
        node.store
            .watch_create(&WatchRequest::key("k").from_revision(5))
            .is_err(),
        "events of 5 are gone"
    );
    assert!(
        node.store
            .watch_create(&WatchRequest::key("k").from_revision(6))
            .is_ok()
    );

    // A catching-up watch that compaction overtakes is told so on its next poll, then is gone.
    let limits = Limits {
        watch_catchup_revisions_max: 2,
        ..Limits::default()
    };
    let mut node = Node::new(limits);
    for i in 0..10 {
        node.put("k", &i.to_string());
    }
    let id = node
        .store
        .watch_create(&WatchRequest::key("k").from_revision(1))
        .unwrap();
    let r = node.store.watch_poll(id, 1).unwrap().unwrap();
    assert_eq!(r.to_revision, 2);
    node.apply(Request::compact(8));
    assert_eq!(
        node.store.watch_poll(id, 1).unwrap_err(),
        KvError::Compacted {
            revision: 3,
            compacted_revision: 8
        }
    );
    assert_eq!(
        node.store.watch_poll(id, 1).unwrap_err(),
        KvError::WatchNotFound { id }
    );
}

#[test]
fn synced_watches_survive_compaction() {
    let mut node = Node::new(Limits::default());
    let id = node.store.watch_create(&WatchRequest::key("k")).unwrap();
    for i in 0..5 {
        node.put("k", &i.to_string());
    }
    node.apply(Request::compact(5));
    let (_, events) = node.drain(id, 100);
    assert_eq!(
        events.len(),
        5,
        "queued events do not depend on retained history"
    );
}

#[test]
fn a_slow_watcher_reads_on_from_history_instead_of_being_cancelled() {
    let mut node = Node::new(Limits::default());
    let slow = node.store.watch_create(&WatchRequest::prefix("k")).unwrap();
    for i in 0..20_000 {
        node.put(&format!("k{}", i % 100), "v");
    }
    let (responses, events) = node.drain(slow, 1_000);
    assert_eq!(events.len(), 20_000, "nothing lost, nothing cancelled");
    assert_eq!(responses.last().unwrap().to_revision, 20_001);
}

#[test]
fn a_compaction_reads_out_what_a_watch_behind_it_still_needs() {
    let mut node = Node::new(Limits::default());
    let behind = node.store.watch_create(&WatchRequest::key("k")).unwrap();
    for i in 0..5 {
        node.put("k", &i.to_string());
        node.put("other", &i.to_string());
    }
    node.apply(Request::compact(11));
    let (responses, events) = node.drain(behind, 2);
    assert_eq!(
        summary(&events).iter().map(|e| e.0).collect::<Vec<_>>(),
        [2, 4, 6, 8, 10]
    );
    assert_eq!(responses.last().unwrap().to_revision, 11);
}

#[test]
fn a_watch_too_far_behind_a_compaction_ends_with_the_compacted_revision() {
    let limits = Limits {
        watch_pending_bytes_max: 100,
        ..Limits::default()
    };
    let mut node = Node::new(limits);
    let behind = node.store.watch_create(&WatchRequest::key("k")).unwrap();
    let ahead = node.store.watch_create(&WatchRequest::key("k")).unwrap();
    node.put("k", &"x".repeat(200));
    assert_eq!(node.drain(ahead, 10).1.len(), 1);
    node.put("k", "small");
    node.apply(Request::compact(3));
    assert_eq!(
        node.store.watch_poll(behind, 10).unwrap_err(),
        KvError::Compacted {
            revision: 2,
            compacted_revision: 3
        },
        "200 bytes behind, more than watch_pending_bytes_max"
    );
    assert_eq!(
        node.store.watch_poll(behind, 10).unwrap_err(),
        KvError::WatchNotFound { id: behind }
    );
    assert_eq!(node.drain(ahead, 10).1.len(), 1, "the other watch goes on");
}

#[test]
fn watches_of_the_same_range_share_one_delivery() {
    let mut node = Node::new(Limits::default());
    let same: Vec<WatchId> = (0..3)
        .map(|_| node.store.watch_create(&WatchRequest::prefix("k")).unwrap())
        .collect();
    let single = node.store.watch_create(&WatchRequest::key("k1")).unwrap();
    let other = node.store.watch_create(&WatchRequest::key("x")).unwrap();
    node.put("k1", "a");
    node.put("k2", "b");
    let deliveries = node.store.watch_poll_ready(|_| true, 100);
    assert_eq!(deliveries.len(), 2, "{deliveries:?}");
    let shared = deliveries.iter().find(|d| d.watch_ids == same).unwrap();
    assert_eq!(shared.result.as_ref().unwrap().events.len(), 2);
    let alone = deliveries.iter().find(|d| d.watch_ids == [single]).unwrap();
    assert_eq!(alone.result.as_ref().unwrap().events.len(), 1);
    assert!(
        deliveries.iter().all(|d| !d.watch_ids.contains(&other)),
        "nothing for a watch with no event"
    );
    assert!(
        node.store
            .watch_poll_ready(|id| id != same[0], 100)
            .is_empty(),
        "everything was delivered once"
    );
}

#[test]
fn catching_up_reports_progress_without_events() {
    let limits = Limits {
        watch_catchup_revisions_max: 4,
        ..Limits::default()
    };
    let mut node = Node::new(limits);
    node.put("watched", "1");
    for i in 0..10 {
        node.put("other", &i.to_string());
    }
    node.put("watched", "2");
    let id = node
        .store
        .watch_create(&WatchRequest::key("watched").from_revision(1))
        .unwrap();
    let (responses, events) = node.drain(id, 100);
    assert_eq!(
        summary(&events),
        [
            (2, EventKind::Put, "watched".into()),
            (13, EventKind::Put, "watched".into())
        ]
    );
    assert!(
        responses.iter().any(|r| r.events.is_empty()),
        "scan-limited polls report progress"
    );
    assert_eq!(
        (
            responses[0].from_revision,
            responses.last().unwrap().to_revision
        ),
        (1, 13)
    );
    assert!(node.store.watch_poll_ready(|_| true, 100).is_empty());
}

#[test]
fn watches_carry_over_a_snapshot_restore() {
    let mut node = Node::new(Limits::default());
    let id = node.store.watch_create(&WatchRequest::prefix("k")).unwrap();
    node.put("k1", "a");
    // Another node gets further and sends a snapshot.
    let mut leader = Node::new(Limits::default());
    leader.put("k1", "a");
    leader.put("k2", "b");
    leader.put("k3", "c");
    let mut buf = Vec::new();
    leader.store.write_snapshot(&mut buf).unwrap();
    let mut restored = KvStore::restore(&mut buf.as_slice(), Limits::default()).unwrap();
    restored.adopt_watches(&mut node.store);
    let mut node = Node {
        store: restored,
        index: leader.index,
        log: Vec::new(),
    };
    node.put("k4", "d");
    let (_, events) = node.drain(id, 100);
    assert_eq!(
        summary(&events).iter().map(|e| e.0).collect::<Vec<_>>(),
        [2, 3, 4, 5]
    );
}

#[test]
fn cancel_and_limits() {
    let limits = Limits {
        watches_max: 2,
        ..Limits::default()
    };
    let mut node = Node::new(limits);
    let a = node.store.watch_create(&WatchRequest::key("a")).unwrap();
    node.store.watch_create(&WatchRequest::key("b")).unwrap();
    assert_eq!(
        node.store.watch_create(&WatchRequest::key("c")),
        Err(KvError::WatchLimit { max: 2 })
    );
    node.store.watch_cancel(a).unwrap();
    assert_eq!(
        node.store.watch_cancel(a),
        Err(KvError::WatchNotFound { id: a })
    );
    assert!(node.store.watch_create(&WatchRequest::key("c")).is_ok());
    assert_eq!(
        node.store.watch_create(&WatchRequest::key("")),
        Err(KvError::EmptyKey)
    );
}

// ---------- property: any poll pattern delivers exactly the history ----------

#[derive(Debug, Clone)]
enum Action {
    Put(u8, u8),
    Delete(u8),
    DeletePrefix,
    Txn(Vec<u8>),
    Poll(usize),
    Compact,
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        5 => (0u8..6, any::<u8>()).prop_map(|(k, v)| Action::Put(k, v)),
        2 => (0u8..6).prop_map(Action::Delete),
        1 => Just(Action::DeletePrefix),
        2 => proptest::collection::btree_set(0u8..6, 1..4).prop_map(|s| Action::Txn(s.into_iter().collect())),
        4 => (1usize..5).prop_map(Action::Poll),
        1 => Just(Action::Compact),
    ]
}

fn key(k: u8) -> String {
    format!("{}{k}", if k % 2 == 0 { "w" } else { "x" })
}

proptest! {
    #[test]
    fn polls_deliver_every_matching_event_once_in_order(
        actions in proptest::collection::vec(action(), 1..60),
        start_after in 0usize..20,
    ) {
        let limits = Limits { watch_catchup_revisions_max: 3, ..Limits::default() };
        let mut node = Node::new(limits);
        let mut watch = None;
        let mut delivered: Vec<Event> = Vec::new();
        let mut last_to = None;
        for (i, action) in actions.iter().enumerate() {
            if i == start_after.min(actions.len() - 1) && watch.is_none() {
                let start = node.store.compacted_revision() + 1;
                watch = Some((node.store.watch_create(&WatchRequest::prefix("w").from_revision(start)).unwrap(), start));
            }
            match action {
                Action::Put(k, v) => { node.put(&key(*k), &v.to_string()); }
                Action::Delete(k) => { node.apply(Request::delete(key(*k))); }
                Action::DeletePrefix => { node.apply(Request::delete_prefix("w")); }
                Action::Txn(keys) => {
                    let success = keys.iter().map(|k| PutRequest::new(key(*k), "t").into()).collect();
                    node.apply(Request::txn(TxnRequest { compare: vec![], success, failure: vec![] }));
                }
                Action::Compact => {
                    // Compact only what the watch has already scanned, so it is never overtaken.
                    let upto = last_to.unwrap_or(0).min(node.store.revision());
                    if watch.is_some() && upto > node.store.compacted_revision() {
                        node.apply(Request::compact(upto));
                    }
                }
                Action::Poll(max) => {
                    if let Some((id, _)) = watch
                        && let Some(r) = node.store.watch_poll(id, *max).unwrap()
                    {
                        if let Some(to) = last_to { prop_assert_eq!(r.from_revision, to + 1); }
                        last_to = Some(r.to_revision);
                        delivered.extend(r.events);
                    }
                }
            }
        }
        let Some((id, start)) = watch else { return Ok(()); };
        while let Some(r) = node.store.watch_poll(id, 2).unwrap() {
            if let Some(to) = last_to { prop_assert_eq!(r.from_revision, to + 1); }
            last_to = Some(r.to_revision);
            delivered.extend(r.events);
        }
        let revisions: Vec<Revision> = delivered.iter().map(Event::revision).collect();
        prop_assert!(revisions.windows(2).all(|w| w[0] <= w[1]), "revision order");
        // Expected: a fresh watch from `start`, read from the history of an uncompacted replay.
        let mut replay = Node::new(Limits::default());
        for request in node.log.iter().filter(|r| !matches!(r.op, Some(Op::Compact(_)))) {
            replay.apply(request.clone());
        }
        let fresh = replay.store.watch_create(&WatchRequest::prefix("w").from_revision(start)).unwrap();
        let (_, expected) = replay.drain(fresh, usize::MAX);
        prop_assert_eq!(&delivered, &expected);
        prop_assert!(delivered.iter().all(|e| e.kv.key.starts_with(b"w")));
    }
}

// ---------- property: many watches, polled together, each gets exactly its history ----------

/// The watches of the shared-delivery property: (request, created before the first action).
fn shared_watches() -> Vec<WatchRequest> {
    vec![
        WatchRequest::prefix("w").with_prev_kv(),
        WatchRequest::prefix("w"),
        WatchRequest::prefix("w"),
        WatchRequest::key("w0"),
        WatchRequest::key("w2").with_prev_kv(),
        WatchRequest::range("", "\0"),
    ]
}

proptest! {
    #[test]
    fn watches_polled_together_each_get_exactly_their_history(
        actions in proptest::collection::vec((action(), 0u8..64), 1..80),
    ) {
        let mut node = Node::new(Limits::default());
        let requests = shared_watches();
        let ids: Vec<WatchId> = requests
            .iter()
            .map(|r| node.store.watch_create(r).unwrap())
            .collect();
        let mut delivered: Vec<Vec<Event>> = vec![Vec::new(); ids.len()];
        let mut next: Vec<Revision> = vec![INITIAL_REVISION + 1; ids.len()];
        let mut record = |deliveries: Vec<WatchDelivery>| -> Result<(), TestCaseError> {
            let mut seen = std::collections::BTreeSet::new();
            for d in deliveries {
                let r = d.result.unwrap();
                for id in d.watch_ids {
                    prop_assert!(seen.insert(id), "one delivery per watch per poll");
                    let i = ids.iter().position(|&x| x == id).unwrap();
                    prop_assert_eq!(r.from_revision, next[i], "gap-free");
                    next[i] = r.to_revision + 1;
                    delivered[i].extend(r.events.iter().cloned());
                }
            }
            Ok(())
        };
        for (action, mask) in &actions {
            match action {
                Action::Put(k, v) => { node.put(&key(*k), &v.to_string()); }
                Action::Delete(k) => { node.apply(Request::delete(key(*k))); }
                Action::DeletePrefix => { node.apply(Request::delete_prefix("w")); }
                Action::Txn(keys) => {
                    let success = keys.iter().map(|k| PutRequest::new(key(*k), "t").into()).collect();
                    node.apply(Request::txn(TxnRequest { compare: vec![], success, failure: vec![] }));
                }
                Action::Compact => {
                    // Anything up to now: watches behind it read out what they still need.
                    let upto = node.store.revision();
                    if upto > node.store.compacted_revision() {
                        node.apply(Request::compact(upto));
                    }
                }
                Action::Poll(max) => {
                    let wanted = |id: WatchId| mask & (1 << ((id - 1) % 6)) != 0;
                    record(node.store.watch_poll_ready(wanted, *max))?;
                }
            }
        }
        loop {
            let deliveries = node.store.watch_poll_ready(|_| true, 2);
            if deliveries.is_empty() {
                break;
            }
            record(deliveries)?;
        }
        let mut replay = Node::new(Limits::default());
        for request in node.log.iter().filter(|r| !matches!(r.op, Some(Op::Compact(_)))) {
            replay.apply(request.clone());
        }
        for (i, request) in requests.iter().enumerate() {
            let fresh = replay.store.watch_create(&request.clone().from_revision(1)).unwrap();
            let (_, expected) = replay.drain(fresh, usize::MAX);
            prop_assert_eq!(&delivered[i], &expected, "watch {:?}", request);
        }
    }
}

#[test]
fn a_watch_is_caught_up_only_once_its_polls_cover_the_current_revision() {
    let mut node = Node::new(Limits::default());
    let start = node.put("other", "0");
    let id = node
        .store
        .watch_create(&WatchRequest::key("k".to_owned()))
        .unwrap();
    let progress = |node: &Node| node.store.watch_progress(id).unwrap();
    assert_eq!(
        progress(&node),
        WatchProgress {
            delivered_through: start,
            caught_up: true
        }
    );
    let put = node.put("k", "1");
    assert!(!progress(&node).caught_up, "an event waits for a poll");
    node.drain(id, 100);
    assert_eq!(
        progress(&node),
        WatchProgress {
            delivered_through: put,
            caught_up: true
        }
    );
    node.put("other", "1");
    assert!(!progress(&node).caught_up, "a new revision not read yet");
    let (responses, _) = node.drain(id, 100);
    assert!(responses.is_empty(), "nothing to say");
    assert_eq!(
        progress(&node),
        WatchProgress {
            delivered_through: put,
            caught_up: true
        },
        "read through the current revision, nothing more to hand on"
    );
    node.store.watch_cancel(id).unwrap();
    assert_eq!(node.store.watch_progress(id), None);
}
