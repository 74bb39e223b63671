//! Leadership transfer (thesis §3.10).

mod common;

use bytes::Bytes;
use common::{Cluster, drain};
use raftkv_raft::{Error, Message, MessageBody, Role};

#[test]
fn transfer_makes_the_up_to_date_target_leader() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.campaign(1);
    let term = c.term(1);
    c.node_mut(1).transfer_leader(2).unwrap();
    c.stabilize();
    assert_eq!(c.leaders(), vec![2]);
    assert_eq!(c.term(2), term + 1);
    // Followers in the old leader's lease voted: the target's election skips PreVote and leases.
    assert!(
        c.delivered
            .iter()
            .any(|m| matches!(m.body, MessageBody::TimeoutNow))
    );
}

#[test]
fn transfer_first_brings_a_lagging_target_up_to_date() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.campaign(1);
    c.isolate(3);
    for i in 0..5 {
        c.propose(1, &format!("v{i}")).unwrap();
    }
    c.node_mut(1).transfer_leader(3).unwrap();
    let msgs = drain(c.node_mut(1)).msgs;
    assert!(
        !msgs
            .iter()
            .any(|m| matches!(m.body, MessageBody::TimeoutNow))
    );
    c.heal();
    c.tick_all(2);
    assert_eq!(c.leaders(), vec![3]);
    assert!(
        c.applied[&3].iter().any(|e| e.data == "v4"),
        "leader without the latest entry"
    );
}

#[test]
fn proposals_are_refused_during_a_transfer() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.campaign(1);
    c.isolate(3);
    c.propose(1, "x").unwrap();
    c.node_mut(1).transfer_leader(3).unwrap();
    assert_eq!(
        c.node_mut(1).propose(Bytes::from_static(b"y")),
        Err(Error::TransferInProgress)
    );
}

#[test]
fn transfer_is_abandoned_after_an_election_timeout() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.campaign(1);
    c.isolate(3);
    c.propose(1, "x").unwrap();
    c.node_mut(1).transfer_leader(3).unwrap();
    c.tick_node(1, 10);
    assert_eq!(c.role(1), Role::Leader);
    assert_eq!(c.node(1).raft().lead_transferee(), None);
    c.propose(1, "resumed").unwrap();
}

#[test]
fn transfer_only_to_a_voter() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.campaign(1);
    assert_eq!(c.node_mut(1).transfer_leader(9), Err(Error::NotAVoter(9)));
}

fn timeout_now(from: u64, to: u64, term: u64) -> Message {
    Message {
        from,
        to,
        term,
        body: MessageBody::TimeoutNow,
    }
}

/// TimeoutNow makes a node campaign at once, skipping PreVote and every voter's lease, so only the
/// leader of the node's current term may send it: from a follower of that term, or from a higher
/// term nobody has shown to be led, it is ignored and changes nothing.
#[test]
fn timeout_now_is_accepted_only_from_the_leader_of_the_current_term() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.campaign(1);
    let term = c.term(2);
    assert_eq!(c.node(2).raft().leader(), Some(1));

    c.node_mut(2).step(timeout_now(3, 2, term)).unwrap();
    assert_eq!(
        (c.role(2), c.term(2)),
        (Role::Follower, term),
        "from a follower"
    );
    c.node_mut(2).step(timeout_now(3, 2, term + 1)).unwrap();
    assert_eq!(
        (c.role(2), c.term(2)),
        (Role::Follower, term),
        "from a higher term"
    );
    assert!(drain(c.node_mut(2)).msgs.is_empty());

    c.node_mut(2).step(timeout_now(1, 2, term)).unwrap();
    assert_eq!(
        (c.role(2), c.term(2)),
        (Role::Candidate, term + 1),
        "from the leader"
    );
}
