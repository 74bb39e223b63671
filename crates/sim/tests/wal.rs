//! The simulator runs the real write-ahead log over `MemDisk`: what a crash loses is exactly what
//! was not synced, torn tails are cut and recovery succeeds, failed syncs stop a node that then
//! restarts from its disk, and acknowledged writes survive all of it.

use std::rc::Rc;

use raftkv_raft::{Config, Storage};
use raftkv_sim::disk::StorageKind;
use raftkv_sim::kv::{Command, Op};
use raftkv_sim::node::{NodeOutput, NodeSettings, SimNode};
use raftkv_sim::{SimConfig, SimOptions, run};
use raftkv_wal::{Crash, Tear};

/// A lone voter on the WAL whose disk writes complete only when the test says so.
fn lone_voter() -> SimNode {
    let settings = NodeSettings {
        disk_latency: u64::MAX / 2,
        snapshot_every: 0,
        storage: StorageKind::Wal {
            segment_bytes_max: 1 << 16,
            snapshots_kept: 1,
        },
        engine_mutation: None,
    };
    SimNode::new(Config::new(1, vec![1]), settings).unwrap()
}

fn put(node: &mut SimNode, request: u64) {
    let command = Command {
        client: 1,
        session: 0,
        request,
        op: Op::Put {
            key: 0,
            value: request,
            lease: 0,
        },
    };
    node.propose(command, 0, &mut NodeOutput::default());
}

/// Completes every disk write under way (each a sync of the WAL).
fn sync_all(node: &mut SimNode) {
    while node.pending_writes() > 0 {
        node.complete_oldest_write(&mut NodeOutput::default());
    }
}

#[test]
fn a_crash_loses_exactly_what_was_not_synced() {
    let mut node = lone_voter();
    node.campaign(0, &mut NodeOutput::default());
    sync_all(&mut node); // the vote for itself: it leads
    sync_all(&mut node); // its first entry
    for request in 1..=5 {
        put(&mut node, request);
    }
    sync_all(&mut node);
    let synced = node.disk().last_index();
    assert_eq!(synced, 6, "the empty entry and five puts");
    // Three more puts written to the disk but never synced.
    for request in 6..=8 {
        put(&mut node, request);
    }
    assert!(node.pending_writes() > 0);
    let written = node.raft().unwrap().raft_log().last_index();
    assert_eq!(written, 9);
    node.crash(Crash {
        tear: Tear::DropAll,
        zero_fill: false,
        keep_unsynced_names: false,
    });
    assert!(node.node_disk().exact_since_crash());
    // The restart checks the recovered log against the synced one, byte for byte.
    node.restart(0, &mut NodeOutput::default()).unwrap();
    let log = node.raft().unwrap().raft_log();
    assert_eq!(log.last_index(), synced, "recovery kept unsynced entries");
    assert_eq!(node.disk().last_index(), synced);
}

#[test]
fn a_torn_crash_keeps_every_synced_entry_and_recovers() {
    for seed in 0..20 {
        let mut node = lone_voter();
        node.campaign(0, &mut NodeOutput::default());
        sync_all(&mut node);
        sync_all(&mut node);
        for request in 1..=4 {
            put(&mut node, request);
        }
        sync_all(&mut node);
        for request in 5..=9 {
            put(&mut node, request);
        }
        node.crash(Crash {
            tear: Tear::Random(seed),
            zero_fill: seed % 2 == 0,
            keep_unsynced_names: seed % 3 == 0,
        });
        node.restart(0, &mut NodeOutput::default()).unwrap();
        let last = node.raft().unwrap().raft_log().last_index();
        assert!(
            (5..=10).contains(&last),
            "seed {seed}: recovered up to {last}"
        );
    }
}

/// The swarm with the WAL on every seed, frequent crashes (half of them tearing unsynced writes),
/// failed syncs and slow syncs: every run is clean, and recoveries were checked exactly.
#[test]
fn clusters_on_the_wal_survive_crashes_torn_writes_and_failed_syncs() {
    let adjust = Rc::new(|config: &mut SimConfig| {
        config.storage = StorageKind::Wal {
            segment_bytes_max: 1024,
            snapshots_kept: 1,
        };
        config.faults.crash = 0.03;
        config.faults.torn_write = 0.5;
        config.faults.sync_failure = 0.01;
        config.faults.slow_disk = 0.02;
    });
    let (mut restarts, mut exact, mut torn, mut failed) = (0, 0, 0, 0);
    for seed in 0..40 {
        let report = run(&SimOptions {
            seed,
            adjust: Some(adjust.clone()),
            ..SimOptions::default()
        });
        if let Some(v) = report.violation {
            panic!("seed {seed}: {v}\nconfig: {}", report.config);
        }
        restarts += report.stats.restarts;
        exact += report.stats.exact_recoveries;
        torn += report.stats.torn_tails;
        failed += report.stats.sync_failures;
    }
    println!("{restarts} recoveries, {exact} exact, {torn} torn tails cut, {failed} failed syncs");
    assert!(
        exact > 20 && torn > 5 && failed > 5,
        "the faults did not happen"
    );
}
