//! Leases: expiry decided by the leader and applied as a revoke that deletes every attached key
//! in one revision on every node; keep-alive; the new leader's extension; keys moving between
//! leases; bounds.

use raftkv_kv::*;

struct Node {
    store: KvStore,
    index: u64,
}

impl Node {
    fn new() -> Self {
        Node {
            store: KvStore::new(Limits::default()),
            index: 0,
        }
    }

    fn apply(&mut self, request: &Request) -> Response {
        self.index += 1;
        self.store.apply(self.index, &request.encode_to_vec())
    }
}

fn put_with_lease(key: &str, lease: LeaseId) -> Request {
    Request::new(Op::Put(
        PutRequest::new(key.to_owned(), "v").with_lease(lease),
    ))
}

#[test]
fn expiry_is_a_revoke_that_deletes_all_keys_in_one_revision_everywhere() {
    let mut leader = Node::new();
    let mut follower = Node::new();
    leader.store.set_clock(1_000);
    follower.store.set_clock(50_000); // clocks differ; it does not matter
    let mut log = vec![Request::lease_grant(5, 2_000)];
    log.extend(["a", "b", "c"].map(|k| put_with_lease(k, 5)));
    log.push(Request::put("unleased", "v"));
    let id = watch_all(&mut follower);
    for request in &log {
        assert!(leader.apply(request).result.is_ok());
        follower.apply(request);
    }
    assert_eq!(
        leader.store.expired_leases(2_999, 10),
        Vec::<LeaseId>::new()
    );
    let expired = leader.store.expired_leases(3_000, 10);
    assert_eq!(expired, vec![5]);
    // The leader proposes the revokes; every node applies them identically.
    let revoke = Request::lease_revoke(expired[0]);
    let on_leader = leader.apply(&revoke);
    let on_follower = follower.apply(&revoke);
    assert_eq!(on_leader, on_follower);
    assert_eq!(
        on_leader.result,
        Ok(Reply::LeaseRevoke(LeaseRevokeResponse { deleted: 3 }))
    );
    assert_eq!(on_leader.revision, 6, "one revision for all three deletes");
    assert_eq!(leader.store.state_hash(), follower.store.state_hash());
    assert_eq!(
        leader
            .store
            .range(&RangeRequest::range("", "\0"))
            .unwrap()
            .count,
        1
    );
    // Watchers see the three deletes together.
    let mut last = None;
    while let Some(r) = follower.store.watch_poll(id, 100).unwrap() {
        last = Some(r);
    }
    let deletes: Vec<_> = last
        .unwrap()
        .events
        .into_iter()
        .filter(|e| e.kind == EventKind::Delete)
        .collect();
    assert_eq!(deletes.len(), 3);
    assert!(deletes.iter().all(|e| e.revision() == 6));
    // A second revoke (e.g. proposed twice) fails harmlessly.
    assert_eq!(
        leader.apply(&revoke).result,
        Err(KvError::LeaseNotFound { id: 5 })
    );
    assert_eq!(
        leader.store.expired_leases(10_000, 10),
        Vec::<LeaseId>::new()
    );
}

fn watch_all(node: &mut Node) -> WatchId {
    node.store
        .watch_create(&WatchRequest::range("", "\0"))
        .unwrap()
}

#[test]
fn keep_alive_and_retry() {
    let mut leader = Node::new();
    leader.store.set_clock(0);
    leader.apply(&Request::lease_grant(1, 100));
    assert_eq!(leader.store.lease_keep_alive(1, 80), Ok(100));
    assert_eq!(leader.store.expired_leases(150, 10), Vec::<LeaseId>::new());
    assert_eq!(leader.store.expired_leases(180, 10), vec![1]);
    // Not revoked yet (the proposal was lost): listed again only after lease_revoke_retry_ms.
    assert_eq!(leader.store.expired_leases(181, 10), Vec::<LeaseId>::new());
    let retry = 180 + Limits::default().lease_revoke_retry_ms;
    assert_eq!(leader.store.expired_leases(retry, 10), vec![1]);
    assert_eq!(
        leader.store.lease_keep_alive(2, 0),
        Err(KvError::LeaseNotFound { id: 2 })
    );
    let status = leader.store.lease_time_to_live(1, retry).unwrap();
    assert_eq!((status.ttl_ms, status.keys.len()), (100, 0));
}

/// Found by the simulator (seed 275, raftkv-sim): a leader paused past a lease's deadline
/// proposed its revoke on resuming, then renewed it for a client's keep-alive; the revoke
/// committed and the client lost the lease it had just been promised for a whole TTL. A lease
/// listed for revocation is refused until a new leader's promote makes it renewable again.
#[test]
fn a_lease_whose_revoke_is_in_flight_cannot_be_kept_alive() {
    let mut leader = Node::new();
    leader.store.set_clock(0);
    leader.apply(&Request::lease_grant(1, 100));
    leader.apply(&Request::lease_grant(2, 100));
    assert_eq!(leader.store.expired_leases(100, 1), vec![1]);
    assert_eq!(
        leader.store.lease_keep_alive(1, 101),
        Err(KvError::LeaseNotFound { id: 1 })
    );
    assert_eq!(leader.store.lease_keep_alive(2, 101), Ok(100), "not listed");
    // Still refused when listed again after the retry interval.
    let retry = 100 + Limits::default().lease_revoke_retry_ms;
    assert_eq!(leader.store.expired_leases(retry, 10), vec![2, 1]);
    assert!(leader.store.lease_keep_alive(1, retry).is_err());
    // The revoke was lost with the leadership; the next leader's promote makes it renewable.
    leader.store.lease_promote(retry, 50);
    assert_eq!(leader.store.lease_keep_alive(1, retry), Ok(100));
    assert_eq!(leader.store.lease_keep_alive(2, retry), Ok(100));
    assert_eq!(
        leader.store.expired_leases(retry + 99, 10),
        Vec::<LeaseId>::new()
    );
    assert_eq!(leader.store.expired_leases(retry + 100, 10), vec![1, 2]);
}

#[test]
fn a_new_leader_extends_every_lease_before_expiring_any() {
    let mut node = Node::new();
    node.store.set_clock(0);
    node.apply(&Request::lease_grant(1, 1_000));
    node.apply(&Request::lease_grant(2, 5_000));
    // Much later this follower becomes leader: deadlines it computed long ago are stale.
    assert_eq!(node.store.expired_leases(100_000, 10), vec![1, 2]);
    node.store.lease_promote(100_000, 300);
    assert_eq!(
        node.store.expired_leases(101_299, 10),
        Vec::<LeaseId>::new()
    );
    assert_eq!(node.store.expired_leases(101_300, 10), vec![1]);
    assert_eq!(
        node.store
            .lease_time_to_live(2, 101_300)
            .unwrap()
            .remaining_ms,
        Some(4_000)
    );
    // After a restore deadlines are unknown until promote.
    let mut buf = Vec::new();
    node.store.write_snapshot(&mut buf).unwrap();
    let mut restored = KvStore::restore(&mut buf.as_slice(), Limits::default()).unwrap();
    assert_eq!(restored.expired_leases(u64::MAX, 10), Vec::<LeaseId>::new());
    assert_eq!(
        restored.lease_time_to_live(1, 0).unwrap().remaining_ms,
        None
    );
    restored.lease_promote(0, 0);
    assert_eq!(restored.expired_leases(1_000, 10), vec![1]);
}

#[test]
fn keys_move_between_leases() {
    let mut node = Node::new();
    node.apply(&Request::lease_grant(1, 1_000));
    node.apply(&Request::lease_grant(2, 1_000));
    node.apply(&put_with_lease("k", 1));
    node.apply(&put_with_lease("k", 2));
    node.apply(&put_with_lease("gone", 1));
    node.apply(&Request::delete("gone"));
    node.apply(&put_with_lease("plain", 1));
    node.apply(&Request::put("plain", "no lease now"));
    assert!(node.store.lease_time_to_live(1, 0).unwrap().keys.is_empty());
    assert_eq!(
        node.store.lease_time_to_live(2, 0).unwrap().keys,
        vec![bytes::Bytes::from("k")]
    );
    let revoke = node.apply(&Request::lease_revoke(1));
    assert_eq!(
        revoke.result,
        Ok(Reply::LeaseRevoke(LeaseRevokeResponse { deleted: 0 }))
    );
    assert_eq!(
        revoke.revision,
        node.store.revision(),
        "no keys, no new revision"
    );
    assert_eq!(
        node.store.range(&RangeRequest::key("plain")).unwrap().count,
        1
    );
}

#[test]
fn grant_rules() {
    let mut node = Node::new();
    let auto = node.apply(&Request::lease_grant(0, 10));
    assert_eq!(
        auto.result,
        Ok(Reply::LeaseGrant(LeaseGrantResponse { id: 1, ttl_ms: 10 })),
        "id = log index"
    );
    assert_eq!(
        node.apply(&Request::lease_grant(1, 10)).result,
        Err(KvError::LeaseExists { id: 1 })
    );
    assert!(matches!(
        node.apply(&Request::lease_grant(3, 0)).result,
        Err(KvError::InvalidRequest(_))
    ));
    assert_eq!(
        node.apply(&put_with_lease("k", 42)).result,
        Err(KvError::LeaseNotFound { id: 42 })
    );
    let mut bounded = Node {
        store: KvStore::new(Limits {
            leases_max: 1,
            ..Limits::default()
        }),
        index: 0,
    };
    bounded.apply(&Request::lease_grant(1, 10));
    assert_eq!(
        bounded.apply(&Request::lease_grant(2, 10)).result,
        Err(KvError::LeaseLimit { max: 1 })
    );
}

#[test]
fn many_expired_leases_are_revoked_by_one_entry_in_one_revision() {
    let mut node = Node::new();
    node.store.set_clock(0);
    for (id, key) in [(1, "a"), (2, "b"), (2, "c"), (3, "d")] {
        if node.store.lease_time_to_live(id, 0).is_err() {
            assert!(node.apply(&Request::lease_grant(id, 1_000)).result.is_ok());
        }
        assert!(node.apply(&put_with_lease(key, id)).result.is_ok());
    }
    let before = node.store.revision();
    // Lease 9 never existed and 1 is listed twice: both are skipped, nothing fails.
    let expired = node.apply(&Request::lease_expire(vec![1, 2, 9, 1]));
    assert_eq!(
        expired.result,
        Ok(Reply::LeaseExpire(LeaseExpireResponse {
            revoked: vec![1, 2],
            deleted: 3
        }))
    );
    assert_eq!(
        expired.revision,
        before + 1,
        "one revision for every delete"
    );
    assert!(node.store.lease_time_to_live(1, 0).is_err());
    assert!(node.store.lease_time_to_live(3, 0).is_ok());
    for bad in [vec![], vec![0], vec![1; LEASE_EXPIRE_IDS_MAX + 1]] {
        assert!(
            Request::lease_expire(bad)
                .validate(&Limits::default())
                .is_err()
        );
    }
}

#[test]
fn a_put_that_ignores_value_or_lease_keeps_the_current_one() {
    let mut node = Node::new();
    node.apply(&Request::lease_grant(1, 1_000));
    node.apply(&Request::new(Op::Put(
        PutRequest::new("k", "first").with_lease(1),
    )));
    let keep_value = PutRequest {
        ignore_value: true,
        ..PutRequest::new("k", "")
    };
    // Without ignore_lease, a put without a lease detaches the key, as any put does.
    let keep_lease = PutRequest {
        ignore_lease: true,
        ..PutRequest::new("k", "second")
    };
    node.apply(&Request::new(Op::Put(keep_lease)));
    let kv = &node.store.range(&RangeRequest::key("k")).unwrap().kvs[0];
    assert_eq!((kv.value.as_ref(), kv.lease), (&b"second"[..], 1));
    node.apply(&Request::new(Op::Put(keep_value)));
    let kv = &node.store.range(&RangeRequest::key("k")).unwrap().kvs[0];
    assert_eq!(
        (kv.value.as_ref(), kv.lease, kv.version),
        (&b"second"[..], 0, 3)
    );

    let missing = PutRequest {
        ignore_value: true,
        ..PutRequest::new("missing", "")
    };
    assert_eq!(
        node.apply(&Request::new(Op::Put(missing))).result,
        Err(KvError::KeyNotFound)
    );
    let both = PutRequest {
        ignore_value: true,
        ..PutRequest::new("k", "given")
    };
    assert_eq!(
        Request::new(Op::Put(both)).validate(&Limits::default()),
        Err(KvError::ValueProvided)
    );
    let both = PutRequest {
        ignore_lease: true,
        ..PutRequest::new("k", "v").with_lease(1)
    };
    assert_eq!(
        Request::new(Op::Put(both)).validate(&Limits::default()),
        Err(KvError::LeaseProvided)
    );
}
