//! Where the core reads the stable part of the log and the hard state from.
//!
//! The core never writes to storage: the application persists what a `Ready` hands out and then
//! tells the core (`RawNode::advance`). `MemStorage` is the in-memory implementation for tests and
//! the simulator; the WAL crate implements the same trait on disk.
//!
//! Contract for implementations: `term` and `entries` serve every index in
//! `[first_index() - 1, last_index()]` (the entry before the first is the compaction point, whose
//! term is remembered). A read outside it is `Compacted` or `Unavailable`. A storage that cannot
//! read back its own durable entries must stop the node: the core treats any other failure as fatal.

use crate::error::StorageError;
use crate::types::{ConfState, Entry, HardState, Index, Snapshot, Term};

/// What a node restarts from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RaftState {
    /// The hard state saved last (all zero / `None` for a new node).
    pub hard_state: HardState,
    /// Membership as of the latest snapshot (empty for a new node: `Config::voters` bootstraps it).
    /// Configuration entries in the log after the snapshot are replayed on top of it.
    pub conf_state: ConfState,
}

/// Read access to the durable log.
pub trait Storage {
    /// The hard state and the membership to restart from.
    fn initial_state(&self) -> RaftState;
    /// Entries in `[lo, hi)`, stopping before `max_bytes` is passed but always at least one entry.
    fn entries(&self, lo: Index, hi: Index, max_bytes: u64) -> Result<Vec<Entry>, StorageError>;
    /// Term of the entry at `index`, or of the compaction point when `index == first_index() - 1`.
    fn term(&self, index: Index) -> Result<Term, StorageError>;
    /// First index still held (the one after the compaction point).
    fn first_index(&self) -> Index;
    /// Last index held; `first_index() - 1` when the log is empty.
    fn last_index(&self) -> Index;
    /// The latest snapshot (index 0 and no data when none was taken). Storage may keep the data
    /// outside memory and read it back here, so this can fail.
    fn snapshot(&self) -> Result<Snapshot, StorageError>;
}

/// An in-memory `Storage`: what tests and the simulator "persist" to.
#[derive(Clone, Debug, Default)]
pub struct MemStorage {
    hard_state: HardState,
    /// Bootstrap membership, used while no snapshot was taken.
    conf_state: ConfState,
    /// The latest snapshot; its index and term are the compaction point, the entry just before
    /// `entries[0]`.
    snapshot: Snapshot,
    /// Entries `snapshot index + 1 ..= last_index`, contiguous.
    entries: Vec<Entry>,
}

impl MemStorage {
    /// An empty log.
    pub fn new() -> Self {
        MemStorage::default()
    }

    /// A storage holding `entries` (contiguous from index 1) and `hard_state`: for tests that start
    /// from a given log, like the paper's Figure 7.
    pub fn with_log(entries: Vec<Entry>, hard_state: HardState) -> Self {
        let mut storage = MemStorage::new();
        storage.append(&entries);
        storage.set_hard_state(hard_state);
        storage
    }

    /// Saves the hard state.
    pub fn set_hard_state(&mut self, hard_state: HardState) {
        self.hard_state = hard_state;
    }

    /// Sets the bootstrap membership of a new node.
    pub fn set_conf_state(&mut self, conf_state: ConfState) {
        self.conf_state = conf_state;
    }

    /// Installs a snapshot received from the leader: the log is replaced by it. A snapshot at or
    /// below the current one is ignored (snapshots never go backwards); returns whether it was
    /// installed.
    pub fn apply_snapshot(&mut self, snapshot: Snapshot) -> bool {
        if snapshot.metadata.index <= self.snapshot.metadata.index {
            return false;
        }
        self.hard_state.commit = self.hard_state.commit.max(snapshot.metadata.index);
        self.entries.clear();
        self.snapshot = snapshot;
        true
    }

    /// Compacts the log up to a snapshot this node took itself at an index it holds: entries up to
    /// it are dropped, later ones kept. An older snapshot is ignored; returns whether it was kept.
    pub fn compact(&mut self, snapshot: Snapshot) -> bool {
        let index = snapshot.metadata.index;
        if index <= self.snapshot.metadata.index {
            return false;
        }
        assert!(
            index <= self.last_index(),
            "compacting to {index} past the last index {}",
            self.last_index()
        );
        let drop = self.offset(index + 1);
        self.entries.drain(..drop);
        self.snapshot = snapshot;
        true
    }

    /// Appends entries, first dropping any held entries at or after the first new index (what
    /// Raft's truncation of a conflicting suffix needs). Panics on a gap: that is a driver bug.
    pub fn append(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else {
            return;
        };
        assert!(
            first.index > self.snapshot_index() && first.index <= self.last_index() + 1,
            "append at {} leaves a gap or rewrites compacted entries (held {}..={})",
            first.index,
            self.first_index(),
            self.last_index()
        );
        let keep = self.offset(first.index);
        self.entries.truncate(keep);
        self.entries.extend_from_slice(entries);
    }

    /// All entries held (for checks in tests and the simulator).
    pub fn all_entries(&self) -> &[Entry] {
        &self.entries
    }

    fn snapshot_index(&self) -> Index {
        self.snapshot.metadata.index
    }

    fn offset(&self, index: Index) -> usize {
        (index - self.snapshot_index() - 1) as usize
    }

    fn check_range(&self, index: Index) -> Result<(), StorageError> {
        if index < self.first_index() {
            return Err(StorageError::Compacted {
                index,
                first_index: self.first_index(),
            });
        }
        if index > self.last_index() {
            return Err(StorageError::Unavailable {
                index,
                last_index: self.last_index(),
            });
        }
        Ok(())
    }
}

impl Storage for MemStorage {
    fn initial_state(&self) -> RaftState {
        let conf_state = if self.snapshot_index() > 0 {
            self.snapshot.metadata.conf_state.clone()
        } else {
            self.conf_state.clone()
        };
        RaftState {
            hard_state: self.hard_state,
            conf_state,
        }
    }

    fn entries(&self, lo: Index, hi: Index, max_bytes: u64) -> Result<Vec<Entry>, StorageError> {
        if lo >= hi {
            return Ok(Vec::new());
        }
        self.check_range(lo)?;
        self.check_range(hi - 1)?;
        let slice = &self.entries[self.offset(lo)..self.offset(hi)];
        Ok(limit_size(slice, max_bytes).to_vec())
    }

    fn term(&self, index: Index) -> Result<Term, StorageError> {
        if index == self.snapshot_index() {
            return Ok(self.snapshot.metadata.term);
        }
        self.check_range(index)?;
        Ok(self.entries[self.offset(index)].term)
    }

    fn first_index(&self) -> Index {
        self.snapshot_index() + 1
    }

    fn last_index(&self) -> Index {
        self.snapshot_index() + self.entries.len() as u64
    }

    fn snapshot(&self) -> Result<Snapshot, StorageError> {
        Ok(self.snapshot.clone())
    }
}

/// The longest prefix of `entries` within `max_bytes`, and never less than one entry.
pub fn limit_size(entries: &[Entry], max_bytes: u64) -> &[Entry] {
    let mut total = 0u64;
    let mut take = 0;
    for entry in entries {
        total += entry.size_bytes();
        if take > 0 && total > max_bytes {
            break;
        }
        take += 1;
    }
    &entries[..take]
}
