//! Leader election (§5.2), the election restriction (§5.4.1), PreVote and CheckQuorum (thesis §9.6),
//! as scenarios on small in-memory clusters.

mod common;

use std::collections::BTreeSet;

use common::{Cluster, config, drain, storage_with_terms};
use raftkv_raft::{
    AppendEntries, AppendEntriesResponse, ConfState, Heartbeat, MemStorage, MemberChange, Message,
    MessageBody, RawNode, RequestVote, RequestVoteResponse, Role,
};

fn request_vote(from: u64, to: u64, term: u64, last_log_index: u64, last_log_term: u64) -> Message {
    Message {
        from,
        to,
        term,
        body: MessageBody::RequestVote(RequestVote {
            pre_vote: false,
            leader_transfer: false,
            last_log_index,
            last_log_term,
        }),
    }
}

fn vote_granted(msgs: &[Message], to: u64) -> Option<bool> {
    msgs.iter().find_map(|m| match &m.body {
        MessageBody::RequestVoteResponse(r) if m.to == to => Some(r.granted),
        _ => None,
    })
}

fn no_prevote(c: &mut raftkv_raft::Config) {
    c.pre_vote = false;
}

/// A voter restarting from `storage` that answers votes at once: CheckQuorum off, so the restart
/// guard (see `restarted_voter_ignores_votes_for_an_election_timeout`) does not apply.
fn voter_from(storage: MemStorage) -> RawNode<MemStorage> {
    let mut cfg = config(1, &[1, 2, 3]);
    cfg.check_quorum = false;
    RawNode::new(&cfg, storage).unwrap()
}

#[test]
fn election_timeout_is_randomized_in_t_to_2t() {
    let mut drawn = BTreeSet::new();
    for id in 1..=50 {
        let node = RawNode::new(&config(id, &[id]), MemStorage::new()).unwrap();
        let timeout = node.raft().randomized_election_timeout();
        assert!(
            (10..20).contains(&timeout),
            "timeout {timeout} outside [T, 2T)"
        );
        drawn.insert(timeout);
    }
    assert!(drawn.len() > 5, "timeouts are not spread: {drawn:?}");
}

#[test]
fn follower_starts_election_when_election_timeout_passes() {
    let mut c = Cluster::with(&[1, 2, 3], no_prevote, |_| MemStorage::new());
    c.isolate(1);
    let timeout = c.node(1).raft().randomized_election_timeout() as usize;
    c.tick_node(1, timeout - 1);
    assert_eq!(c.role(1), Role::Follower);
    c.tick_node(1, 1);
    assert_eq!(c.role(1), Role::Candidate);
    assert_eq!(c.term(1), 1);
}

#[test]
fn candidate_votes_for_itself_and_asks_every_voter() {
    let mut node = RawNode::new(&config(1, &[1, 2, 3]), MemStorage::new()).unwrap();
    node.force_campaign();
    let ready = node.ready();
    assert_eq!(node.raft().vote(), Some(1));
    assert_eq!(ready.hard_state.unwrap().vote, Some(1));
    assert!(
        ready.messages.is_empty(),
        "vote requests must wait for the durable self-vote"
    );
    let asked: BTreeSet<u64> = ready.persisted_messages.iter().map(|m| m.to).collect();
    assert_eq!(asked, BTreeSet::from([2, 3]));
}

#[test]
fn majority_of_votes_elects_exactly_one_leader() {
    let mut c = Cluster::new(&[1, 2, 3, 4, 5]);
    c.campaign(1);
    assert_eq!(c.leaders(), vec![1]);
    for id in 2..=5 {
        assert_eq!(c.node(id).raft().leader(), Some(1));
    }
}

#[test]
fn one_vote_per_term() {
    let mut node = RawNode::new(&config(1, &[1, 2, 3]), MemStorage::new()).unwrap();
    node.step(request_vote(2, 1, 5, 0, 0)).unwrap();
    let msgs = drain(&mut node).msgs;
    assert_eq!(vote_granted(&msgs, 2), Some(true));
    node.step(request_vote(3, 1, 5, 0, 0)).unwrap();
    let msgs = drain(&mut node).msgs;
    assert_eq!(vote_granted(&msgs, 3), Some(false), "second vote in term 5");
    // The same candidate asking again (a retransmission) gets the same answer.
    node.step(request_vote(2, 1, 5, 0, 0)).unwrap();
    let msgs = drain(&mut node).msgs;
    assert_eq!(vote_granted(&msgs, 2), Some(true));
}

#[test]
fn vote_is_durable_before_the_grant_leaves() {
    let mut node = RawNode::new(&config(1, &[1, 2, 3]), MemStorage::new()).unwrap();
    node.step(request_vote(2, 1, 5, 0, 0)).unwrap();
    let ready = node.ready();
    assert!(
        ready.messages.is_empty(),
        "a grant must not be sendable before persisting"
    );
    assert_eq!(vote_granted(&ready.persisted_messages, 2), Some(true));
    let hs = ready.hard_state.expect("the vote is in the same Ready");
    assert_eq!((hs.term, hs.vote), (5, Some(2)));
}

#[test]
fn votes_survive_restart() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.node_mut(1).step(request_vote(2, 1, 5, 0, 0)).unwrap();
    let msgs = drain(c.node_mut(1)).msgs;
    assert_eq!(vote_granted(&msgs, 2), Some(true));
    c.restart(1);
    assert_eq!(c.node(1).raft().term(), 5);
    assert_eq!(c.node(1).raft().vote(), Some(2));
    c.node_mut(1).step(request_vote(3, 1, 5, 0, 0)).unwrap();
    let msgs = drain(c.node_mut(1)).msgs;
    assert_eq!(
        vote_granted(&msgs, 3),
        Some(false),
        "voted twice in term 5 across a restart"
    );
}

#[test]
fn election_restriction_rejects_candidate_with_shorter_log() {
    let mut voter = voter_from(storage_with_terms(&[1, 1, 1], 1));
    voter.step(request_vote(2, 1, 2, 2, 1)).unwrap();
    let msgs = drain(&mut voter).msgs;
    assert_eq!(vote_granted(&msgs, 2), Some(false));
}

#[test]
fn election_restriction_compares_last_term_before_index() {
    // Candidate's log is longer but ends in an older term: rejected.
    let mut voter = voter_from(storage_with_terms(&[1, 2], 2));
    voter.step(request_vote(2, 1, 3, 4, 1)).unwrap();
    let msgs = drain(&mut voter).msgs;
    assert_eq!(vote_granted(&msgs, 2), Some(false));
    // Candidate's log is shorter but ends in a newer term: granted.
    let mut voter = voter_from(storage_with_terms(&[1, 2, 2, 2], 2));
    voter.step(request_vote(3, 1, 4, 2, 3)).unwrap();
    let msgs = drain(&mut voter).msgs;
    assert_eq!(vote_granted(&msgs, 3), Some(true));
}

#[test]
fn node_with_stale_log_cannot_become_leader() {
    // Node 3 missed entries of term 2; nodes 1 and 2 have them. Node 3 cannot win.
    let no_prevote_no_guard = |cfg: &mut raftkv_raft::Config| {
        cfg.pre_vote = false;
        cfg.check_quorum = false;
    };
    let mut c = Cluster::with(&[1, 2, 3], no_prevote_no_guard, |id| match id {
        3 => storage_with_terms(&[1], 2),
        _ => storage_with_terms(&[1, 2], 2),
    });
    c.campaign(3);
    assert_ne!(c.role(3), Role::Leader);
    c.campaign(1);
    assert_eq!(c.leaders(), vec![1]);
}

#[test]
fn split_votes_resolve_through_randomized_timeouts() {
    // Four voters; 1 and 2 campaign in the same term, 3 votes for 1 and 4 for 2: nobody wins.
    let mut c = Cluster::with(&[1, 2, 3, 4], no_prevote, |_| MemStorage::new());
    c.cut(1, 4);
    c.cut(2, 3);
    c.node_mut(1).force_campaign();
    c.node_mut(2).force_campaign();
    c.stabilize();
    assert!(
        c.leaders().is_empty(),
        "a split vote elected {:?}",
        c.leaders()
    );
    assert_eq!((c.term(1), c.term(2)), (1, 1));
    // The randomized timeouts fire at different ticks; the next election succeeds.
    c.heal();
    for _ in 0..100 {
        c.tick_all(1);
        if !c.leaders().is_empty() {
            break;
        }
    }
    assert_eq!(c.leaders().len(), 1);
}

#[test]
fn leader_steps_down_on_higher_term() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.campaign(1);
    let term = c.term(1);
    let m = Message {
        from: 2,
        to: 1,
        term: term + 1,
        body: MessageBody::AppendEntriesResponse(AppendEntriesResponse::Accepted {
            match_index: 0,
        }),
    };
    c.node_mut(1).step(m).unwrap();
    assert_eq!(c.role(1), Role::Follower);
    assert_eq!(c.term(1), term + 1);
    assert_eq!(c.node(1).raft().leader(), None);
}

#[test]
fn lower_term_requests_are_rejected_with_current_term() {
    let mut node = RawNode::new(&config(1, &[1, 2, 3]), storage_with_terms(&[1], 5)).unwrap();
    node.step(request_vote(2, 1, 3, 9, 3)).unwrap();
    node.step(Message {
        from: 3,
        to: 1,
        term: 4,
        body: MessageBody::AppendEntries(AppendEntries {
            prev_log_index: 1,
            prev_log_term: 1,
            entries: vec![],
            leader_commit: 1,
        }),
    })
    .unwrap();
    let msgs = drain(&mut node).msgs;
    assert_eq!(msgs.len(), 2);
    for m in &msgs {
        assert_eq!(m.term, 5, "stale sender must learn the current term: {m:?}");
    }
    assert_eq!(vote_granted(&msgs, 2), Some(false));
    assert!(matches!(
        msgs.iter().find(|m| m.to == 3).unwrap().body,
        MessageBody::AppendEntriesResponse(AppendEntriesResponse::Rejected { .. })
    ));
    assert_eq!(node.raft().term(), 5);
}

#[test]
fn prevote_does_not_bump_the_term() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.isolate(1);
    c.tick_node(1, 100);
    assert_eq!(c.role(1), Role::PreCandidate);
    assert_eq!(c.term(1), 0, "pre-candidates must not bump their term");
    assert_eq!(c.stored_hard_state(1).vote, None);
}

fn rejoining_node_disrupts(pre_vote: bool) -> bool {
    let mut c = Cluster::with(
        &[1, 2, 3],
        |cfg| {
            cfg.pre_vote = pre_vote;
            cfg.check_quorum = false;
        },
        |_| MemStorage::new(),
    );
    c.campaign(1);
    c.propose(1, "x").unwrap();
    let term = c.term(1);
    c.isolate(3);
    c.tick_node(3, 100); // times out again and again while cut off
    c.heal();
    c.tick_all(1);
    c.leaders() != vec![1] || c.term(1) != term
}

#[test]
fn prevote_keeps_rejoining_partitioned_node_from_disrupting_leader() {
    assert!(!rejoining_node_disrupts(true));
    // Without PreVote the same scenario deposes the leader: the check above can fail.
    assert!(rejoining_node_disrupts(false));
}

#[test]
fn check_quorum_makes_isolated_leader_step_down() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.campaign(1);
    c.isolate(1);
    // Rounds of CheckQuorum run every T ticks; the first may still count answers from before the
    // partition, so the leader steps down after more than T and at most 2T ticks.
    c.tick_node(1, 10);
    assert_eq!(
        c.role(1),
        Role::Leader,
        "stepped down within one election timeout"
    );
    c.tick_node(1, 10);
    assert_eq!(c.role(1), Role::Follower);
    // It forgets who led (itself), so PreVote cannot deadlock on a stale lease (etcd #8334).
    assert_eq!(c.node(1).raft().leader(), None);
}

#[test]
fn leader_with_quorum_stays_leader_under_check_quorum() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.campaign(1);
    c.isolate(3);
    c.tick_all(50);
    assert_eq!(c.leaders(), vec![1]);
}

#[test]
fn follower_in_lease_ignores_vote_requests() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.campaign(1);
    let term = c.term(1);
    c.node_mut(2)
        .step(request_vote(3, 2, term + 1, 100, term))
        .unwrap();
    let msgs = drain(c.node_mut(2)).msgs;
    assert!(
        msgs.is_empty(),
        "a follower in lease must not answer: {msgs:?}"
    );
    assert_eq!(c.term(2), term);
}

#[test]
fn stepped_down_leader_and_cluster_elect_again_after_heal() {
    // etcd #8334: after a CheckQuorum step-down everyone must be able to elect a leader again.
    let mut c = Cluster::new(&[1, 2, 3]);
    c.campaign(1);
    c.isolate(1);
    c.isolate(2);
    c.isolate(3);
    c.tick_all(60);
    assert!(c.leaders().is_empty());
    c.heal();
    c.tick_all(60);
    assert_eq!(c.leaders().len(), 1);
}

#[test]
fn pre_candidate_follows_leader_of_its_term() {
    let mut node = RawNode::new(&config(1, &[1, 2, 3]), storage_with_terms(&[1], 1)).unwrap();
    node.campaign();
    assert_eq!(node.raft().role(), Role::PreCandidate);
    node.step(Message {
        from: 2,
        to: 1,
        term: 1,
        body: MessageBody::Heartbeat(Heartbeat {
            commit: 0,
            round: 1,
        }),
    })
    .unwrap();
    assert_eq!(node.raft().role(), Role::Follower);
    assert_eq!(node.raft().leader(), Some(2));
}

#[test]
fn pre_candidate_becomes_candidate_on_quorum_of_pre_votes() {
    let mut node = RawNode::new(&config(1, &[1, 2, 3]), MemStorage::new()).unwrap();
    node.campaign();
    assert_eq!(node.raft().term(), 0);
    node.step(Message {
        from: 2,
        to: 1,
        term: 1,
        body: MessageBody::RequestVoteResponse(RequestVoteResponse {
            pre_vote: true,
            granted: true,
        }),
    })
    .unwrap();
    assert_eq!(node.raft().role(), Role::Candidate);
    assert_eq!(node.raft().term(), 1);
}

#[test]
fn restarted_voter_ignores_votes_for_an_election_timeout() {
    // It may have answered a leader's heartbeat just before crashing; that leader's read lease
    // counts on it not voting for anyone else within an election timeout.
    let mut node = RawNode::new(&config(1, &[1, 2, 3]), storage_with_terms(&[1], 1)).unwrap();
    node.step(request_vote(2, 1, 2, 1, 1)).unwrap();
    let msgs = drain(&mut node).msgs;
    assert!(
        msgs.is_empty(),
        "answered a vote right after restart: {msgs:?}"
    );
    for _ in 0..10 {
        node.tick();
    }
    drain(&mut node);
    node.step(request_vote(2, 1, 5, 1, 1)).unwrap();
    let msgs = drain(&mut node).msgs;
    assert_eq!(vote_granted(&msgs, 2), Some(true));
}

/// A node joint between C(old) = {1, 2, 3} and C(new) = {1, 2, 4}, with learner 5, holding one
/// entry of term 1, that has neither voted nor heard from a leader.
fn joint_voter() -> RawNode<MemStorage> {
    let mut storage = storage_with_terms(&[1], 1);
    storage.set_conf_state(ConfState {
        voters: [1, 2, 4].into(),
        voters_outgoing: [1, 2, 3].into(),
        learners: [5].into(),
    });
    let mut cfg = config(1, &[]);
    cfg.check_quorum = false; // no restart guard: it answers at once
    RawNode::new(&cfg, storage).unwrap()
}

/// Whether a fresh `joint_voter` (in term 1) grants a (pre-)vote request for `term` from
/// `candidate` whose log ends at `last_log_index` in term 1.
fn joint_voter_grants(candidate: u64, last_log_index: u64, pre_vote: bool, term: u64) -> bool {
    let mut node = joint_voter();
    let mut request = request_vote(candidate, 1, term, last_log_index, 1);
    if let MessageBody::RequestVote(rv) = &mut request.body {
        rv.pre_vote = pre_vote;
    }
    node.step(request).unwrap();
    vote_granted(&drain(&mut node).msgs, candidate) == Some(true)
}

/// A candidate that neither half of the configuration contains, with a log equal to ours, holds
/// our configuration and is no voter in it (a removed server campaigning on its previous
/// configuration): no vote, no pre-vote. With a log ahead of ours it may hold the entry that made
/// it a voter, which we lack, and may need our vote (thesis §4.1): it is answered like any voter.
#[test]
fn a_candidate_outside_the_configuration_gets_a_vote_only_with_a_log_ahead_of_ours() {
    for (pre_vote, term) in [(false, 1), (false, 2), (true, 2)] {
        assert!(!joint_voter_grants(9, 1, pre_vote, term), "stranger");
        assert!(!joint_voter_grants(5, 1, pre_vote, term), "learner");
        assert!(joint_voter_grants(3, 1, pre_vote, term), "outgoing voter");
        assert!(joint_voter_grants(4, 1, pre_vote, term), "incoming voter");
        assert!(joint_voter_grants(9, 2, pre_vote, term), "stranger ahead");
    }
    let mut node = joint_voter();
    node.step(request_vote(9, 1, 2, 1, 1)).unwrap();
    drain(&mut node);
    assert_eq!(node.raft().vote(), None, "recorded a vote for a stranger");
}

/// A new server knows no configuration until the entry adding it arrives, and the leader adding it
/// may need its vote before then (joint consensus counts it in C(new)); that leader's log is ahead
/// of the new server's empty one.
#[test]
fn a_new_server_votes_for_the_leader_adding_it_before_it_knows_the_configuration() {
    let mut node = RawNode::new(&config(4, &[]), MemStorage::new()).unwrap();
    node.step(request_vote(1, 4, 2, 5, 1)).unwrap();
    assert_eq!(vote_granted(&drain(&mut node).msgs, 1), Some(true));
}

/// Thesis §4.2.3: a removed server that missed its removal still holds the old configuration and
/// campaigns with ever higher terms. Without PreVote, CheckQuorum's lease makes the members ignore
/// it only while they have a leader. Here voter 4 is removed while cut off, then the leader is
/// lost, and node 4 campaigns every 5 ticks, more often than the election timeout (as two removed
/// servers do, leapfrogging each other's terms through the members' refusals). The members follow
/// its terms and refuse it, but their election clocks keep running (Figure 2): they time out and
/// elect a leader among themselves. Restarting their clocks on each of its requests kept every
/// member from ever timing out.
#[test]
fn a_removed_server_cannot_hold_off_the_members_election() {
    let mut c = Cluster::with(&[1, 2, 3, 4], no_prevote, |_| MemStorage::new());
    c.campaign(1);
    c.isolate(4);
    c.change_membership(1, &[MemberChange::Remove(4)]).unwrap();
    assert_eq!(
        c.node(2).raft().conf_state(),
        &ConfState::from_voters([1, 2, 3])
    );
    assert!(c.node(4).raft().conf_state().voters.contains(&4));
    c.heal();
    c.isolate(1);
    let members_leader = |c: &Cluster| c.leaders().into_iter().find(|&id| id != 1);
    for tick in 0..100 {
        if members_leader(&c).is_some() {
            break;
        }
        if tick % 5 == 0 {
            c.node_mut(4).force_campaign();
        }
        c.tick_all(1);
    }
    assert!(
        members_leader(&c).is_some_and(|leader| leader != 4),
        "no leader among the members"
    );
}

/// Figure 2: a follower's election clock restarts when it hears from the leader or grants a vote,
/// not when a vote request merely moves it to a higher term. Here leader 3 starts removing voter 1
/// (the joint configuration {2, 3} and {1, 2, 3} reaches every node), appends one more entry that
/// only it holds, and loses its leadership. Only node 3 can be elected now: nodes 1 and 2 need
/// node 3's vote for the {2, 3} half, and its log is ahead of theirs. Nodes 1 and 2 keep
/// campaigning (every 5 ticks here, as split votes between them can), each time with a higher
/// term. Node 3 refuses them and follows their terms, but its clock keeps running: it times out
/// and wins. Restarting its clock on each of their requests held it off for ever (PreVote off).
#[test]
fn a_refused_vote_request_does_not_restart_the_election_clock() {
    let mut c = Cluster::with(&[1, 2, 3], no_prevote, |_| MemStorage::new());
    c.campaign(3);
    c.cut(1, 3);
    c.cut(2, 3); // no acknowledgement reaches node 3: nothing new commits
    c.change_membership(3, &[MemberChange::Remove(1)]).unwrap();
    c.isolate(3);
    c.propose(3, "only on node 3").unwrap();
    c.tick_node(3, 20); // CheckQuorum: node 3 steps down
    assert_eq!(c.role(3), Role::Follower);
    assert!(c.node(1).raft().conf_state().is_joint());
    let last = |c: &Cluster, id| c.node(id).raft().raft_log().last_index();
    assert!(last(&c, 3) > last(&c, 1) && last(&c, 1) == last(&c, 2));
    c.heal();
    for tick in 0..100 {
        if !c.leaders().is_empty() {
            break;
        }
        if tick % 5 == 0 {
            c.node_mut(1 + tick / 5 % 2).force_campaign();
        }
        c.tick_all(1);
    }
    assert_eq!(c.leaders(), vec![3]);
}

/// Figure 2 again, for the answers a candidate gets: a refusal from a higher term makes it a
/// follower of that term, with its election clock still running from the start of its election.
/// Found with seed 54464: the candidate that alone could win needed the vote of a voter that
/// campaigned on its own clock and never sent it anything (it was no voter in that voter's older
/// configuration), so the candidate learned each new term only from that voter's refusal.
/// Restarting its clock on the refusal put it behind the voter's clock every time, and the voter
/// always took the next term first.
#[test]
fn a_higher_term_in_an_answer_does_not_restart_the_election_clock() {
    let mut cfg = config(1, &[1, 2, 3]);
    cfg.pre_vote = false;
    let mut node = RawNode::new(&cfg, MemStorage::new()).unwrap();
    node.campaign();
    assert_eq!(node.raft().role(), Role::Candidate);
    let timeout = node.raft().randomized_election_timeout();
    for _ in 1..timeout {
        node.tick();
    }
    let refusal = Message {
        from: 2,
        to: 1,
        term: 5,
        body: MessageBody::RequestVoteResponse(RequestVoteResponse {
            pre_vote: false,
            granted: false,
        }),
    };
    node.step(refusal).unwrap();
    assert_eq!(
        (node.raft().role(), node.raft().term()),
        (Role::Follower, 5)
    );
    node.tick();
    assert_eq!(
        (node.raft().role(), node.raft().term()),
        (Role::Candidate, 6)
    );
}
