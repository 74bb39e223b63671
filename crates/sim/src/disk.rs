//! A node's stable storage as the simulator runs it: the real write-ahead log (`raftkv_wal::Wal`)
//! over a `MemDisk` that models power loss, or the core's `MemStorage` (cheaper, and exactly as
//! durable as each completed write), and the durable image the checkers read.
//!
//! With the WAL, a `Ready` is written (appended and handed to the disk, unsynced) when it is
//! taken, and synced when its simulated write completes; only then is it acknowledged. Snapshot
//! installs and compactions are durable when they return. A crash is a power loss of the
//! `MemDisk` (`Crash`): every byte written since the last sync may be lost, torn at any byte, or
//! zero-filled, and unsynced file names may be lost. A failed write or sync stops the WAL for good
//! (its contract): the node stops and may be restarted from its disk later.
//!
//! The durable image is a `MemStorage` holding exactly what was synced (with `MemStorage`, the
//! storage itself). On restart the recovered log is checked against it (`checkers::recovery`):
//! nothing synced is lost, nothing never written appears, and after a crash that kept no unsynced
//! byte the recovered log is exactly the synced one. The image is then replaced by what recovery
//! gave back, so the other checkers judge the real recovered state.
//!
//! Invariant: `durable` is what the disk holds synced; `unsynced` is everything handed to the WAL
//! since, in order; `exact` is false once a sync happened that covered only part of `unsynced`
//! (a segment rollover) or an operation failed.

use raftkv_raft::{
    Entry, HardState, Index, MemStorage, NodeId, RaftState, Snapshot, Storage, StorageError, Term,
};
use raftkv_replica::Persist;
use raftkv_wal::{Crash, MemDisk, Tear, Wal, WalOptions};

use crate::checkers::recovery::{self, WrittenSince};
use crate::checkers::{Property, Violation};

/// Where a node's WAL lives on its `MemDisk`.
const DATA_DIR: &str = "/data";

/// Which storage the nodes run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StorageKind {
    /// The core's in-memory storage; a write is durable exactly when it completes.
    Mem,
    /// The real WAL over a crash-modelling `MemDisk`.
    Wal {
        /// Segment size (small values roll segments over often).
        segment_bytes_max: u64,
        /// Snapshot files kept.
        snapshots_kept: usize,
    },
}

/// The storage the core reads from.
pub enum NodeStorage {
    /// In memory.
    Mem(Box<MemStorage>),
    /// The write-ahead log.
    Wal(Box<Wal<MemDisk>>),
}

impl Storage for NodeStorage {
    fn initial_state(&self) -> RaftState {
        match self {
            NodeStorage::Mem(s) => s.initial_state(),
            NodeStorage::Wal(s) => s.initial_state(),
        }
    }

    fn entries(&self, lo: Index, hi: Index, max_bytes: u64) -> Result<Vec<Entry>, StorageError> {
        match self {
            NodeStorage::Mem(s) => s.entries(lo, hi, max_bytes),
            NodeStorage::Wal(s) => s.entries(lo, hi, max_bytes),
        }
    }

    fn term(&self, index: Index) -> Result<Term, StorageError> {
        match self {
            NodeStorage::Mem(s) => s.term(index),
            NodeStorage::Wal(s) => s.term(index),
        }
    }

    fn first_index(&self) -> Index {
        match self {
            NodeStorage::Mem(s) => s.first_index(),
            NodeStorage::Wal(s) => s.first_index(),
        }
    }

    fn last_index(&self) -> Index {
        match self {
            NodeStorage::Mem(s) => s.last_index(),
            NodeStorage::Wal(s) => s.last_index(),
        }
    }

    fn snapshot(&self) -> Result<Snapshot, StorageError> {
        match self {
            NodeStorage::Mem(s) => s.snapshot(),
            NodeStorage::Wal(s) => s.snapshot(),
        }
    }
}

/// Why a node could not restart from its disk.
#[derive(Debug)]
pub enum OpenError {
    /// The WAL refused to open, or gave back a log that breaks its contract.
    Recovery(String),
    /// The engine refused the storage (the core refused it, or its snapshot cannot be restored).
    Engine(raftkv_replica::ReplicaError),
}

impl OpenError {
    /// The property a failed restart of `node` breaks.
    pub fn violation(self, node: NodeId) -> Violation {
        match self {
            OpenError::Recovery(reason) => {
                Violation::new(Property::Recovery, format!("node {node}: {reason}"))
            }
            OpenError::Engine(e) => Violation::new(
                Property::CorePanic,
                format!("node {node} cannot restart: {e}"),
            ),
        }
    }
}

/// The WAL's disk and what the simulator knows about it.
struct WalDisk {
    disk: MemDisk,
    options: WalOptions,
    /// What is synced.
    durable: MemStorage,
    /// Handed to the WAL since the last full sync, in order.
    unsynced: Vec<Unsynced>,
    /// Every entry and snapshot handed to the WAL since the last full sync.
    written: WrittenSince,
    /// No partial sync or failure since the last full sync.
    exact: bool,
    /// The last crash kept no unsynced byte, and the state before it was exact.
    clean_crash: bool,
    /// Whether the last recovery cut a torn tail.
    torn_tail: bool,
}

/// A write handed to the WAL and not yet synced.
enum Unsynced {
    /// A hard state.
    HardState(HardState),
    /// Entries (replacing any held from the first one's index on).
    Entries(Vec<Entry>),
}

/// The part of a node that survives its crashes.
pub struct NodeDisk {
    /// The in-memory storage while the node is down (`StorageKind::Mem`).
    mem: MemStorage,
    /// The WAL's disk (`StorageKind::Wal`).
    wal: Option<WalDisk>,
}

/// The first error of a WAL operation, as text.
fn failed(what: &str, e: impl std::fmt::Display) -> String {
    format!("{what}: {e}")
}

impl NodeDisk {
    /// An empty disk of `kind`, and the storage of a node starting on it.
    pub fn new(kind: StorageKind) -> Result<(NodeDisk, NodeStorage), String> {
        match kind {
            StorageKind::Mem => Ok((
                NodeDisk {
                    mem: MemStorage::new(),
                    wal: None,
                },
                NodeStorage::Mem(Box::default()),
            )),
            StorageKind::Wal {
                segment_bytes_max,
                snapshots_kept,
            } => {
                let options = WalOptions {
                    segment_bytes_max,
                    snapshots_kept,
                    ..WalOptions::default()
                };
                let disk = MemDisk::new();
                let (wal, _) = Wal::open(disk.clone(), DATA_DIR, options.clone())
                    .map_err(|e| failed("open", e))?;
                let wal_disk = WalDisk {
                    disk,
                    options,
                    durable: MemStorage::new(),
                    unsynced: Vec::new(),
                    written: WrittenSince::default(),
                    exact: true,
                    clean_crash: false,
                    torn_tail: false,
                };
                Ok((
                    NodeDisk {
                        mem: MemStorage::new(),
                        wal: Some(wal_disk),
                    },
                    NodeStorage::Wal(Box::new(wal)),
                ))
            }
        }
    }

    /// The durable image: exactly what survives a crash (with the WAL, what was synced).
    pub fn image<'a>(&'a self, running: Option<&'a NodeStorage>) -> &'a MemStorage {
        match (&self.wal, running) {
            (Some(wal), _) => &wal.durable,
            (None, Some(NodeStorage::Mem(storage))) => storage,
            (None, _) => &self.mem,
        }
    }

    /// A `Persist` was taken: with the WAL, install its snapshot (durable on return) and write its
    /// hard state and entries, unsynced.
    pub fn write(&mut self, storage: &mut NodeStorage, ready: &Persist) -> Result<(), String> {
        let (NodeStorage::Wal(log), Some(disk)) = (storage, self.wal.as_mut()) else {
            return Ok(());
        };
        let result = disk.write(log, ready);
        if result.is_err() {
            disk.exact = false;
        }
        result
    }

    /// A `Persist`'s write completes: it is durable. With `MemStorage`, store it now; with the WAL,
    /// sync.
    pub fn complete(&mut self, storage: &mut NodeStorage, ready: &Persist) -> Result<(), String> {
        match (storage, self.wal.as_mut()) {
            (NodeStorage::Wal(log), Some(disk)) => {
                if let Err(e) = log.sync() {
                    disk.exact = false;
                    return Err(failed("sync", e));
                }
                disk.synced_all();
                Ok(())
            }
            (NodeStorage::Mem(mem), _) => {
                if let Some(snapshot) = &ready.snapshot {
                    mem.apply_snapshot(snapshot.clone());
                }
                if let Some(hs) = ready.hard_state {
                    mem.set_hard_state(hs);
                }
                mem.append(&ready.entries);
                Ok(())
            }
            (NodeStorage::Wal(_), None) => Err("a WAL without its disk".into()),
        }
    }

    /// Compacts the log up to a snapshot the node took; durable on return.
    pub fn compact(&mut self, storage: &mut NodeStorage, snapshot: Snapshot) -> Result<(), String> {
        match (storage, self.wal.as_mut()) {
            (NodeStorage::Wal(log), Some(disk)) => {
                disk.written.snapshot(&snapshot);
                if let Err(e) = log.compact(snapshot.clone()) {
                    disk.exact = false;
                    return Err(failed("compact", e));
                }
                disk.synced_all();
                disk.durable.compact(snapshot);
                Ok(())
            }
            (NodeStorage::Mem(mem), _) => {
                mem.compact(snapshot);
                Ok(())
            }
            (NodeStorage::Wal(_), None) => Err("a WAL without its disk".into()),
        }
    }

    /// The node's process stops; the disk keeps what it has (a power loss may follow).
    pub fn shut_down(&mut self, storage: NodeStorage) {
        if let NodeStorage::Mem(mem) = storage {
            self.mem = *mem;
        }
    }

    /// Power loss: the disk loses what `crash` says of what was not synced.
    pub fn power_loss(&mut self, crash: Crash) {
        if let Some(disk) = self.wal.as_mut() {
            disk.disk.fail_syncs(0, 0);
            disk.disk.crash(crash);
            disk.clean_crash = disk.exact && crash.tear == Tear::DropAll;
        }
    }

    /// Whether restarts can compare the recovered log with the synced one byte for byte.
    pub fn exact_since_crash(&self) -> bool {
        self.wal.as_ref().is_some_and(|w| w.clean_crash)
    }

    /// Whether the last recovery cut a torn record off the log's end.
    pub fn recovered_torn_tail(&self) -> bool {
        self.wal.as_ref().is_some_and(|w| w.torn_tail)
    }

    /// Whether this is the WAL's disk (which syncs, and can fail to).
    pub fn is_wal(&self) -> bool {
        self.wal.is_some()
    }

    /// Makes the next sync fail (with the WAL).
    pub fn fail_next_sync(&self) {
        if let Some(disk) = &self.wal {
            disk.disk.fail_next_syncs(1);
        }
    }

    /// Opens the storage again after a crash: with the WAL, recovery, checked against what was
    /// synced and written.
    pub fn open(&mut self) -> Result<NodeStorage, OpenError> {
        let Some(disk) = self.wal.as_mut() else {
            return Ok(NodeStorage::Mem(Box::new(std::mem::take(&mut self.mem))));
        };
        let (wal, report) = Wal::open(disk.disk.clone(), DATA_DIR, disk.options.clone())
            .map_err(|e| OpenError::Recovery(format!("the WAL refused to open: {e}")))?;
        let recovered = image_of(&wal).map_err(|e| {
            OpenError::Recovery(format!("the recovered snapshot cannot be read: {e}"))
        })?;
        recovery::check(&disk.durable, &disk.written, &recovered, disk.clean_crash).map_err(
            |reason| OpenError::Recovery(format!("{reason} (recovery report: {report:?})")),
        )?;
        disk.durable = recovered;
        disk.torn_tail = report.torn_tail.is_some();
        disk.unsynced.clear();
        disk.written = WrittenSince::default();
        disk.exact = true;
        disk.clean_crash = false;
        Ok(NodeStorage::Wal(Box::new(wal)))
    }
}

impl WalDisk {
    fn write(&mut self, log: &mut Wal<MemDisk>, ready: &Persist) -> Result<(), String> {
        if let Some(snapshot) = &ready.snapshot {
            self.written.snapshot(snapshot);
            log.apply_snapshot(snapshot.clone())
                .map_err(|e| failed("install snapshot", e))?;
            self.synced_all();
            self.durable.apply_snapshot(snapshot.clone());
        }
        // A sync from here on (a segment rollover) makes only part of the unsynced writes durable.
        let syncs = self.disk.sync_count();
        // Entries before the hard state, as `Wal::save` does: see there.
        if !ready.entries.is_empty() {
            self.written.entries(&ready.entries);
            self.unsynced.push(Unsynced::Entries(ready.entries.clone()));
            log.append(&ready.entries)
                .map_err(|e| failed("append", e))?;
        }
        if let Some(hs) = ready.hard_state {
            self.unsynced.push(Unsynced::HardState(hs));
            log.set_hard_state(hs)
                .map_err(|e| failed("write hard state", e))?;
        }
        let result = log.write().map_err(|e| failed("write", e));
        if self.disk.sync_count() != syncs {
            self.exact = false;
        }
        result
    }

    /// Everything handed to the WAL so far is synced: the durable image catches up.
    fn synced_all(&mut self) {
        for written in self.unsynced.drain(..) {
            match written {
                Unsynced::HardState(hs) => self.durable.set_hard_state(hs),
                Unsynced::Entries(entries) => self.durable.append(&entries),
            }
        }
        self.written = WrittenSince::default();
        self.exact = true;
    }
}

/// What a WAL holds, as a `MemStorage`.
fn image_of(wal: &Wal<MemDisk>) -> Result<MemStorage, StorageError> {
    let mut image = MemStorage::new();
    let snapshot = wal.snapshot()?;
    if snapshot.metadata.index > 0 {
        image.apply_snapshot(snapshot);
    }
    let entries = wal
        .entries(wal.first_index(), wal.last_index() + 1, u64::MAX)
        .unwrap_or_default();
    image.append(&entries);
    image.set_hard_state(wal.hard_state());
    Ok(image)
}

/// The hard state a disk image holds.
pub fn hard_state(image: &MemStorage) -> HardState {
    image.initial_state().hard_state
}
