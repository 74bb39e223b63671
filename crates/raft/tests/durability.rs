//! The `Ready` contract: nothing is acknowledged, counted or applied before it is durable.

mod common;

use bytes::Bytes;
use common::{Cluster, config, drain};
use raftkv_raft::{
    AppendEntries, AppendEntriesResponse, Entry, MemStorage, Message, MessageBody, RawNode,
};

#[test]
fn single_node_commits_only_after_its_own_entry_is_durable() {
    // etcd #14370: a single-node cluster must not commit (or apply) what is not on its disk.
    let mut node = RawNode::new(&config(1, &[1]), MemStorage::new()).unwrap();
    node.campaign();
    // It leads once its vote for itself is durable (`found_by_simulation.rs`).
    let vote = node.ready();
    node.storage_mut().set_hard_state(vote.hard_state.unwrap());
    node.advance(vote.ack());
    let ready = node.ready();
    assert_eq!(ready.entries.len(), 1);
    assert_eq!(
        node.raft().raft_log().committed(),
        0,
        "committed before durable"
    );
    assert!(ready.committed_entries.is_empty());
    node.storage_mut().append(&ready.entries);
    node.advance(ready.ack());
    assert_eq!(node.raft().raft_log().committed(), 1);
    let ready = node.ready();
    assert_eq!(ready.committed_entries.len(), 1);
}

#[test]
fn leader_counts_itself_only_once_durable() {
    // Three voters, one unreachable: the leader and node 2 make the quorum, so nothing commits
    // until the leader's own write is reported durable, whatever node 2 says.
    let mut c = Cluster::new(&[1, 2, 3]);
    c.campaign(1);
    c.isolate(3);
    let index = c.node_mut(1).propose(Bytes::from_static(b"x")).unwrap();
    let ready = c.node_mut(1).ready();
    assert!(
        !ready.messages.is_empty(),
        "the leader may send before its own write is durable"
    );
    for m in ready.messages.iter().filter(|m| m.to == 2) {
        c.node_mut(2).step(m.clone()).unwrap();
    }
    let acks = drain(c.node_mut(2)).msgs;
    for m in acks {
        c.node_mut(1).step(m).unwrap();
    }
    assert!(
        c.committed(1) < index,
        "committed on one durable copy out of three"
    );
    c.node_mut(1).storage_mut().append(&ready.entries);
    c.node_mut(1).advance(ready.ack());
    assert_eq!(c.committed(1), index);
}

#[test]
fn append_ack_leaves_only_after_the_entries_are_durable() {
    let mut node = RawNode::new(&config(1, &[1, 2, 3]), MemStorage::new()).unwrap();
    node.step(Message {
        from: 2,
        to: 1,
        term: 1,
        body: MessageBody::AppendEntries(AppendEntries {
            prev_log_index: 0,
            prev_log_term: 0,
            entries: vec![Entry::new(1, 1, Bytes::from_static(b"x"))],
            leader_commit: 1,
        }),
    })
    .unwrap();
    let ready = node.ready();
    assert!(ready.messages.is_empty());
    assert_eq!(ready.entries.len(), 1);
    assert!(matches!(
        ready.persisted_messages[0].body,
        MessageBody::AppendEntriesResponse(AppendEntriesResponse::Accepted { match_index: 1 })
    ));
    // Committed per the leader, but not durable here yet: not handed out for applying.
    assert!(ready.committed_entries.is_empty());
    node.storage_mut().append(&ready.entries);
    node.advance(ready.ack());
    assert_eq!(node.ready().committed_entries.len(), 1);
}

#[test]
fn late_persist_report_for_overwritten_entries_is_ignored() {
    // Entries handed out for persistence are replaced by a new leader's before the report arrives.
    let mut node = RawNode::new(&config(1, &[1, 2, 3]), MemStorage::new()).unwrap();
    let append = |term, entry_term| Message {
        from: 2,
        to: 1,
        term,
        body: MessageBody::AppendEntries(AppendEntries {
            prev_log_index: 0,
            prev_log_term: 0,
            entries: vec![Entry::new(1, entry_term, Bytes::from_static(b"x"))],
            leader_commit: 0,
        }),
    };
    node.step(append(1, 1)).unwrap();
    let first = node.ready();
    node.step(append(2, 2)).unwrap();
    let second = node.ready();
    node.storage_mut().append(&first.entries);
    node.advance(first.ack()); // about (1, term 1), which is gone
    assert_eq!(node.raft().raft_log().persisted_index(), 0);
    node.storage_mut().append(&second.entries);
    node.advance(second.ack());
    assert_eq!(node.raft().raft_log().persisted_index(), 1);
    assert_eq!(node.raft().raft_log().term(1).unwrap(), 2);
}

#[test]
fn restart_resumes_term_vote_log_and_commit() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.campaign(1);
    for i in 0..5 {
        c.propose(1, &format!("v{i}")).unwrap();
    }
    c.tick_all(1);
    let (term, last, committed) = (
        c.term(2),
        c.node(2).raft().raft_log().last_index(),
        c.committed(2),
    );
    c.restart(2);
    assert_eq!(c.term(2), term);
    assert_eq!(c.node(2).raft().raft_log().last_index(), last);
    assert_eq!(c.committed(2), committed);
    // It re-applies the committed log from the start.
    c.stabilize();
    assert_eq!(c.applied[&2].len() as u64, committed);
}

#[test]
fn restart_with_commit_ahead_of_stored_entries_is_clamped() {
    // A crash between saving the hard state and the entries it names committed.
    let hs = raftkv_raft::HardState {
        term: 2,
        vote: None,
        commit: 10,
    };
    let storage = MemStorage::with_log(common::log_of_terms(&[1, 1, 2, 2, 2]), hs);
    let node = RawNode::new(&config(1, &[1, 2, 3]), storage).unwrap();
    assert_eq!(node.raft().raft_log().committed(), 5);
}

#[test]
fn restart_with_applied_ahead_of_stored_commit_resumes() {
    // The state machine applied entries whose commit index was not saved before the crash.
    let hs = raftkv_raft::HardState {
        term: 2,
        vote: None,
        commit: 2,
    };
    let storage = MemStorage::with_log(common::log_of_terms(&[1, 1, 2, 2, 2]), hs);
    let mut cfg = config(1, &[1, 2, 3]);
    cfg.applied = 4;
    let node = RawNode::new(&cfg, storage).unwrap();
    assert_eq!(node.raft().raft_log().committed(), 4);
}
