//! `raftkv snapshot save | status | restore`: backups and disaster recovery. `save` streams a
//! consistent snapshot from a live member through etcd's `Maintenance.Snapshot` (the same file
//! `etcdctl snapshot save` writes), `status` says what a backup holds, `restore` builds the data
//! dir of one member of a new cluster from it (see `raftkv_server::restore`).

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::Subcommand;
use futures::StreamExt;
use raftkv_etcdpb::etcdserverpb::SnapshotRequest;
use raftkv_etcdpb::etcdserverpb::maintenance_client::MaintenanceClient;
use raftkv_server::config::parse_initial_cluster;
use raftkv_server::{backup, restore};
use serde_json::json;

use crate::client::{Common, print_json};
use crate::etcd_client::{connect, refused};

/// `raftkv snapshot ...`.
#[derive(Subcommand, Debug)]
pub enum SnapshotCommand {
    /// Save a consistent snapshot of a live member to FILE (written whole, then renamed into
    /// place).
    Save {
        /// The backup file to write.
        file: PathBuf,
        #[command(flatten)]
        common: Common,
    },
    /// Print what a backup holds: index, revision, key count, size and hash.
    Status {
        /// The backup file.
        file: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Build the data dir of one member of a new cluster from a backup; run it once per member
    /// with the same --initial-cluster, then start each with `raftkv serve --name NAME
    /// --data-dir DIR ...`.
    Restore {
        /// The backup file.
        file: PathBuf,
        /// This member's name (one of --initial-cluster).
        #[arg(long)]
        name: String,
        /// The new cluster: name=peer URL, comma-separated.
        #[arg(long)]
        initial_cluster: String,
        /// The data dir to build (must be empty or absent).
        #[arg(long)]
        data_dir: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

impl SnapshotCommand {
    /// Whether `--json` was given.
    pub fn json(&self) -> bool {
        match self {
            SnapshotCommand::Save { common, .. } => common.json,
            SnapshotCommand::Status { json, .. } | SnapshotCommand::Restore { json, .. } => *json,
        }
    }
}

/// `raftkv snapshot ...`.
pub async fn snapshot(command: SnapshotCommand) -> Result<()> {
    match command {
        SnapshotCommand::Save { file, common } => save(&file, &common).await,
        SnapshotCommand::Status { file, json } => {
            let status = restore::status(&file)?;
            if json {
                return print_json(&serde_json::to_value(&status)?);
            }
            out!(
                "index {}, revision {}, {} keys, {} bytes, hash {}",
                status.index,
                status.revision,
                status.keys,
                status.bytes,
                status.hash
            );
            Ok(())
        }
        SnapshotCommand::Restore {
            file,
            name,
            initial_cluster,
            data_dir,
            json,
        } => {
            let initial = parse_initial_cluster(&initial_cluster)?;
            let restored = restore::restore(&file, &name, &initial, &data_dir)?;
            if json {
                return print_json(&serde_json::to_value(&restored)?);
            }
            out!(
                "restored {} (index {}, revision {}) into {}; start it with `raftkv serve --name \
                 {} --data-dir {} ...`",
                name,
                restored.index,
                restored.revision,
                data_dir.display(),
                name,
                data_dir.display()
            );
            Ok(())
        }
    }
}

/// Streams the member's snapshot into `file`: a temporary file, checked, synced, renamed.
async fn save(file: &std::path::Path, common: &Common) -> Result<()> {
    let channel = connect(common).await?;
    let mut stream = MaintenanceClient::new(channel)
        .snapshot(SnapshotRequest {})
        .await
        .map_err(refused)?
        .into_inner();
    let mut temp_name = file.as_os_str().to_owned();
    temp_name.push(".part");
    let temp = PathBuf::from(temp_name);
    let mut out = std::fs::File::create(&temp)
        .with_context(|| format!("cannot create {}", temp.display()))?;
    let mut bytes = Vec::new();
    while let Some(message) = stream.next().await {
        let message = message.map_err(refused)?;
        bytes.extend_from_slice(&message.blob);
        if bytes.len() as u64 > restore::BACKUP_BYTES_MAX {
            bail!(
                "the snapshot is larger than {} bytes; not saved",
                restore::BACKUP_BYTES_MAX
            );
        }
    }
    let bytes = Bytes::from(bytes);
    let (index, _) = backup::decode(&bytes)
        .with_context(|| "the member sent a damaged snapshot; not saved, try again")?;
    out.write_all(&bytes)
        .and_then(|()| out.sync_all())
        .with_context(|| format!("cannot write {}", temp.display()))?;
    std::fs::rename(&temp, file)
        .with_context(|| format!("cannot rename {} to {}", temp.display(), file.display()))?;
    if common.json {
        return print_json(&json!({ "file": file, "bytes": bytes.len(), "index": index }));
    }
    out!(
        "saved a snapshot at index {index} ({} bytes) to {}",
        bytes.len(),
        file.display()
    );
    Ok(())
}
