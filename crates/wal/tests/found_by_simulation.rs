//! Rules the simulator (`crates/sim`, which runs the WAL under its crash model) found broken, each
//! as the smallest scenario that shows it, named after the rule.

use std::collections::BTreeSet;

use bytes::Bytes;
use raftkv_raft::{ConfState, Entry, HardState, MemberChange, Snapshot, SnapshotMetadata, Storage};
use raftkv_wal::{MemDisk, Wal, WalOptions};

/// Demoting a voter goes through a joint configuration in which it is an outgoing voter and
/// already a learner (`ConfState::enter_joint`). The WAL stores that configuration, in an entry
/// and in a snapshot, and must read it back: it reported such logs as corrupt and refused to open.
#[test]
fn a_voter_being_demoted_round_trips_through_the_wal() {
    let joint = ConfState::from_voters([1, 2, 3])
        .enter_joint(&[MemberChange::AddLearner(3)])
        .unwrap();
    assert!(joint.voters_outgoing.contains(&3) && joint.learners.contains(&3));
    let disk = MemDisk::new();
    let options = WalOptions::default();
    let (mut wal, _) = Wal::open(disk.clone(), "/data", options.clone()).unwrap();
    let hard_state = HardState {
        term: 1,
        vote: Some(1),
        commit: 2,
    };
    let entries = [
        Entry::new(1, 1, Bytes::new()),
        Entry::conf_change(2, 1, joint.clone()),
        Entry::new(3, 1, Bytes::new()),
    ];
    wal.save(Some(hard_state), &entries, None).unwrap();
    let snapshot = Snapshot {
        metadata: SnapshotMetadata {
            index: 2,
            term: 1,
            conf_state: joint.clone(),
        },
        data: Bytes::from("state"),
    };
    assert!(wal.compact(snapshot).unwrap());
    drop(wal);
    let (wal, _) = Wal::open(disk, "/data", options).unwrap();
    assert_eq!(wal.initial_state().conf_state, joint);
    assert_eq!(wal.last_index(), 3);
    assert_eq!(joint.learners, BTreeSet::from([3]));
}

/// `save` persists a `Ready`'s entries before its hard state. A segment rollover in the middle of
/// a save syncs what was written so far; with the hard state first, a crash then left a commit
/// index durable over the stale entries the save was replacing, and the node applied them.
/// Whatever syncs and crashes interrupt the save, every recovered entry at or below the recovered
/// commit index must be a committed one.
#[test]
fn a_hard_state_is_never_durable_without_the_entries_it_commits() {
    use raftkv_raft::Term;
    use raftkv_wal::{Crash, Tear};
    let entry = |index: u64, term: Term, size: usize| Entry::new(index, term, vec![0; size].into());
    for size in (0..160).step_by(7) {
        for skip in 0..12 {
            let disk = MemDisk::new();
            let options = WalOptions {
                segment_bytes_max: 512,
                ..WalOptions::default()
            };
            let Ok((mut wal, _)) = Wal::open(disk.clone(), "/data", options.clone()) else {
                continue;
            };
            // Five entries of term 1, two committed; then a leader of term 2 replaces 3..=5 and
            // says all five are committed.
            let old: Vec<Entry> = (1..=5).map(|i| entry(i, 1, size)).collect();
            let hs = |term, commit| HardState {
                term,
                vote: None,
                commit,
            };
            if wal.save(Some(hs(1, 2)), &old, None).is_err() {
                continue;
            }
            disk.fail_syncs(skip, u64::MAX);
            let new: Vec<Entry> = (3..=5).map(|i| entry(i, 2, size)).collect();
            let _ = wal.save(Some(hs(2, 5)), &new, None);
            drop(wal);
            disk.fail_syncs(0, 0);
            disk.crash(Crash {
                tear: Tear::DropAll,
                zero_fill: false,
                keep_unsynced_names: false,
            });
            let (wal, _) = Wal::open(disk, "/data", options).unwrap();
            let commit = wal.initial_state().hard_state.commit;
            for index in wal.first_index()..=commit.min(wal.last_index()) {
                let term = wal.term(index).unwrap();
                let committed = if index <= 2 { 1 } else { 2 };
                assert_eq!(
                    term, committed,
                    "entry size {size}, sync {skip} failing: commit index {commit} covers the \
                     stale entry ({index}, {term})"
                );
            }
        }
    }
}
