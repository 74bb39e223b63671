//! Exactly-once writes through client sessions: retries get the original answer without
//! applying again, stale and unknown sessions are refused, the table is bounded, sessions expire
//! deterministically and travel in snapshots.

use raftkv_kv::*;

struct Node {
    store: KvStore,
    index: u64,
}

impl Node {
    fn new(limits: Limits) -> Self {
        Node {
            store: KvStore::new(limits),
            index: 0,
        }
    }

    fn apply(&mut self, request: &Request) -> Response {
        self.index += 1;
        self.store.apply(self.index, &request.encode_to_vec())
    }

    fn open(&mut self) -> ClientId {
        match self.apply(&Request::session_open()).result {
            Ok(Reply::SessionOpen(s)) => s.client_id,
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn a_retried_write_is_applied_once_and_gets_the_original_answer() {
    let mut node = Node::new(Limits::default());
    let client = node.open();
    assert_eq!(client, 1, "the client id is the log index of the open");
    let put = Request::new(Op::Put(PutRequest::new("counter", "1").with_prev_kv()))
        .with_session(client, 1);
    let first = node.apply(&put);
    node.apply(&Request::put("counter", "other writer"));
    // The retry (e.g. after a leader change; the first attempt's outcome was unknown).
    let retry = node.apply(&put);
    assert_eq!(
        retry, first,
        "the original answer, with its original revision"
    );
    assert_eq!(node.store.revision(), 3, "applied once");
    assert_eq!(
        node.store.range(&RangeRequest::key("counter")).unwrap().kvs[0].value,
        "other writer"
    );
    // A failed write is remembered as failed.
    let bad =
        Request::new(Op::Put(PutRequest::new("k", "v").with_lease(99))).with_session(client, 2);
    let failed = node.apply(&bad);
    assert_eq!(failed.result, Err(KvError::LeaseNotFound { id: 99 }));
    node.apply(&Request::lease_grant(99, 1_000));
    assert_eq!(node.apply(&bad), failed, "a retry does not succeed late");
    assert_eq!(node.store.session_last_seq(client), Some(2));
}

#[test]
fn stale_and_unknown_sessions_are_refused() {
    let mut node = Node::new(Limits::default());
    let client = node.open();
    node.apply(&Request::put("a", "1").with_session(client, 5));
    let stale = node.apply(&Request::put("a", "2").with_session(client, 4));
    assert_eq!(
        stale.result,
        Err(KvError::StaleSequence {
            client_id: client,
            seq: 4,
            last_seq: 5
        })
    );
    let unknown = node.apply(&Request::put("a", "3").with_session(777, 1));
    assert_eq!(
        unknown.result,
        Err(KvError::SessionNotFound { client_id: 777 })
    );
    assert_eq!(node.store.revision(), 2);
    // Closing a session.
    assert!(node.apply(&Request::session_expire(client)).result.is_ok());
    assert_eq!(
        node.apply(&Request::put("a", "4").with_session(client, 6))
            .result,
        Err(KvError::SessionNotFound { client_id: client })
    );
    assert_eq!(
        node.apply(&Request::session_expire(client)).result,
        Err(KvError::SessionNotFound { client_id: client })
    );
}

#[test]
fn the_session_table_is_bounded() {
    let mut node = Node::new(Limits {
        sessions_max: 3,
        ..Limits::default()
    });
    let first = node.open();
    node.open();
    node.open();
    assert_eq!(
        node.apply(&Request::session_open()).result,
        Err(KvError::SessionLimit { max: 3 })
    );
    assert_eq!(node.store.session_count(), 3);
    node.apply(&Request::session_expire(first));
    node.open();
    assert_eq!(node.store.session_count(), 3);
}

#[test]
fn idle_sessions_expire_by_log_index_on_every_node() {
    let limits = Limits {
        session_idle_entries_max: 10,
        ..Limits::default()
    };
    let mut node = Node::new(limits.clone());
    let idle = node.open(); // index 1
    let busy = node.open(); // index 2
    for seq in 1..=20 {
        assert!(
            node.apply(&Request::put("k", "v").with_session(busy, seq))
                .result
                .is_ok()
        );
    }
    // Index 22 now: `idle` (last active at 1) expired when index 12 was applied.
    assert_eq!(node.store.session_last_seq(idle), None);
    assert_eq!(node.store.session_last_seq(busy), Some(20));
    assert_eq!(
        node.apply(&Request::put("k", "v").with_session(idle, 1))
            .result,
        Err(KvError::SessionNotFound { client_id: idle })
    );
    // Expiry counts entries the store did not see as commands too (empty payloads).
    node.index += 11;
    node.store.apply(node.index, &[]);
    assert_eq!(node.store.session_count(), 0);
}

#[test]
fn sessions_travel_in_snapshots() {
    let mut node = Node::new(Limits::default());
    let client = node.open();
    let put = Request::put("k", "v").with_session(client, 1);
    let first = node.apply(&put);
    let mut buf = Vec::new();
    node.store.write_snapshot(&mut buf).unwrap();
    let mut restored = Node {
        store: KvStore::restore(&mut buf.as_slice(), Limits::default()).unwrap(),
        index: node.index,
    };
    assert_eq!(
        restored.apply(&put),
        first,
        "the retry is answered from the restored session"
    );
    assert_eq!(restored.store.revision(), 2);
}
