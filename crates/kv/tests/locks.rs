//! Lock sessions (Consul's sessions): acquiring and releasing keys, `LockIndex` and `Session`,
//! sessions ending by destruction or with their lease (keys released or deleted, in one
//! revision), lock delays on the node's clock, and snapshots.

use bytes::Bytes;
use raftkv_kv::*;

/// A store and the next log index to apply at.
struct Store {
    kv: KvStore,
    index: u64,
}

impl Store {
    fn new() -> Self {
        Store {
            kv: KvStore::new(Limits::default()),
            index: 0,
        }
    }

    fn apply(&mut self, op: Op) -> Result<Reply> {
        self.index += 1;
        let request = Request::new(op);
        self.kv.apply(self.index, &request.encode_to_vec()).result
    }

    fn session(&mut self, behavior: i32, lock_delay_ms: u64, ttl_ms: u64) -> (u64, LeaseId) {
        let create = LockSessionCreateRequest {
            name: "s".into(),
            node: "n1".into(),
            behavior,
            lock_delay_ms,
            ttl_ms,
        };
        match self.apply(Op::LockSessionCreate(create)) {
            Ok(Reply::LockSessionCreate(created)) => (created.id, created.lease),
            other => panic!("{other:?}"),
        }
    }

    fn lock(&mut self, key: &str, session: u64, release: bool) -> bool {
        match self.apply(Op::Lock(lock_request(key, session, release))) {
            Ok(Reply::Lock(answer)) => answer.succeeded,
            other => panic!("{other:?}"),
        }
    }

    fn destroy(&mut self, id: u64) -> u64 {
        match self.apply(Op::LockSessionDestroy(LockSessionDestroyRequest { id })) {
            Ok(Reply::LockSessionDestroy(answer)) => answer.ended,
            other => panic!("{other:?}"),
        }
    }

    fn get(&self, key: &str) -> Option<KeyValue> {
        let range = RangeRequest::key(Bytes::copy_from_slice(key.as_bytes()));
        self.kv.range(&range).unwrap().kvs.into_iter().next()
    }
}

fn lock_request(key: &str, session: u64, release: bool) -> LockRequest {
    LockRequest {
        key: Bytes::copy_from_slice(key.as_bytes()),
        value: Bytes::from_static(b"v"),
        flags: 0,
        session,
        release,
    }
}

#[test]
fn a_held_key_is_refused_to_other_sessions_until_its_holder_releases_it() {
    let mut store = Store::new();
    let (a, _) = store.session(RELEASE, 0, 0);
    let (b, _) = store.session(RELEASE, 0, 0);
    assert!(store.lock("leader", a, false));
    let held = store.get("leader").unwrap();
    assert_eq!((held.session, held.lock_index), (a, 1));
    assert!(store.lock("leader", a, false), "the holder acquires again");
    assert_eq!(
        store.get("leader").unwrap().lock_index,
        1,
        "not a new acquisition"
    );
    assert!(!store.lock("leader", b, false));
    assert!(!store.lock("leader", b, true), "only the holder releases");
    assert!(store.lock("leader", a, true));
    assert_eq!(store.get("leader").unwrap().session, 0);
    assert!(store.lock("leader", b, false));
    let taken = store.get("leader").unwrap();
    assert_eq!((taken.session, taken.lock_index), (b, 2));
    // A plain put keeps the lock; an unknown session is refused.
    store
        .apply(Op::Put(PutRequest::new("leader", "x")))
        .unwrap();
    assert_eq!(store.get("leader").unwrap().session, b);
    let unknown = LockRequest {
        key: Bytes::from_static(b"k"),
        session: 999,
        ..LockRequest::default()
    };
    assert_eq!(
        store.apply(Op::Lock(unknown)),
        Err(KvError::LockSessionNotFound { id: 999 })
    );
}

#[test]
fn an_ended_session_releases_or_deletes_its_keys_in_one_revision() {
    let mut store = Store::new();
    let (release, _) = store.session(RELEASE, 0, 0);
    let (delete, _) = store.session(DELETE, 0, 0);
    assert!(store.lock("r/1", release, false));
    assert!(store.lock("r/2", release, false));
    assert!(store.lock("d/1", delete, false));
    let before = store.kv.revision();
    assert_eq!(store.destroy(release), 2);
    assert_eq!(store.kv.revision(), before + 1, "one revision");
    assert_eq!(store.get("r/1").unwrap().session, 0);
    assert_eq!(store.get("r/1").unwrap().value, "v");
    assert!(store.kv.lock_session(release).is_none());
    assert_eq!(store.destroy(delete), 1);
    assert!(store.get("d/1").is_none());
    assert_eq!(
        store.destroy(delete),
        0,
        "ending an ended session does nothing"
    );
}

#[test]
fn a_session_ends_when_its_lease_expires() {
    let mut store = Store::new();
    let (id, lease) = store.session(RELEASE, 0, 10_000);
    assert_ne!(lease, 0);
    assert!(store.lock("job", id, false));
    let expire = LeaseExpireRequest { ids: vec![lease] };
    store.apply(Op::LeaseExpire(expire)).unwrap();
    assert!(store.kv.lock_session(id).is_none());
    assert_eq!(store.get("job").unwrap().session, 0);
    // Destroying a session revokes its lease.
    let (id, lease) = store.session(RELEASE, 0, 10_000);
    store.destroy(id);
    let revoke = Op::LeaseRevoke(LeaseRevokeRequest { id: lease });
    assert_eq!(
        store.apply(revoke),
        Err(KvError::LeaseNotFound { id: lease })
    );
}

#[test]
fn a_released_key_waits_out_the_lock_delay_on_this_nodes_clock() {
    let mut store = Store::new();
    store.kv.set_clock(1_000);
    let (id, _) = store.session(RELEASE, 15_000, 0);
    assert!(store.lock("k", id, false));
    assert!(!store.kv.lock_delayed(b"k", 1_000));
    store.destroy(id);
    assert!(store.kv.lock_delayed(b"k", 1_000));
    assert!(store.kv.lock_delayed(b"k", 15_999));
    assert!(!store.kv.lock_delayed(b"k", 16_000));
    assert!(!store.kv.lock_delayed(b"other", 1_000));
}

#[test]
fn lock_sessions_and_held_keys_survive_a_snapshot() {
    let mut store = Store::new();
    let (id, _) = store.session(DELETE, 0, 30_000);
    assert!(store.lock("held", id, false));
    let mut buf = Vec::new();
    store.kv.write_snapshot(&mut buf).unwrap();
    let restored = KvStore::restore(&mut buf.as_slice(), Limits::default()).unwrap();
    assert_eq!(restored.state_hash(), store.kv.state_hash());
    assert_eq!(restored.lock_session(id), store.kv.lock_session(id));
    let mut restored = Store {
        kv: restored,
        index: store.index,
    };
    assert_eq!(
        restored.destroy(id),
        1,
        "the restored store knows the key is held"
    );
    assert!(restored.get("held").is_none());
}

/// A transaction that locks (or unlocks) `key` for `session` and puts `other`.
fn lock_txn(key: &str, session: u64, release: bool, other: &str) -> Op {
    Op::Txn(TxnRequest {
        compare: vec![],
        success: vec![
            TxnOp::Lock(lock_request(key, session, release)).into(),
            PutRequest::new(Bytes::copy_from_slice(other.as_bytes()), "x").into(),
        ],
        failure: vec![],
    })
}

#[test]
fn a_lock_in_a_transaction_commits_with_the_rest_and_answers_the_key_as_written() {
    let mut store = Store::new();
    let (a, _) = store.session(RELEASE, 0, 0);
    let Ok(Reply::Txn(txn)) = store.apply(lock_txn("leader", a, false, "other")) else {
        panic!("the transaction applies");
    };
    let Some(TxnOpResponse::Lock(locked)) = &txn.responses[0].op else {
        panic!("a lock answer: {txn:?}");
    };
    let written = locked.kv.as_ref().unwrap();
    assert_eq!((written.session, written.lock_index), (a, 1));
    assert!(written.value.is_empty(), "the answer leaves the value out");
    assert_eq!(
        store.get("leader").unwrap(),
        KeyValue {
            value: Bytes::from_static(b"v"),
            ..written.clone()
        }
    );
    assert_eq!(
        store.get("other").unwrap().mod_revision,
        written.mod_revision,
        "one revision"
    );
    assert_eq!(
        store.kv.lock_session_keys(a),
        vec![Bytes::from_static(b"leader")]
    );
}

#[test]
fn a_refused_lock_in_a_transaction_fails_it_whole_and_changes_nothing() {
    let mut store = Store::new();
    let (a, _) = store.session(RELEASE, 0, 0);
    let (b, _) = store.session(RELEASE, 0, 0);
    assert!(store.lock("leader", a, false));
    let revision = store.kv.revision();
    let refused = store.apply(lock_txn("leader", b, false, "other"));
    assert_eq!(
        refused,
        Err(KvError::LockRefused {
            key: "leader".into(),
            release: false
        })
    );
    assert_eq!(
        refused.unwrap_err().to_string(),
        "failed to lock key \"leader\", lock is already held"
    );
    let unheld = store.apply(lock_txn("leader", b, true, "other"));
    assert_eq!(
        unheld.unwrap_err().to_string(),
        "failed to unlock key \"leader\", lock isn't held, or is held by another session"
    );
    // A lock taken earlier in the same transaction is rolled back with it.
    let two_locks = Op::Txn(TxnRequest {
        compare: vec![],
        success: vec![
            TxnOp::Lock(lock_request("follower", b, false)).into(),
            TxnOp::Lock(lock_request("leader", b, false)).into(),
        ],
        failure: vec![],
    });
    assert!(store.apply(two_locks).is_err());
    assert_eq!(store.kv.revision(), revision, "nothing was written");
    assert!(store.get("other").is_none());
    assert!(store.get("follower").is_none());
    assert_eq!(store.get("leader").unwrap().session, a);
    assert!(
        store.kv.lock_session_keys(b).is_empty(),
        "b holds nothing: its lock on `follower` was rolled back"
    );
    assert!(store.lock("follower", b, false), "and the store goes on");
}

#[test]
fn a_lock_in_a_transaction_needs_a_live_session() {
    let mut store = Store::new();
    let refused = store.apply(lock_txn("leader", 99, false, "other"));
    assert_eq!(refused, Err(KvError::LockSessionNotFound { id: 99 }));
    assert!(store.get("other").is_none());
}

#[test]
fn an_unlock_in_a_transaction_releases_the_key_with_the_rest() {
    let mut store = Store::new();
    let (a, _) = store.session(RELEASE, 0, 0);
    assert!(store.lock("leader", a, false));
    assert!(store.apply(lock_txn("leader", a, true, "other")).is_ok());
    let released = store.get("leader").unwrap();
    assert_eq!((released.session, released.lock_index), (0, 1));
    assert!(store.get("other").is_some());
    assert!(store.kv.lock_session_keys(a).is_empty());
}

#[test]
fn a_session_compare_holds_for_the_holding_session_only() {
    let mut store = Store::new();
    let (a, _) = store.session(RELEASE, 0, 0);
    let (b, _) = store.session(RELEASE, 0, 0);
    assert!(store.lock("leader", a, false));
    let mut check = |key: &str, session: u64| {
        let compare = Compare::new(
            Bytes::copy_from_slice(key.as_bytes()),
            CompareOp::Equal,
            CompareTarget::Session(session),
        );
        match store.apply(Op::Txn(TxnRequest {
            compare: vec![compare],
            success: vec![],
            failure: vec![],
        })) {
            Ok(Reply::Txn(txn)) => txn.succeeded,
            other => panic!("{other:?}"),
        }
    };
    assert!(check("leader", a));
    assert!(!check("leader", b));
    assert!(check("missing", 0), "a missing key has no session");
    assert!(!check("missing", a));
}

#[test]
fn the_sessions_index_moves_when_a_session_is_created_or_ends_only() {
    let mut store = Store::new();
    assert_eq!(store.kv.lock_sessions_index(), 0);
    let (a, lease) = store.session(RELEASE, 0, 10_000);
    assert_eq!(
        store.kv.lock_sessions_index(),
        a,
        "created at its own index"
    );
    assert!(store.lock("leader", a, false));
    store.apply(Op::Put(PutRequest::new("other", "x"))).unwrap();
    assert_eq!(
        store.kv.lock_sessions_index(),
        a,
        "locks and writes leave it"
    );
    store
        .apply(Op::LeaseRevoke(LeaseRevokeRequest { id: lease }))
        .unwrap();
    assert_eq!(
        store.kv.lock_sessions_index(),
        store.index,
        "ended with its lease, at the revoke's index"
    );
    let (b, _) = store.session(RELEASE, 0, 0);
    store.destroy(b);
    let destroyed = store.index;
    assert_eq!(store.kv.lock_sessions_index(), destroyed, "destroyed");
    store.apply(Op::Put(PutRequest::new("later", "x"))).unwrap();
    let mut buf = Vec::new();
    store.kv.write_snapshot(&mut buf).unwrap();
    let restored = KvStore::restore(&mut buf.as_slice(), Limits::default()).unwrap();
    assert_eq!(
        restored.lock_sessions_index(),
        destroyed,
        "a snapshot carries it: a restored member answers as the others"
    );
    assert_eq!(restored.state_hash(), store.kv.state_hash());
}
