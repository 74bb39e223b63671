//! Membership changes by joint consensus (thesis §4.3) and learners, with the known pitfalls:
//! configuration on append, one change at a time, only after the leader's first commit, a removed
//! leader stepping down, removed servers not disrupting.

mod common;

use std::collections::BTreeSet;

use bytes::Bytes;
use common::{Cluster, config, log_terms};
use raftkv_raft::{
    AppendEntries, ConfState, Entry, Error, MemStorage, MemberChange, Message, MessageBody,
    RawNode, Role,
};

fn set(ids: &[u64]) -> BTreeSet<u64> {
    ids.iter().copied().collect()
}

/// A 3-voter cluster led by 1, with node 4 added as a learner.
fn cluster_with_learner() -> Cluster {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.campaign(1);
    c.add_node(4);
    c.change_membership(1, &[MemberChange::AddLearner(4)])
        .unwrap();
    c.tick_all(1);
    c
}

#[test]
fn learner_receives_the_log() {
    let mut c = cluster_with_learner();
    c.propose(1, "x").unwrap();
    c.tick_all(1);
    assert_eq!(log_terms(c.node(4)), log_terms(c.node(1)));
    assert_eq!(c.applied[&4].last().unwrap().data, "x");
    // It learned the membership from the log alone: its own config named no voters.
    assert_eq!(c.node(4).raft().conf_state(), c.node(1).raft().conf_state());
}

#[test]
fn learner_never_counts_toward_commitment() {
    let mut c = cluster_with_learner();
    c.isolate(2);
    c.isolate(3);
    let committed = c.committed(1);
    c.propose(1, "x").unwrap();
    assert_eq!(
        c.committed(1),
        committed,
        "leader + learner committed without a voter majority"
    );
}

#[test]
fn learner_never_campaigns() {
    // It does answer vote requests: see `found_by_simulation.rs`,
    // `a_learner_votes_since_it_may_have_been_promoted_without_knowing`.
    let mut c = cluster_with_learner();
    c.tick_node(4, 100);
    assert_eq!(c.role(4), Role::Follower, "a learner campaigned");
}

#[test]
fn learner_is_promoted_to_voter() {
    let mut c = cluster_with_learner();
    c.change_membership(1, &[MemberChange::AddVoter(4)])
        .unwrap();
    c.tick_all(1);
    let conf = c.node(1).raft().conf_state().clone();
    assert_eq!(conf.voters, set(&[1, 2, 3, 4]));
    assert!(conf.learners.is_empty() && !conf.is_joint());
    assert_eq!(c.node(4).raft().conf_state(), &conf);
}

#[test]
fn joint_consensus_needs_both_majorities() {
    // Replace {1,2,3} by {1,4,5}; while 2 and 3 are unreachable, the old majority is missing.
    let mut c = Cluster::new(&[1, 2, 3]);
    c.campaign(1);
    c.add_node(4);
    c.add_node(5);
    c.cut(2, 1);
    c.cut(3, 1);
    let changes = [
        MemberChange::AddVoter(4),
        MemberChange::AddVoter(5),
        MemberChange::Remove(2),
        MemberChange::Remove(3),
    ];
    let index = c.change_membership(1, &changes).unwrap();
    let joint = c.node(1).raft().conf_state().clone();
    assert!(joint.is_joint());
    assert_eq!(
        (joint.voters.clone(), joint.voters_outgoing.clone()),
        (set(&[1, 4, 5]), set(&[1, 2, 3]))
    );
    assert!(
        c.committed(1) < index,
        "committed by the new majority alone"
    );
    c.heal();
    c.tick_all(2);
    let conf = c.node(1).raft().conf_state().clone();
    assert_eq!(
        conf,
        ConfState::from_voters([1, 4, 5]),
        "the leader left the joint configuration"
    );
    assert!(c.committed(1) > index);
    c.propose(1, "after").unwrap();
    assert_eq!(c.applied[&5].last().unwrap().data, "after");
}

#[test]
fn configuration_takes_effect_when_appended() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.campaign(1);
    c.add_node(4);
    c.isolate(3);
    c.cut(2, 1); // node 2 appends the entry, but its ack never arrives: nothing commits
    let index = c
        .change_membership(1, &[MemberChange::AddVoter(4)])
        .unwrap();
    assert!(c.committed(2) < index);
    assert!(
        c.node(1).raft().conf_state().is_joint(),
        "leader: not in effect on append"
    );
    assert!(
        c.node(2).raft().conf_state().is_joint(),
        "follower: not in effect on append"
    );
}

#[test]
fn truncated_configuration_entry_is_rolled_back() {
    let mut node = RawNode::new(&config(1, &[1, 2, 3]), MemStorage::new()).unwrap();
    let joint = ConfState::from_voters([1, 2, 3])
        .enter_joint(&[MemberChange::AddVoter(4)])
        .unwrap();
    let append = |term, entry: Entry| Message {
        from: 2,
        to: 1,
        term,
        body: MessageBody::AppendEntries(AppendEntries {
            prev_log_index: 0,
            prev_log_term: 0,
            entries: vec![entry],
            leader_commit: 0,
        }),
    };
    node.step(append(2, Entry::conf_change(1, 2, joint.clone())))
        .unwrap();
    assert_eq!(node.raft().conf_state(), &joint);
    // A new leader overwrites the uncommitted configuration entry.
    node.step(append(3, Entry::new(1, 3, Bytes::from_static(b"x"))))
        .unwrap();
    assert_eq!(node.raft().conf_state(), &ConfState::from_voters([1, 2, 3]));
}

#[test]
fn second_change_is_refused_while_one_is_in_flight() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.campaign(1);
    c.isolate(2);
    c.isolate(3);
    c.change_membership(1, &[MemberChange::AddLearner(4)])
        .unwrap();
    assert_eq!(
        c.change_membership(1, &[MemberChange::AddLearner(5)]),
        Err(Error::ConfChangeInProgress)
    );
}

#[test]
fn leader_changes_membership_only_after_committing_its_first_entry() {
    // raft-dev 2015: a new leader's change before its term commits can lose a committed one.
    let mut leader = common::leader_elected_by_node_2(MemStorage::new());
    assert_eq!(
        leader.propose_conf_change(vec![MemberChange::AddLearner(4)]),
        Err(Error::ConfChangeTooEarly)
    );
}

#[test]
fn invalid_change_is_refused() {
    let mut c = Cluster::new(&[1]);
    c.campaign(1);
    assert!(matches!(
        c.change_membership(1, &[MemberChange::Remove(1)]),
        Err(Error::InvalidConfChange(_))
    ));
}

#[test]
fn removed_leader_steps_down_after_the_change_commits() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.campaign(1);
    c.change_membership(1, &[MemberChange::Remove(1)]).unwrap();
    c.tick_all(1);
    assert_eq!(c.role(1), Role::Follower);
    assert_eq!(
        c.node(2).raft().conf_state(),
        &ConfState::from_voters([2, 3])
    );
    c.tick_all(50);
    let leaders = c.leaders();
    assert_eq!(leaders.len(), 1);
    assert_ne!(leaders[0], 1, "the removed node led again");
}

#[test]
fn removed_server_does_not_disrupt_the_cluster() {
    // Node 3 is removed while cut off: it never learns, times out again and again, and rejoins.
    let mut c = Cluster::new(&[1, 2, 3]);
    c.campaign(1);
    c.isolate(3);
    c.change_membership(1, &[MemberChange::Remove(3)]).unwrap();
    c.tick_all(1);
    let term = c.term(1);
    c.tick_node(3, 100);
    c.heal();
    c.tick_all(30);
    assert_eq!(c.leaders(), vec![1]);
    assert_eq!(c.term(1), term, "the removed server disrupted the cluster");
}

#[test]
fn membership_survives_restart() {
    let mut c = cluster_with_learner();
    c.change_membership(1, &[MemberChange::AddVoter(4)])
        .unwrap();
    c.tick_all(1);
    let conf = c.node(2).raft().conf_state().clone();
    c.restart(2);
    assert_eq!(c.node(2).raft().conf_state(), &conf);
}

#[test]
fn snapshot_carries_membership_to_a_new_member() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.campaign(1);
    for i in 0..5 {
        c.propose(1, &format!("v{i}")).unwrap();
    }
    c.compact(1);
    c.add_node(4);
    c.change_membership(1, &[MemberChange::AddLearner(4)])
        .unwrap();
    c.tick_all(2);
    assert_eq!(c.node(4).raft().conf_state(), c.node(1).raft().conf_state());
    assert_eq!(c.applied[&4].len(), c.applied[&1].len());
}
