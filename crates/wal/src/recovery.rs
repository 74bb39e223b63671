//! Opening a WAL: lock the data directory, replay the segments, pick the snapshot, repair a torn
//! tail, and report what was found.
//!
//! Replay applies records in segment order: an entry at or below the last index replaces the
//! suffix from its index on (an entry at or below the first index held starts the run afresh: its
//! predecessors were in removed segments), a hard-state record replaces the hard state, a snapshot
//! mark moves the snapshot boundary (an installed one also clears the log). Entries below a
//! compaction mark are kept until the snapshot is chosen, so that if the newest snapshot file is
//! damaged an older one plus the log can be used instead.
//!
//! Invariant: open either returns the state every completed `sync` promised, or an error naming
//! the file and offset that prevent it; it never guesses.

use std::path::{Path, PathBuf};

use raftkv_raft::{Entry, HardState, Index, Snapshot, SnapshotMetadata, Term};

use crate::disk::{Disk, DiskFile};
use crate::error::{Result, WalError};
use crate::record::{
    FORMAT_VERSION, MarkKind, RECORD_BYTES_MAX, Record, SegmentHeader, SnapshotMark, framed_bytes,
};
use crate::segment::{Scan, TEMP_SUFFIX, Torn, parse_segment_name, scan};
use crate::snapshot::{list_snapshots, load_snapshot};
use crate::wal::{Segment, Wal, WalOptions, create_segment_file, preamble_bytes};

/// What `Wal::open` found; the server logs it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segment files replayed.
    pub segments: usize,
    /// A torn record cut off the end of the last segment (a crash mid-write), with its file.
    pub torn_tail: Option<(PathBuf, Torn)>,
    /// Leftover temporary files removed.
    pub removed_temp_files: Vec<PathBuf>,
    /// Snapshot files that failed to load, with the reason; an older one was used.
    pub damaged_snapshots: Vec<(PathBuf, String)>,
    /// Snapshot files newer than the log's snapshot mark (written, never recorded), removed.
    pub removed_unrecorded_snapshots: Vec<PathBuf>,
    /// Index of the snapshot the log starts after (0 when none).
    pub snapshot_index: Index,
    /// First index of the recovered log.
    pub first_index: Index,
    /// Last index of the recovered log.
    pub last_index: Index,
    /// The saved commit index, when it was above the last index and lowered to it (its entries
    /// were torn off after the hard state reached the disk).
    pub commit_lowered_from: Option<Index>,
}

/// State built by replaying records.
#[derive(Default)]
struct Replay {
    /// A contiguous run of entries, as the records left it.
    entries: Vec<Entry>,
    /// The latest hard state.
    hard_state: HardState,
    /// The latest snapshot mark.
    mark: Option<SnapshotMark>,
}

impl Replay {
    fn apply(&mut self, record: Record, segments: &mut [Segment]) -> Result<(), &'static str> {
        match record {
            Record::Header(_) => return Err("segment header inside a segment"),
            Record::HardState(hard_state) => self.hard_state = hard_state,
            Record::Snapshot(mark) => {
                let current = self.mark.map_or(0, |m| m.index);
                if mark.index < current {
                    return Err("snapshot mark below an earlier one");
                }
                if mark.kind == MarkKind::Install {
                    self.entries.clear();
                    self.hard_state.commit = self.hard_state.commit.max(mark.index);
                    segments.iter_mut().for_each(|s| s.max_index = 0);
                }
                self.mark = Some(mark);
            }
            Record::Entry(entry) => {
                if entry.index <= self.mark.map_or(0, |m| m.index) {
                    return Err("entry at or below the snapshot written after it");
                }
                let first = self.entries.first().map_or(entry.index, |e| e.index);
                let last = self.entries.last().map_or(entry.index - 1, |e| e.index);
                if entry.index > last + 1 {
                    return Err("entry leaves a gap in the log");
                }
                self.entries
                    .truncate(entry.index.saturating_sub(first) as usize);
                if self
                    .entries
                    .last()
                    .is_some_and(|prev| prev.term > entry.term)
                {
                    return Err("entry term lower than its predecessor's");
                }
                if let Some(segment) = segments.last_mut() {
                    segment.max_index = segment.max_index.max(entry.index);
                }
                self.entries.push(entry);
            }
        }
        Ok(())
    }
}

impl<D: Disk> Wal<D> {
    /// Opens (creating if needed) the WAL in `dir`: takes the directory lock, replays the log and
    /// returns it with a report of what recovery did. Fails with `Locked` when another opener holds
    /// the directory, `Corrupt` when synced data is damaged.
    pub fn open(
        disk: D,
        dir: impl Into<PathBuf>,
        options: WalOptions,
    ) -> Result<(Wal<D>, RecoveryReport)> {
        options.validate()?;
        let dir = dir.into();
        disk.create_dir_all(&dir)
            .map_err(|e| WalError::io("create directory", &dir, e))?;
        let lock = disk
            .try_lock(&dir)
            .map_err(|e| WalError::io("lock", &dir, e))?
            .ok_or_else(|| WalError::Locked { dir: dir.clone() })?;
        let mut report = RecoveryReport::default();
        let names = remove_temp_files(&disk, &dir, &mut report)?;
        let mut found: Vec<(u64, u64, PathBuf)> = names
            .iter()
            .filter_map(|n| parse_segment_name(n).map(|(seq, first)| (seq, first, dir.join(n))))
            .collect();
        found.sort();
        if found.is_empty() && !list_snapshots(&dir, &names).is_empty() {
            let reason = "snapshot files but no segment files: the log is missing".to_string();
            return Err(corrupt(&dir, &dir, 0, reason));
        }
        let mut replay = Replay::default();
        let mut segments = Vec::new();
        let mut tail_end = 0;
        for (i, (seq, first, path)) in found.iter().enumerate() {
            let is_last = i + 1 == found.len();
            segments.push(Segment {
                seq: *seq,
                path: path.clone(),
                max_index: 0,
            });
            let scanned = read_segment(&disk, &dir, path, (*seq, *first), is_last, &options)?;
            for (offset, record) in scanned.records.into_iter().skip(1) {
                replay
                    .apply(record, &mut segments)
                    .map_err(|reason| corrupt(&dir, path, offset, reason.to_string()))?;
            }
            if let Some(torn) = scanned.torn {
                repair_torn_tail(&disk, path, torn)?;
                report.torn_tail = Some((path.clone(), torn));
            }
            tail_end = scanned.end_offset;
        }
        report.segments = segments.len();
        let snapshot = choose_snapshot(&disk, &dir, &names, &mut replay, &options, &mut report)?;
        let hard_state =
            settle_hard_state(replay.hard_state, &snapshot, &replay.entries, &mut report);
        let tail = match segments.last() {
            Some(tail) => disk
                .open(&tail.path)
                .map_err(|e| WalError::io("open", &tail.path, e))?,
            None => {
                let header = SegmentHeader {
                    version: FORMAT_VERSION,
                    cluster_id: options.cluster_id,
                    seq: 1,
                    first_index: report.last_index + 1,
                };
                let (file, segment) =
                    create_segment_file(&disk, &dir, &options, header, &hard_state, &snapshot)?;
                segments.push(segment);
                tail_end = preamble_bytes();
                file
            }
        };
        let wal = Wal {
            tail,
            disk,
            dir,
            options,
            _lock: lock,
            segments,
            tail_written_bytes: tail_end,
            pending: Vec::new(),
            unsynced: false,
            hard_state,
            snapshot,
            entries: replay.entries,
            failed: None,
        };
        Ok((wal, report))
    }
}

/// The hard state to restart from: its commit is at most the last index (entries torn off after
/// the hard state reached the disk lower it; reported).
fn settle_hard_state(
    mut hard_state: HardState,
    snapshot: &SnapshotMetadata,
    entries: &[Entry],
    report: &mut RecoveryReport,
) -> HardState {
    let snapshot_index = snapshot.index;
    let last_index = snapshot_index + entries.len() as u64;
    let commit = hard_state.commit;
    if commit > last_index {
        report.commit_lowered_from = Some(commit);
    }
    hard_state.commit = commit.min(last_index);
    report.snapshot_index = snapshot_index;
    report.first_index = snapshot_index + 1;
    report.last_index = last_index;
    hard_state
}

fn corrupt(dir: &Path, file: &Path, offset: u64, reason: String) -> WalError {
    WalError::Corrupt {
        dir: dir.to_path_buf(),
        file: file.to_path_buf(),
        offset,
        reason,
    }
}

/// Removes leftover `*.tmp` files (creations a crash interrupted); returns the remaining names.
fn remove_temp_files<D: Disk>(
    disk: &D,
    dir: &Path,
    report: &mut RecoveryReport,
) -> Result<Vec<String>> {
    let names = disk.list(dir).map_err(|e| WalError::io("list", dir, e))?;
    let (temp, kept): (Vec<String>, Vec<String>) =
        names.into_iter().partition(|n| n.ends_with(TEMP_SUFFIX));
    for name in &temp {
        let path = dir.join(name);
        disk.remove(&path)
            .map_err(|e| WalError::io("remove", &path, e))?;
        report.removed_temp_files.push(path);
    }
    if !temp.is_empty() {
        disk.sync_dir(dir)
            .map_err(|e| WalError::io("sync directory", dir, e))?;
    }
    Ok(kept)
}

/// Reads and scans one segment, checking its header against its name and the options.
fn read_segment<D: Disk>(
    disk: &D,
    dir: &Path,
    path: &Path,
    (seq, first_index): (u64, u64),
    is_last: bool,
    options: &WalOptions,
) -> Result<Scan> {
    let bytes_max = options.segment_bytes_max + 2 * framed_bytes(RECORD_BYTES_MAX) as u64;
    let buf = disk
        .read(path, bytes_max)
        .map_err(|e| WalError::io("read", path, e))?;
    let scanned = scan(&buf, is_last).map_err(|d| corrupt(dir, path, d.offset, d.reason))?;
    let header = match scanned.records.first() {
        Some((_, Record::Header(header))) => *header,
        _ => {
            let reason = "the segment does not start with a segment header".to_string();
            return Err(corrupt(dir, path, 0, reason));
        }
    };
    let foreign = |reason: String| WalError::Foreign {
        file: path.to_path_buf(),
        reason,
    };
    if header.version != FORMAT_VERSION {
        return Err(foreign(format!(
            "format version {} (this build reads {FORMAT_VERSION})",
            header.version
        )));
    }
    if header.cluster_id != options.cluster_id {
        return Err(foreign(format!(
            "cluster id {:#x}, expected {:#x}",
            header.cluster_id, options.cluster_id
        )));
    }
    if (header.seq, header.first_index) != (seq, first_index) {
        let reason = "the segment header does not match the file name".to_string();
        return Err(corrupt(dir, path, 0, reason));
    }
    Ok(scanned)
}

/// Zeroes a torn record's bytes and syncs, so later writes after the valid end never leave old
/// bytes behind them.
fn repair_torn_tail<D: Disk>(disk: &D, path: &Path, torn: Torn) -> Result<()> {
    let mut file = disk.open(path).map_err(|e| WalError::io("open", path, e))?;
    let zeros = vec![0; torn.bytes as usize];
    file.write_at(torn.offset, &zeros)
        .map_err(|e| WalError::io("write", path, e))?;
    file.sync().map_err(|e| WalError::io("sync", path, e))
}

/// Picks the newest snapshot that the log's mark allows and that loads, falling back to an older
/// one when the log still holds the entries after it; trims the replayed entries to follow it.
fn choose_snapshot<D: Disk>(
    disk: &D,
    dir: &Path,
    names: &[String],
    replay: &mut Replay,
    options: &WalOptions,
    report: &mut RecoveryReport,
) -> Result<SnapshotMetadata> {
    let mark_index = replay.mark.map_or(0, |m| m.index);
    let mut chosen: Option<Snapshot> = None;
    let mut newest_path = None;
    for (index, _, path) in list_snapshots(dir, names) {
        if index > mark_index {
            disk.remove(&path)
                .map_err(|e| WalError::io("remove", &path, e))?;
            report.removed_unrecorded_snapshots.push(path);
            continue;
        }
        newest_path.get_or_insert_with(|| path.clone());
        if chosen.is_some() || mark_index == 0 {
            continue;
        }
        match load_snapshot(disk, &path, options.snapshot_bytes_max) {
            Ok(snapshot) if covers(replay, &snapshot) => chosen = Some(snapshot),
            Ok(_) => report
                .damaged_snapshots
                .push((path, "the log does not continue it".into())),
            Err(reason) => report.damaged_snapshots.push((path, reason)),
        }
    }
    if !report.removed_unrecorded_snapshots.is_empty() {
        disk.sync_dir(dir)
            .map_err(|e| WalError::io("sync directory", dir, e))?;
    }
    let snapshot = match chosen {
        Some(snapshot) => snapshot,
        None if mark_index == 0 => return Ok(SnapshotMetadata::default()),
        None => {
            let file = newest_path.unwrap_or_else(|| dir.to_path_buf());
            let reason = format!(
                "no usable snapshot file for the log's snapshot at index {mark_index} (damaged: {:?})",
                report.damaged_snapshots
            );
            return Err(corrupt(dir, &file, 0, reason));
        }
    };
    let index = snapshot.metadata.index;
    replay.entries.retain(|e| e.index > index);
    let first = replay.entries.first().map_or(index + 1, |e| e.index);
    if first != index + 1 {
        let reason = format!("the log starts at {first} but the snapshot ends at {index}");
        return Err(corrupt(dir, dir, 0, reason));
    }
    Ok(snapshot.metadata)
}

/// Whether the replayed log continues `snapshot`: it is the marked snapshot, or an older one whose
/// following entries the log still holds with the right term at its index.
fn covers(replay: &Replay, snapshot: &Snapshot) -> bool {
    let (index, term): (Index, Term) = (snapshot.metadata.index, snapshot.metadata.term);
    if replay.mark.is_some_and(|m| m.index == index) {
        return replay.mark.is_some_and(|m| m.term == term);
    }
    let Some(first) = replay.entries.first().map(|e| e.index) else {
        return false;
    };
    if first > index + 1 {
        return false;
    }
    index < first || replay.entries[(index - first) as usize].term == term
}
