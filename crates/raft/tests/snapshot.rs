//! Snapshots and log compaction (§7): compaction, InstallSnapshot in bounded resumable chunks,
//! stale snapshots, configuration restored from a snapshot.

mod common;

use bytes::Bytes;
use common::{Cluster, config, drain};
use raftkv_raft::{
    AppendEntriesResponse, ConfState, Error, InstallSnapshot, MemStorage, Message, MessageBody,
    ProgressState, RawNode, SnapshotMetadata,
};

/// Leader 1 commits 20 entries while node 3 is cut off, then compacts its log.
fn lagging_follower_behind_compaction(tweak: impl Fn(&mut raftkv_raft::Config)) -> Cluster {
    let mut c = Cluster::with(&[1, 2, 3], tweak, |_| MemStorage::new());
    c.campaign(1);
    c.isolate(3);
    for i in 0..20 {
        c.propose(1, &format!("v{i}")).unwrap();
    }
    c.compact(1);
    assert!(c.node(1).raft().raft_log().first_index() > 2);
    c
}

#[test]
fn lagging_follower_catches_up_through_a_snapshot() {
    let mut c = lagging_follower_behind_compaction(|_| {});
    c.heal();
    c.tick_all(2);
    let leader_applied: Vec<_> = c.applied[&1].iter().map(|e| e.data.clone()).collect();
    let follower_applied: Vec<_> = c.applied[&3].iter().map(|e| e.data.clone()).collect();
    assert_eq!(follower_applied, leader_applied);
    // Replication continues after the snapshot.
    c.propose(1, "after").unwrap();
    c.tick_all(1);
    assert_eq!(c.applied[&3].last().unwrap().data, "after");
    assert_eq!(
        c.node(1).raft().tracker().get(3).unwrap().state,
        ProgressState::Replicate
    );
}

#[test]
fn snapshot_travels_in_bounded_chunks() {
    let mut c = lagging_follower_behind_compaction(|cfg| cfg.snapshot_chunk_bytes_max = 64);
    c.heal();
    c.tick_all(2);
    let chunks: Vec<&InstallSnapshot> = c
        .delivered
        .iter()
        .filter_map(|m| match &m.body {
            MessageBody::InstallSnapshot(s) => Some(s.as_ref()),
            _ => None,
        })
        .collect();
    assert!(chunks.len() > 2, "one chunk for the whole snapshot");
    assert!(chunks.iter().all(|s| s.data.len() <= 64));
    assert_eq!(c.applied[&3].len(), c.applied[&1].len());
}

/// Delivers `from`'s pending messages addressed to `to` only; returns how many.
fn deliver(c: &mut Cluster, from: u64, to: u64) -> usize {
    let msgs: Vec<Message> = drain(c.node_mut(from))
        .msgs
        .into_iter()
        .filter(|m| m.to == to)
        .collect();
    let count = msgs.len();
    for m in msgs {
        c.node_mut(to).step(m).unwrap();
    }
    count
}

#[test]
fn follower_gets_no_appends_while_in_snapshot_state() {
    let mut c = lagging_follower_behind_compaction(|_| {});
    c.heal();
    c.node_mut(1).tick(); // heartbeat
    deliver(&mut c, 1, 3);
    deliver(&mut c, 3, 1); // "I am behind": the leader sends an empty append
    deliver(&mut c, 1, 3);
    deliver(&mut c, 3, 1); // rejected: the leader starts the snapshot
    assert_eq!(
        c.node(1).raft().tracker().get(3).unwrap().state,
        ProgressState::Snapshot
    );
    c.node_mut(1).propose(Bytes::from_static(b"more")).unwrap();
    let msgs = drain(c.node_mut(1)).msgs;
    assert!(
        msgs.iter()
            .any(|m| m.to == 3 && matches!(m.body, MessageBody::InstallSnapshot(_))),
        "the snapshot chunk goes out"
    );
    assert!(
        !msgs
            .iter()
            .any(|m| m.to == 3 && matches!(m.body, MessageBody::AppendEntries(_))),
        "appends sent to a follower that is receiving a snapshot"
    );
}

fn chunk(index: u64, data: &'static [u8], offset: u64, total: u64) -> Message {
    Message {
        from: 2,
        to: 1,
        term: 3,
        body: MessageBody::InstallSnapshot(Box::new(InstallSnapshot {
            metadata: SnapshotMetadata {
                index,
                term: 2,
                conf_state: ConfState::from_voters([1, 2, 3, 4]),
            },
            total_bytes: total,
            offset,
            data: Bytes::from_static(data),
        })),
    }
}

fn next_offset(node: &mut RawNode<MemStorage>) -> Option<u64> {
    drain(node).msgs.iter().find_map(|m| match &m.body {
        MessageBody::InstallSnapshotResponse(r) => Some(r.next_offset),
        _ => None,
    })
}

#[test]
fn lost_chunk_resumes_from_the_last_acknowledged_offset() {
    let mut node = RawNode::new(&config(1, &[1, 2, 3]), MemStorage::new()).unwrap();
    node.step(chunk(10, b"aaaa", 0, 12)).unwrap();
    assert_eq!(next_offset(&mut node), Some(4));
    // The chunk at 4 is lost; the one at 8 arrives: the follower asks again from 4, keeping 0..4.
    node.step(chunk(10, b"cccc", 8, 12)).unwrap();
    assert_eq!(next_offset(&mut node), Some(4));
    node.step(chunk(10, b"bbbb", 4, 12)).unwrap();
    assert_eq!(next_offset(&mut node), Some(8));
    node.step(chunk(10, b"cccc", 8, 12)).unwrap();
    let ready = node.ready();
    let snapshot = ready
        .snapshot
        .clone()
        .expect("complete snapshot handed out");
    assert_eq!(snapshot.data, "aaaabbbbcccc");
    assert!(matches!(
        ready.persisted_messages[0].body,
        MessageBody::AppendEntriesResponse(AppendEntriesResponse::Accepted { match_index: 10 })
    ));
    assert!(
        ready.messages.is_empty(),
        "the ack must wait for the snapshot to be durable"
    );
}

#[test]
fn installing_a_snapshot_replaces_the_configuration() {
    // openraft#1808: keeping the old configuration after a snapshot lost committed data.
    let mut node = RawNode::new(&config(1, &[1, 2, 3]), MemStorage::new()).unwrap();
    node.step(chunk(10, b"state", 0, 5)).unwrap();
    assert_eq!(
        node.raft().conf_state(),
        &ConfState::from_voters([1, 2, 3, 4])
    );
    drain(&mut node);
    assert_eq!(node.raft().raft_log().committed(), 10);
    assert_eq!(node.raft().raft_log().first_index(), 11);
}

#[test]
fn stale_snapshot_is_ignored() {
    let mut node = RawNode::new(&config(1, &[1, 2, 3]), MemStorage::new()).unwrap();
    node.step(chunk(10, b"new", 0, 3)).unwrap();
    drain(&mut node);
    node.step(chunk(5, b"old", 0, 3)).unwrap();
    let ready = node.ready();
    assert!(ready.snapshot.is_none(), "an older snapshot was installed");
    assert!(matches!(
        ready.persisted_messages[0].body,
        MessageBody::AppendEntriesResponse(AppendEntriesResponse::Accepted { match_index: 10 })
    ));
    assert_eq!(node.raft().raft_log().committed(), 10);
}

#[test]
fn snapshot_only_of_applied_state() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.campaign(1);
    let last = c.node(1).raft().raft_log().last_index();
    assert!(matches!(
        c.node_mut(1).create_snapshot(last + 5, Bytes::new()),
        Err(Error::SnapshotIndex { .. })
    ));
}

#[test]
fn restart_after_compaction_resumes_from_the_snapshot() {
    let mut c = lagging_follower_behind_compaction(|_| {});
    let first = c.node(1).raft().raft_log().first_index();
    let committed = c.committed(1);
    c.restart(1);
    assert_eq!(c.node(1).raft().raft_log().first_index(), first);
    assert_eq!(c.committed(1), committed);
    assert_eq!(
        c.node(1).raft().conf_state(),
        &ConfState::from_voters([1, 2, 3])
    );
}

#[test]
fn snapshot_whose_last_entry_is_held_keeps_the_later_log() {
    // Figure 13 rule 6: entries after the snapshot may have been acknowledged; keep them.
    let mut node = RawNode::new(
        &config(1, &[1, 2, 3]),
        common::storage_with_terms(&[2; 12], 2),
    )
    .unwrap();
    let mut m = chunk(10, b"state", 0, 5);
    m.term = 3;
    node.step(m).unwrap();
    let ready = node.ready();
    assert!(
        ready.snapshot.is_none(),
        "restored over a log that already holds the snapshot"
    );
    assert_eq!(node.raft().raft_log().last_index(), 12);
    assert_eq!(node.raft().raft_log().committed(), 10);
}
