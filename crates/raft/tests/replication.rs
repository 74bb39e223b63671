//! Log replication (§5.3), commitment (§5.4.2, Figure 8) and the leader's flow control, as
//! scenarios on small in-memory clusters.

mod common;

use bytes::Bytes;
use common::{Cluster, config, drain, log_terms, storage_with_terms};
use raftkv_raft::{
    AppendEntries, AppendEntriesResponse, ConflictHint, ENTRY_OVERHEAD_BYTES, Entry, Error,
    Heartbeat, MemStorage, Message, MessageBody, RawNode, RequestVoteResponse, Role,
};

/// The leader's log in the paper's Figure 7 (term 8).
const FIGURE_7_LEADER: [u64; 10] = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6];

/// Node 1 holds the leader's log and campaigns; node 3 holds the same log (so 1 can win); node 2
/// holds `follower`. After the election every log must equal the leader's.
fn figure_7_converges(follower: &[u64]) -> Cluster {
    let mut c = Cluster::restarted(&[1, 2, 3], |id| match id {
        2 => storage_with_terms(follower, 8),
        _ => storage_with_terms(&FIGURE_7_LEADER, 8),
    });
    c.campaign(1);
    assert_eq!(c.leaders(), vec![1]);
    let mut expected = FIGURE_7_LEADER.to_vec();
    expected.push(c.term(1)); // the new leader's empty entry
    assert_eq!(log_terms(c.node(1)), expected);
    assert_eq!(
        log_terms(c.node(2)),
        expected,
        "follower log did not converge"
    );
    assert_eq!(c.committed(2), expected.len() as u64);
    c
}

#[test]
fn figure_7_a_missing_entries_are_filled() {
    figure_7_converges(&[1, 1, 1, 4, 4, 5, 5, 6, 6]);
}

#[test]
fn figure_7_b_missing_terms_are_filled() {
    figure_7_converges(&[1, 1, 1, 4]);
}

#[test]
fn figure_7_c_extra_uncommitted_entry_is_truncated() {
    figure_7_converges(&[1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6]);
}

#[test]
fn figure_7_d_extra_entries_of_a_later_term_are_truncated() {
    figure_7_converges(&[1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7]);
}

#[test]
fn figure_7_e_conflicting_suffix_is_replaced() {
    figure_7_converges(&[1, 1, 1, 4, 4, 4, 4]);
}

#[test]
fn figure_7_f_long_conflicting_suffix_is_replaced() {
    figure_7_converges(&[1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3]);
}

#[test]
fn leader_skips_a_whole_term_per_round_trip() {
    // Figure 7 (f) differs from the leader over 8 entries in 3 terms; per-entry backoff would need
    // 8 rejections, per-term backoff needs at most one per conflicting term.
    let c = figure_7_converges(&[1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3]);
    let rejections = c
        .delivered
        .iter()
        .filter(|m| {
            m.from == 2
                && matches!(
                    m.body,
                    MessageBody::AppendEntriesResponse(AppendEntriesResponse::Rejected { .. })
                )
        })
        .count();
    assert!(
        rejections <= 3,
        "{rejections} rejections to find the match point"
    );
}

#[test]
fn figure_8_leader_does_not_commit_past_term_entry_by_counting_replicas() {
    // Node 1 holds an entry of term 2 that the others lack and leads in term 4.
    let mut leader = common::leader_elected_by_node_2(storage_with_terms(&[1, 2], 3));
    let term = leader.raft().term();
    drain(&mut leader); // its own log (with the term-4 entry at 3) is durable
    let ack = |match_index| Message {
        from: 2,
        to: 1,
        term,
        body: MessageBody::AppendEntriesResponse(AppendEntriesResponse::Accepted { match_index }),
    };
    // A majority (1 and 2) holds index 2, but it is of term 2: not committed by counting.
    leader.step(ack(2)).unwrap();
    assert_eq!(leader.raft().raft_log().committed(), 0);
    // Once the term-4 entry is on a majority, it and everything before it commit.
    leader.step(ack(3)).unwrap();
    assert_eq!(leader.raft().raft_log().committed(), 3);
}

#[test]
fn new_leader_appends_an_empty_entry_of_its_term() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.campaign(1);
    let log = c.node(1).raft().raft_log();
    assert_eq!(log.last_index(), 1);
    assert_eq!(log.term(1).unwrap(), c.term(1));
    assert!(c.applied[&2][0].data.is_empty());
}

#[test]
fn partitioned_old_leader_cannot_commit() {
    let mut c = Cluster::with(
        &[1, 2, 3, 4, 5],
        |cfg| cfg.check_quorum = false,
        |_| MemStorage::new(),
    );
    c.campaign(1);
    let committed_before = c.committed(1);
    c.isolate(1);
    let lost = c.propose(1, "lost").unwrap();
    assert_eq!(c.committed(1), committed_before, "a lone leader committed");
    c.campaign(2);
    assert_eq!(c.role(2), Role::Leader);
    c.propose(2, "kept").unwrap();
    c.heal();
    c.tick_all(3);
    assert_eq!(c.leaders(), vec![2]);
    assert_eq!(log_terms(c.node(1)), log_terms(c.node(2)));
    for applied in c.applied.values() {
        assert!(
            applied.iter().all(|e| e.data != "lost"),
            "uncommitted entry {lost} applied"
        );
        assert!(applied.iter().any(|e| e.data == "kept"));
    }
}

fn append(term: u64, prev: (u64, u64), terms: &[u64], leader_commit: u64) -> Message {
    let entries = terms
        .iter()
        .enumerate()
        .map(|(i, &t)| Entry::new(prev.0 + 1 + i as u64, t, Bytes::from_static(b"x")))
        .collect();
    Message {
        from: 2,
        to: 1,
        term,
        body: MessageBody::AppendEntries(AppendEntries {
            prev_log_index: prev.0,
            prev_log_term: prev.1,
            entries,
            leader_commit,
        }),
    }
}

fn only_append_response(node: &mut RawNode<MemStorage>) -> AppendEntriesResponse {
    let msgs = drain(node).msgs;
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    match &msgs[0].body {
        MessageBody::AppendEntriesResponse(r) => r.clone(),
        other => panic!("expected an append response, got {other:?}"),
    }
}

#[test]
fn follower_rejects_mismatched_prev_log_with_conflict_hint() {
    let mut node = RawNode::new(
        &config(1, &[1, 2, 3]),
        storage_with_terms(&[1, 1, 2, 2, 2], 2),
    )
    .unwrap();
    node.step(append(3, (5, 3), &[3], 0)).unwrap();
    assert_eq!(
        only_append_response(&mut node),
        AppendEntriesResponse::Rejected {
            rejected_index: 5,
            hint: ConflictHint {
                term: Some(2),
                first_index: 3
            }
        }
    );
    node.step(append(3, (9, 3), &[3], 0)).unwrap();
    assert_eq!(
        only_append_response(&mut node),
        AppendEntriesResponse::Rejected {
            rejected_index: 9,
            hint: ConflictHint {
                term: None,
                first_index: 6
            }
        }
    );
    assert_eq!(
        log_terms(&node),
        vec![1, 1, 2, 2, 2],
        "a rejection changes nothing"
    );
}

#[test]
fn follower_commits_up_to_the_last_new_entry_only() {
    // Figure 2, AppendEntries rule 5: commitIndex = min(leaderCommit, index of last new entry).
    let mut node = RawNode::new(
        &config(1, &[1, 2, 3]),
        storage_with_terms(&[1, 1, 1, 1, 1], 1),
    )
    .unwrap();
    node.step(append(2, (1, 1), &[1], 5)).unwrap();
    assert_eq!(node.raft().raft_log().committed(), 2);
}

#[test]
fn committed_entries_are_never_overwritten() {
    let mut node = RawNode::new(&config(1, &[1, 2, 3]), storage_with_terms(&[1, 1, 1], 1)).unwrap();
    node.step(append(1, (3, 1), &[], 3)).unwrap();
    drain(&mut node);
    assert_eq!(node.raft().raft_log().committed(), 3);
    // A (stale) append whose prev is below the commit index cannot rewrite committed entries.
    node.step(append(2, (1, 1), &[2, 2], 3)).unwrap();
    assert_eq!(
        only_append_response(&mut node),
        AppendEntriesResponse::Accepted { match_index: 3 }
    );
    assert_eq!(log_terms(&node), vec![1, 1, 1]);
}

#[test]
fn heartbeat_carries_commit_index_capped_at_follower_match() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.campaign(1);
    c.propose(1, "a").unwrap();
    c.isolate(3);
    c.propose(1, "b").unwrap();
    c.heal();
    c.node_mut(1).tick();
    let msgs = drain(c.node_mut(1)).msgs;
    let commit_to = |to| {
        msgs.iter()
            .find_map(|m| match &m.body {
                MessageBody::Heartbeat(h) if m.to == to => Some(h.commit),
                _ => None,
            })
            .unwrap()
    };
    assert_eq!(commit_to(2), 3);
    assert_eq!(commit_to(3), 2, "node 3 holds only up to 2");
}

#[test]
fn commit_index_never_decreases() {
    let mut node = RawNode::new(&config(1, &[1, 2, 3]), storage_with_terms(&[1, 1, 1], 1)).unwrap();
    node.step(append(1, (3, 1), &[], 3)).unwrap();
    node.step(Message {
        from: 2,
        to: 1,
        term: 1,
        body: MessageBody::Heartbeat(Heartbeat {
            commit: 1,
            round: 1,
        }),
    })
    .unwrap();
    assert_eq!(node.raft().raft_log().committed(), 3);
}

#[test]
fn proposal_to_follower_names_the_leader() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.campaign(1);
    assert_eq!(
        c.node_mut(2).propose(Bytes::from_static(b"x")),
        Err(Error::NotLeader { leader: Some(1) })
    );
}

/// A leader whose followers never answer: what it sends shows its flow control.
fn leader_with_silent_followers(tweak: impl Fn(&mut raftkv_raft::Config)) -> Cluster {
    let mut c = Cluster::with(&[1, 2, 3], tweak, |_| MemStorage::new());
    c.campaign(1);
    c.cut(2, 1);
    c.cut(3, 1);
    c
}

fn appends_to(msgs: &[Message], to: u64) -> Vec<&AppendEntries> {
    msgs.iter()
        .filter(|m| m.to == to)
        .filter_map(|m| match &m.body {
            MessageBody::AppendEntries(a) => Some(a),
            _ => None,
        })
        .collect()
}

#[test]
fn probe_state_sends_one_append_at_a_time() {
    // Node 3 never answered, so it is still probed: one message until it answers.
    let mut c = Cluster::with(&[1, 2, 3], |_| {}, |_| MemStorage::new());
    c.isolate(3);
    c.campaign(1);
    for i in 0..5 {
        c.node_mut(1).propose(Bytes::from(format!("p{i}"))).unwrap();
        let msgs = drain(c.node_mut(1)).msgs;
        assert!(
            appends_to(&msgs, 3).is_empty(),
            "probe sent again before an answer"
        );
    }
}

#[test]
fn replicate_state_pipelines_up_to_inflight_msgs_max() {
    let mut c = leader_with_silent_followers(|cfg| {
        cfg.msg_entries_max = 1;
        cfg.inflight_msgs_max = 3;
    });
    for i in 0..10 {
        c.node_mut(1).propose(Bytes::from(format!("p{i}"))).unwrap();
    }
    let msgs = drain(c.node_mut(1)).msgs;
    let to_2 = appends_to(&msgs, 2);
    assert_eq!(to_2.len(), 3, "pipeline depth");
    assert!(to_2.iter().all(|a| a.entries.len() == 1));
}

#[test]
fn replicate_state_stops_at_inflight_bytes_max() {
    let entry_bytes = Entry::new(1, 1, Bytes::from(vec![0; 100])).size_bytes();
    let mut c = leader_with_silent_followers(|cfg| {
        cfg.msg_entries_max = 1;
        cfg.inflight_bytes_max = 2 * entry_bytes;
    });
    for _ in 0..10 {
        c.node_mut(1).propose(Bytes::from(vec![0; 100])).unwrap();
    }
    let msgs = drain(c.node_mut(1)).msgs;
    assert_eq!(appends_to(&msgs, 2).len(), 2);
}

#[test]
fn append_messages_respect_msg_bytes_max() {
    let entry_bytes = Entry::new(1, 1, Bytes::from(vec![0; 100])).size_bytes();
    let mut c = leader_with_silent_followers(|cfg| cfg.msg_bytes_max = 3 * entry_bytes);
    for _ in 0..10 {
        c.node_mut(1).propose(Bytes::from(vec![0; 100])).unwrap();
    }
    let msgs = drain(c.node_mut(1)).msgs;
    let to_2 = appends_to(&msgs, 2);
    assert!(to_2.iter().all(|a| a.entries.len() <= 3));
    assert_eq!(to_2.iter().map(|a| a.entries.len()).sum::<usize>(), 10);
}

#[test]
fn proposals_are_batched_into_one_append_per_follower() {
    let mut c = leader_with_silent_followers(|_| {});
    for i in 0..100 {
        c.node_mut(1).propose(Bytes::from(format!("p{i}"))).unwrap();
    }
    let msgs = drain(c.node_mut(1)).msgs;
    let to_2 = appends_to(&msgs, 2);
    assert_eq!(to_2.len(), 1);
    assert_eq!(to_2[0].entries.len(), 100);
}

#[test]
fn leader_refuses_proposals_past_uncommitted_bytes_max() {
    let entry_bytes = Entry::new(1, 1, Bytes::from(vec![0; 100])).size_bytes();
    let mut c = leader_with_silent_followers(|cfg| cfg.uncommitted_bytes_max = 3 * entry_bytes);
    for _ in 0..3 {
        c.node_mut(1).propose(Bytes::from(vec![0; 100])).unwrap();
    }
    let refused = c.node_mut(1).propose(Bytes::from(vec![0; 100]));
    assert!(
        matches!(refused, Err(Error::Overloaded { .. })),
        "{refused:?}"
    );
    // Once the followers answer and the entries commit, proposals are accepted again.
    c.heal();
    c.tick_all(1);
    c.node_mut(1).propose(Bytes::from(vec![0; 100])).unwrap();
}

#[test]
fn malformed_append_is_refused_without_panic() {
    let mut node = RawNode::new(&config(1, &[1, 2, 3]), MemStorage::new()).unwrap();
    let mut m = append(1, (0, 0), &[1, 1], 0);
    if let MessageBody::AppendEntries(a) = &mut m.body {
        a.entries[1].index = 7; // a gap
    }
    assert!(matches!(node.step(m), Err(Error::MalformedMessage(_))));
    let m = append(1, (0, 0), &[2], 0); // entry term above the sender's term
    assert!(matches!(node.step(m), Err(Error::MalformedMessage(_))));
    assert_eq!(node.raft().raft_log().last_index(), 0);
    assert_eq!(
        node.raft().term(),
        0,
        "a refused message must not change the term"
    );
}

#[test]
fn hostile_message_fields_are_refused_without_panic() {
    let mut node = RawNode::new(&config(1, &[1, 2, 3]), MemStorage::new()).unwrap();
    let refused = |node: &mut RawNode<MemStorage>, m: Message| {
        assert!(matches!(node.step(m), Err(Error::MalformedMessage(_))));
    };
    refused(&mut node, append(u64::MAX, (0, 0), &[], 0));
    refused(&mut node, append(1, (u64::MAX, 1), &[], 0));
    refused(&mut node, append(0, (0, 0), &[], 0)); // a leader in term 0
    let mut misrouted = append(1, (0, 0), &[], 0);
    misrouted.to = 3;
    refused(&mut node, misrouted);
    assert_eq!(node.raft().term(), 0);
}

/// Total `size_bytes` of the entries after `node`'s commit index.
fn uncommitted_tail_bytes(node: &RawNode<MemStorage>) -> u64 {
    let log = node.raft().raft_log();
    log.slice(log.committed() + 1, log.last_index() + 1, u64::MAX)
        .unwrap()
        .iter()
        .map(Entry::size_bytes)
        .sum()
}

/// `Config::uncommitted_bytes_max` bounds the entries after the leader's commit index, whoever
/// appended them. Leader 1 replicates three entries that do not commit and is cut off; node 2,
/// elected with them in its log, must count them (and its own empty entry) from the start, or it
/// could hold twice the limit, and its count must follow its tail exactly from then on.
#[test]
fn a_new_leader_counts_the_uncommitted_tail_it_inherits() {
    let entry_bytes = Entry::new(1, 1, Bytes::from(vec![0; 100])).size_bytes();
    let mut c = leader_with_silent_followers(|cfg| {
        cfg.uncommitted_bytes_max = 3 * entry_bytes;
        cfg.check_quorum = false; // node 3 votes without waiting out leader 1's lease
    });
    for _ in 0..3 {
        c.node_mut(1).propose(Bytes::from(vec![0; 100])).unwrap();
    }
    c.stabilize();
    assert_eq!(c.node(2).raft().raft_log().last_index(), 4);
    assert_eq!(c.committed(2), 1);

    c.isolate(1);
    c.cut(3, 2); // node 3's answers never reach node 2: nothing commits there yet
    c.node_mut(2).force_campaign();
    let term = c.term(2);
    c.node_mut(2)
        .step(Message {
            from: 3,
            to: 2,
            term,
            body: MessageBody::RequestVoteResponse(RequestVoteResponse {
                pre_vote: false,
                granted: true,
            }),
        })
        .unwrap();
    c.stabilize();
    assert_eq!(c.role(2), Role::Leader);
    let inherited = 3 * entry_bytes + ENTRY_OVERHEAD_BYTES; // three proposals and its empty entry
    assert_eq!(uncommitted_tail_bytes(c.node(2)), inherited);
    assert_eq!(c.node(2).raft().uncommitted_bytes(), inherited);
    let refused = c.node_mut(2).propose(Bytes::from(vec![0; 100]));
    assert!(
        matches!(refused, Err(Error::Overloaded { uncommitted_bytes, .. }) if uncommitted_bytes == inherited),
        "{refused:?}"
    );

    c.heal_link(3, 2);
    c.tick_node(2, 1);
    assert_eq!(c.committed(2), 5);
    assert_eq!(c.node(2).raft().uncommitted_bytes(), 0);

    c.cut(3, 2);
    c.propose(2, "x").unwrap();
    assert_eq!(
        c.node(2).raft().uncommitted_bytes(),
        uncommitted_tail_bytes(c.node(2))
    );
    c.heal_link(3, 2);
    c.tick_node(2, 1);
    assert_eq!(c.node(2).raft().uncommitted_bytes(), 0);
}
