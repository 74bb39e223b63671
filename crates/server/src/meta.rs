//! The node's identity in its data dir (`node.json`): name, node id, cluster id, and the members
//! known at bootstrap (so a restarted node can reach its peers before it has re-applied its log).
//!
//! Written once, atomically (temporary file, fsync, rename, directory fsync), when the node first
//! joins a cluster. Its presence is what makes a restart resume instead of bootstrapping again.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Result, ServerError};
use crate::members::Member;

/// File name of the identity file inside the data dir.
pub const META_FILE: &str = "node.json";
/// Format version of the identity file.
pub const META_VERSION: u32 = 1;

/// What a data dir says about its node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeMeta {
    /// Format version ([`META_VERSION`]).
    pub version: u32,
    /// The member name.
    pub name: String,
    /// The Raft node id.
    pub id: u64,
    /// The cluster this node belongs to; peers of another cluster are refused.
    pub cluster_id: u64,
    /// Voters of the bootstrap configuration (empty for a node that joined: it learns the
    /// configuration from the leader's log or snapshot).
    pub initial_voters: Vec<u64>,
    /// Members known when the node first started: where to reach peers until the replicated
    /// registry (filled by publish entries) says more.
    pub members: Vec<Member>,
}

fn meta_path(dir: &Path) -> PathBuf {
    dir.join(META_FILE)
}

/// Reads the identity in `dir`; `None` for a data dir that has never held a node.
pub fn load(dir: &Path) -> Result<Option<NodeMeta>> {
    let path = meta_path(dir);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(ServerError::DataDir {
                dir: dir.to_path_buf(),
                reason: format!("cannot read {}: {e}", path.display()),
            });
        }
    };
    let meta: NodeMeta = serde_json::from_str(&text).map_err(|e| ServerError::DataDir {
        dir: dir.to_path_buf(),
        reason: format!(
            "{} is damaged ({e}); restore it from a backup, or remove the data dir and join the \
             cluster again so the node is re-replicated",
            path.display()
        ),
    })?;
    if meta.version != META_VERSION {
        return Err(ServerError::DataDir {
            dir: dir.to_path_buf(),
            reason: format!(
                "{} has format version {}, this raftkv reads version {META_VERSION}",
                path.display(),
                meta.version
            ),
        });
    }
    Ok(Some(meta))
}

/// Writes the identity into `dir` durably.
pub fn store(dir: &Path, meta: &NodeMeta) -> Result<()> {
    let io = |what: &str, e: std::io::Error| ServerError::DataDir {
        dir: dir.to_path_buf(),
        reason: format!("{what}: {e}"),
    };
    fs::create_dir_all(dir).map_err(|e| io("cannot create the data dir", e))?;
    let tmp = dir.join(format!("{META_FILE}.tmp"));
    let text = serde_json::to_string_pretty(meta)
        .map_err(|e| io("cannot encode the node identity", std::io::Error::other(e)))?;
    let mut file = fs::File::create(&tmp).map_err(|e| io("cannot create node.json.tmp", e))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| io("cannot write node.json.tmp", e))?;
    fs::rename(&tmp, meta_path(dir)).map_err(|e| io("cannot rename node.json.tmp", e))?;
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io("cannot sync the data dir", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_round_trips_and_a_damaged_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap(), None);
        let meta = NodeMeta {
            version: META_VERSION,
            name: "n1".into(),
            id: 7,
            cluster_id: 9,
            initial_voters: vec![7],
            members: vec![],
        };
        store(dir.path(), &meta).unwrap();
        assert_eq!(load(dir.path()).unwrap(), Some(meta));
        fs::write(dir.path().join(META_FILE), "{ not json").unwrap();
        let err = load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("damaged"), "{err}");
    }
}
