//! Mutation checks: with a Raft rule broken on purpose, the simulator must find a safety
//! violation within a bounded number of seeds. A core panic does not count: the point is that the
//! checkers notice the broken rule.

use std::rc::Rc;

use raftkv_raft::{Config, Mutation};
use raftkv_sim::{Property, SimConfig, SimOptions, Violation, run};

/// Most seeds each mutation may take to be caught.
const SEED_BUDGET: u64 = 200;

/// Runs seeds `0..budget` with `mutation` in every node; returns the first seed whose run broke a
/// safety property (other than a core panic), and the violation.
fn first_violation(
    mutation: Mutation,
    budget: u64,
    adjust: impl Fn(&mut SimConfig) + 'static,
) -> Option<(u64, Violation)> {
    let adjust = Rc::new(adjust);
    (0..budget).find_map(|seed| {
        let options = SimOptions {
            seed,
            configure: Some(Rc::new(move |c: &mut Config| c.mutation = Some(mutation))),
            adjust: Some(adjust.clone()),
            ..SimOptions::default()
        };
        run(&options)
            .violation
            .filter(|v| v.property != Property::CorePanic)
            .map(|v| (seed, v))
    })
}

/// The Figure 8 trap (§5.4.2) needs an old-term entry to reach a majority alone (one entry per
/// message), the leader that counted it committed to vanish before its own term's entry follows
/// (crashes, leader isolation, slow and lossy links), and a node with a newer-term entry at that
/// index to win the next election: long runs of a small cluster with frequent, leader-biased faults.
fn figure_8_mix(config: &mut SimConfig) {
    config.nodes = 3;
    config.fault_ticks = 1000;
    config.raft.msg_entries_max = 1;
    config.raft.inflight_msgs_max = 1;
    config.raft.check_quorum = true;
    config.faults.crash = 0.05;
    config.faults.downtime = (3, 25);
    config.faults.slow_disk = 0.2;
    config.faults.partition = 0.05;
    config.faults.leader_bias = 0.5;
    config.clients.op_rate = 0.6;
    config.network.latency_max = 30;
    config.network.long_delay = 0.05;
    config.network.loss = 0.1;
    config.network.fifo = true;
    config.network.duplicate = 0.0;
}

#[test]
fn commit_past_term_is_caught() {
    let found = first_violation(Mutation::CommitPastTerm, SEED_BUDGET, figure_8_mix);
    let (seed, violation) = found.expect("CommitPastTerm went unnoticed");
    println!("CommitPastTerm caught by seed {seed}: {violation}");
}

#[test]
fn double_vote_is_caught() {
    let found = first_violation(Mutation::DoubleVote, SEED_BUDGET, |_| {});
    let (seed, violation) = found.expect("DoubleVote went unnoticed");
    println!("DoubleVote caught by seed {seed}: {violation}");
    assert_eq!(violation.property, Property::ElectionSafety);
}

#[test]
fn no_election_restriction_is_caught() {
    let found = first_violation(Mutation::NoElectionRestriction, SEED_BUDGET, |_| {});
    let (seed, violation) = found.expect("NoElectionRestriction went unnoticed");
    println!("NoElectionRestriction caught by seed {seed}: {violation}");
}
