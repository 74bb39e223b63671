//! A backup file: the replicated state at one applied index, as the etcd `Maintenance.Snapshot`
//! stream sends it (and `etcdctl snapshot save` writes it).
//!
//! Layout: `MAGIC`, the applied index (u64, little-endian), the state's length (u64,
//! little-endian), the state (the same bytes as a Raft snapshot's data), zeros up to a multiple
//! of `PAGE_BYTES`, then the SHA-256 of everything before it. etcd's clients check exactly that
//! shape — a whole number of 512-byte pages followed by a 32-byte SHA-256 — before they accept a
//! snapshot, and the checksum lets a restore refuse a torn or altered file.
//!
//! Invariant: `decode(encode(index, state)) == (index, state)`; any other byte changed makes
//! `decode` fail with the reason.

use bytes::{BufMut, Bytes, BytesMut};
use sha2::{Digest, Sha256};

/// The file's first bytes.
const MAGIC: &[u8; 8] = b"RAFTKVB1";
/// The body is padded to a multiple of this (etcd's snapshot files are whole pages).
const PAGE_BYTES: usize = 512;
/// The trailing checksum's length.
const CHECKSUM_BYTES: usize = 32;
/// The fixed part before the state: magic, index, length.
const HEADER_BYTES: usize = MAGIC.len() + 8 + 8;

/// Why a backup file cannot be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BackupError {
    /// Not a raftkv backup (or cut short before its header).
    #[error("not a raftkv backup file: {0}")]
    NotABackup(&'static str),
    /// The checksum does not match: the file is torn or altered.
    #[error("backup file checksum mismatch: the file is torn or altered")]
    Checksum,
}

/// The backup file of `state` (snapshot data) at `applied`.
pub fn encode(applied: u64, state: &[u8]) -> Bytes {
    let body = HEADER_BYTES + state.len();
    let padded = body.div_ceil(PAGE_BYTES) * PAGE_BYTES;
    let mut file = BytesMut::with_capacity(padded + CHECKSUM_BYTES);
    file.put_slice(MAGIC);
    file.put_u64_le(applied);
    file.put_u64_le(state.len() as u64);
    file.put_slice(state);
    file.put_bytes(0, padded - body);
    let checksum = Sha256::digest(&file);
    file.put_slice(&checksum);
    file.freeze()
}

/// The applied index and state a backup file holds.
pub fn decode(file: &Bytes) -> Result<(u64, Bytes), BackupError> {
    if file.len() < HEADER_BYTES + CHECKSUM_BYTES || !file.starts_with(MAGIC) {
        return Err(BackupError::NotABackup("no raftkv backup header"));
    }
    let (body, checksum) = file.split_at(file.len() - CHECKSUM_BYTES);
    if Sha256::digest(body).as_slice() != checksum {
        return Err(BackupError::Checksum);
    }
    let word = |at: usize| {
        let mut le = [0u8; 8];
        le.copy_from_slice(&body[at..at + 8]);
        u64::from_le_bytes(le)
    };
    let applied = word(MAGIC.len());
    let length = usize::try_from(word(MAGIC.len() + 8))
        .ok()
        .filter(|length| HEADER_BYTES + length <= body.len())
        .ok_or(BackupError::NotABackup(
            "state length beyond the file's end",
        ))?;
    Ok((applied, file.slice(HEADER_BYTES..HEADER_BYTES + length)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backup_is_whole_pages_and_a_sha256_and_decodes_to_what_was_encoded() {
        for size in [0, 1, 487, 488, 489, 5000] {
            let state: Vec<u8> = (0..size).map(|i| i as u8).collect();
            let file = encode(42, &state);
            assert_eq!(file.len() % PAGE_BYTES, CHECKSUM_BYTES, "size {size}");
            assert_eq!(decode(&file), Ok((42, Bytes::from(state))));
        }
    }

    #[test]
    fn a_changed_or_cut_backup_is_refused() {
        let file = encode(7, b"state");
        for at in [0, 9, 30, file.len() - 1] {
            let mut altered = file.to_vec();
            altered[at] ^= 1;
            assert!(decode(&Bytes::from(altered)).is_err(), "byte {at}");
        }
        assert!(decode(&file.slice(..file.len() - 1)).is_err());
        assert!(decode(&Bytes::from_static(b"RAFTKVB1")).is_err());
    }
}
