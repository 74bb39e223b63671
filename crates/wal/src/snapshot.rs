//! Snapshot files: `{index:016x}-{term:016x}.snap` in the data directory.
//!
//! Format (little-endian): `SNAPSHOT_MAGIC`, index, term, membership (as in entry records), data
//! length, data, then a CRC32C of everything before it. A file is written under a temporary name,
//! synced, renamed into place and the directory synced, so a snapshot file either exists whole or
//! not at all; the checksum catches later damage, and loading validates every field.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use raftkv_raft::{Index, Snapshot, SnapshotMetadata, Term};

use crate::disk::{Disk, DiskFile};
use crate::error::{Result, WalError};
use crate::record::{Reader, get_conf, put_conf};
use crate::segment::{TEMP_SUFFIX, parse_pair};

/// First bytes of every snapshot file (format version 1).
pub const SNAPSHOT_MAGIC: &[u8; 8] = b"RKVSNAP1";
/// File-name suffix of snapshot files.
pub const SNAPSHOT_SUFFIX: &str = ".snap";
/// Bytes a snapshot file may have beyond its data (header and membership).
pub const SNAPSHOT_OVERHEAD_BYTES_MAX: u64 = 1 << 20;
const CRC_BYTES: usize = 4;

/// The file name of the snapshot at `index` of `term`.
pub fn snapshot_name(index: Index, term: Term) -> String {
    format!("{index:016x}-{term:016x}{SNAPSHOT_SUFFIX}")
}

/// `(index, term)` of a snapshot file name.
pub fn parse_snapshot_name(name: &str) -> Option<(Index, Term)> {
    parse_pair(name.strip_suffix(SNAPSHOT_SUFFIX)?)
}

/// Writes `snapshot` durably into `dir` (temporary file, sync, rename, directory sync).
pub fn write_snapshot<D: Disk>(disk: &D, dir: &Path, snapshot: &Snapshot) -> Result<()> {
    let meta = &snapshot.metadata;
    let name = snapshot_name(meta.index, meta.term);
    let path = dir.join(&name);
    let temp = dir.join(format!("{name}{TEMP_SUFFIX}"));
    let mut head = Vec::new();
    head.extend_from_slice(SNAPSHOT_MAGIC);
    head.extend_from_slice(&meta.index.to_le_bytes());
    head.extend_from_slice(&meta.term.to_le_bytes());
    put_conf(&mut head, &meta.conf_state);
    head.extend_from_slice(&(snapshot.data.len() as u64).to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&head), &snapshot.data);
    let mut file = disk
        .create(&temp)
        .map_err(|e| WalError::io("create", &temp, e))?;
    let data_at = head.len() as u64;
    let crc_at = data_at + snapshot.data.len() as u64;
    file.write_at(0, &head)
        .and_then(|()| file.write_at(data_at, &snapshot.data))
        .and_then(|()| file.write_at(crc_at, &crc.to_le_bytes()))
        .map_err(|e| WalError::io("write", &temp, e))?;
    file.sync().map_err(|e| WalError::io("sync", &temp, e))?;
    disk.rename(&temp, &path)
        .map_err(|e| WalError::io("rename", &temp, e))?;
    disk.sync_dir(dir)
        .map_err(|e| WalError::io("sync directory", dir, e))
}

/// Loads and validates the snapshot file at `path`; the error says what is wrong with it.
pub fn load_snapshot<D: Disk>(
    disk: &D,
    path: &Path,
    data_bytes_max: u64,
) -> Result<Snapshot, String> {
    let buf = disk
        .read(
            path,
            data_bytes_max.saturating_add(SNAPSHOT_OVERHEAD_BYTES_MAX),
        )
        .map_err(|e| format!("cannot read it: {e}"))?;
    let body_len = buf
        .len()
        .checked_sub(CRC_BYTES)
        .ok_or("shorter than a checksum")?;
    let (body, crc) = buf.split_at(body_len);
    let crc = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    if crc32c::crc32c(body) != crc {
        return Err("checksum mismatch".into());
    }
    let mut r = Reader::new(body);
    if r.bytes(SNAPSHOT_MAGIC.len())? != SNAPSHOT_MAGIC {
        return Err("not a snapshot file (wrong magic)".into());
    }
    let index = r.u64()?;
    let term = r.u64()?;
    let conf_state = get_conf(&mut r)?;
    let data_len = r.u64()?;
    if data_len != r.remaining() as u64 {
        return Err("data length does not match the file".into());
    }
    let data_at = body.len() - r.remaining();
    let name_ok = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(parse_snapshot_name)
        == Some((index, term));
    if !name_ok || index == 0 || term == 0 {
        return Err(format!(
            "index {index} / term {term} do not match the file name"
        ));
    }
    Ok(Snapshot {
        metadata: SnapshotMetadata {
            index,
            term,
            conf_state,
        },
        data: Bytes::from(buf).slice(data_at..body_len),
    })
}

/// Snapshot files in `names`, newest (highest index) first.
pub fn list_snapshots(dir: &Path, names: &[String]) -> Vec<(Index, Term, PathBuf)> {
    let mut found: Vec<_> = names
        .iter()
        .filter_map(|name| {
            let (index, term) = parse_snapshot_name(name)?;
            Some((index, term, dir.join(name)))
        })
        .collect();
    found.sort_by(|a, b| b.cmp(a));
    found
}
