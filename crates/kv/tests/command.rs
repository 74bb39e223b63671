//! The command encoding: round trips, the decoder never panics on arbitrary bytes, the version
//! check, limits enforced before proposing and again at apply, error and response encodings.

use bytes::Bytes;
use proptest::prelude::*;
use prost::Message;
use raftkv_kv::*;

fn bytes_of(max: usize) -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

fn request() -> impl Strategy<Value = Request> {
    let put = || {
        (bytes_of(8), bytes_of(8), 0i64..3, any::<bool>()).prop_map(
            |(key, value, lease, prev_kv)| PutRequest {
                key,
                value,
                lease,
                prev_kv,
                ..PutRequest::default()
            },
        )
    };
    let delete = (bytes_of(8), bytes_of(8), any::<bool>()).prop_map(|(key, range_end, prev_kv)| {
        DeleteRangeRequest {
            key,
            range_end,
            prev_kv,
        }
    });
    let compare = (bytes_of(4), 0i32..4, any::<i64>()).prop_map(|(key, op, v)| Compare {
        key,
        range_end: Bytes::new(),
        op,
        target: Some(CompareTarget::ModRevision(v)),
    });
    let op = prop_oneof![
        put().prop_map(Op::Put),
        delete.prop_map(Op::DeleteRange),
        (
            proptest::collection::vec(compare, 0..3),
            proptest::collection::vec(put().prop_map(RequestOp::from), 0..3)
        )
            .prop_map(|(compare, success)| Op::Txn(TxnRequest {
                compare,
                success,
                failure: vec![]
            })),
        any::<i64>().prop_map(|revision| Op::Compact(CompactRequest { revision })),
        (any::<i64>(), any::<u64>())
            .prop_map(|(id, ttl_ms)| Op::LeaseGrant(LeaseGrantRequest { id, ttl_ms })),
        Just(Op::SessionOpen(SessionOpenRequest {})),
    ];
    (op, prop_oneof![Just((0u64, 0u64)), (1u64.., 1u64..)]).prop_map(|(op, (client_id, seq))| {
        let session = !matches!(op, Op::SessionOpen(_));
        let r = Request::new(op);
        if session {
            r.with_session(client_id, seq)
        } else {
            r
        }
    })
}

proptest! {
    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = Request::decode(&bytes);
        let _ = Response::decode(&bytes);
    }

    #[test]
    fn decoding_mutated_requests_never_panics(request in request(), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4)) {
        let mut bytes = request.encode_to_vec();
        for (pos, x) in flips {
            if !bytes.is_empty() {
                let n = bytes.len();
                bytes[pos % n] ^= x;
            }
        }
        if let Ok(decoded) = Request::decode(&bytes) {
            // Whatever decodes is well-formed and applies without panicking.
            let _ = decoded.validate(&Limits::default());
            let mut store = KvStore::new(Limits::default());
            let _ = store.apply(1, &bytes);
        }
    }

    #[test]
    fn requests_round_trip(request in request()) {
        let bytes = request.encode_to_vec();
        prop_assert_eq!(Request::decode(&bytes).unwrap(), request);
    }

    #[test]
    fn apply_of_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 1..100)) {
        let mut store = KvStore::new(Limits::default());
        let hash = store.state_hash();
        let response = store.apply(1, &bytes);
        if response.result.is_err() {
            let mut empty = KvStore::new(Limits::default());
            empty.apply(1, &[]);
            prop_assert_eq!(store.state_hash(), empty.state_hash(), "a failed command changes nothing");
        }
        prop_assert_ne!(hash, 0);
    }
}

#[test]
fn malformed_commands_are_errors() {
    // No operation.
    let no_op = Request {
        version: COMMAND_VERSION,
        client_id: 0,
        seq: 0,
        op: None,
    };
    assert!(matches!(
        Request::decode(&Message::encode_to_vec(&no_op)),
        Err(KvError::Malformed(_))
    ));
    // Unknown version, and the empty message (version 0).
    let mut v2 = Request::put("k", "v");
    v2.version = 2;
    assert_eq!(
        Request::decode(&v2.encode_to_vec()),
        Err(KvError::UnsupportedVersion {
            version: 2,
            supported: COMMAND_VERSION
        })
    );
    assert!(matches!(
        Request::decode(&[0x08, 0x00]),
        Err(KvError::UnsupportedVersion { version: 0, .. })
    ));
    // A sequence number without a client, an unknown compare operator, a missing target.
    let mut seq_only = Request::put("k", "v");
    seq_only.seq = 3;
    assert!(matches!(
        Request::decode(&seq_only.encode_to_vec()),
        Err(KvError::Malformed(_))
    ));
    let mut bad_op = TxnRequest::cas("k", "v", 1);
    bad_op.compare[0].op = 9;
    assert!(matches!(
        Request::decode(&Request::txn(bad_op).encode_to_vec()),
        Err(KvError::Malformed(_))
    ));
    let mut no_target = TxnRequest::cas("k", "v", 1);
    no_target.compare[0].target = None;
    assert!(matches!(
        Request::decode(&Request::txn(no_target).encode_to_vec()),
        Err(KvError::Malformed(_))
    ));
    // Non-canonical: an unknown field appended, a field repeated, a default value spelled out.
    let canonical = Request::put("k", "v").encode_to_vec();
    for extra in [&[0xf8, 0x01, 0x01][..], &[0x08, 0x01], &[0x10, 0x00]] {
        let mut bytes = canonical.clone();
        bytes.extend_from_slice(extra);
        assert!(
            matches!(Request::decode(&bytes), Err(KvError::Malformed(_))),
            "{extra:?}"
        );
    }
    // Truncated.
    let bytes = Request::put("key", "value").encode_to_vec();
    assert!(matches!(
        Request::decode(&bytes[..bytes.len() - 1]),
        Err(KvError::Malformed(_))
    ));
    // At apply: an error response, the index still advances.
    let mut store = KvStore::new(Limits::default());
    let response = store.apply(5, &bytes[..bytes.len() - 1]);
    assert!(matches!(response.result, Err(KvError::Malformed(_))));
    assert_eq!((store.applied_index(), store.revision()), (5, 1));
}

#[test]
fn limits_are_enforced_before_proposing_and_at_apply() {
    let limits = Limits {
        key_bytes_max: 8,
        value_bytes_max: 16,
        request_bytes_max: 120,
        txn_ops_max: 3,
        ..Limits::default()
    };
    let cases: Vec<(Request, KvError)> = vec![
        (
            Request::put("123456789", "v"),
            KvError::KeyTooLarge { bytes: 9, max: 8 },
        ),
        (
            Request::put("k", vec![0u8; 17]),
            KvError::ValueTooLarge { bytes: 17, max: 16 },
        ),
        (Request::put("", "v"), KvError::EmptyKey),
        (
            Request::txn(TxnRequest {
                compare: vec![],
                success: (0..4)
                    .map(|i| PutRequest::new(format!("k{i}"), "v").into())
                    .collect(),
                failure: vec![],
            }),
            KvError::TooManyOps {
                what: "success operations".into(),
                ops: 4,
                max: 3,
            },
        ),
    ];
    let mut store = KvStore::new(limits.clone());
    for (i, (request, error)) in cases.into_iter().enumerate() {
        assert_eq!(request.validate(&limits), Err(error.clone()), "{request:?}");
        let response = store.apply(i as u64 + 1, &request.encode_to_vec());
        assert_eq!(response.result, Err(error));
    }
    // The request size, both ways.
    let big = Request::txn(TxnRequest {
        compare: vec![],
        success: (0..3)
            .map(|i| PutRequest::new(format!("k{i}"), vec![0u8; 16]).into())
            .collect(),
        failure: (0..3)
            .map(|i| PutRequest::new(format!("f{i}"), vec![0u8; 16]).into())
            .collect(),
    });
    let err = big.validate(&limits).unwrap_err();
    assert!(
        matches!(err, KvError::RequestTooLarge { max: 120, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("request_bytes_max"));
    assert!(matches!(
        store.apply(10, &big.encode_to_vec()).result,
        Err(KvError::RequestTooLarge { .. })
    ));
    // Duplicate writes in a transaction.
    let dup = Request::txn(TxnRequest {
        compare: vec![],
        success: vec![
            PutRequest::new("a", "1").into(),
            DeleteRangeRequest::prefix("a").into(),
        ],
        failure: vec![],
    });
    assert!(matches!(
        dup.validate(&limits),
        Err(KvError::InvalidRequest(_))
    ));
    assert_eq!(store.revision(), 1, "nothing over a limit was applied");
}

#[test]
fn range_results_are_bounded() {
    let limits = Limits {
        range_bytes_max: 1_000,
        ..Limits::default()
    };
    let mut store = KvStore::new(limits);
    for i in 0..20u64 {
        store.apply(
            i + 1,
            &Request::put(format!("k{i:02}"), vec![0u8; 50]).encode_to_vec(),
        );
    }
    let all = RangeRequest::prefix("k");
    assert!(matches!(
        store.range(&all),
        Err(KvError::RangeTooLarge { max: 1_000, .. })
    ));
    assert_eq!(
        store.range(&all.clone().with_limit(5)).unwrap().kvs.len(),
        5
    );
    assert_eq!(store.range(&all.clone().keys_only()).unwrap().kvs.len(), 20);
    assert_eq!(store.range(&all.clone().count_only()).unwrap().count, 20);
    // In a transaction the writes before the failing range are rolled back.
    let txn = Request::txn(TxnRequest {
        compare: vec![],
        success: vec![
            PutRequest::new("new", "x").into(),
            RangeRequest::prefix("k").into(),
        ],
        failure: vec![],
    });
    let hash = store.state_hash();
    let response = store.apply(21, &txn.encode_to_vec());
    assert!(matches!(
        response.result,
        Err(KvError::RangeTooLarge { .. })
    ));
    assert_eq!(response.revision, 21);
    assert!(
        store
            .range(&RangeRequest::key("new"))
            .unwrap()
            .kvs
            .is_empty()
    );
    let mut replay = KvStore::new(store.limits().clone());
    for i in 0..20u64 {
        replay.apply(
            i + 1,
            &Request::put(format!("k{i:02}"), vec![0u8; 50]).encode_to_vec(),
        );
    }
    replay.apply(21, &[]);
    assert_eq!(store.state_hash(), replay.state_hash());
    assert_ne!(hash, store.state_hash(), "only the applied index moved");
}

#[test]
fn responses_and_errors_round_trip() {
    let errors = vec![
        KvError::Compacted {
            revision: 1,
            compacted_revision: 5,
        },
        KvError::FutureRevision {
            revision: 9,
            current_revision: 3,
        },
        KvError::EmptyKey,
        KvError::KeyTooLarge { bytes: 1, max: 2 },
        KvError::ValueTooLarge { bytes: 1, max: 2 },
        KvError::RequestTooLarge { bytes: 1, max: 2 },
        KvError::TooManyOps {
            what: "compares".into(),
            ops: 200,
            max: 128,
        },
        KvError::RangeTooLarge { bytes: 1, max: 2 },
        KvError::InvalidRequest("why".into()),
        KvError::LeaseNotFound { id: 3 },
        KvError::LeaseExists { id: 3 },
        KvError::LeaseLimit { max: 3 },
        KvError::SessionNotFound { client_id: 4 },
        KvError::SessionLimit { max: 4 },
        KvError::StaleSequence {
            client_id: 1,
            seq: 2,
            last_seq: 3,
        },
        KvError::Malformed("bad".into()),
        KvError::UnsupportedVersion {
            version: 2,
            supported: 1,
        },
        KvError::CorruptSnapshot("bad".into()),
        KvError::SnapshotIo("io".into()),
        KvError::WatchNotFound { id: 1 },
        KvError::WatchLimit { max: 1 },
        KvError::KeyNotFound,
        KvError::ValueProvided,
        KvError::LeaseProvided,
        KvError::LockSessionNotFound { id: 5 },
        KvError::LockSessionLimit { max: 5 },
        KvError::LockRefused {
            key: "k".into(),
            release: true,
        },
    ];
    for error in errors {
        let response = Response::error(7, error);
        assert_eq!(
            Response::decode(&response.encode_to_vec()).unwrap(),
            response
        );
    }
    let mut store = KvStore::new(Limits::default());
    store.apply(1, &Request::put("k", "v").encode_to_vec());
    let response = store.apply(2, &Request::cas("k", "w", 1).encode_to_vec());
    assert_eq!(
        Response::decode(&response.encode_to_vec()).unwrap(),
        response
    );
    assert!(
        Response::decode(&[0x08, 0x01]).is_err(),
        "neither reply nor error"
    );
}

#[test]
fn cas_is_a_transaction() {
    let mut store = KvStore::new(Limits::default());
    let create = store.apply(1, &Request::cas("k", "v1", 0).encode_to_vec());
    assert!(matches!(
        create.result,
        Ok(Reply::Txn(TxnResponse {
            succeeded: true,
            ..
        }))
    ));
    let stale = store.apply(2, &Request::cas("k", "v2", 0).encode_to_vec());
    let Ok(Reply::Txn(txn)) = stale.result else {
        panic!("{stale:?}")
    };
    assert!(!txn.succeeded);
    let Some(TxnOpResponse::Range(current)) = &txn.responses[0].op else {
        panic!()
    };
    assert_eq!(current.kvs[0].mod_revision, 2);
    let swap = store.apply(3, &Request::cas("k", "v2", 2).encode_to_vec());
    assert_eq!(swap.revision, 3);
    assert_eq!(
        store.range(&RangeRequest::key("k")).unwrap().kvs[0].value,
        "v2"
    );
}

/// etcd's sorted ranges: revision filters drop keys (but not from `count`), sorting sees every
/// remaining key, and the limit applies last (`more` says keys were left out); a sort target
/// without an order sorts ascending.
#[test]
fn a_sorted_range_filters_then_sorts_then_limits() {
    let mut store = KvStore::new(Limits::default());
    for (index, (key, value)) in [("l/a", "3"), ("l/b", "1"), ("l/c", "2"), ("l/b", "4")]
        .into_iter()
        .enumerate()
    {
        store.apply(index as u64 + 1, &Request::put(key, value).encode_to_vec());
    }
    let keys = |r: &RangeResponse| -> Vec<String> {
        r.kvs
            .iter()
            .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
            .collect()
    };
    let by_create = RangeRequest::prefix("l/")
        .sorted(SortTarget::Create, SortOrder::Descend)
        .with_limit(2);
    let r = store.range(&by_create).unwrap();
    assert_eq!(
        (keys(&r), r.more, r.count),
        (vec!["l/c".into(), "l/b".into()], true, 3)
    );
    let by_value = RangeRequest::prefix("l/").sorted(SortTarget::Value, SortOrder::None);
    assert_eq!(
        keys(&store.range(&by_value).unwrap()),
        ["l/c", "l/a", "l/b"]
    );
    let oldest = RangeRequest {
        max_create_revision: 3,
        ..RangeRequest::prefix("l/").sorted(SortTarget::Create, SortOrder::Ascend)
    }
    .with_limit(1);
    let r = store.range(&oldest).unwrap();
    assert_eq!((keys(&r), r.more, r.count), (vec!["l/a".into()], true, 3));
    let recent = RangeRequest {
        min_mod_revision: 4,
        ..RangeRequest::prefix("l/")
    };
    assert_eq!(keys(&store.range(&recent).unwrap()), ["l/b", "l/c"]);
}

/// As in etcd: an empty store is at revision 1, readable there and compactable to it; the first
/// write makes revision 2 (etcd's election recipe relies on nothing being below the first key).
#[test]
fn an_empty_store_is_at_revision_one_and_the_first_write_makes_two() {
    let mut store = KvStore::new(Limits::default());
    assert_eq!(store.revision(), INITIAL_REVISION);
    assert_eq!(INITIAL_REVISION, 1);
    let empty = store
        .range(&RangeRequest::prefix("").at_revision(1))
        .unwrap();
    assert_eq!((empty.count, empty.revision), (0, 1));
    let put = store.apply(1, &Request::put("k", "v").encode_to_vec());
    assert_eq!(put.revision, 2);
    let kv = &store.range(&RangeRequest::key("k")).unwrap().kvs[0];
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (2, 2, 1));
    assert!(
        store
            .apply(2, &Request::compact(1).encode_to_vec())
            .result
            .is_ok()
    );
    assert_eq!(store.compacted_revision(), 1);
    let mut buf = Vec::new();
    store.write_snapshot(&mut buf).unwrap();
    let restored = KvStore::restore(&mut buf.as_slice(), Limits::default()).unwrap();
    assert_eq!(restored.state_hash(), store.state_hash());
    let mut empty = Vec::new();
    KvStore::new(Limits::default())
        .write_snapshot(&mut empty)
        .unwrap();
    let restored = KvStore::restore(&mut empty.as_slice(), Limits::default()).unwrap();
    assert_eq!(restored.revision(), INITIAL_REVISION);
}

/// etcd's nested transactions: every compare, nested ones included, sees the state before the
/// transaction; operations see earlier writes of the same transaction; answers nest.
#[test]
fn a_nested_transaction_decides_on_the_state_before_and_answers_nested() {
    let mut store = KvStore::new(Limits::default());
    store.apply(1, &Request::put("k", "1").encode_to_vec());
    let value_is = |value: &str| {
        Compare::new(
            "k",
            CompareOp::Equal,
            CompareTarget::Value(value.as_bytes().to_vec().into()),
        )
    };
    let nested = TxnRequest {
        compare: vec![value_is("1")],
        success: vec![
            PutRequest::new("j", "before").into(),
            RangeRequest::key("k").into(),
        ],
        failure: vec![PutRequest::new("j", "after").into()],
    };
    let outer = TxnRequest {
        compare: vec![],
        success: vec![PutRequest::new("k", "2").into(), nested.into()],
        failure: vec![],
    };
    let applied = store.apply(2, &Request::new(Op::Txn(outer)).encode_to_vec());
    let Ok(Reply::Txn(txn)) = applied.result else {
        panic!("{applied:?}")
    };
    let Some(TxnOpResponse::Txn(inner)) = &txn.responses[1].op else {
        panic!("{txn:?}")
    };
    assert!(
        inner.succeeded,
        "the nested compare saw k = 1, before the outer put"
    );
    let Some(TxnOpResponse::Range(read)) = &inner.responses[1].op else {
        panic!("{inner:?}")
    };
    assert_eq!(read.kvs[0].value, "2", "a nested read sees the outer put");
    assert_eq!(read.revision, applied.revision);
    assert_eq!(
        store.range(&RangeRequest::key("j")).unwrap().kvs[0].value,
        "before"
    );
}

#[test]
fn a_key_written_by_a_transaction_and_its_nested_one_is_refused() {
    let limits = Limits::default();
    let nested = |success: Vec<RequestOp>, failure: Vec<RequestOp>| TxnRequest {
        compare: vec![],
        success,
        failure,
    };
    let put = |key: &str| RequestOp::from(PutRequest::new(key.to_owned(), "v"));
    let outer = |ops: Vec<RequestOp>| Request::new(Op::Txn(nested(ops, vec![])));
    let twice = outer(vec![put("k"), nested(vec![put("k")], vec![]).into()]);
    assert!(matches!(
        twice.validate(&limits),
        Err(KvError::InvalidRequest(_))
    ));
    let deleted = outer(vec![
        RequestOp::from(DeleteRangeRequest::prefix("k")),
        nested(vec![], vec![put("k/1")]).into(),
    ]);
    assert!(matches!(
        deleted.validate(&limits),
        Err(KvError::InvalidRequest(_))
    ));
    // Only one of a nested transaction's branches runs: each may write the same key.
    let either = outer(vec![nested(vec![put("k")], vec![put("k")]).into()]);
    assert_eq!(either.validate(&limits), Ok(()));

    let mut deep = nested(vec![], vec![]);
    for _ in 0..TXN_NESTING_MAX {
        deep = nested(vec![deep.into()], vec![]);
    }
    assert_eq!(
        Request::new(Op::Txn(deep.clone())).validate(&limits),
        Ok(())
    );
    let deeper = nested(vec![deep.into()], vec![]);
    assert!(matches!(
        Request::new(Op::Txn(deeper)).validate(&limits),
        Err(KvError::Malformed(_))
    ));
}
