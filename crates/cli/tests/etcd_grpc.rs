//! etcd's gRPC API driven through clients generated from the repo's etcd protos, for what
//! `etcdctl` cannot show: many watches on one stream (creates answered in order, events routed
//! by watch id, cancel), fragmenting, progress requests, filters, a watch below the compaction,
//! a duplicate watch id, periodic progress notices, and the status codes and messages etcd's
//! clients match on.

mod common;

use std::time::Duration;

use common::etcd::{PROGRESS_NOTIFY_MS, etcd_cluster};
use futures::StreamExt;
use raftkv_etcdpb::etcdserverpb::cluster_client::ClusterClient;
use raftkv_etcdpb::etcdserverpb::kv_client::KvClient;
use raftkv_etcdpb::etcdserverpb::lease_client::LeaseClient;
use raftkv_etcdpb::etcdserverpb::watch_client::WatchClient;
use raftkv_etcdpb::etcdserverpb::watch_create_request::FilterType;
use raftkv_etcdpb::etcdserverpb::watch_request::RequestUnion;
use raftkv_etcdpb::etcdserverpb::*;
use tokio::sync::mpsc;
use tonic::transport::Channel;
use tonic::{Code, Streaming};

async fn channel(endpoint: &str) -> Channel {
    Channel::from_shared(format!("http://{endpoint}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// One watch stream: requests in, responses out.
struct WatchStream {
    requests: mpsc::Sender<WatchRequest>,
    responses: Streaming<WatchResponse>,
}

impl WatchStream {
    async fn open(channel: Channel) -> WatchStream {
        let (requests, rx) = mpsc::channel(16);
        let outgoing = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|request| (request, rx))
        });
        let mut client = WatchClient::new(channel).max_decoding_message_size(16 << 20);
        let responses = client.watch(outgoing).await.unwrap().into_inner();
        WatchStream {
            requests,
            responses,
        }
    }

    async fn send(&self, request: RequestUnion) {
        let request = WatchRequest {
            request_union: Some(request),
        };
        self.requests.send(request).await.unwrap();
    }

    async fn create(&self, create: WatchCreateRequest) {
        self.send(RequestUnion::CreateRequest(create)).await;
    }

    async fn next(&mut self) -> WatchResponse {
        tokio::time::timeout(Duration::from_secs(10), self.responses.next())
            .await
            .expect("a watch response within 10 s")
            .expect("the stream goes on")
            .expect("a response, not an error")
    }

    /// Whether nothing arrives for a while.
    async fn quiet(&mut self) -> bool {
        tokio::time::timeout(Duration::from_millis(300), self.responses.next())
            .await
            .is_err()
    }
}

fn create(key: &str, range_end: &str) -> WatchCreateRequest {
    WatchCreateRequest {
        key: key.as_bytes().to_vec().into(),
        range_end: range_end.as_bytes().to_vec().into(),
        ..Default::default()
    }
}

async fn put(kv: &mut KvClient<Channel>, key: &str, value: &[u8]) -> i64 {
    let response = kv
        .put(PutRequest {
            key: key.as_bytes().to_vec().into(),
            value: value.to_vec().into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    response.header.unwrap().revision
}

fn keys(response: &WatchResponse) -> Vec<String> {
    response
        .events
        .iter()
        .map(|e| String::from_utf8_lossy(&e.kv.as_ref().unwrap().key).into_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn many_watches_share_a_stream_answered_in_order_routed_by_id_and_cancelled() {
    let root = tempfile::tempdir().unwrap();
    let (_nodes, endpoints, leader) = etcd_cluster(root.path()).await;
    let follower = channel(&endpoints[(leader + 1) % 3]).await;
    let mut kv = KvClient::new(follower.clone());
    let mut stream = WatchStream::open(follower).await;

    stream.create(create("a", "")).await;
    stream.create(create("b/", "b0")).await;
    stream
        .create(WatchCreateRequest {
            watch_id: 7,
            filters: vec![FilterType::Noput as i32],
            ..create("a", "")
        })
        .await;
    stream
        .create(WatchCreateRequest {
            watch_id: 7,
            ..create("c", "")
        })
        .await;
    let mut ids = Vec::new();
    for _ in 0..4 {
        let created = stream.next().await;
        assert!(created.created, "{created:?}");
        ids.push((created.watch_id, created.canceled));
    }
    assert_eq!(
        ids,
        [(0, false), (1, false), (7, false), (7, true)],
        "ids from 0, the one asked for, a duplicate refused"
    );

    let revision = put(&mut kv, "a", b"1").await;
    let event = stream.next().await;
    assert_eq!((event.watch_id, keys(&event)), (0, vec!["a".to_string()]));
    assert_eq!(event.header.unwrap().revision, revision);
    put(&mut kv, "b/x", b"2").await;
    let event = stream.next().await;
    assert_eq!((event.watch_id, keys(&event)), (1, vec!["b/x".to_string()]));
    kv.delete_range(DeleteRangeRequest {
        key: "a".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut deletes: Vec<i64> = vec![stream.next().await.watch_id, stream.next().await.watch_id];
    deletes.sort_unstable();
    assert_eq!(deletes, [0, 7], "the no-put watch sees only the delete");

    stream
        .send(RequestUnion::CancelRequest(WatchCancelRequest {
            watch_id: 1,
        }))
        .await;
    let cancelled = stream.next().await;
    assert!(
        cancelled.canceled && cancelled.watch_id == 1,
        "{cancelled:?}"
    );
    put(&mut kv, "b/y", b"3").await;
    assert!(stream.quiet().await, "a cancelled watch sends nothing");

    stream
        .send(RequestUnion::ProgressRequest(WatchProgressRequest {}))
        .await;
    let progress = stream.next().await;
    assert_eq!(progress.watch_id, -1);
    assert!(progress.events.is_empty() && !progress.created && !progress.canceled);
    let now = put(&mut kv, "z", b"").await;
    assert_eq!(progress.header.unwrap().revision, now - 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fragmenting_watch_splits_a_large_revision_and_others_get_it_whole() {
    let root = tempfile::tempdir().unwrap();
    let (_nodes, endpoints, leader) = etcd_cluster(root.path()).await;
    let channel = channel(&endpoints[leader]).await;
    let mut kv = KvClient::new(channel.clone());
    let mut stream = WatchStream::open(channel).await;
    stream
        .create(WatchCreateRequest {
            fragment: true,
            ..create("f/", "f0")
        })
        .await;
    stream.create(create("f/", "f0")).await;
    assert!(stream.next().await.created && stream.next().await.created);

    let value = vec![b'x'; 450 * 1024];
    let puts = (0..3)
        .map(|i| RequestOp {
            request: Some(request_op::Request::RequestPut(PutRequest {
                key: format!("f/{i}").into_bytes().into(),
                value: value.clone().into(),
                ..Default::default()
            })),
        })
        .collect();
    kv.txn(TxnRequest {
        success: puts,
        ..Default::default()
    })
    .await
    .unwrap();
    let (mut fragmented, mut whole) = (Vec::new(), Vec::new());
    while fragmented
        .iter()
        .map(|r: &WatchResponse| r.events.len())
        .sum::<usize>()
        < 3
        || whole.is_empty()
    {
        let response = stream.next().await;
        match response.watch_id {
            0 => fragmented.push(response),
            _ => whole.push(response),
        }
    }
    assert!(
        fragmented.len() > 1,
        "split in {} responses",
        fragmented.len()
    );
    let flags: Vec<bool> = fragmented.iter().map(|r| r.fragment).collect();
    let mut expected = vec![true; fragmented.len() - 1];
    expected.push(false);
    assert_eq!(flags, expected, "all but the last marked fragment");
    assert_eq!(whole.len(), 1);
    assert_eq!(whole[0].events.len(), 3);
    assert!(!whole[0].fragment);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_watch_below_the_compaction_is_created_then_cancelled_with_the_compact_revision() {
    let root = tempfile::tempdir().unwrap();
    let (_nodes, endpoints, leader) = etcd_cluster(root.path()).await;
    let channel = channel(&endpoints[leader]).await;
    let mut kv = KvClient::new(channel.clone());
    put(&mut kv, "k", b"1").await;
    let compacted = put(&mut kv, "k", b"2").await;
    kv.compact(CompactionRequest {
        revision: compacted,
        physical: false,
    })
    .await
    .unwrap();
    let mut stream = WatchStream::open(channel).await;
    stream
        .create(WatchCreateRequest {
            start_revision: 1,
            ..create("k", "")
        })
        .await;
    let created = stream.next().await;
    assert!(created.created && !created.canceled, "{created:?}");
    let cancelled = stream.next().await;
    assert!(cancelled.canceled, "{cancelled:?}");
    assert_eq!(cancelled.compact_revision, compacted);
    assert_eq!(
        cancelled.cancel_reason,
        "etcdserver: mvcc: required revision has been compacted"
    );
}

/// The status code and message of a failed call.
fn refusal<T: std::fmt::Debug>(
    result: Result<tonic::Response<T>, tonic::Status>,
) -> (Code, String) {
    let status = result.expect_err("the call fails");
    (status.code(), status.message().to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_carry_etcds_codes_and_messages() {
    let root = tempfile::tempdir().unwrap();
    let (_nodes, endpoints, leader) = etcd_cluster(root.path()).await;
    let follower = channel(&endpoints[(leader + 1) % 3]).await;
    let mut kv = KvClient::new(follower.clone())
        .max_encoding_message_size(16 << 20)
        .max_decoding_message_size(16 << 20);
    let mut lease = LeaseClient::new(follower.clone());
    let mut cluster = ClusterClient::new(follower);
    put(&mut kv, "k", b"1").await;
    let now = put(&mut kv, "k", b"2").await;
    kv.compact(CompactionRequest {
        revision: now,
        physical: false,
    })
    .await
    .unwrap();
    let range = |key: &str, revision: i64| RangeRequest {
        key: key.as_bytes().to_vec().into(),
        revision,
        ..Default::default()
    };
    let bytes = |s: &str| bytes::Bytes::from(s.as_bytes().to_vec());
    let put_op = |key: &str| RequestOp {
        request: Some(request_op::Request::RequestPut(PutRequest {
            key: bytes(key),
            ..Default::default()
        })),
    };
    let cases: Vec<(Code, &str, (Code, String))> = vec![
        (
            Code::OutOfRange,
            "etcdserver: mvcc: required revision has been compacted",
            refusal(kv.range(range("k", now - 1)).await),
        ),
        (
            Code::OutOfRange,
            "etcdserver: mvcc: required revision is a future revision",
            refusal(kv.range(range("k", now + 100)).await),
        ),
        (
            Code::OutOfRange,
            "etcdserver: mvcc: required revision has been compacted",
            refusal(
                kv.compact(CompactionRequest {
                    revision: now,
                    physical: false,
                })
                .await,
            ),
        ),
        (
            Code::InvalidArgument,
            "etcdserver: key is not provided",
            refusal(kv.range(range("", 0)).await),
        ),
        (
            Code::InvalidArgument,
            "etcdserver: key is not provided",
            refusal(kv.put(PutRequest::default()).await),
        ),
        (
            Code::InvalidArgument,
            "etcdserver: too many operations in txn request",
            refusal(
                kv.txn(TxnRequest {
                    success: (0..129).map(|i| put_op(&format!("t{i}"))).collect(),
                    ..Default::default()
                })
                .await,
            ),
        ),
        (
            Code::InvalidArgument,
            "etcdserver: request is too large",
            refusal(
                kv.put(PutRequest {
                    key: bytes("big"),
                    value: vec![0u8; 2 << 20].into(),
                    ..Default::default()
                })
                .await,
            ),
        ),
        (
            Code::InvalidArgument,
            "etcdserver: key not found",
            refusal(
                kv.put(PutRequest {
                    key: bytes("absent"),
                    ignore_value: true,
                    ..Default::default()
                })
                .await,
            ),
        ),
        (
            Code::InvalidArgument,
            "etcdserver: value is provided",
            refusal(
                kv.put(PutRequest {
                    key: bytes("k"),
                    value: bytes("v"),
                    ignore_value: true,
                    ..Default::default()
                })
                .await,
            ),
        ),
        (
            Code::NotFound,
            "etcdserver: requested lease not found",
            refusal(
                kv.put(PutRequest {
                    key: bytes("k"),
                    lease: 12345,
                    ..Default::default()
                })
                .await,
            ),
        ),
        (
            Code::NotFound,
            "etcdserver: requested lease not found",
            refusal(lease.lease_revoke(LeaseRevokeRequest { id: 12345 }).await),
        ),
        (
            Code::NotFound,
            "etcdserver: member not found",
            refusal(cluster.member_remove(MemberRemoveRequest { id: 42 }).await),
        ),
        (
            Code::NotFound,
            "etcdserver: member not found",
            refusal(
                cluster
                    .member_promote(MemberPromoteRequest { id: 42 })
                    .await,
            ),
        ),
    ];
    let granted = lease
        .lease_grant(LeaseGrantRequest { ttl: 60, id: 0 })
        .await
        .unwrap()
        .into_inner();
    let again = refusal(
        lease
            .lease_grant(LeaseGrantRequest {
                ttl: 60,
                id: granted.id,
            })
            .await,
    );
    assert_eq!(
        again,
        (
            Code::FailedPrecondition,
            "etcdserver: lease already exists".to_string()
        )
    );
    for (code, message, got) in cases {
        assert_eq!(got, (code, message.to_string()));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_progress_notify_watch_gets_periodic_notices_at_the_current_revision() {
    let root = tempfile::tempdir().unwrap();
    let (_nodes, endpoints, leader) = etcd_cluster(root.path()).await;
    let follower = channel(&endpoints[(leader + 1) % 3]).await;
    let mut kv = KvClient::new(follower.clone());
    let mut stream = WatchStream::open(follower).await;
    stream
        .create(WatchCreateRequest {
            progress_notify: true,
            ..create("p", "")
        })
        .await;
    stream.create(create("q", "")).await;
    assert!(stream.next().await.created && stream.next().await.created);

    let before = put(&mut kv, "elsewhere", b"1").await;
    let notice = stream.next().await;
    assert_eq!(
        notice.watch_id, 0,
        "only the progress_notify watch: {notice:?}"
    );
    assert!(notice.events.is_empty() && !notice.created && !notice.canceled);
    assert!(notice.header.unwrap().revision >= before);

    let put_at = put(&mut kv, "p", b"1").await;
    // The event comes first; no notice ever claims a revision whose events are still to come.
    loop {
        let response = stream.next().await;
        let revision = response.header.unwrap().revision;
        if response.events.is_empty() {
            assert!(
                revision < put_at,
                "a notice at {revision} before the event at {put_at}"
            );
            continue;
        }
        assert_eq!((response.watch_id, revision), (0, put_at));
        break;
    }
    let started = std::time::Instant::now();
    let notice = stream.next().await;
    assert!(notice.events.is_empty() && notice.watch_id == 0);
    assert!(notice.header.unwrap().revision >= put_at);
    assert!(started.elapsed() < Duration::from_millis(PROGRESS_NOTIFY_MS * 5));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_nested_txn_runs_the_branch_its_compare_chose_and_answers_nested() {
    let root = tempfile::tempdir().unwrap();
    let (_nodes, endpoints, leader) = etcd_cluster(root.path()).await;
    let mut kv = KvClient::new(channel(&endpoints[(leader + 1) % 3]).await);
    put(&mut kv, "k", b"1").await;
    let op = |request| RequestOp {
        request: Some(request),
    };
    let put_op = |key: &str, value: &str| {
        op(request_op::Request::RequestPut(PutRequest {
            key: key.as_bytes().to_vec().into(),
            value: value.as_bytes().to_vec().into(),
            ..Default::default()
        }))
    };
    let nested = TxnRequest {
        compare: vec![Compare {
            result: compare::CompareResult::Equal as i32,
            target: compare::CompareTarget::Value as i32,
            key: "k".into(),
            target_union: Some(compare::TargetUnion::Value("1".into())),
            ..Default::default()
        }],
        success: vec![put_op("j", "yes")],
        failure: vec![put_op("j", "no")],
    };
    let answer = kv
        .txn(TxnRequest {
            success: vec![
                put_op("k", "2"),
                op(request_op::Request::RequestTxn(nested)),
            ],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(answer.succeeded);
    let Some(response_op::Response::ResponseTxn(inner)) = &answer.responses[1].response else {
        panic!("{answer:?}")
    };
    assert!(
        inner.succeeded,
        "its compare saw the state before the transaction"
    );
    assert_eq!(inner.header, answer.header);
    let j = kv
        .range(RangeRequest {
            key: "j".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(j.kvs[0].value, "yes");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_member_without_a_quorum_answers_no_leader() {
    let root = tempfile::tempdir().unwrap();
    let (mut nodes, endpoints, leader) = etcd_cluster(root.path()).await;
    let survivor = (leader + 1) % 3;
    for (i, node) in nodes.iter_mut().enumerate() {
        if i != survivor {
            node.kill();
        }
    }
    let mut kv = KvClient::new(channel(&endpoints[survivor]).await);
    let refused = common::eventually("the survivor to know it has no leader", || {
        let mut kv = kv.clone();
        async move {
            let put = kv
                .put(PutRequest {
                    key: "k".into(),
                    ..Default::default()
                })
                .await;
            match put {
                Err(status) if status.message() == "etcdserver: no leader" => Some(status),
                _ => None,
            }
        }
    })
    .await;
    assert_eq!(refused.code(), Code::Unavailable);
    let read = kv
        .range(RangeRequest {
            key: "k".into(),
            ..Default::default()
        })
        .await;
    assert_eq!(
        refusal(read),
        (Code::Unavailable, "etcdserver: no leader".to_string())
    );
}
