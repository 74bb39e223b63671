//! Disaster recovery: the data dir of one member of a new cluster, built from a backup file
//! (`raftkv snapshot restore`, etcd's `snapshot restore` flow), and what a backup holds
//! (`raftkv snapshot status`).
//!
//! Restoring checks the file's checksum and that its state decodes before it writes anything,
//! refuses a data dir that already holds something, and writes the state as the WAL's snapshot
//! at the backup's index (term 1), the membership replaced by the new cluster's (every member a
//! voter, client URLs learnt when they start), and the node's identity file last: a restore cut
//! short leaves a data dir that `raftkv serve` refuses rather than a half-built node. Every member
//! restored from the same file with the same `--initial-cluster` starts from the same state, so
//! keys and revisions are those of the backup.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use raftkv_raft::{ConfState, HardState, Snapshot, SnapshotMetadata};
use raftkv_replica::members::{Registry, cluster_id, initial_members, node_id};
use raftkv_replica::state;
use raftkv_wal::{FsDisk, SNAPSHOT_BYTES_DEFAULT, SNAPSHOT_OVERHEAD_BYTES_MAX, Wal, WalOptions};
use serde::Serialize;

use crate::backup;
use crate::error::{Result, ServerError};
use crate::meta::{self, META_VERSION, NodeMeta};

/// The largest backup file read: the largest snapshot a WAL takes, and its framing.
pub const BACKUP_BYTES_MAX: u64 = SNAPSHOT_BYTES_DEFAULT + SNAPSHOT_OVERHEAD_BYTES_MAX;

/// What a backup file holds (`raftkv snapshot status`).
#[derive(Debug, Serialize)]
pub struct BackupStatus {
    /// The applied index the state was taken at.
    pub index: u64,
    /// The store's revision.
    pub revision: i64,
    /// Live keys.
    pub keys: u64,
    /// The file's size.
    pub bytes: u64,
    /// The hash of the state (the one members compare).
    pub hash: String,
}

/// What a restore wrote.
#[derive(Debug, Serialize)]
pub struct Restored {
    /// The data dir.
    pub data_dir: PathBuf,
    /// The member's name.
    pub name: String,
    /// Its node id.
    pub id: u64,
    /// The new cluster's id.
    pub cluster_id: String,
    /// The index the log starts after.
    pub index: u64,
    /// The store's revision.
    pub revision: i64,
}

/// Reads and checks a backup file: its applied index and the state's data.
fn read_backup(file: &Path) -> Result<(u64, Bytes)> {
    let bad = |reason: String| ServerError::Config(format!("backup {}: {reason}", file.display()));
    let size = std::fs::metadata(file)
        .map_err(|e| bad(format!("cannot read it: {e}")))?
        .len();
    if size > BACKUP_BYTES_MAX {
        return Err(bad(format!(
            "{size} bytes, more than the {BACKUP_BYTES_MAX} a backup may have"
        )));
    }
    let bytes = std::fs::read(file).map_err(|e| bad(format!("cannot read it: {e}")))?;
    backup::decode(&Bytes::from(bytes)).map_err(|e| {
        bad(format!(
            "{e}; it cannot be restored (take a new backup with `raftkv snapshot save`)"
        ))
    })
}

/// What the backup at `file` holds; a damaged file is an error that says so.
pub fn status(file: &Path) -> Result<BackupStatus> {
    let (index, data) = read_backup(file)?;
    let state = state::decode(index, &data, state::limits())?;
    Ok(BackupStatus {
        index,
        revision: state.kv.revision(),
        keys: state.kv.len(),
        bytes: std::fs::metadata(file)?.len(),
        hash: format!("{:016x}", state.digest()),
    })
}

/// Builds `data_dir` for member `name` of the new cluster `initial` (name, peer URL) from the
/// backup at `file`.
pub fn restore(
    file: &Path,
    name: &str,
    initial: &[(String, String)],
    data_dir: &Path,
) -> Result<Restored> {
    if !initial.iter().any(|(n, _)| n == name) {
        return Err(ServerError::Config(format!(
            "--name {name} is not in --initial-cluster"
        )));
    }
    let occupied = match std::fs::read_dir(data_dir) {
        Ok(mut entries) => entries.next().is_some(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => {
            return Err(ServerError::DataDir {
                dir: data_dir.to_path_buf(),
                reason: format!("cannot read it: {e}"),
            });
        }
    };
    if occupied {
        return Err(ServerError::DataDir {
            dir: data_dir.to_path_buf(),
            reason: "is not empty; a restore builds a new member in an empty data dir".into(),
        });
    }
    let (index, data) = read_backup(file)?;
    let mut restored = state::decode(index, &data, state::limits())?;
    let members = initial_members(initial);
    let voters: Vec<u64> = members.iter().map(|m| m.id).collect();
    let mut registry = Registry::new(members.clone());
    registry.set_conf_members(voters.iter().copied());
    restored.registry = registry;
    let revision = restored.kv.revision();
    let cluster_id = cluster_id(initial);

    std::fs::create_dir_all(data_dir)?;
    let options = WalOptions {
        cluster_id,
        ..WalOptions::default()
    };
    let (mut wal, _) = Wal::open(FsDisk, data_dir.join("wal"), options)?;
    wal.apply_snapshot(Snapshot {
        metadata: SnapshotMetadata {
            index,
            term: 1,
            conf_state: ConfState::from_voters(voters.iter().copied()),
        },
        data: restored.view().encode(),
    })?;
    wal.set_hard_state(HardState {
        term: 1,
        vote: None,
        commit: index,
    })?;
    wal.sync()?;
    let id = node_id(name);
    meta::store(
        data_dir,
        &NodeMeta {
            version: META_VERSION,
            name: name.to_string(),
            id,
            cluster_id,
            initial_voters: voters,
            members,
        },
    )?;
    Ok(Restored {
        data_dir: data_dir.to_path_buf(),
        name: name.to_string(),
        id,
        cluster_id: format!("{cluster_id:x}"),
        index,
        revision,
    })
}
