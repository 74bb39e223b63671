//! Crash tests on `MemDisk`: a known history of saves, compactions and snapshot installs is run
//! with a sync failure injected at every sync in turn; the disk then crashes in many ways (the
//! unsynced region cut at every byte offset, zero-filled or not, unsynced names kept or lost, and
//! seeded random tears), and recovery must give back exactly one of the states the interrupted
//! operation could have left, never losing what a completed sync made durable and never inventing
//! an entry. Then every bit of the synced files is flipped in turn: damage must be detected.

use bytes::Bytes;
use raftkv_raft::{ConfState, Entry, HardState, MemStorage, Snapshot, SnapshotMetadata, Storage};
use raftkv_wal::{Crash, Disk, DiskFile, MemDisk, Tear, Wal, WalError, WalOptions};

const DIR: &str = "/data";

/// One step of the history.
#[derive(Clone, Debug)]
enum Op {
    Save(Option<HardState>, Vec<Entry>),
    Compact(u64),
    Install(u64, u64),
}

fn options() -> WalOptions {
    WalOptions {
        segment_bytes_max: 700,
        ..WalOptions::default()
    }
}

fn entry(index: u64, term: u64) -> Entry {
    let data = Bytes::from(format!("{index}/{term}"));
    if index % 7 == 0 {
        let mut e = Entry::conf_change(index, term, ConfState::from_voters([1, 2, index]));
        e.data = data;
        e
    } else {
        Entry::new(index, term, data)
    }
}

fn snapshot_at(index: u64, term: u64) -> Snapshot {
    Snapshot {
        metadata: SnapshotMetadata {
            index,
            term,
            conf_state: ConfState::from_voters([1, 2, 3]),
        },
        data: Bytes::from(format!("snapshot {index}")),
    }
}

/// A history with appends, truncations, hard-state changes, rollovers, compactions and an install.
fn history() -> Vec<Op> {
    let mut ops = Vec::new();
    let (mut last, mut term, mut floor) = (0u64, 1u64, 0u64);
    for step in 0..30u64 {
        let hard_state = HardState {
            term,
            vote: Some(1 + step % 3),
            commit: last.saturating_sub(2),
        };
        let start = if step % 5 == 4 && last > floor + 3 {
            term += 1;
            last - 2
        } else {
            last + 1
        };
        let count = 1 + step % 4;
        let entries: Vec<Entry> = (start..start + count).map(|i| entry(i, term)).collect();
        last = start + count - 1;
        ops.push(Op::Save((step % 3 != 2).then_some(hard_state), entries));
        if step == 12 || step == 24 {
            floor = last - 3;
            ops.push(Op::Compact(floor));
        }
        if step == 18 {
            term += 1;
            last += 5;
            floor = last;
            ops.push(Op::Install(last, term - 1));
        }
    }
    ops
}

/// What recovery must return: the log, hard state and snapshot boundary.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Expect {
    entries: Vec<Entry>,
    hard_state: HardState,
    snapshot: (u64, u64),
}

fn expect_of<S: Storage>(s: &S) -> Expect {
    let mut hard_state = s.initial_state().hard_state;
    hard_state.commit = hard_state.commit.min(s.last_index());
    Expect {
        entries: s
            .entries(s.first_index(), s.last_index() + 1, u64::MAX)
            .unwrap(),
        hard_state,
        snapshot: s
            .snapshot()
            .map(|x| (x.metadata.index, x.metadata.term))
            .unwrap(),
    }
}

/// The states an operation passes through on the model, first to last.
fn model_steps(model: &mut MemStorage, op: &Op) -> Vec<Expect> {
    let mut steps = vec![expect_of(model)];
    match op {
        Op::Save(hard_state, entries) => {
            // Entries first, then the hard state (see `Wal::save`).
            for e in entries {
                model.append(std::slice::from_ref(e));
                steps.push(expect_of(model));
            }
            if let Some(hs) = hard_state {
                model.set_hard_state(*hs);
                steps.push(expect_of(model));
            }
        }
        Op::Compact(index) => {
            let term = model.term(*index).unwrap();
            model.compact(snapshot_at(*index, term));
            steps.push(expect_of(model));
        }
        Op::Install(index, term) => {
            model.apply_snapshot(snapshot_at(*index, *term));
            steps.push(expect_of(model));
        }
    }
    steps
}

fn run_op(wal: &mut Wal<MemDisk>, op: &Op) -> Result<(), WalError> {
    match op {
        Op::Save(hard_state, entries) => wal.save(*hard_state, entries, None),
        Op::Compact(index) => {
            let term = wal.term(*index).unwrap();
            wal.compact(snapshot_at(*index, term)).map(drop)
        }
        Op::Install(index, term) => wal.apply_snapshot(snapshot_at(*index, *term)).map(drop),
    }
}

/// Runs the history with the sync after `skip` successful ones failing. Returns the disk and the
/// states recovery may give (`None` when no sync failed).
fn run_until_failure(skip: u64) -> (MemDisk, Option<Vec<Expect>>) {
    let disk = MemDisk::new();
    disk.fail_syncs(skip, u64::MAX);
    let mut model = MemStorage::new();
    let empty = vec![expect_of(&model)];
    let mut wal = match Wal::open(disk.clone(), DIR, options()) {
        Ok((wal, _)) => wal,
        Err(_) => return (disk, Some(empty)),
    };
    for op in history() {
        let steps = model_steps(&mut model, &op);
        if run_op(&mut wal, &op).is_err() {
            assert!(matches!(
                run_op(&mut wal, &op),
                Err(WalError::Failed { .. })
            ));
            assert!(
                matches!(wal.sync(), Err(WalError::Failed { .. })),
                "failure is sticky"
            );
            return (disk, Some(steps));
        }
    }
    (disk, None)
}

fn unsynced_bytes_max(disk: &MemDisk) -> u64 {
    let names = disk.list(DIR.as_ref()).unwrap();
    names
        .iter()
        .filter_map(|n| disk.unsynced_range(&std::path::Path::new(DIR).join(n)))
        .map(|(start, end)| end - start)
        .max()
        .unwrap_or(0)
}

/// Crashes a copy of `disk` with `crash`, recovers, and checks the result is one of `allowed`.
/// Returns whether recovery cut a torn tail.
fn crash_and_check(disk: &MemDisk, crash: Crash, allowed: &[Expect], extend: bool) -> bool {
    let disk = disk.fork();
    disk.fail_syncs(0, 0);
    disk.crash(crash);
    let (mut wal, report) = Wal::open(disk.clone(), DIR, options())
        .unwrap_or_else(|e| panic!("recovery after {crash:?} failed: {e}"));
    let got = expect_of(&wal);
    assert!(
        allowed.contains(&got),
        "after {crash:?} recovered {got:?}\n(report {report:?}), allowed: {allowed:#?}"
    );
    let torn = report.torn_tail.is_some();
    if extend {
        // The repaired tail takes new writes and replays cleanly.
        let next = wal.last_index() + 1;
        let term = got.entries.last().map_or(got.snapshot.1, |e| e.term).max(1);
        wal.save(None, &[entry(next, term)], None).unwrap();
        let want = expect_of(&wal);
        drop(wal);
        let (wal, report) = Wal::open(disk, DIR, options()).unwrap();
        assert_eq!(report.torn_tail, None);
        assert_eq!(expect_of(&wal), want);
    }
    torn
}

#[test]
fn every_crash_point_recovers_a_state_the_history_allows() {
    let (mut failure_points, mut torn) = (0, 0);
    for skip in 0.. {
        let (disk, allowed) = run_until_failure(skip);
        let Some(allowed) = allowed else {
            break;
        };
        failure_points += 1;
        for zero_fill in [false, true] {
            for keep_unsynced_names in [false, true] {
                for tear in [Tear::DropAll, Tear::Random(skip), Tear::Keep(u64::MAX)] {
                    let crash = Crash {
                        tear,
                        zero_fill,
                        keep_unsynced_names,
                    };
                    torn += usize::from(crash_and_check(&disk, crash, &allowed, true));
                }
            }
            for keep in 0..=unsynced_bytes_max(&disk) {
                let crash = Crash {
                    tear: Tear::Keep(keep),
                    zero_fill,
                    keep_unsynced_names: false,
                };
                torn += usize::from(crash_and_check(&disk, crash, &allowed, keep % 16 == 0));
            }
        }
    }
    assert!(
        failure_points > 40,
        "only {failure_points} syncs in the history"
    );
    assert!(torn > 1000, "only {torn} crashes left a torn tail");
}

#[test]
fn a_completed_history_survives_a_crash_exactly() {
    let (disk, allowed) = run_until_failure(u64::MAX);
    assert!(allowed.is_none());
    let mut model = MemStorage::new();
    for op in history() {
        model_steps(&mut model, &op);
    }
    assert!(!crash_and_check(
        &disk,
        Crash::clean(),
        &[expect_of(&model)],
        true
    ));
}

#[test]
fn bit_flips_in_synced_data_are_detected() {
    let (disk, _) = run_until_failure(u64::MAX);
    let (wal, _) = Wal::open(disk.clone(), DIR, options()).unwrap();
    let want = expect_of(&wal);
    drop(wal);
    let dir = std::path::Path::new(DIR);
    let (mut flips, mut fallbacks) = (0, 0);
    for name in disk.list(dir).unwrap() {
        let path = dir.join(&name);
        let contents = disk.contents(&path).unwrap();
        let end = contents.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
        for offset in 0..end as u64 {
            let damaged = disk.fork();
            assert!(damaged.flip_bit(&path, offset, (offset % 8) as u8));
            flips += 1;
            match Wal::open(damaged, DIR, options()) {
                Err(WalError::Corrupt { .. }) => {}
                Ok((wal, report)) if name.ends_with(".snap") => {
                    // An older snapshot that was not needed, or an older snapshot plus the log
                    // instead of the damaged newest: the same log end and hard state.
                    let got = expect_of(&wal);
                    if report.damaged_snapshots.is_empty() {
                        assert_eq!(got, want);
                    } else {
                        fallbacks += 1;
                    }
                    assert!(got.entries.ends_with(&want.entries));
                    assert_eq!(got.hard_state, want.hard_state);
                }
                other => panic!("flip at {name}:{offset} gave {:?}", other.map(|(_, r)| r)),
            }
        }
    }
    assert!(flips > 1000);
    assert!(
        fallbacks > 0,
        "no flip made recovery fall back to an older snapshot"
    );
}

#[test]
fn sync_failure_is_fatal_and_names_the_directory() {
    let disk = MemDisk::new();
    let (mut wal, _) = Wal::open(disk.clone(), DIR, options()).unwrap();
    wal.save(None, &[entry(1, 1)], None).unwrap();
    disk.fail_next_syncs(1);
    let error = wal.save(None, &[entry(2, 1)], None).unwrap_err();
    assert!(matches!(error, WalError::Failed { .. }));
    assert!(error.to_string().contains(DIR), "{error}");
    assert!(error.to_string().contains("sync"), "{error}");
    // The next sync would succeed, but the WAL does not pretend the data is safe.
    assert!(matches!(wal.sync(), Err(WalError::Failed { .. })));
    assert!(matches!(
        wal.append(&[entry(3, 1)]),
        Err(WalError::Failed { .. })
    ));
    drop(wal);
    disk.crash(Crash::clean());
    let (wal, _) = Wal::open(disk, DIR, options()).unwrap();
    assert_eq!(wal.last_index(), 1);
}

/// `write_for_sync`: what was appended before it is durable once the handle it returns is synced
/// (from another thread), and not before; appends after it wait for the next sync; a segment
/// rollover between the two leaves the earlier segments synced.
#[test]
fn a_sync_on_another_thread_makes_durable_what_was_written_before_it() {
    let disk = MemDisk::new();
    let (mut wal, _) = Wal::open(disk.clone(), DIR, options()).unwrap();
    wal.append(&[entry(1, 1), entry(2, 1)]).unwrap();
    let mut handle = wal.write_for_sync().unwrap();
    wal.append(&[entry(3, 1)]).unwrap();
    std::thread::spawn(move || handle.sync().unwrap())
        .join()
        .unwrap();
    disk.crash(Crash::clean());
    let (mut wal, _) = Wal::open(disk.clone(), DIR, options()).unwrap();
    assert_eq!(
        wal.last_index(),
        2,
        "synced through the other handle, and only that"
    );

    // Enough entries to roll over to new segments before the handle is taken.
    let more: Vec<Entry> = (3..60).map(|i| entry(i, 1)).collect();
    wal.append(&more).unwrap();
    let segments = wal.segment_count();
    assert!(
        segments > 1,
        "the appends must roll over ({segments} segment)"
    );
    let mut handle = wal.write_for_sync().unwrap();
    handle.sync().unwrap();
    drop(wal);
    disk.crash(Crash::clean());
    let (wal, _) = Wal::open(disk, DIR, options()).unwrap();
    assert_eq!(wal.last_index(), 59);
}

#[test]
fn a_second_opener_is_refused() {
    let disk = MemDisk::new();
    let (_wal, _) = Wal::open(disk.clone(), DIR, options()).unwrap();
    let error = Wal::open(disk, DIR, options()).err().unwrap();
    assert!(matches!(error, WalError::Locked { .. }), "{error}");
}

/// A snapshot file written off the node loop (`SnapshotWriter`) is only a file until the WAL
/// records it (`compact_written`): a crash in between recovers the whole log, and once recorded
/// the log is compacted and recovers so.
#[test]
fn a_snapshot_written_off_the_loop_counts_only_once_recorded() {
    let disk = MemDisk::new();
    let hard_state = HardState {
        term: 1,
        vote: Some(1),
        commit: 10,
    };
    let entries: Vec<Entry> = (1..=10)
        .map(|i| Entry::new(i, 1, Bytes::from("x")))
        .collect();
    {
        let (mut wal, _) = Wal::open(disk.clone(), DIR, options()).unwrap();
        wal.save(Some(hard_state), &entries, None).unwrap();
        wal.snapshot_writer().write(&snapshot_at(5, 1)).unwrap();
    }
    disk.crash(Crash::clean());
    {
        let (mut wal, _) = Wal::open(disk.clone(), DIR, options()).unwrap();
        assert_eq!(wal.last_index(), 10);
        assert_eq!(wal.entries(6, 11, u64::MAX).unwrap().len(), 5);
        let snapshot = snapshot_at(7, 1);
        wal.snapshot_writer().write(&snapshot).unwrap();
        assert!(wal.compact_written(snapshot).unwrap());
        assert_eq!(wal.first_index(), 8);
    }
    disk.crash(Crash::clean());
    let (wal, _) = Wal::open(disk, DIR, options()).unwrap();
    assert_eq!(wal.snapshot_metadata().index, 7);
    assert_eq!((wal.first_index(), wal.last_index()), (8, 10));
    assert_eq!(wal.snapshot().unwrap().data, Bytes::from("snapshot 7"));
}
