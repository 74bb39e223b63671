//! The bounded exhaustive check: every interleaving of a 3-node cluster with two client writes,
//! up to a depth, satisfies every safety property; and the same search catches a broken rule.

use std::rc::Rc;
use std::time::Instant;

use raftkv_raft::{Config, Mutation};
use raftkv_sim::Property;
use raftkv_sim::explore::{ExploreConfig, describe_path, explore};

#[test]
fn every_interleaving_up_to_the_bound_is_safe() {
    let started = Instant::now();
    let report = explore(&ExploreConfig::default());
    println!(
        "explored {} states ({} steps, deepest path {}, truncated: {}) in {:.1?}",
        report.states,
        report.steps,
        report.deepest,
        report.truncated,
        started.elapsed()
    );
    if let Some((path, violation)) = &report.violation {
        panic!(
            "{violation}\n{}",
            describe_path(&ExploreConfig::default(), path)
        );
    }
    assert!(report.states > 1000, "the search explored too little");
}

#[test]
fn exhaustive_search_catches_double_vote() {
    let config = ExploreConfig {
        configure: Some(Rc::new(|c: &mut Config| {
            c.mutation = Some(Mutation::DoubleVote)
        })),
        depth: 10,
        max_states: 100_000,
        proposals: 0,
        ticks: 0,
        duplicates: 0,
        drops: 0,
        crashes: 0,
        ..ExploreConfig::default()
    };
    let report = explore(&config);
    let (path, violation) = report.violation.expect("DoubleVote went unnoticed");
    println!(
        "caught after {} states: {violation}\n{}",
        report.states,
        describe_path(&config, &path)
    );
    assert_eq!(violation.property, Property::ElectionSafety);
}
