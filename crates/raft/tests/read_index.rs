//! Linearizable reads without the log (thesis §6.4): ReadIndex, leases, follower reads.

mod common;

use common::{Cluster, config, drain};
use raftkv_raft::{Error, MemStorage, Message, MessageBody, RawNode, ReadMode, ReadState};

#[test]
fn read_index_is_released_after_a_quorum_answers_a_heartbeat_round() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.campaign(1);
    c.node_mut(1).read_index(7, ReadMode::ReadIndex).unwrap();
    let ready = c.node_mut(1).ready();
    assert!(ready.read_states.is_empty(), "released before confirmation");
    assert!(
        ready
            .messages
            .iter()
            .any(|m| matches!(m.body, MessageBody::Heartbeat(_))),
        "no heartbeat round started"
    );
    let ack = ready.ack();
    for m in ready.messages {
        c.node_mut(m.to).step(m).unwrap();
    }
    c.node_mut(1).advance(ack);
    c.stabilize();
    let committed = c.committed(1);
    assert_eq!(
        c.reads(1),
        vec![ReadState {
            context: 7,
            index: committed
        }]
    );
}

#[test]
fn read_index_of_a_deposed_leader_never_completes() {
    let mut c = Cluster::with(
        &[1, 2, 3],
        |cfg| cfg.check_quorum = false,
        |_| MemStorage::new(),
    );
    c.campaign(1);
    c.isolate(1);
    c.read(1, 9, ReadMode::ReadIndex).unwrap();
    c.campaign(2);
    c.propose(2, "newer").unwrap();
    c.heal();
    c.tick_all(3);
    assert_ne!(c.role(1), raftkv_raft::Role::Leader);
    assert!(
        c.reads(1).is_empty(),
        "a deposed leader released a read: {:?}",
        c.reads(1)
    );
}

#[test]
fn read_index_issued_before_the_first_commit_of_the_term_waits_for_it() {
    let mut leader = common::leader_elected_by_node_2(MemStorage::new());
    let term = leader.raft().term();
    let msg = |body| Message {
        from: 2,
        to: 1,
        term,
        body,
    };
    drain(&mut leader);
    leader.read_index(1, ReadMode::ReadIndex).unwrap();
    let ready = leader.ready();
    assert!(ready.read_states.is_empty());
    assert!(
        !ready
            .messages
            .iter()
            .any(|m| matches!(m.body, MessageBody::Heartbeat(_))),
        "a round for a read whose index is not known yet"
    );
    leader.advance(ready.ack());
    // The term's first entry commits; the read gets an index at least that high, after a round.
    leader
        .step(msg(MessageBody::AppendEntriesResponse(
            raftkv_raft::AppendEntriesResponse::Accepted { match_index: 1 },
        )))
        .unwrap();
    let heartbeat_round = drain(&mut leader)
        .msgs
        .iter()
        .find_map(|m| match &m.body {
            MessageBody::Heartbeat(h) => Some(h.round),
            _ => None,
        })
        .expect("a round once the term committed");
    leader
        .step(msg(MessageBody::HeartbeatResponse(
            raftkv_raft::HeartbeatResponse {
                round: heartbeat_round,
            },
        )))
        .unwrap();
    assert_eq!(
        drain(&mut leader).read_states,
        vec![ReadState {
            context: 1,
            index: 1
        }]
    );
}

#[test]
fn lease_read_is_served_without_a_round_trip() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.campaign(1);
    c.tick_all(1); // a heartbeat round answered by a quorum starts the lease
    c.node_mut(1).read_index(3, ReadMode::Lease).unwrap();
    let ready = c.node_mut(1).ready();
    assert_eq!(
        ready.read_states.len(),
        1,
        "lease read waited for a round trip"
    );
    assert!(ready.messages.is_empty());
}

#[test]
fn lease_expires_without_contact_with_a_quorum() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.campaign(1);
    c.tick_all(1);
    c.isolate(1);
    // Lease = election timeout (10) - drift margin (2) ticks from the last confirmed round.
    c.tick_node(1, 8);
    c.node_mut(1).read_index(3, ReadMode::Lease).unwrap();
    let ready = c.node_mut(1).ready();
    assert!(
        ready.read_states.is_empty(),
        "served a lease read after the lease ended"
    );
}

#[test]
fn follower_read_gets_its_index_from_the_leader() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.campaign(1);
    c.propose(1, "x").unwrap();
    c.read(2, 11, ReadMode::ReadIndex).unwrap();
    let committed = c.committed(1);
    assert_eq!(
        c.reads(2),
        vec![ReadState {
            context: 11,
            index: committed
        }]
    );
}

#[test]
fn follower_without_a_leader_refuses_reads() {
    let mut node = RawNode::new(&config(1, &[1, 2, 3]), MemStorage::new()).unwrap();
    assert_eq!(
        node.read_index(1, ReadMode::ReadIndex),
        Err(Error::NotLeader { leader: None })
    );
}

#[test]
fn single_voter_confirms_its_own_reads() {
    let mut c = Cluster::new(&[1]);
    c.campaign(1);
    c.read(1, 5, ReadMode::ReadIndex).unwrap();
    assert_eq!(c.reads(1).len(), 1);
}

#[test]
fn no_lease_reads_during_a_leadership_transfer() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.campaign(1);
    c.tick_all(1);
    c.isolate(3);
    c.node_mut(1).transfer_leader(3).unwrap();
    drain(c.node_mut(1));
    c.node_mut(1).read_index(3, ReadMode::Lease).unwrap();
    assert!(c.node_mut(1).ready().read_states.is_empty());
}

#[test]
fn pending_reads_are_bounded() {
    let mut c = Cluster::with(
        &[1, 2, 3],
        |cfg| cfg.pending_reads_max = 2,
        |_| MemStorage::new(),
    );
    c.campaign(1);
    c.isolate(1);
    c.node_mut(1).read_index(1, ReadMode::ReadIndex).unwrap();
    c.node_mut(1).read_index(2, ReadMode::ReadIndex).unwrap();
    assert_eq!(
        c.node_mut(1).read_index(3, ReadMode::ReadIndex),
        Err(Error::TooManyReads { limit: 2 })
    );
}
