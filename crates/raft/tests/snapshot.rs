//! Snapshots and log compaction (§7): compaction, InstallSnapshot in bounded resumable chunks,
//! stale snapshots, configuration restored from a snapshot.

mod common;

use bytes::Bytes;
use common::{Cluster, config, drain};
use raftkv_raft::{
    AppendEntriesResponse, ConfState, Error, InstallSnapshot, MemStorage, MemberChange, Message,
    MessageBody, ProgressState, RawNode, SnapshotMetadata, Storage,
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

/// Node 3 lags behind leader 1's compaction; the leader has just started sending it the
/// snapshot (the first chunk is in the leader's outbox), in chunks of 16 bytes.
fn snapshot_transfer_started() -> Cluster {
    let mut c = lagging_follower_behind_compaction(|cfg| cfg.snapshot_chunk_bytes_max = 16);
    c.heal();
    c.node_mut(1).tick(); // heartbeat
    deliver(&mut c, 1, 3);
    deliver(&mut c, 3, 1); // "I am behind": the leader sends an empty append
    deliver(&mut c, 1, 3);
    deliver(&mut c, 3, 1); // rejected: the leader starts the snapshot
    c
}

/// Offsets of the chunks leader 1 has ready for node 3 (drained).
fn chunk_offsets_to_3(c: &mut Cluster) -> Vec<u64> {
    drain(c.node_mut(1))
        .msgs
        .iter()
        .filter(|m| m.to == 3)
        .filter_map(|m| match &m.body {
            MessageBody::InstallSnapshot(s) => Some(s.offset),
            _ => None,
        })
        .collect()
}

#[test]
fn a_duplicated_chunk_does_not_multiply_the_chunks_in_flight() {
    let mut c = snapshot_transfer_started();
    // A heartbeat goes out while the first chunk is in flight; both are answered.
    c.node_mut(1).tick();
    deliver(&mut c, 1, 3);
    deliver(&mut c, 3, 1);
    assert_eq!(
        chunk_offsets_to_3(&mut c),
        [16],
        "the ack sends the next chunk; the heartbeat answer of a moving transfer sends nothing"
    );
    // The same answer twice (as a resent chunk's would be): only the first moves the transfer.
    let answer = |next_offset| Message {
        from: 3,
        to: 1,
        term: c.term(1),
        body: MessageBody::InstallSnapshotResponse(raftkv_raft::InstallSnapshotResponse {
            index: c.node(1).raft().raft_log().first_index() - 1,
            next_offset,
        }),
    };
    let (first, second) = (answer(32), answer(32));
    c.node_mut(1).step(first).unwrap();
    c.node_mut(1).step(second).unwrap();
    assert_eq!(chunk_offsets_to_3(&mut c), [32]);
}

#[test]
fn a_lost_chunk_is_sent_again_after_a_heartbeat_without_progress() {
    let mut c = snapshot_transfer_started();
    assert_eq!(chunk_offsets_to_3(&mut c), [0], "lost");
    c.node_mut(1).tick();
    deliver(&mut c, 1, 3);
    deliver(&mut c, 3, 1);
    assert_eq!(chunk_offsets_to_3(&mut c), [0], "sent again");
    c.tick_all(4);
    assert_eq!(
        c.applied[&3].len(),
        c.applied[&1].len(),
        "and the follower caught up"
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

/// Voters {1, 2, 3} commit entries 1..=4 while node 3 is cut off; then node 4, started empty, is
/// added as a voter (the joint configuration at 5, C(new) at 6) and catches up one entry per round
/// trip. After every round its application snapshots its applied state once it has applied 4
/// entries past its last snapshot, as the simulator's nodes do, and tries again after the next
/// round when the core refuses.
fn node_4_joins_and_snapshots_every_4_entries() -> Cluster {
    let one_entry_per_round_trip = |cfg: &mut raftkv_raft::Config| {
        cfg.msg_entries_max = 1;
        cfg.inflight_msgs_max = 1;
    };
    let mut c = Cluster::with(&[1, 2, 3], one_entry_per_round_trip, |_| MemStorage::new());
    c.campaign(1);
    c.isolate(3);
    for data in ["a", "b", "c"] {
        c.propose(1, data).unwrap();
    }
    c.add_node(4);
    c.node_mut(1)
        .propose_conf_change(vec![MemberChange::AddVoter(4)])
        .unwrap();
    c.node_mut(1).tick(); // a heartbeat: node 4 answers, and the leader starts probing it
    while c.round() {
        let applied = c.node(4).raft().raft_log().applied();
        let snapshot_index = c.node(4).storage().snapshot().unwrap().metadata.index;
        if applied >= snapshot_index + 4 {
            match c.try_compact(4, applied) {
                Ok(()) | Err(Error::SnapshotIndex { .. }) => {}
                Err(e) => panic!("snapshot at {applied}: {e}"),
            }
        }
    }
    assert_eq!(c.node(4).raft().conf_state().voters, [1, 2, 3, 4].into());
    c
}

/// A snapshot must say who votes as of its index, or no follower can install it. A node that
/// started empty learns the membership only from the entry that adds it: below that entry it does
/// not know it, and refuses to describe a snapshot there; from that entry on, it can.
#[test]
fn a_snapshot_is_described_only_where_the_node_knows_the_membership() {
    let mut c = node_4_joins_and_snapshots_every_4_entries();
    let stored = c.node(4).storage().snapshot().unwrap().metadata;
    assert!(
        stored.index >= 5,
        "snapshot at {} below its join",
        stored.index
    );
    assert_eq!(stored.conf_state.voters, [1, 2, 3, 4].into());
    assert!(matches!(
        c.node_mut(4).create_snapshot(4, Bytes::new()),
        Err(Error::SnapshotIndex { index: 4, .. })
    ));
}

/// Found by the simulator: a leader that joined through a membership change, started empty, had
/// compacted its log with a snapshot taken below the entry that added it, without voters; it
/// offered that snapshot to a lagging follower again and again, and the follower refused it every
/// time as malformed. Here node 4 leads and node 3, behind its compaction point, must catch up
/// from it through a snapshot.
#[test]
fn a_leader_that_joined_empty_brings_a_lagging_follower_up_through_a_snapshot() {
    let mut c = node_4_joins_and_snapshots_every_4_entries();
    c.node_mut(1).transfer_leader(4).unwrap();
    c.stabilize();
    assert_eq!(c.leaders(), vec![4]);
    assert!(
        c.node(4).raft().raft_log().first_index() > 2,
        "not compacted"
    );
    c.heal();
    c.tick_all(2);
    assert_eq!(c.committed(3), c.node(4).raft().raft_log().last_index());
    // The harness's snapshot keeps (index, term, data) of each applied entry, not its kind.
    let applied = |id| -> Vec<_> {
        c.applied[&id]
            .iter()
            .map(|e| (e.index, e.term, e.data.clone()))
            .collect()
    };
    assert_eq!(applied(3), applied(4));
    assert_eq!(c.node(3).raft().conf_state().voters, [1, 2, 3, 4].into());
}
