//! The file-system operations the WAL needs, behind a trait: `FsDisk` is the real file system,
//! `MemDisk` a deterministic in-memory one that models exactly what a crash may lose.
//!
//! The crash contract both follow (and the WAL relies on, nothing more):
//! - bytes written to a file are durable only after `DiskFile::sync` returns `Ok`;
//! - a file's creation, rename or removal is durable only after `Disk::sync_dir` of its directory;
//! - a crash may keep any prefix of the bytes written since the last sync, and the rest of the
//!   file may then read as zeros;
//! - a failed sync leaves it unknown what reached the disk.

mod fs;
mod mem;

use std::io;
use std::path::Path;

pub use fs::{FsDisk, FsFile};
pub use mem::{Crash, MemDisk, MemFile, MemLock, Tear};

/// A directory tree of files. Paths are the WAL's own (its data directory joined with file names).
pub trait Disk: Send + Sync + 'static {
    /// An open file, written at explicit offsets.
    type File: DiskFile;
    /// Proof of holding a directory's lock; dropping it releases the lock.
    type Lock: Send + 'static;

    /// Creates `dir` and its parents if missing.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Takes the exclusive lock on `dir`, or `None` when someone else holds it.
    fn try_lock(&self, dir: &Path) -> io::Result<Option<Self::Lock>>;
    /// Names of the files in `dir`.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Creates `path` empty (replacing any file of that name) and opens it for writing.
    fn create(&self, path: &Path) -> io::Result<Self::File>;
    /// Opens the existing `path` for writing.
    fn open(&self, path: &Path) -> io::Result<Self::File>;
    /// The whole content of `path`; fails with `InvalidData` when it is longer than `max_bytes`.
    fn read(&self, path: &Path, max_bytes: u64) -> io::Result<Vec<u8>>;
    /// Renames `from` to `to`, replacing `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes `path`.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Makes the creations, renames and removals in `dir` durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// An open file.
pub trait DiskFile: Send + 'static {
    /// Writes all of `buf` at `offset`, growing the file as needed.
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()>;
    /// Makes everything written so far durable (fdatasync).
    fn sync(&mut self) -> io::Result<()>;
    /// Grows the file to at least `len_bytes` of reserved, zero-filled space.
    fn allocate(&mut self, len_bytes: u64) -> io::Result<()>;
    /// A second handle on the same file: its `sync` makes durable what was written through
    /// either (so another thread can sync while this one writes on).
    fn try_clone(&self) -> io::Result<Self>
    where
        Self: Sized;
}

/// An `InvalidData` error for a file longer than a reader accepts.
pub(crate) fn too_long(len_bytes: u64, max_bytes: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("file of {len_bytes} bytes is longer than the {max_bytes} bytes accepted"),
    )
}
