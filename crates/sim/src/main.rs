//! `raftkv-sim`: runs seeds of the deterministic simulator and reports the first violation.
//!
//! `raftkv-sim --seeds 0..N [--nodes K] [--steps S]` runs seeds in sequence; on a violation it
//! prints the seed, the property broken and the end of the trace, and exits non-zero.
//! `raftkv-sim --seed X --trace` replays one seed and prints its whole trace. `--pre-vote on|off`
//! forces PreVote in every seed, which otherwise draws it (swarm.rs).

use std::ops::Range;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Parser;
use raftkv_sim::{RunReport, SimConfig, SimConfigHook, SimOptions, Stats, run};

/// Deterministic simulation of a raftkv cluster under faults.
#[derive(Debug, Parser)]
#[command(name = "raftkv-sim", version)]
struct Args {
    /// Seeds to run, as START..END (END excluded).
    #[arg(long, default_value = "0..100")]
    seeds: String,
    /// Run this one seed instead of a range.
    #[arg(long)]
    seed: Option<u64>,
    /// Print the whole trace of each run.
    #[arg(long)]
    trace: bool,
    /// Cluster size (1, 3, 5 or 7) instead of each seed's own choice.
    #[arg(long)]
    nodes: Option<usize>,
    /// Ticks of the fault period instead of the default.
    #[arg(long)]
    steps: Option<u64>,
    /// Keep running after a violation (print a one-line report for each) instead of stopping.
    #[arg(long)]
    keep_going: bool,
    /// Force PreVote on or off in every seed instead of each seed's own draw (the rest of the
    /// seed's configuration is drawn as usual).
    #[arg(long, value_parser = parse_switch)]
    pre_vote: Option<bool>,
    /// Break a Raft rule on purpose (commit-past-term, double-vote, no-election-restriction,
    /// no-joint-consensus, read-without-round, lease-during-transfer, snapshot-keeps-old-conf).
    #[cfg(feature = "mutations")]
    #[arg(long)]
    mutation: Option<String>,
}

fn parse_range(text: &str) -> anyhow::Result<Range<u64>> {
    let (start, end) = text
        .split_once("..")
        .with_context(|| format!("--seeds expects START..END, got {text:?}"))?;
    let start: u64 = start.trim().parse().context("--seeds: bad START")?;
    let end: u64 = end.trim().parse().context("--seeds: bad END")?;
    if end <= start {
        bail!("--seeds {text}: END must be greater than START");
    }
    Ok(start..end)
}

fn parse_switch(text: &str) -> anyhow::Result<bool> {
    match text {
        "on" => Ok(true),
        "off" => Ok(false),
        other => bail!("expected on or off, got {other:?}"),
    }
}

#[cfg(feature = "mutations")]
fn mutation_hook(name: Option<&str>) -> anyhow::Result<Option<raftkv_sim::ConfigHook>> {
    use raftkv_raft::Mutation;
    let mutation = match name {
        None => return Ok(None),
        Some("commit-past-term") => Mutation::CommitPastTerm,
        Some("double-vote") => Mutation::DoubleVote,
        Some("no-election-restriction") => Mutation::NoElectionRestriction,
        Some("no-joint-consensus") => Mutation::NoJointConsensus,
        Some("read-without-round") => Mutation::ReadWithoutRound,
        Some("lease-during-transfer") => Mutation::LeaseDuringTransfer,
        Some("snapshot-keeps-old-conf") => Mutation::SnapshotKeepsOldConf,
        Some(other) => bail!("unknown mutation {other:?}"),
    };
    Ok(Some(std::rc::Rc::new(
        move |c: &mut raftkv_raft::Config| c.mutation = Some(mutation),
    )))
}

fn replay_command(args: &Args, seed: u64) -> String {
    let mut command = format!("raftkv-sim --seed {seed} --trace");
    if let Some(nodes) = args.nodes {
        command.push_str(&format!(" --nodes {nodes}"));
    }
    if let Some(steps) = args.steps {
        command.push_str(&format!(" --steps {steps}"));
    }
    if let Some(pre_vote) = args.pre_vote {
        let switch = if pre_vote { "on" } else { "off" };
        command.push_str(&format!(" --pre-vote {switch}"));
    }
    command
}

fn print_failure(args: &Args, seed: u64, report: &RunReport) {
    let Some(violation) = &report.violation else {
        return;
    };
    println!("=== seed {seed}: {} violated", violation.property);
    println!("{}", violation.detail);
    println!("config: {}", report.config);
    if !args.trace {
        println!("--- last {} trace lines ---", report.trace.lines().count());
        for line in report.trace.lines() {
            println!("{line}");
        }
    }
    println!("--- replay with: {}", replay_command(args, seed));
}

fn main() -> ExitCode {
    match real_main() {
        Ok(code) => code,
        Err(error) => {
            eprintln!("raftkv-sim: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn real_main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    if let Some(nodes) = args.nodes
        && ![1, 3, 5, 7].contains(&nodes)
    {
        bail!("--nodes must be 1, 3, 5 or 7, got {nodes}");
    }
    let seeds = match args.seed {
        Some(seed) => seed..seed + 1,
        None => parse_range(&args.seeds)?,
    };
    // A core panic is reported as a violation with its message; keep stderr quiet meanwhile.
    std::panic::set_hook(Box::new(|_| {}));
    let mut options = SimOptions {
        nodes: args.nodes,
        steps: args.steps,
        full_trace: args.trace,
        adjust: args.pre_vote.map(|pre_vote| {
            Rc::new(move |c: &mut SimConfig| c.force_pre_vote(pre_vote)) as SimConfigHook
        }),
        ..SimOptions::default()
    };
    #[cfg(feature = "mutations")]
    {
        options.configure = mutation_hook(args.mutation.as_deref())?;
    }
    let started = Instant::now();
    let mut ran = 0u64;
    let mut failed = 0u64;
    let mut totals = Stats::default();
    let mut inconclusive = 0usize;
    for seed in seeds {
        options.seed = seed;
        let report = run(&options);
        ran += 1;
        totals.add(&report.stats);
        inconclusive += report
            .linearizability
            .as_ref()
            .map_or(0, |l| l.inconclusive.len());
        if args.trace {
            for line in report.trace.lines() {
                println!("{line}");
            }
            println!(
                "trace hash {:016x} ({} lines)",
                report.trace.hash(),
                report.trace.count()
            );
            println!("stats: {:?}", report.stats);
        }
        match &report.violation {
            Some(violation) if args.keep_going => {
                failed += 1;
                let first_line = violation.detail.lines().next().unwrap_or_default();
                println!("seed {seed}: {}: {first_line}", violation.property);
            }
            Some(_) => {
                print_failure(&args, seed, &report);
                summary(ran, ran - 1, started, &totals, inconclusive);
                return Ok(ExitCode::FAILURE);
            }
            None => {}
        }
    }
    summary(ran, ran - failed, started, &totals, inconclusive);
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn summary(ran: u64, clean: u64, started: Instant, totals: &Stats, inconclusive: usize) {
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "seeds run: {ran}, clean: {clean}, time: {seconds:.2}s, {:.1} seeds/s",
        ran as f64 / seconds.max(1e-9)
    );
    println!(
        "totals: {} ops answered ({} reads outside the log), {} crashes, {} failed syncs, {} \
         recoveries ({} exact, {} torn tails), {} partitions, {} snapshots taken, {} restored, \
         {} membership changes, {} transfers, {} leases granted ({} revoked on expiry, {} \
         keep-alives), {} retried writes answered from their session, {} joins ({} held), {} \
         learners promoted ({} held ones when asked), {} addresses published, {} history compactions, {} keys inconclusive",
        totals.ops_ok,
        totals.reads_ok,
        totals.crashes,
        totals.sync_failures,
        totals.restarts,
        totals.exact_recoveries,
        totals.torn_tails,
        totals.partitions,
        totals.snapshots,
        totals.installs,
        totals.membership_changes,
        totals.transfers,
        totals.leases,
        totals.leases_revoked,
        totals.keep_alives,
        totals.session_retries,
        totals.joins,
        totals.held_joins,
        totals.promotions,
        totals.explicit_promotions,
        totals.publishes,
        totals.history_compactions,
        inconclusive
    );
}
