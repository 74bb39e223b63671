//! `FsDisk`: the real file system (Unix). Syncs are `fdatasync`, directory syncs `fsync` of the
//! directory, preallocation `fallocate`, the directory lock an advisory `flock` on a `LOCK` file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::{Disk, DiskFile, too_long};

/// Name of the lock file inside a locked directory.
pub const LOCK_FILE_NAME: &str = "LOCK";

/// The real file system.
#[derive(Clone, Copy, Debug, Default)]
pub struct FsDisk;

/// An open file of `FsDisk`.
#[derive(Debug)]
pub struct FsFile {
    /// The open file.
    file: File,
}

impl Disk for FsDisk {
    type File = FsFile;
    type Lock = File;

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)
    }

    fn try_lock(&self, dir: &Path) -> io::Result<Option<File>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(LOCK_FILE_NAME))?;
        let locked = fs4::fs_std::FileExt::try_lock_exclusive(&file)?;
        Ok(locked.then_some(file))
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for item in fs::read_dir(dir)? {
            let item = item?;
            if !item.file_type()?.is_file() {
                continue;
            }
            if let Ok(name) = item.file_name().into_string() {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    fn create(&self, path: &Path) -> io::Result<FsFile> {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        Ok(FsFile { file })
    }

    fn open(&self, path: &Path) -> io::Result<FsFile> {
        let file = OpenOptions::new().write(true).open(path)?;
        Ok(FsFile { file })
    }

    fn read(&self, path: &Path, max_bytes: u64) -> io::Result<Vec<u8>> {
        let file = File::open(path)?;
        let len_bytes = file.metadata()?.len();
        if len_bytes > max_bytes {
            return Err(too_long(len_bytes, max_bytes));
        }
        let mut out = Vec::with_capacity(len_bytes as usize);
        file.take(max_bytes).read_to_end(&mut out)?;
        Ok(out)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

impl DiskFile for FsFile {
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        self.file.write_all_at(buf, offset)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn allocate(&mut self, len_bytes: u64) -> io::Result<()> {
        fs4::fs_std::FileExt::allocate(&self.file, len_bytes)
    }

    fn try_clone(&self) -> io::Result<FsFile> {
        Ok(FsFile {
            file: self.file.try_clone()?,
        })
    }
}
