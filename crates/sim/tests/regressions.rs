//! Seeds that found bugs, kept as regression tests after the fix. Each seed broke a property with
//! the bug and runs clean with the fix, with the simulator as of its test; as the simulator
//! changes, a seed may stop reaching the bug (it still has to run clean). The rules themselves
//! are pinned by scenario tests named after them: `crates/raft/tests/found_by_simulation.rs` and
//! `crates/wal/tests/found_by_simulation.rs`.

use std::rc::Rc;

use raftkv_sim::client::ReadPath;
use raftkv_sim::faults::FaultMix;
use raftkv_sim::{SimConfig, SimOptions, run};

fn assert_clean_with(seed: u64, adjust: Option<fn(&mut SimConfig)>) {
    let report = run(&SimOptions {
        seed,
        adjust: adjust.map(|f| Rc::new(f) as raftkv_sim::SimConfigHook),
        ..SimOptions::default()
    });
    if let Some(violation) = report.violation {
        let trace: Vec<&str> = report.trace.lines().collect();
        let tail = trace[trace.len().saturating_sub(40)..].join("\n");
        panic!("seed {seed}: {violation}\n{tail}");
    }
}

fn assert_clean(seed: u64) {
    assert_clean_with(seed, None);
}

/// Fixed: the leader panicked in `Progress::maybe_decrease_to` (tracker/progress.rs, Probe branch):
/// `hint_next.clamp(match_index + 1, rejected_index)` with `match_index >= rejected_index`. A
/// follower rejected AppendEntries at prev index N (its log was shorter), then accepted entries up
/// to N; the network reordered the answers, so the leader saw the acceptance (match N), then a
/// rejection at N + 1 (probe, next N + 1), then the stale rejection at N, which passes the
/// `next_index - 1 == rejected_index` test. The Replicate branch ignores a rejection at or below
/// `match_index`; the Probe branch needs the same check. (Seen as "min > max. min = 24, max = 23"
/// with the core and simulator of that time; this seed no longer reaches it.)
#[test]
fn regression_stale_rejection_in_probe_state_does_not_panic_leader_seed_0() {
    assert_clean(0);
}

/// Fixed (raft.rs, `promotable`; thesis §4.2.2): a leader removed itself; the joint
/// configuration committed and the final one was appended on the leader only, which then lost its
/// leadership. The other voters, still joint, needed its vote and it refused (their logs were
/// behind), and it would not campaign since it was no voter of its own latest configuration: no
/// leader ever again. A node not in its latest configuration now campaigns while that
/// configuration is uncommitted. Liveness: "no leader".
#[test]
fn regression_removed_leader_campaigns_until_its_removal_commits_seed_228() {
    assert_clean(228);
}

/// Fixed (election.rs, `handle_request_vote`; thesis §4.1, etcd): a learner promoted by an entry
/// it had not received refused the vote the only candidate holding that entry needed. Learners
/// answer vote requests now; candidates count only their voters' votes. Liveness: "no leader".
#[test]
fn regression_learner_votes_when_promoted_without_knowing_seed_250() {
    assert_clean(250);
}

/// Fixed (election.rs, `campaign` / `on_term_durable`; raw_node.rs, `ReadyAck::hard_state`): a
/// lone voter became leader on its own vote before that vote was durable, sent entries, crashed,
/// was elected again in the same term and sent different entries at the same indexes. It now
/// leads only once its vote is durable. Log Matching: two logs with the same (index, term) and
/// different prefixes (and, in other seeds, two leaders of one term).
#[test]
fn regression_lone_voter_leads_only_once_its_vote_is_durable_seed_2905() {
    assert_clean(2905);
}

/// Two voters, no PreVote, no CheckQuorum, partitions: elections settle only if the two nodes'
/// randomized timeouts differ.
fn two_voters_split_votes(config: &mut SimConfig) {
    config.nodes = 2;
    config.pool = 2;
    config.fault_ticks = 300;
    config.faults = FaultMix::none();
    config.faults.multi_member = 1.0;
    config.faults.partition = 0.1;
    config.faults.partition_length = (3, 30);
    config.faults.leader_bias = 0.5;
    config.raft.pre_vote = false;
    config.raft.check_quorum = false;
    config.snapshot_every = 0;
    config.clients.count = 4;
    config.clients.op_rate = 0.6;
    config.clients.read_weights = ReadPath::ALL.map(|p| u32::from(p == ReadPath::Log));
    config.network.loss = 0.02;
}

/// Fixed (rng.rs, `Rng::for_node`): for many seeds, node k + 1's election timeouts were node k's
/// shifted by a draw or two, so two candidates timed out in the same tick in every term and split
/// every vote for ever. Liveness: "no leader".
#[test]
fn regression_nodes_draw_unrelated_election_timeouts_seed_128() {
    assert_clean_with(128, Some(two_voters_split_votes));
}

/// Fixed (wal record.rs, `get_conf`): demoting a voter goes through a joint configuration in which
/// it is an outgoing voter and already a learner; the WAL wrote it and then refused to read it
/// back ("a node is both a voter and a learner"), so the node could not restart. Recovery.
#[test]
fn regression_wal_reads_back_a_voter_being_demoted_seed_17() {
    assert_clean(17);
}

/// Fixed (wal.rs, `save`, and the contract in raft's lib.rs): a `Ready`'s hard state went to the
/// WAL before its entries; a segment rollover in between synced the hard state alone, a crash
/// then left its commit index over the stale entries the new ones were replacing, and the node
/// applied them. Entries now go first. State Machine Safety: a node applied (7, 1) where (7, 3)
/// was applied.
#[test]
fn regression_hard_state_is_never_durable_without_its_entries_seed_1772() {
    assert_clean(1772);
    assert_clean(5445);
}

fn pre_vote_off(config: &mut SimConfig) {
    config.force_pre_vote(false);
}

/// Guards the vote rule (raft election.rs, `may_be_voter`) against being made stricter: refusing
/// candidates outside the voter's configuration left these seeds without a leader for ever
/// (PreVote forced off). Seed 17, refusing every such candidate: the servers a lone voter added
/// knew no configuration yet and refused it, and it needed their votes. Seed 2025, even with
/// servers that know no configuration exempted: a voter that had lagged through several changes
/// refused the only candidate that could win. Liveness: "no leader".
#[test]
fn regression_votes_reach_candidates_added_by_entries_the_voter_lacks_seeds_17_2025() {
    assert_clean_with(17, Some(pre_vote_off));
    assert_clean_with(2025, Some(pre_vote_off));
}

/// Fixed (raft.rs, `follow_term_of_vote_request`; Figure 2): PreVote off, a joint configuration
/// removing voter 1 in which only node 3 could win (its log was ahead, and the {2, 3} half needed
/// its vote). Nodes 1 and 2 campaigned in turn, each with a new term; every request restarted node
/// 3's election clock, so it almost never timed out first, and the cluster went without a leader
/// for most of the quiet period. A refused vote request moves a node to its term but no longer
/// restarts its clock. Liveness: leases still unrevoked when the bound passed.
#[test]
fn regression_refused_vote_request_keeps_the_election_clock_seed_51825() {
    assert_clean(51825);
}

/// Fixed (raft.rs, `follow_higher_term`; Figure 2): PreVote off; node 2, the only node that could
/// win, needed the vote of node 1, which campaigned on its own clock and never sent node 2
/// anything (node 2 was no voter in node 1's older configuration). Node 2 learned each new term
/// only from node 1's refusal and restarted its election clock on it, so node 1 always took the
/// next term first. An answer from a higher term no longer restarts the clock. Liveness: leases
/// still unrevoked when the bound passed.
#[test]
fn regression_higher_term_in_an_answer_keeps_the_election_clock_seed_54464() {
    assert_clean(54464);
}

/// Fixed (raft.rs, `step`): PreVote off; a joint configuration needed the vote of node 3, far
/// behind, which nodes 1 and 3, both unable to win, kept taking in each new term. Nodes 2 and 6,
/// which could win, ignored node 1's vote requests (it could never get their votes) and so
/// learned each new term only from node 3's refusals, always one term late. Vote requests from a
/// higher term move a node to that term again, whoever sends them (outside a lease). Liveness:
/// "no leader".
#[test]
fn regression_vote_requests_from_hopeless_candidates_still_carry_the_term_seed_62934() {
    assert_clean(62934);
}

/// Fixed (replica membership.rs, `promote_caught_up_learners`): a leader whose applied state lagged
/// (a slow disk) promoted a learner added held: the core's configuration already named the
/// learner, but the hold entry before it was not applied yet. LearnerHold.
#[test]
fn regression_a_lagging_leader_does_not_promote_a_held_learner_seed_103() {
    assert_clean(103);
}

/// Fixed (same place): a node removed and added again, held, was promoted by a leader that had
/// applied only a configuration from before the removal, in which the node was a member: the
/// leader now promotes only once it has applied the configuration in effect. LearnerHold.
#[test]
fn regression_a_held_learner_that_was_a_member_before_is_not_promoted_seed_4359() {
    assert_clean(4359);
}
