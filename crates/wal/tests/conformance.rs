//! The raft `Storage` contract, checked by one function on any implementation: the core's
//! `MemStorage` (driven through its own methods) and the WAL (on `MemDisk` and on `FsDisk`, and
//! again after reopening).

use std::collections::BTreeSet;

use bytes::Bytes;
use raftkv_raft::{
    ConfState, Entry, HardState, MemStorage, Snapshot, SnapshotMetadata, Storage, StorageError,
};
use raftkv_wal::{Disk, FsDisk, MemDisk, Wal, WalOptions};

/// The writes the contract needs, as each implementation spells them.
trait Subject: Storage {
    fn append(&mut self, entries: &[Entry]);
    fn set_hard_state(&mut self, hard_state: HardState);
    fn apply_snapshot(&mut self, snapshot: Snapshot) -> bool;
    fn compact(&mut self, snapshot: Snapshot) -> bool;
    /// Closes and reopens (a no-op for memory).
    fn reopen(&mut self) {}
}

impl Subject for MemStorage {
    fn append(&mut self, entries: &[Entry]) {
        MemStorage::append(self, entries);
    }
    fn set_hard_state(&mut self, hard_state: HardState) {
        MemStorage::set_hard_state(self, hard_state);
    }
    fn apply_snapshot(&mut self, snapshot: Snapshot) -> bool {
        MemStorage::apply_snapshot(self, snapshot)
    }
    fn compact(&mut self, snapshot: Snapshot) -> bool {
        MemStorage::compact(self, snapshot)
    }
}

/// A WAL that can be closed and reopened on the same disk.
struct Reopening<D: Disk + Clone> {
    disk: D,
    dir: std::path::PathBuf,
    wal: Option<Wal<D>>,
}

impl<D: Disk + Clone> Reopening<D> {
    fn new(disk: D, dir: std::path::PathBuf) -> Self {
        let options = small_segments();
        let (wal, _) = Wal::open(disk.clone(), dir.clone(), options).unwrap();
        Reopening {
            disk,
            dir,
            wal: Some(wal),
        }
    }
    fn wal(&self) -> &Wal<D> {
        self.wal.as_ref().unwrap()
    }
    fn wal_mut(&mut self) -> &mut Wal<D> {
        self.wal.as_mut().unwrap()
    }
}

fn small_segments() -> WalOptions {
    WalOptions {
        segment_bytes_max: 1024,
        ..WalOptions::default()
    }
}

impl<D: Disk + Clone> Storage for Reopening<D> {
    fn initial_state(&self) -> raftkv_raft::RaftState {
        self.wal().initial_state()
    }
    fn entries(&self, lo: u64, hi: u64, max_bytes: u64) -> Result<Vec<Entry>, StorageError> {
        self.wal().entries(lo, hi, max_bytes)
    }
    fn term(&self, index: u64) -> Result<u64, StorageError> {
        self.wal().term(index)
    }
    fn first_index(&self) -> u64 {
        self.wal().first_index()
    }
    fn last_index(&self) -> u64 {
        self.wal().last_index()
    }
    fn snapshot(&self) -> Result<Snapshot, StorageError> {
        self.wal().snapshot()
    }
}

impl<D: Disk + Clone> Subject for Reopening<D> {
    fn append(&mut self, entries: &[Entry]) {
        self.wal_mut().append(entries).unwrap();
        self.wal_mut().sync().unwrap();
    }
    fn set_hard_state(&mut self, hard_state: HardState) {
        self.wal_mut().set_hard_state(hard_state).unwrap();
        self.wal_mut().sync().unwrap();
    }
    fn apply_snapshot(&mut self, snapshot: Snapshot) -> bool {
        self.wal_mut().apply_snapshot(snapshot).unwrap()
    }
    fn compact(&mut self, snapshot: Snapshot) -> bool {
        self.wal_mut().compact(snapshot).unwrap()
    }
    fn reopen(&mut self) {
        let before = state_of(self);
        self.wal = None;
        let (wal, report) =
            Wal::open(self.disk.clone(), self.dir.clone(), small_segments()).unwrap();
        assert_eq!(report.torn_tail, None);
        self.wal = Some(wal);
        assert_eq!(state_of(self), before, "reopening changed the state");
    }
}

type State = (raftkv_raft::RaftState, u64, u64, Vec<Entry>, Snapshot);

fn state_of<S: Storage>(s: &S) -> State {
    let entries = s
        .entries(s.first_index(), s.last_index() + 1, u64::MAX)
        .unwrap();
    (
        s.initial_state(),
        s.first_index(),
        s.last_index(),
        entries,
        s.snapshot().unwrap(),
    )
}

fn entry(index: u64, term: u64) -> Entry {
    Entry::new(index, term, Bytes::from(vec![index as u8; 10]))
}

fn snapshot(index: u64, term: u64, voters: &[u64]) -> Snapshot {
    Snapshot {
        metadata: SnapshotMetadata {
            index,
            term,
            conf_state: ConfState::from_voters(voters.iter().copied()),
        },
        data: Bytes::from(format!("state at {index}")),
    }
}

/// The contract. Panics on the first violation.
fn conformance<S: Subject>(s: &mut S) {
    // Empty log.
    assert_eq!((s.first_index(), s.last_index()), (1, 0));
    assert_eq!(s.term(0), Ok(0));
    assert_eq!(s.entries(1, 1, u64::MAX), Ok(vec![]));
    assert!(matches!(s.term(1), Err(StorageError::Unavailable { .. })));
    assert_eq!(s.snapshot().unwrap().metadata.index, 0);

    // Appends; terms; byte limits.
    let log: Vec<Entry> = (1..=10)
        .map(|i| entry(i, if i <= 5 { 1 } else { 2 }))
        .collect();
    s.append(&log[..4]);
    s.append(&log[4..]);
    s.reopen();
    assert_eq!((s.first_index(), s.last_index()), (1, 10));
    assert_eq!((s.term(0), s.term(5), s.term(10)), (Ok(0), Ok(1), Ok(2)));
    assert!(matches!(s.term(11), Err(StorageError::Unavailable { .. })));
    assert_eq!(s.entries(1, 11, u64::MAX).unwrap(), log);
    assert_eq!(s.entries(3, 4, 0).unwrap(), log[2..3], "at least one entry");
    assert_eq!(s.entries(1, 11, 0).unwrap().len(), 1, "at least one entry");
    let two = 2 * log[0].size_bytes();
    assert_eq!(s.entries(1, 11, two).unwrap(), log[..2]);
    assert!(matches!(
        s.entries(0, 3, u64::MAX),
        Err(StorageError::Compacted { .. })
    ));
    assert!(matches!(
        s.entries(5, 12, u64::MAX),
        Err(StorageError::Unavailable { .. })
    ));

    // Hard state.
    let hard_state = HardState {
        term: 3,
        vote: Some(2),
        commit: 5,
    };
    s.set_hard_state(hard_state);
    assert_eq!(s.initial_state().hard_state, hard_state);

    // Truncation of a conflicting suffix.
    s.append(&[entry(8, 3), entry(9, 3)]);
    s.reopen();
    assert_eq!(s.last_index(), 9);
    assert_eq!((s.term(7), s.term(8), s.term(9)), (Ok(2), Ok(3), Ok(3)));
    assert!(matches!(s.term(10), Err(StorageError::Unavailable { .. })));

    // Compaction keeps later entries.
    assert!(s.compact(snapshot(5, 1, &[1, 2, 3])));
    s.reopen();
    assert_eq!((s.first_index(), s.last_index()), (6, 9));
    assert_eq!(s.term(5), Ok(1));
    assert!(matches!(s.term(4), Err(StorageError::Compacted { .. })));
    assert!(matches!(
        s.entries(4, 7, u64::MAX),
        Err(StorageError::Compacted { .. })
    ));
    assert_eq!(s.entries(6, 8, u64::MAX).unwrap(), log[5..7]);
    assert_eq!(s.snapshot(), Ok(snapshot(5, 1, &[1, 2, 3])));
    let voters: BTreeSet<u64> = [1, 2, 3].into();
    assert_eq!(s.initial_state().conf_state.voters, voters);
    assert!(
        !s.compact(snapshot(3, 1, &[1])),
        "older snapshots are ignored"
    );

    // A leader's snapshot replaces the log.
    assert!(s.apply_snapshot(snapshot(20, 4, &[1, 2])));
    s.reopen();
    assert_eq!((s.first_index(), s.last_index()), (21, 20));
    assert_eq!(s.term(20), Ok(4));
    assert!(matches!(s.term(9), Err(StorageError::Compacted { .. })));
    assert!(matches!(
        s.entries(21, 22, u64::MAX),
        Err(StorageError::Unavailable { .. })
    ));
    assert_eq!(s.snapshot(), Ok(snapshot(20, 4, &[1, 2])));
    assert!(s.initial_state().hard_state.commit >= 20);
    assert!(!s.apply_snapshot(snapshot(20, 4, &[1, 2])));

    // The log continues after it, across many segments.
    let more: Vec<Entry> = (21..=80).map(|i| entry(i, 4)).collect();
    for chunk in more.chunks(7) {
        s.append(chunk);
    }
    s.reopen();
    assert_eq!(s.entries(21, 81, u64::MAX).unwrap(), more);
    assert!(s.compact(snapshot(70, 4, &[1, 2])));
    s.reopen();
    assert_eq!(
        (s.first_index(), s.last_index(), s.term(70)),
        (71, 80, Ok(4))
    );
    assert_eq!(s.entries(71, 81, u64::MAX).unwrap(), more[50..]);
}

#[test]
fn mem_storage_conforms() {
    conformance(&mut MemStorage::new());
}

#[test]
fn wal_on_mem_disk_conforms() {
    let mut subject = Reopening::new(MemDisk::new(), "/data".into());
    conformance(&mut subject);
    assert!(
        subject.wal().segment_count() < 5,
        "compaction removed old segments"
    );
}

#[test]
fn wal_on_fs_disk_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let mut subject = Reopening::new(FsDisk, dir.path().join("data"));
    conformance(&mut subject);
}
