//! The WAL on the real file system in a temporary directory: state survives close and reopen,
//! the data-directory lock refuses a second opener, group commit makes many appenders durable,
//! a snapshot's data is read back from its file (and a damaged file is an error, not a panic).

use std::sync::Arc;

use bytes::Bytes;
use raftkv_raft::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata, Storage, StorageError};
use raftkv_wal::{FsDisk, GroupCommit, MemDisk, Wal, WalError, WalOptions};

fn options() -> WalOptions {
    WalOptions {
        segment_bytes_max: 64 << 10,
        ..WalOptions::default()
    }
}

#[test]
fn write_close_reopen_gives_the_same_state() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("node1");
    let (mut wal, report) = Wal::open(FsDisk, &data, options()).unwrap();
    assert_eq!((report.segments, report.torn_tail), (0, None));
    let hard_state = HardState {
        term: 3,
        vote: Some(2),
        commit: 400,
    };
    let entries: Vec<Entry> = (1..=1000)
        .map(|i| Entry::new(i, 1 + i / 400, Bytes::from(vec![(i % 251) as u8; 100])))
        .collect();
    for chunk in entries.chunks(50) {
        wal.save(Some(hard_state), chunk, None).unwrap();
    }
    let conf = ConfState::from_voters([1, 2, 3]);
    wal.append(&[Entry::conf_change(1001, 3, conf.clone())])
        .unwrap();
    wal.sync().unwrap();
    let snapshot = Snapshot {
        metadata: SnapshotMetadata {
            index: 300,
            term: 1,
            conf_state: conf,
        },
        data: Bytes::from_static(b"state machine at 300"),
    };
    assert!(wal.compact(snapshot.clone()).unwrap());
    let before = (
        wal.initial_state(),
        wal.first_index(),
        wal.last_index(),
        wal.snapshot(),
    );
    let all = wal.entries(301, 1002, u64::MAX).unwrap();
    assert!(wal.segment_count() > 1);
    drop(wal);

    let (wal, report) = Wal::open(FsDisk, &data, options()).unwrap();
    assert_eq!(report.torn_tail, None);
    assert_eq!(
        (
            wal.initial_state(),
            wal.first_index(),
            wal.last_index(),
            wal.snapshot()
        ),
        before
    );
    assert_eq!(wal.entries(301, 1002, u64::MAX).unwrap(), all);
    assert_eq!(wal.snapshot(), Ok(snapshot));
}

#[test]
fn the_data_dir_lock_refuses_a_second_opener() {
    let dir = tempfile::tempdir().unwrap();
    let (wal, _) = Wal::open(FsDisk, dir.path(), options()).unwrap();
    let error = Wal::open(FsDisk, dir.path(), options()).err().unwrap();
    assert!(matches!(error, WalError::Locked { .. }));
    assert!(
        error
            .to_string()
            .contains(&dir.path().display().to_string()),
        "{error}"
    );
    drop(wal);
    Wal::open(FsDisk, dir.path(), options()).unwrap();
}

#[test]
fn group_commit_makes_every_appender_durable_with_shared_syncs() {
    let disk = MemDisk::new();
    disk.set_sync_delay(std::time::Duration::from_millis(1));
    let (wal, _) = Wal::open(disk.clone(), "/d", options()).unwrap();
    let syncs_before = disk.sync_count();
    let group = Arc::new(GroupCommit::new(wal, 1024));
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let group = group.clone();
            std::thread::spawn(move || {
                (0..50)
                    .map(|i| {
                        group
                            .append(1, Bytes::from(format!("{t}/{i}")))
                            .wait()
                            .unwrap()
                    })
                    .collect::<Vec<u64>>()
            })
        })
        .collect();
    let mut indexes: Vec<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    indexes.sort();
    assert_eq!(indexes, (1..=800).collect::<Vec<_>>());
    let syncs = disk.sync_count() - syncs_before;
    assert!(syncs < 800, "{syncs} syncs for 800 appends: no grouping");
    let save = group.save(
        Some(HardState {
            term: 1,
            vote: None,
            commit: 800,
        }),
        vec![],
    );
    assert_eq!(save.wait().unwrap(), 800);
    let wal = Arc::into_inner(group).unwrap().shutdown().unwrap();
    drop(wal);
    disk.crash(raftkv_wal::Crash::clean());
    let (wal, _) = Wal::open(disk, "/d", options()).unwrap();
    assert_eq!((wal.last_index(), wal.hard_state().commit), (800, 800));
}

#[test]
fn group_commit_reports_a_failed_sync_to_every_appender() {
    let disk = MemDisk::new();
    let (wal, _) = Wal::open(disk.clone(), "/d", options()).unwrap();
    let group = GroupCommit::new(wal, 16);
    assert_eq!(group.append(1, Bytes::new()).wait().unwrap(), 1);
    disk.fail_next_syncs(1);
    assert!(matches!(
        group.append(1, Bytes::new()).wait(),
        Err(WalError::Failed { .. })
    ));
    assert!(matches!(
        group.append(1, Bytes::new()).wait(),
        Err(WalError::Failed { .. })
    ));
}

#[test]
fn a_dropped_completion_still_writes_and_never_stalls_the_queue() {
    let disk = MemDisk::new();
    let (wal, _) = Wal::open(disk, "/d", options()).unwrap();
    let group = GroupCommit::new(wal, 4);
    drop(group.append(1, Bytes::from_static(b"a")));
    let waited = group.append(1, Bytes::from_static(b"b"));
    drop(group.append(1, Bytes::from_static(b"c")));
    assert_eq!(waited.wait().unwrap(), 2);
    assert_eq!(group.append(1, Bytes::new()).wait().unwrap(), 4);
    assert_eq!(group.with_wal(|wal| wal.last_index()).unwrap(), 4);
}

#[test]
fn the_snapshot_data_is_read_back_from_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = Wal::open(FsDisk, dir.path(), options()).unwrap();
    let entries: Vec<Entry> = (1..=10)
        .map(|i| Entry::new(i, 1, Bytes::from_static(b"x")))
        .collect();
    wal.append(&entries).unwrap();
    wal.sync().unwrap();
    let snapshot = Snapshot {
        metadata: SnapshotMetadata {
            index: 8,
            term: 1,
            conf_state: ConfState::from_voters([1]),
        },
        data: Bytes::from_static(b"state machine at 8"),
    };
    assert!(wal.compact(snapshot.clone()).unwrap());
    assert_eq!(wal.snapshot_metadata(), &snapshot.metadata);
    assert_eq!(wal.snapshot(), Ok(snapshot));

    let file = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "snap"))
        .unwrap();
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&file, bytes).unwrap();
    match wal.snapshot() {
        Err(StorageError::SnapshotUnreadable { index: 8, reason }) => {
            assert!(reason.contains("checksum mismatch"), "{reason}");
            assert!(reason.contains(&file.display().to_string()), "{reason}");
        }
        other => panic!("a damaged snapshot file must be an error, got {other:?}"),
    }
}
