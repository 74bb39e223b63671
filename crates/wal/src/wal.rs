//! The write-ahead log: segments on a `Disk`, an in-memory copy of the live log, and the write
//! path (`append`, `set_hard_state`, `sync`, `save`, `apply_snapshot`, `compact`).
//!
//! Invariants:
//! - `entries` is contiguous from `snapshot.metadata.index + 1` and is exactly what replaying the
//!   segments would give (once `sync` succeeds, it is what recovery gives back);
//! - records reach the tail segment in the order they were encoded; `pending` holds those not yet
//!   written, at `tail_written_bytes`;
//! - every segment but the tail was synced whole before the next was created;
//! - after a failed write or sync, `failed` is set and every later call fails with it.
//!
//! Truncation of a conflicting suffix is not a rewrite: the new entries are appended, and replay
//! keeps the latest record per index (an entry at or below the last index drops everything from its
//! index on). A snapshot is durable in its own file before a snapshot-mark record says the log now
//! starts after it; segments whose entries are all covered by the snapshot are then removed.

use std::path::{Path, PathBuf};

use raftkv_raft::{
    ConfState, Entry, EntryKind, HardState, Index, RaftState, Snapshot, SnapshotMetadata, Storage,
    StorageError, Term, limit_size,
};

use crate::disk::{Disk, DiskFile};
use crate::error::{Result, WalError};
use crate::record::{
    self, FORMAT_VERSION, MarkKind, RECORD_BYTES_MAX, SegmentHeader, SnapshotMark, framed_bytes,
};
use crate::segment::{TEMP_SUFFIX, segment_name};
use crate::snapshot::{list_snapshots, load_snapshot, snapshot_name, write_snapshot};

/// Default `WalOptions::segment_bytes_max`.
pub const SEGMENT_BYTES_DEFAULT: u64 = 64 << 20;
/// Smallest allowed `WalOptions::segment_bytes_max`.
pub const SEGMENT_BYTES_MIN: u64 = 512;
/// Default `WalOptions::snapshots_kept`.
pub const SNAPSHOTS_KEPT_DEFAULT: usize = 2;
/// Default `WalOptions::snapshot_bytes_max`.
pub const SNAPSHOT_BYTES_DEFAULT: u64 = 1 << 30;
/// Encoded records are written out (without a sync) once this many are buffered.
pub const WRITE_BUFFER_BYTES_MAX: usize = 1 << 20;
/// Payload bytes of an entry record besides its data and membership.
const ENTRY_FIXED_BYTES: usize = 17;

/// Settings of a WAL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalOptions {
    /// Size a segment is preallocated to; a new one starts when the next record would not fit.
    pub segment_bytes_max: u64,
    /// The cluster this data belongs to; a segment of another cluster refuses to open.
    pub cluster_id: u64,
    /// How many snapshot files to keep (the newest); older ones are fallbacks if a newer is damaged.
    pub snapshots_kept: usize,
    /// Largest snapshot data accepted, written or read.
    pub snapshot_bytes_max: u64,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_bytes_max: SEGMENT_BYTES_DEFAULT,
            cluster_id: 0,
            snapshots_kept: SNAPSHOTS_KEPT_DEFAULT,
            snapshot_bytes_max: SNAPSHOT_BYTES_DEFAULT,
        }
    }
}

impl WalOptions {
    /// Checks the settings can work.
    pub fn validate(&self) -> Result<()> {
        if self.segment_bytes_max < SEGMENT_BYTES_MIN {
            return Err(WalError::InvalidOptions(
                "segment_bytes_max is below SEGMENT_BYTES_MIN",
            ));
        }
        if self.snapshots_kept == 0 {
            return Err(WalError::InvalidOptions(
                "snapshots_kept must be at least 1",
            ));
        }
        Ok(())
    }
}

/// One segment file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Segment {
    /// Sequence number (replay order).
    pub seq: u64,
    /// Its path.
    pub path: PathBuf,
    /// Highest index of a live entry written to it (0 when none): it may be removed once this is
    /// covered by the snapshot.
    pub max_index: Index,
}

/// A write-ahead log in a data directory. See the module documentation.
pub struct Wal<D: Disk> {
    /// The disk.
    pub(crate) disk: D,
    /// The data directory.
    pub(crate) dir: PathBuf,
    /// Settings.
    pub(crate) options: WalOptions,
    /// The data-directory lock, held while the WAL lives.
    pub(crate) _lock: D::Lock,
    /// Segments, oldest first; the last is the tail being written.
    pub(crate) segments: Vec<Segment>,
    /// The tail segment's open file.
    pub(crate) tail: D::File,
    /// Bytes written to the tail file (where `pending` goes).
    pub(crate) tail_written_bytes: u64,
    /// Encoded records not written yet.
    pub(crate) pending: Vec<u8>,
    /// Whether anything was written since the last sync.
    pub(crate) unsynced: bool,
    /// The hard state (as of the last record encoded).
    pub(crate) hard_state: HardState,
    /// What the latest snapshot covers: the log starts after it. Its data stays in its file
    /// (read back only when a follower needs it), so a large state is not held twice in memory.
    pub(crate) snapshot: SnapshotMetadata,
    /// The live log, contiguous from the snapshot's index + 1.
    pub(crate) entries: Vec<Entry>,
    /// Why the WAL stopped, once a write or sync failed.
    pub(crate) failed: Option<String>,
}

impl<D: Disk> Wal<D> {
    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What the latest snapshot covers (its data is read back by [`Storage::snapshot`]).
    pub fn snapshot_metadata(&self) -> &SnapshotMetadata {
        &self.snapshot
    }

    /// The hard state (including changes not synced yet).
    pub fn hard_state(&self) -> HardState {
        self.hard_state
    }

    /// Number of segment files.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Paths of the segment files, oldest first.
    pub fn segment_paths(&self) -> Vec<PathBuf> {
        self.segments.iter().map(|s| s.path.clone()).collect()
    }

    /// The error every call returns once a write or sync failed.
    pub fn check(&self) -> Result<()> {
        match &self.failed {
            None => Ok(()),
            Some(what) => Err(WalError::Failed {
                dir: self.dir.clone(),
                what: what.clone(),
            }),
        }
    }

    /// Marks the WAL failed by `error` (an I/O error of the write path) and returns the error.
    fn fail(&mut self, error: WalError) -> WalError {
        if self.failed.is_none() {
            self.failed = Some(error.to_string());
        }
        WalError::Failed {
            dir: self.dir.clone(),
            what: error.to_string(),
        }
    }

    /// Appends `entries`, first dropping held entries from the first new index on (Raft's
    /// truncation of a conflicting suffix). Durable after the next successful `sync`.
    pub fn append(&mut self, entries: &[Entry]) -> Result<()> {
        self.check()?;
        let Some(first) = entries.first() else {
            return Ok(());
        };
        self.check_append(entries)?;
        for entry in entries {
            self.make_room(framed_bytes(entry_payload_bytes(entry)), entry.index)?;
            record::encode_entry(&mut self.pending, entry)?;
            self.tail_segment().max_index = self.tail_segment().max_index.max(entry.index);
        }
        let keep = (first.index - self.snapshot.index - 1) as usize;
        self.entries.truncate(keep);
        self.entries.extend_from_slice(entries);
        self.maybe_write()
    }

    /// Refuses entries that would not continue the log or do not fit in a record.
    fn check_append(&self, entries: &[Entry]) -> Result<()> {
        let gap = |first: Index| WalError::NotContiguous {
            first,
            first_index: self.first_index(),
            last_index: self.last_index(),
        };
        let first = entries[0].index;
        if first <= self.snapshot.index || first > self.last_index() + 1 {
            return Err(gap(first));
        }
        for (offset, entry) in entries.iter().enumerate() {
            if entry.index != first + offset as u64 || entry.term == 0 {
                return Err(gap(entry.index));
            }
            let payload_bytes = entry_payload_bytes(entry);
            if payload_bytes > RECORD_BYTES_MAX {
                return Err(WalError::TooLarge {
                    what: "an entry",
                    size_bytes: payload_bytes as u64,
                    limit_bytes: RECORD_BYTES_MAX as u64,
                });
            }
        }
        Ok(())
    }

    /// Records a new hard state; durable after the next successful `sync`.
    pub fn set_hard_state(&mut self, hard_state: HardState) -> Result<()> {
        self.check()?;
        self.make_room(framed_bytes(24), self.last_index() + 1)?;
        record::encode_hard_state(&mut self.pending, &hard_state)?;
        self.hard_state = hard_state;
        self.maybe_write()
    }

    /// Writes everything appended so far to the tail file without syncing it: the bytes reach the
    /// operating system, and a crash may keep any prefix of them (what `sync` would then have made
    /// durable). Lets a caller start the write early and sync later; the simulator uses it to put
    /// unsynced bytes on its `MemDisk` before it crashes it. A failure stops the WAL for good.
    pub fn write(&mut self) -> Result<()> {
        self.check()?;
        self.write_pending()
    }

    /// Writes everything appended so far (no sync) and returns a second handle on the tail file,
    /// for a sync on another thread: once that handle's `sync` succeeds, everything appended
    /// before this call is durable (a segment rollover syncs the segments before the tail). Lets
    /// the caller keep appending while the sync runs. The caller must treat a failed sync as
    /// the WAL's failure (stop, acknowledge nothing more).
    pub fn write_for_sync(&mut self) -> Result<D::File> {
        self.check()?;
        self.write_pending()?;
        match self.tail.try_clone() {
            Ok(file) => Ok(file),
            Err(e) => {
                let path = self.tail_path();
                Err(self.fail(WalError::io("open for sync", path, e)))
            }
        }
    }

    /// Writes and syncs everything appended so far. Only once this returns `Ok` is it durable. A
    /// failure stops the WAL for good (see `WalError::Failed`).
    pub fn sync(&mut self) -> Result<()> {
        self.check()?;
        self.write_pending()?;
        if !self.unsynced {
            return Ok(());
        }
        let path = self.tail_path();
        if let Err(e) = self.tail.sync() {
            return Err(self.fail(WalError::io("sync", path, e)));
        }
        self.unsynced = false;
        Ok(())
    }

    /// Persists a `Ready`: the snapshot first (if any), then the entries and the hard state, with
    /// one sync for the latter two. Entries go before the hard state: a segment rollover syncs what
    /// was written so far, and a hard state durable without the entries of its `Ready` could name
    /// committed an index whose durable entry is a stale one those entries were replacing.
    pub fn save(
        &mut self,
        hard_state: Option<HardState>,
        entries: &[Entry],
        snapshot: Option<&Snapshot>,
    ) -> Result<()> {
        if let Some(snapshot) = snapshot {
            self.apply_snapshot(snapshot.clone())?;
        }
        self.append(entries)?;
        if let Some(hard_state) = hard_state {
            self.set_hard_state(hard_state)?;
        }
        self.sync()
    }

    /// Installs a snapshot received from the leader: it replaces the whole log. A snapshot at or
    /// below the current one is ignored; returns whether it was installed. Durable on return.
    pub fn apply_snapshot(&mut self, snapshot: Snapshot) -> Result<bool> {
        self.install(snapshot, false)
    }

    /// As [`Wal::apply_snapshot`], for a snapshot whose file a [`SnapshotWriter`] already wrote
    /// (off the node loop): only the mark is written here.
    pub fn apply_snapshot_written(&mut self, snapshot: Snapshot) -> Result<bool> {
        self.install(snapshot, true)
    }

    fn install(&mut self, snapshot: Snapshot, file_written: bool) -> Result<bool> {
        self.check()?;
        let index = snapshot.metadata.index;
        if index <= self.snapshot.index {
            return Ok(false);
        }
        self.save_snapshot(&snapshot, MarkKind::Install, file_written)?;
        self.hard_state.commit = self.hard_state.commit.max(index);
        self.entries.clear();
        for segment in &mut self.segments {
            segment.max_index = 0;
        }
        self.snapshot = snapshot.metadata;
        self.sync()?;
        self.remove_obsolete()?;
        Ok(true)
    }

    /// Compacts the log up to a snapshot this node took at an index it holds: entries up to it
    /// are dropped, later ones kept. An older snapshot is ignored; returns whether it was kept.
    /// Durable on return.
    pub fn compact(&mut self, snapshot: Snapshot) -> Result<bool> {
        self.compact_to(snapshot, false)
    }

    /// As [`Wal::compact`], for a snapshot whose file a [`SnapshotWriter`] already wrote (off the
    /// node loop): only the mark is written here.
    pub fn compact_written(&mut self, snapshot: Snapshot) -> Result<bool> {
        self.compact_to(snapshot, true)
    }

    /// A writer of snapshot files into this WAL's directory, usable on another thread.
    pub fn snapshot_writer(&self) -> SnapshotWriter<D>
    where
        D: Clone,
    {
        SnapshotWriter {
            disk: self.disk.clone(),
            dir: self.dir.clone(),
            snapshot_bytes_max: self.options.snapshot_bytes_max,
        }
    }

    fn compact_to(&mut self, snapshot: Snapshot, file_written: bool) -> Result<bool> {
        self.check()?;
        let index = snapshot.metadata.index;
        if index <= self.snapshot.index {
            return Ok(false);
        }
        if index > self.last_index() {
            return Err(WalError::Compact {
                index,
                reason: "the index is past the last index of the log",
            });
        }
        if self.term(index) != Ok(snapshot.metadata.term) {
            return Err(WalError::Compact {
                index,
                reason: "the snapshot's term differs from the log's term at that index",
            });
        }
        self.save_snapshot(&snapshot, MarkKind::Compact, file_written)?;
        let drop = (index - self.snapshot.index) as usize;
        self.entries.drain(..drop);
        self.snapshot = snapshot.metadata;
        self.sync()?;
        self.remove_obsolete()?;
        Ok(true)
    }

    /// Writes the snapshot file durably (unless `file_written`), then encodes its mark.
    fn save_snapshot(
        &mut self,
        snapshot: &Snapshot,
        kind: MarkKind,
        file_written: bool,
    ) -> Result<()> {
        check_snapshot_size(snapshot, self.options.snapshot_bytes_max)?;
        if !file_written && let Err(e) = write_snapshot(&self.disk, &self.dir, snapshot) {
            return Err(self.fail(e));
        }
        let mark = SnapshotMark {
            kind,
            index: snapshot.metadata.index,
            term: snapshot.metadata.term,
        };
        self.make_room(framed_bytes(17), self.last_index() + 1)?;
        record::encode_snapshot_mark(&mut self.pending, &mark)
    }

    /// Removes segments all of whose entries the snapshot covers (never the tail) and snapshot
    /// files beyond the newest `snapshots_kept`, then syncs the directory.
    fn remove_obsolete(&mut self) -> Result<()> {
        let index = self.snapshot.index;
        let removable = self.segments[..self.segments.len() - 1]
            .iter()
            .take_while(|s| s.max_index <= index)
            .count();
        let mut doomed: Vec<PathBuf> = self.segments.drain(..removable).map(|s| s.path).collect();
        let names = match self.disk.list(&self.dir) {
            Ok(names) => names,
            Err(e) => return Err(self.fail(WalError::io("list", &self.dir, e))),
        };
        let snapshots = list_snapshots(&self.dir, &names);
        doomed.extend(
            snapshots
                .into_iter()
                .skip(self.options.snapshots_kept)
                .map(|(_, _, path)| path),
        );
        if doomed.is_empty() {
            return Ok(());
        }
        for path in &doomed {
            if let Err(e) = self.disk.remove(path) {
                return Err(self.fail(WalError::io("remove", path, e)));
            }
        }
        self.sync_dir()
    }

    fn sync_dir(&mut self) -> Result<()> {
        match self.disk.sync_dir(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) => Err(self.fail(WalError::io("sync directory", self.dir.clone(), e))),
        }
    }

    fn tail_segment(&mut self) -> &mut Segment {
        let last = self.segments.len() - 1;
        &mut self.segments[last]
    }

    fn tail_path(&self) -> PathBuf {
        self.segments[self.segments.len() - 1].path.clone()
    }

    /// Writes `pending` out when it has grown past `WRITE_BUFFER_BYTES_MAX`.
    fn maybe_write(&mut self) -> Result<()> {
        if self.pending.len() >= WRITE_BUFFER_BYTES_MAX {
            self.write_pending()?;
        }
        Ok(())
    }

    /// Writes `pending` to the tail (no sync).
    fn write_pending(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.tail.write_at(self.tail_written_bytes, &self.pending) {
            let path = self.tail_path();
            return Err(self.fail(WalError::io("write", path, e)));
        }
        self.tail_written_bytes += self.pending.len() as u64;
        self.pending.clear();
        self.unsynced = true;
        Ok(())
    }

    /// Starts a new segment before a record of `record_bytes` if it would not fit in the tail and
    /// the tail holds more than its preamble. `next_index` names the new segment.
    fn make_room(&mut self, record_bytes: usize, next_index: Index) -> Result<()> {
        let used = self.tail_written_bytes + self.pending.len() as u64;
        let fits = used + record_bytes as u64 <= self.options.segment_bytes_max;
        if fits || used <= preamble_bytes() {
            return Ok(());
        }
        self.sync()?;
        let seq = self.segments.last().map_or(1, |s| s.seq + 1);
        match self.create_segment(seq, next_index) {
            Ok(()) => Ok(()),
            Err(e) => Err(self.fail(e)),
        }
    }

    /// Creates segment `seq` and makes it the tail.
    fn create_segment(&mut self, seq: u64, first_index: Index) -> Result<()> {
        let (file, segment) = create_segment_file(
            &self.disk,
            &self.dir,
            &self.options,
            SegmentHeader {
                version: FORMAT_VERSION,
                cluster_id: self.options.cluster_id,
                seq,
                first_index,
            },
            &self.hard_state,
            &self.snapshot,
        )?;
        self.segments.push(segment);
        self.tail = file;
        self.tail_written_bytes = preamble_bytes();
        self.unsynced = false;
        Ok(())
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

    fn offset(&self, index: Index) -> usize {
        (index - self.snapshot.index - 1) as usize
    }
}

/// Creates a segment file: preamble written (header, `hard_state`, a mark of `snapshot`),
/// preallocated, synced, renamed into place, directory synced.
pub(crate) fn create_segment_file<D: Disk>(
    disk: &D,
    dir: &Path,
    options: &WalOptions,
    header: SegmentHeader,
    hard_state: &HardState,
    snapshot: &SnapshotMetadata,
) -> Result<(D::File, Segment)> {
    let name = segment_name(header.seq, header.first_index);
    let path = dir.join(&name);
    let temp = dir.join(format!("{name}{TEMP_SUFFIX}"));
    let mut preamble = Vec::new();
    record::encode_header(&mut preamble, &header)?;
    record::encode_hard_state(&mut preamble, hard_state)?;
    let mark = SnapshotMark {
        kind: MarkKind::Compact,
        index: snapshot.index,
        term: snapshot.term,
    };
    record::encode_snapshot_mark(&mut preamble, &mark)?;
    assert_eq!(preamble.len() as u64, preamble_bytes(), "preamble size");
    let temp_ref = temp.as_path();
    let io = |op| move |e| WalError::io(op, temp_ref, e);
    let mut file = disk.create(&temp).map_err(io("create"))?;
    file.write_at(0, &preamble).map_err(io("write"))?;
    file.allocate(options.segment_bytes_max)
        .map_err(io("preallocate"))?;
    file.sync().map_err(io("sync"))?;
    disk.rename(&temp, &path).map_err(io("rename"))?;
    disk.sync_dir(dir)
        .map_err(|e| WalError::io("sync directory", dir, e))?;
    let segment = Segment {
        seq: header.seq,
        path,
        max_index: 0,
    };
    Ok((file, segment))
}

/// Bytes of a segment's preamble: header, hard state and snapshot mark records.
pub(crate) fn preamble_bytes() -> u64 {
    (framed_bytes(30) + framed_bytes(24) + framed_bytes(17)) as u64
}

/// Payload bytes of the record of `entry`.
fn entry_payload_bytes(entry: &Entry) -> usize {
    let conf = match &entry.kind {
        EntryKind::Normal => 0,
        EntryKind::ConfChange(conf) => {
            12 + 8 * (conf.voters.len() + conf.voters_outgoing.len() + conf.learners.len())
        }
    };
    ENTRY_FIXED_BYTES + conf + entry.data.len()
}

impl<D: Disk> Storage for Wal<D> {
    fn initial_state(&self) -> RaftState {
        let conf_state = if self.snapshot.index > 0 {
            self.snapshot.conf_state.clone()
        } else {
            ConfState::default()
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
        if index == self.snapshot.index {
            return Ok(self.snapshot.term);
        }
        self.check_range(index)?;
        Ok(self.entries[self.offset(index)].term)
    }

    fn first_index(&self) -> Index {
        self.snapshot.index + 1
    }

    fn last_index(&self) -> Index {
        self.snapshot.index + self.entries.len() as u64
    }

    fn snapshot(&self) -> Result<Snapshot, StorageError> {
        let meta = &self.snapshot;
        if meta.index == 0 {
            return Ok(Snapshot::default());
        }
        let path = self.dir.join(snapshot_name(meta.index, meta.term));
        load_snapshot(&self.disk, &path, self.options.snapshot_bytes_max).map_err(|reason| {
            StorageError::SnapshotUnreadable {
                index: meta.index,
                reason: format!("{}: {reason}", path.display()),
            }
        })
    }
}

/// Writes snapshot files into a WAL's directory from any thread (see [`Wal::snapshot_writer`]);
/// the WAL then records the snapshot with [`Wal::compact_written`].
#[derive(Clone, Debug)]
pub struct SnapshotWriter<D> {
    disk: D,
    dir: PathBuf,
    snapshot_bytes_max: u64,
}

impl<D: Disk> SnapshotWriter<D> {
    /// Writes `snapshot`'s file durably (temporary file, sync, rename, directory sync).
    pub fn write(&self, snapshot: &Snapshot) -> Result<()> {
        check_snapshot_size(snapshot, self.snapshot_bytes_max)?;
        write_snapshot(&self.disk, &self.dir, snapshot)
    }
}

/// Refuses a snapshot over `WalOptions::snapshot_bytes_max`.
fn check_snapshot_size(snapshot: &Snapshot, limit_bytes: u64) -> Result<()> {
    let size_bytes = snapshot.data.len() as u64;
    if size_bytes > limit_bytes {
        return Err(WalError::TooLarge {
            what: "a snapshot",
            size_bytes,
            limit_bytes,
        });
    }
    Ok(())
}
