//! Snapshot round trips (equal state hash, equal reads, equal behaviour afterwards) and damaged
//! snapshots (every truncation and bit flip is an error, never a panic or a wrong state).

use bytes::Bytes;
use raftkv_kv::*;

/// A store with history, tombstones, compaction, leases and sessions.
fn busy_store(limits: Limits) -> (KvStore, u64) {
    let mut store = KvStore::new(limits);
    let mut index = 0;
    let mut apply = |store: &mut KvStore, request: Request| {
        index += 1;
        let response = store.apply(index, &request.encode_to_vec());
        assert!(response.result.is_ok(), "{request:?}: {response:?}");
        response
    };
    apply(&mut store, Request::lease_grant(7, 5_000));
    let session = match apply(&mut store, Request::session_open()).result {
        Ok(Reply::SessionOpen(s)) => s.client_id,
        other => panic!("{other:?}"),
    };
    for i in 0..300u32 {
        let key = format!("key/{:03}", i % 97);
        let mut put = PutRequest::new(key, vec![b'v'; (i % 50) as usize]);
        put.flags = u64::from(i % 3);
        if i % 10 == 0 {
            put = put.with_lease(7);
        }
        apply(
            &mut store,
            Request::new(Op::Put(put)).with_session(session, u64::from(i) + 1),
        );
        if i % 7 == 0 {
            apply(
                &mut store,
                Request::delete(format!("key/{:03}", (i * 3) % 97)),
            );
        }
    }
    let compact_to = store.revision() - 50;
    apply(&mut store, Request::compact(compact_to));
    apply(&mut store, Request::session_open());
    (store, index)
}

fn snapshot(store: &KvStore) -> Vec<u8> {
    let mut buf = Vec::new();
    store.write_snapshot(&mut buf).unwrap();
    buf
}

#[test]
fn round_trip_keeps_state_reads_and_behaviour() {
    let (mut store, index) = busy_store(Limits::default());
    let buf = snapshot(&store);
    let mut restored = KvStore::restore(&mut buf.as_slice(), Limits::default()).unwrap();
    assert_eq!(restored.state_hash(), store.state_hash());
    assert_eq!(
        (
            restored.applied_index(),
            restored.revision(),
            restored.compacted_revision()
        ),
        (
            store.applied_index(),
            store.revision(),
            store.compacted_revision()
        )
    );
    assert_eq!(restored.session_count(), 2);
    for rev in store.compacted_revision()..=store.revision() {
        let req = RangeRequest::prefix("key/").at_revision(rev);
        assert_eq!(restored.range(&req), store.range(&req), "revision {rev}");
    }
    assert_eq!(
        restored.lease_time_to_live(7, 0).unwrap().keys,
        store.lease_time_to_live(7, 0).unwrap().keys
    );
    // Both continue identically.
    for (i, request) in [
        Request::lease_revoke(7),
        Request::put("new", "x"),
        Request::compact(store.revision()),
    ]
    .into_iter()
    .enumerate()
    {
        let payload = request.encode_to_vec();
        let i = index + 1 + i as u64;
        assert_eq!(store.apply(i, &payload), restored.apply(i, &payload));
    }
    assert_eq!(restored.state_hash(), store.state_hash());
    // And the snapshot of a restored store is byte-for-byte the same.
    assert_eq!(snapshot(&restored), snapshot(&store));
}

#[test]
fn large_histories_span_several_chunks() {
    let limits = Limits::default();
    let mut store = KvStore::new(limits.clone());
    let value = Bytes::from(vec![7u8; 100_000]);
    for i in 1..=40u64 {
        let response = store.apply(i, &Request::put("big", value.clone()).encode_to_vec());
        assert!(response.result.is_ok());
    }
    let buf = snapshot(&store);
    assert!(buf.len() > 3 * SNAPSHOT_CHUNK_BYTES);
    let restored = KvStore::restore(&mut buf.as_slice(), limits).unwrap();
    assert_eq!(restored.state_hash(), store.state_hash());
    let at_5 = RangeRequest::key("big").at_revision(6);
    assert_eq!(restored.range(&at_5).unwrap().kvs[0].version, 5);
}

#[test]
fn empty_store_round_trips() {
    let store = KvStore::new(Limits::default());
    let restored = KvStore::restore(&mut snapshot(&store).as_slice(), Limits::default()).unwrap();
    assert_eq!(restored.state_hash(), store.state_hash());
}

#[test]
fn every_truncation_is_an_error() {
    let (store, _) = busy_store(Limits::default());
    let buf = snapshot(&store);
    for len in (0..buf.len()).step_by(7).chain([buf.len() - 1]) {
        let error = KvStore::restore(&mut &buf[..len], Limits::default()).unwrap_err();
        assert!(
            matches!(error, KvError::CorruptSnapshot(_)),
            "cut at {len}: {error:?}"
        );
    }
    let mut longer = buf.clone();
    longer.push(0);
    assert!(matches!(
        KvStore::restore(&mut longer.as_slice(), Limits::default()),
        Err(KvError::CorruptSnapshot(_))
    ));
}

#[test]
fn every_bit_flip_is_an_error() {
    let (store, _) = busy_store(Limits::default());
    let buf = snapshot(&store);
    for pos in 0..buf.len() {
        let mut bad = buf.clone();
        bad[pos] ^= 1 << (pos % 8);
        let result = KvStore::restore(&mut bad.as_slice(), Limits::default());
        assert!(
            matches!(result, Err(KvError::CorruptSnapshot(_))),
            "flip at byte {pos}: {result:?}"
        );
    }
}

#[test]
fn garbage_and_io_errors() {
    assert!(matches!(
        KvStore::restore(&mut &b"hello"[..], Limits::default()),
        Err(KvError::CorruptSnapshot(_))
    ));
    struct Failing;
    impl std::io::Read for Failing {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("disk on fire"))
        }
    }
    assert!(matches!(
        KvStore::restore(&mut Failing, Limits::default()),
        Err(KvError::SnapshotIo(_))
    ));
}

#[test]
fn state_hash_ignores_node_local_state() {
    let (mut a, _) = busy_store(Limits::default());
    let hash = a.state_hash();
    a.set_clock(123_456);
    a.lease_promote(99, 1_000);
    a.lease_keep_alive(7, 5).unwrap();
    a.watch_create(&WatchRequest::prefix("key/")).unwrap();
    assert_eq!(a.state_hash(), hash);
    let applied = a.applied_index();
    a.apply(applied + 1, &Request::put("x", "y").encode_to_vec());
    assert_ne!(a.state_hash(), hash);
}

#[test]
fn flags_are_kept_with_their_version_and_reset_by_a_put_without_them() {
    let mut store = KvStore::new(Limits::default());
    let mut index = 0;
    let mut apply = |store: &mut KvStore, put: PutRequest| {
        index += 1;
        let response = store.apply(index, &Request::new(Op::Put(put)).encode_to_vec());
        assert!(response.result.is_ok(), "{response:?}");
    };
    let flags_of = |store: &KvStore| {
        let range = RangeRequest::key("k");
        match store.range(&range) {
            Ok(found) => found.kvs.first().map(|kv| kv.flags),
            Err(e) => panic!("{e}"),
        }
    };
    let mut flagged = PutRequest::new("k", "v");
    flagged.flags = 42;
    apply(&mut store, flagged);
    assert_eq!(flags_of(&store), Some(42));
    let before = store.state_hash();
    let restored = KvStore::restore(&mut snapshot(&store).as_slice(), Limits::default()).unwrap();
    assert_eq!(flags_of(&restored), Some(42));
    assert_eq!(restored.state_hash(), before);
    // A put that keeps the value keeps its flags; a plain put resets them.
    let keep_value = PutRequest {
        key: Bytes::from_static(b"k"),
        ignore_value: true,
        ..PutRequest::default()
    };
    apply(&mut store, keep_value);
    assert_eq!(flags_of(&store), Some(42));
    apply(&mut store, PutRequest::new("k", "w"));
    assert_eq!(flags_of(&store), Some(0));
}

#[test]
fn stores_that_differ_only_in_flags_hash_differently() {
    let hash_with = |flags: u64| {
        let mut store = KvStore::new(Limits::default());
        let put = PutRequest {
            flags,
            ..PutRequest::new("k", "v")
        };
        store.apply(1, &Request::new(Op::Put(put)).encode_to_vec());
        store.state_hash()
    };
    assert_ne!(hash_with(1), hash_with(2));
    assert_ne!(hash_with(0), hash_with(1));
}
