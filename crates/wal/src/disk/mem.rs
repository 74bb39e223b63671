//! `MemDisk`: a deterministic in-memory disk that models the crash contract exactly, for crash
//! tests and the simulator.
//!
//! Model: a file is an inode with its current bytes and the bytes as of its last successful sync;
//! a directory's names exist in a current view and a durable view (as of its last `sync_dir`).
//! `crash` keeps, per file, the synced bytes plus a prefix of what was written since (`Tear`),
//! optionally zero-filled up to the written length, and reverts the names to the durable view
//! (unless told to keep them). Handles opened before a crash fail afterwards, locks are released.
//! Faults: syncs can be made to fail (`fail_next_syncs`) or to take time (`set_sync_delay`).
//!
//! Invariant: `synced` is always what `data` was at the last sync, and `dirty_from` is at most the
//! lowest offset written since.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::{Disk, DiskFile, too_long};

/// How much of each file's unsynced writes survives a crash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tear {
    /// None of it.
    DropAll,
    /// The first this many bytes (clamped to what was written).
    Keep(u64),
    /// A prefix of a length drawn from a generator seeded with this value.
    Random(u64),
}

/// What a crash does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Crash {
    /// How unsynced writes are cut.
    pub tear: Tear,
    /// Whether the lost part of a file reads as zeros up to its unsynced length (the file system
    /// grew the file but never wrote the blocks) instead of being absent.
    pub zero_fill: bool,
    /// Whether creations, renames and removals not followed by a directory sync survive.
    pub keep_unsynced_names: bool,
}

impl Crash {
    /// A crash that loses everything not synced.
    pub fn clean() -> Crash {
        Crash {
            tear: Tear::DropAll,
            zero_fill: false,
            keep_unsynced_names: false,
        }
    }
}

/// One file's content.
#[derive(Clone, Debug, Default)]
struct Inode {
    /// Bytes written, up to the highest offset written.
    data: Vec<u8>,
    /// Logical length (at least `data.len()`; beyond `data` reads as zeros).
    len_bytes: u64,
    /// `data` as of the last sync.
    synced: Vec<u8>,
    /// `len_bytes` as of the last sync.
    synced_len_bytes: u64,
    /// Lowest offset written since the last sync (`usize::MAX` when clean).
    dirty_from: usize,
}

impl Inode {
    fn new() -> Self {
        Inode {
            dirty_from: usize::MAX,
            ..Inode::default()
        }
    }

    fn sync(&mut self) {
        let from = self.dirty_from.min(self.synced.len());
        self.synced.truncate(from);
        self.synced.extend_from_slice(&self.data[from..]);
        self.synced_len_bytes = self.len_bytes;
        self.dirty_from = usize::MAX;
    }

    /// Applies a crash keeping `keep` (chosen by `pick` from the unsynced length) bytes.
    fn crash(&mut self, crash: &Crash, pick: &mut impl FnMut(u64) -> u64) {
        let from = self.dirty_from.min(self.synced.len()).min(self.data.len());
        let unsynced = (self.data.len() - from) as u64;
        let keep = pick(unsynced).min(unsynced) as usize;
        let cut = from + keep;
        let mut data = self.data[..cut].to_vec();
        if !crash.zero_fill && self.synced.len() > cut {
            data.extend_from_slice(&self.synced[cut..]);
        }
        let len_bytes = if crash.zero_fill {
            self.len_bytes.max(self.synced_len_bytes)
        } else {
            self.synced_len_bytes.max(data.len() as u64)
        };
        *self = Inode {
            synced: data.clone(),
            data,
            len_bytes,
            synced_len_bytes: len_bytes,
            dirty_from: usize::MAX,
        };
    }

    fn contents(&self) -> Vec<u8> {
        let mut out = self.data.clone();
        out.resize(self.len_bytes as usize, 0);
        out
    }
}

/// Everything a `MemDisk` holds.
#[derive(Clone, Debug, Default)]
struct State {
    /// Files by inode number.
    inodes: BTreeMap<u64, Inode>,
    /// Current names.
    names: BTreeMap<PathBuf, u64>,
    /// Names as of the last directory syncs.
    durable_names: BTreeMap<PathBuf, u64>,
    /// Next inode number.
    next_inode: u64,
    /// Bumped by each crash; handles of an older generation fail.
    generation: u64,
    /// Locked directories.
    locks: BTreeSet<PathBuf>,
    /// How many of the next syncs succeed before `failing_syncs` fail.
    passing_syncs: u64,
    /// How many syncs fail (after `passing_syncs`).
    failing_syncs: u64,
    /// How long each sync takes.
    sync_delay: Duration,
    /// Successful file syncs so far.
    syncs: u64,
}

impl State {
    /// Consumes one sync (file or directory) of the failure schedule.
    fn injected_failure(&mut self) -> io::Result<()> {
        if self.passing_syncs > 0 {
            self.passing_syncs -= 1;
        } else if self.failing_syncs > 0 {
            self.failing_syncs -= 1;
            return Err(io::Error::other("injected sync failure"));
        }
        Ok(())
    }
}

/// A deterministic in-memory disk; clones share the same state.
#[derive(Clone, Debug, Default)]
pub struct MemDisk {
    /// The shared state.
    state: Arc<Mutex<State>>,
}

/// An open file of a `MemDisk`.
#[derive(Debug)]
pub struct MemFile {
    /// The disk.
    state: Arc<Mutex<State>>,
    /// The file.
    inode: u64,
    /// The crash generation it was opened in.
    generation: u64,
}

/// A held directory lock of a `MemDisk`.
#[derive(Debug)]
pub struct MemLock {
    /// The disk.
    state: Arc<Mutex<State>>,
    /// The locked directory.
    dir: PathBuf,
    /// The crash generation it was taken in.
    generation: u64,
}

impl Drop for MemLock {
    fn drop(&mut self) {
        let mut state = lock(&self.state);
        if state.generation == self.generation {
            state.locks.remove(&self.dir);
        }
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{} not found", path.display()),
    )
}

/// splitmix64: the seeded generator of `Tear::Random`.
fn splitmix64(seed: &mut u64) -> u64 {
    *seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *seed;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl MemDisk {
    /// An empty disk.
    pub fn new() -> Self {
        MemDisk::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Simulates a power loss: see the module documentation.
    pub fn crash(&self, crash: Crash) {
        let mut state = self.state();
        let state = &mut *state;
        if crash.keep_unsynced_names {
            state.durable_names = state.names.clone();
        } else {
            state.names = state.durable_names.clone();
        }
        let live: BTreeSet<u64> = state.names.values().copied().collect();
        state.inodes.retain(|inode, _| live.contains(inode));
        let mut seed = match crash.tear {
            Tear::Random(seed) => seed,
            _ => 0,
        };
        let mut pick = |unsynced: u64| match crash.tear {
            Tear::DropAll => 0,
            Tear::Keep(n) => n,
            Tear::Random(_) => splitmix64(&mut seed) % (unsynced + 1),
        };
        for inode in state.inodes.values_mut() {
            inode.crash(&crash, &mut pick);
        }
        state.locks.clear();
        state.generation += 1;
    }

    /// Makes the next `count` syncs (of files or directories) fail (each failure leaves the data unsynced).
    pub fn fail_next_syncs(&self, count: u64) {
        self.fail_syncs(0, count);
    }

    /// Lets the next `skip` syncs (of files or directories) succeed, then makes `count` fail.
    pub fn fail_syncs(&self, skip: u64, count: u64) {
        let mut state = self.state();
        state.passing_syncs = skip;
        state.failing_syncs = count;
    }

    /// An independent copy of this disk (files, names, fault settings), with no locks held: for
    /// trying many crashes from one state.
    pub fn fork(&self) -> MemDisk {
        let mut state = self.state().clone();
        state.locks.clear();
        state.generation += 1;
        MemDisk {
            state: Arc::new(Mutex::new(state)),
        }
    }

    /// Makes every file sync take `delay` (a slow disk).
    pub fn set_sync_delay(&self, delay: Duration) {
        self.state().sync_delay = delay;
    }

    /// Successful file syncs so far.
    pub fn sync_count(&self) -> u64 {
        self.state().syncs
    }

    /// The current content of `path`, if it exists.
    pub fn contents(&self, path: &Path) -> Option<Vec<u8>> {
        let state = self.state();
        let inode = state.names.get(path)?;
        state.inodes.get(inode).map(Inode::contents)
    }

    /// The byte range `[start, end)` of `path` written since its last sync, if any.
    pub fn unsynced_range(&self, path: &Path) -> Option<(u64, u64)> {
        let state = self.state();
        let inode = state.inodes.get(state.names.get(path)?)?;
        let from = inode
            .dirty_from
            .min(inode.synced.len())
            .min(inode.data.len());
        (from < inode.data.len()).then_some((from as u64, inode.data.len() as u64))
    }

    /// Flips bit `bit` (0..8) of the byte at `offset` of `path`, in its synced content too (media
    /// damage). Returns whether the byte exists.
    pub fn flip_bit(&self, path: &Path, offset: u64, bit: u8) -> bool {
        let mut state = self.state();
        let Some(&id) = state.names.get(path) else {
            return false;
        };
        let Some(inode) = state.inodes.get_mut(&id) else {
            return false;
        };
        let offset = offset as usize;
        if offset >= inode.len_bytes as usize {
            return false;
        }
        for bytes in [&mut inode.data, &mut inode.synced] {
            if bytes.len() <= offset {
                bytes.resize(offset + 1, 0);
            }
            bytes[offset] ^= 1 << (bit % 8);
        }
        true
    }
}

impl Disk for MemDisk {
    type File = MemFile;
    type Lock = MemLock;

    fn create_dir_all(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }

    fn try_lock(&self, dir: &Path) -> io::Result<Option<MemLock>> {
        let mut state = self.state();
        if !state.locks.insert(dir.to_path_buf()) {
            return Ok(None);
        }
        Ok(Some(MemLock {
            state: self.state.clone(),
            dir: dir.to_path_buf(),
            generation: state.generation,
        }))
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let state = self.state();
        Ok(state
            .names
            .keys()
            .filter(|path| path.parent() == Some(dir))
            .filter_map(|path| path.file_name()?.to_str().map(str::to_owned))
            .collect())
    }

    fn create(&self, path: &Path) -> io::Result<MemFile> {
        let mut state = self.state();
        let inode = state.next_inode;
        state.next_inode += 1;
        state.inodes.insert(inode, Inode::new());
        state.names.insert(path.to_path_buf(), inode);
        Ok(MemFile {
            state: self.state.clone(),
            inode,
            generation: state.generation,
        })
    }

    fn open(&self, path: &Path) -> io::Result<MemFile> {
        let state = self.state();
        let inode = *state.names.get(path).ok_or_else(|| not_found(path))?;
        Ok(MemFile {
            state: self.state.clone(),
            inode,
            generation: state.generation,
        })
    }

    fn read(&self, path: &Path, max_bytes: u64) -> io::Result<Vec<u8>> {
        let state = self.state();
        let inode = state.names.get(path).ok_or_else(|| not_found(path))?;
        let inode = state.inodes.get(inode).ok_or_else(|| not_found(path))?;
        if inode.len_bytes > max_bytes {
            return Err(too_long(inode.len_bytes, max_bytes));
        }
        Ok(inode.contents())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.state();
        let inode = state.names.remove(from).ok_or_else(|| not_found(from))?;
        state.names.insert(to.to_path_buf(), inode);
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut state = self.state();
        state.names.remove(path).ok_or_else(|| not_found(path))?;
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.state();
        let state = &mut *state;
        state.injected_failure()?;
        state
            .durable_names
            .retain(|path, _| path.parent() != Some(dir));
        for (path, inode) in &state.names {
            if path.parent() == Some(dir) {
                state.durable_names.insert(path.clone(), *inode);
            }
        }
        let live: BTreeSet<u64> = state
            .names
            .values()
            .chain(state.durable_names.values())
            .copied()
            .collect();
        state.inodes.retain(|inode, _| live.contains(inode));
        Ok(())
    }
}

impl MemFile {
    /// Runs `f` on the file's inode, failing if the file is from before a crash or gone.
    fn with<T>(&self, f: impl FnOnce(&mut State, u64) -> io::Result<T>) -> io::Result<T> {
        let mut state = lock(&self.state);
        if state.generation != self.generation || !state.inodes.contains_key(&self.inode) {
            return Err(io::Error::other("file handle from before a crash"));
        }
        f(&mut state, self.inode)
    }
}

impl DiskFile for MemFile {
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        self.with(|state, id| {
            let inode = state
                .inodes
                .get_mut(&id)
                .ok_or_else(|| io::Error::other("no inode"))?;
            let start = offset as usize;
            let end = start + buf.len();
            if inode.data.len() < end {
                inode.data.resize(end, 0);
            }
            inode.data[start..end].copy_from_slice(buf);
            inode.dirty_from = inode.dirty_from.min(start);
            inode.len_bytes = inode.len_bytes.max(end as u64);
            Ok(())
        })
    }

    fn sync(&mut self) -> io::Result<()> {
        let delay = self.with(|state, _| Ok(state.sync_delay))?;
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        self.with(|state, id| {
            state.injected_failure()?;
            state.syncs += 1;
            let inode = state
                .inodes
                .get_mut(&id)
                .ok_or_else(|| io::Error::other("no inode"))?;
            inode.sync();
            Ok(())
        })
    }

    fn allocate(&mut self, len_bytes: u64) -> io::Result<()> {
        self.with(|state, id| {
            let inode = state
                .inodes
                .get_mut(&id)
                .ok_or_else(|| io::Error::other("no inode"))?;
            inode.len_bytes = inode.len_bytes.max(len_bytes);
            Ok(())
        })
    }

    fn try_clone(&self) -> io::Result<MemFile> {
        Ok(MemFile {
            state: self.state.clone(),
            inode: self.inode,
            generation: self.generation,
        })
    }
}
