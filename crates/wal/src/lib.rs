//! # raftkv-wal: durable storage for a Raft node
//!
//! A write-ahead log of entries and hard state, snapshot files, group commit and crash recovery,
//! implementing the Raft core's [`raftkv_raft::Storage`] over a [`Disk`] (the real file system,
//! [`FsDisk`], or the crash-modelling [`MemDisk`]).
//!
//! ## Using it
//!
//! ```
//! use raftkv_raft::{Entry, HardState, Storage};
//! use raftkv_wal::{MemDisk, Wal, WalOptions};
//!
//! let disk = MemDisk::new();
//! let (mut wal, _report) = Wal::open(disk.clone(), "/data", WalOptions::default()).unwrap();
//! let hard_state = HardState { term: 1, vote: Some(1), commit: 0 };
//! wal.save(Some(hard_state), &[Entry::new(1, 1, "x".into())], None).unwrap(); // one sync
//! drop(wal);
//! let (wal, report) = Wal::open(disk, "/data", WalOptions::default()).unwrap();
//! assert_eq!((wal.last_index(), report.torn_tail), (1, None));
//! ```
//!
//! `Wal::save(hard_state, entries, snapshot)` mirrors the `Ready` contract; `append`,
//! `set_hard_state` and `sync` are its parts. `apply_snapshot` installs a leader's snapshot
//! (replacing the log), `compact` a local one (keeping later entries). [`GroupCommit`] lets many
//! threads append, sharing each sync (the first waiter leads a batch; no writer thread).
//!
//! ## On disk
//!
//! A data directory holds `LOCK` (an advisory lock: one opener at a time), segment files
//! `{seq:016x}-{first_index:016x}.wal` and snapshot files `{index:016x}-{term:016x}.snap`.
//! Segments are streams of checksummed records (see `record`): a preamble (segment header with
//! format version and cluster id, hard state, snapshot mark), then entries, hard states and
//! snapshot marks in the order written. Entries and hard state share the stream, so one sync makes
//! both durable. See `wal` for truncation and compaction, `recovery` for what opening does.
//!
//! ## Failure model
//!
//! A failed write or sync stops the WAL for good ([`WalError::Failed`] on every later call): the
//! data is not assumed safe and never retried. Damage to synced data makes `open` fail with
//! [`WalError::Corrupt`] naming the file and offset; a torn record at the very end (a crash
//! mid-write) is cut off and reported in [`RecoveryReport`].
//!
//! The live log is held in memory (reads never touch the disk); memory is bounded by how often
//! the application compacts.

mod disk;
mod error;
mod group_commit;
mod record;
mod recovery;
mod segment;
mod snapshot;
mod wal;

pub use disk::{Crash, Disk, DiskFile, FsDisk, FsFile, MemDisk, MemFile, MemLock, Tear};
pub use error::{Result, WalError};
pub use group_commit::{BATCH_REQUESTS_MAX, Completion, GroupCommit, QUEUE_LEN_DEFAULT};
pub use record::{
    DecodeError, HEADER_BYTES, RECORD_BYTES_MAX, Record, TRAILER, TRAILER_BYTES, decode,
    encode_entry, encode_hard_state,
};
pub use recovery::RecoveryReport;
pub use segment::{Damage, Scan, Torn, scan};
pub use snapshot::SNAPSHOT_OVERHEAD_BYTES_MAX;
pub use wal::{
    SEGMENT_BYTES_DEFAULT, SEGMENT_BYTES_MIN, SNAPSHOT_BYTES_DEFAULT, SNAPSHOTS_KEPT_DEFAULT,
    SnapshotWriter, WRITE_BUFFER_BYTES_MAX, Wal, WalOptions,
};
