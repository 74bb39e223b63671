//! The random sweep: many seeds of swarm-drawn clusters and fault mixes, each checked for every
//! safety property, durability, linearizability and liveness; plus bit-for-bit determinism.
//!
//! The sweep is split over several tests so the test harness runs them in parallel.

use raftkv_sim::{SimOptions, run};

/// Runs `seeds`; panics on the first violation with its trace tail and the replay command.
/// Returns how many ran clean (all of them, when it returns).
fn sweep(seeds: std::ops::Range<u64>) -> u64 {
    let mut clean = 0;
    for seed in seeds.clone() {
        let report = run(&SimOptions {
            seed,
            ..SimOptions::default()
        });
        if let Some(v) = report.violation {
            let trace: Vec<&str> = report.trace.lines().collect();
            let tail = trace[trace.len().saturating_sub(60)..].join("\n");
            panic!(
                "seed {seed}: {v}\nconfig: {}\n--- trace tail ---\n{tail}\n\
                 replay: cargo run --release -p raftkv-sim -- --seed {seed} --trace",
                report.config
            );
        }
        clean += 1;
    }
    println!("seeds {seeds:?}: {clean} clean");
    clean
}

/// Seeds per part; four parts run 1000 seeds.
const PART: u64 = 250;
/// Clean seeds each part must have: all of them.
const CLEAN_MIN: u64 = PART;

#[test]
fn sweep_part_1() {
    assert!(sweep(0..PART) >= CLEAN_MIN);
}

#[test]
fn sweep_part_2() {
    assert!(sweep(PART..2 * PART) >= CLEAN_MIN);
}

#[test]
fn sweep_part_3() {
    assert!(sweep(2 * PART..3 * PART) >= CLEAN_MIN);
}

#[test]
fn sweep_part_4() {
    assert!(sweep(3 * PART..4 * PART) >= CLEAN_MIN);
}

#[test]
fn a_seed_replays_bit_for_bit() {
    for seed in [3, 11] {
        let options = SimOptions {
            seed,
            ..SimOptions::default()
        };
        let first = run(&options);
        let second = run(&options);
        assert_eq!(first.trace.hash(), second.trace.hash(), "seed {seed}");
        assert_eq!(first.trace.count(), second.trace.count(), "seed {seed}");
        assert!(first.trace.count() > 100);
    }
}

#[test]
fn seeds_draw_different_configurations() {
    let a = run(&SimOptions::default()).config;
    let b = run(&SimOptions {
        seed: 1,
        ..SimOptions::default()
    })
    .config;
    assert_ne!(a, b);
}
