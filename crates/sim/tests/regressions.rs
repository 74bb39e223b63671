//! Seeds that found bugs in `crates/raft`, kept as regression tests after the fix.

use raftkv_sim::{SimOptions, run};

fn assert_clean(seed: u64) {
    let report = run(&SimOptions {
        seed,
        ..SimOptions::default()
    });
    if let Some(violation) = report.violation {
        let trace: Vec<&str> = report.trace.lines().collect();
        let tail = trace[trace.len().saturating_sub(40)..].join("\n");
        panic!("seed {seed}: {violation}\n{tail}");
    }
}

/// Fixed: the leader panicked in `Progress::maybe_decrease_to` (tracker/progress.rs, Probe branch):
/// `hint_next.clamp(match_index + 1, rejected_index)` with `match_index >= rejected_index`. A
/// follower rejected AppendEntries at prev index N (its log was shorter), then accepted entries up
/// to N; the network reordered the answers, so the leader saw the acceptance (match N), then a
/// rejection at N + 1 (probe, next N + 1), then the stale rejection at N, which passes the
/// `next_index - 1 == rejected_index` test. The Replicate branch ignores a rejection at or below
/// `match_index`; the Probe branch needs the same check. (Seen as "min > max. min = 24, max = 23"
/// with the core as of this writing; indexes shift as the core changes.)
/// Replay: `cargo run --release -p raftkv-sim -- --seed 0 --trace`.
#[test]
fn regression_stale_rejection_in_probe_state_does_not_panic_leader_seed_0() {
    assert_clean(0);
}
