//! The replicated state a node applies committed entries to: the key-value store and the member
//! registry, and the entry payload format that addresses them.
//!
//! An entry's payload is a [`Command`]: a key-value request (encoded by `raftkv-kv`, passed through
//! untouched) or a member publishing its addresses. Empty payloads are the leaders' no-op entries.
//! Configuration entries update the registry (removed members are forgotten and refused).
//!
//! Invariant: applying the same entries in the same order gives the same state on every node; a
//! payload this node cannot decode is applied as a no-op on every node alike (and logged), never a
//! panic.

use bytes::Bytes;
use prost::Message as _;
use raftkv_kv::{KvStore, Limits, Response};
use raftkv_raft::{ConfState, Entry, EntryKind, Index};

use crate::error::{Result, ServerError};
use crate::members::{Member, Registry};

/// The key-value limits every node runs with (they must agree: apply-time checks are part of the
/// replicated behaviour). The store's defaults, with watches bounded for a server: at most
/// `watches_max` watches of at most `watch_pending_bytes_max` buffered each.
pub fn limits() -> Limits {
    Limits {
        watches_max: 1024,
        watch_pending_bytes_max: 1024 * 1024,
        ..Limits::default()
    }
}

/// Format version of snapshot data.
pub const SNAPSHOT_VERSION: u32 = 1;

/// An entry payload.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Command {
    /// What to do.
    #[prost(oneof = "CommandOp", tags = "1, 2")]
    pub op: Option<CommandOp>,
}

/// The kinds of command.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum CommandOp {
    /// An encoded `raftkv_kv::Request`.
    #[prost(bytes = "bytes", tag = "1")]
    Kv(Bytes),
    /// A member's name and addresses (on join, and when a member starts with new addresses).
    #[prost(message, tag = "2")]
    Publish(Member),
}

impl Command {
    /// The payload of a key-value request.
    pub fn kv(request: Bytes) -> Bytes {
        Command {
            op: Some(CommandOp::Kv(request)),
        }
        .encode_to_vec()
        .into()
    }

    /// The payload of a member publishing its addresses.
    pub fn publish(member: Member) -> Bytes {
        Command {
            op: Some(CommandOp::Publish(member)),
        }
        .encode_to_vec()
        .into()
    }
}

/// The whole state in a snapshot.
#[derive(Clone, PartialEq, prost::Message)]
struct StateSnapshot {
    /// [`SNAPSHOT_VERSION`].
    #[prost(uint32, tag = "1")]
    version: u32,
    /// The registry's members.
    #[prost(message, repeated, tag = "2")]
    members: Vec<Member>,
    /// The registry's removed ids.
    #[prost(uint64, repeated, tag = "3")]
    removed: Vec<u64>,
    /// The key-value store's own snapshot stream.
    #[prost(bytes = "bytes", tag = "4")]
    kv: Bytes,
    /// Members of the configuration at the snapshot's index.
    #[prost(uint64, repeated, tag = "5")]
    conf_members: Vec<u64>,
}

/// What applying one entry produced.
#[derive(Debug)]
pub enum Applied {
    /// A key-value request's response.
    Kv(Response),
    /// A member's addresses were recorded.
    Published,
    /// A configuration took effect in the registry.
    Conf,
    /// A leader's no-op entry, or a payload no node can decode.
    Noop,
}

/// The replicated state.
pub struct State {
    /// The key-value store.
    pub kv: KvStore,
    /// Who is in the cluster and where.
    pub registry: Registry,
    /// Key-value limits (for restores).
    limits: Limits,
    /// Last applied index.
    applied: Index,
}

impl State {
    /// An empty state. The registry starts empty on every node alike and fills through publish
    /// entries, so it is the same on every node at every index.
    pub fn new(limits: Limits) -> Self {
        State {
            kv: KvStore::new(limits.clone()),
            registry: Registry::default(),
            limits,
            applied: 0,
        }
    }

    /// Last applied index.
    pub fn applied(&self) -> Index {
        self.applied
    }

    /// Applies one committed entry.
    pub fn apply(&mut self, entry: &Entry) -> Applied {
        assert!(
            entry.index > self.applied,
            "entry {} applied after {}",
            entry.index,
            self.applied
        );
        self.applied = entry.index;
        if let EntryKind::ConfChange(conf) = &entry.kind {
            self.apply_conf(conf);
            return Applied::Conf;
        }
        if entry.data.is_empty() {
            return Applied::Noop;
        }
        match Command::decode(entry.data.clone()) {
            Ok(Command {
                op: Some(CommandOp::Kv(request)),
            }) => Applied::Kv(self.kv.apply(entry.index, &request)),
            Ok(Command {
                op: Some(CommandOp::Publish(member)),
            }) => {
                self.registry.upsert(member);
                Applied::Published
            }
            Ok(Command { op: None }) | Err(_) => {
                tracing::warn!(index = entry.index, "undecodable entry applied as a no-op");
                Applied::Noop
            }
        }
    }

    fn apply_conf(&mut self, conf: &ConfState) {
        self.registry.apply_conf(conf);
    }

    /// The state as snapshot data.
    pub fn snapshot_data(&self) -> Bytes {
        let mut kv = Vec::new();
        // Writing into a Vec cannot fail.
        self.kv
            .write_snapshot(&mut kv)
            .expect("writing a snapshot into memory");
        StateSnapshot {
            version: SNAPSHOT_VERSION,
            members: self.registry.members().cloned().collect(),
            removed: self.registry.removed().collect(),
            kv: kv.into(),
            conf_members: self.registry.conf_members().collect(),
        }
        .encode_to_vec()
        .into()
    }

    /// Replaces the state with a snapshot's, taken at `index`.
    pub fn restore(&mut self, index: Index, data: &Bytes) -> Result<()> {
        let snapshot = StateSnapshot::decode(data.clone())
            .map_err(|e| ServerError::Malformed(format!("snapshot at {index}: {e}")))?;
        if snapshot.version != SNAPSHOT_VERSION {
            return Err(ServerError::Malformed(format!(
                "snapshot at {index} has version {}, expected {SNAPSHOT_VERSION}",
                snapshot.version
            )));
        }
        let mut kv = KvStore::restore(&mut &snapshot.kv[..], self.limits.clone())
            .map_err(|e| ServerError::Malformed(format!("snapshot at {index}: {e}")))?;
        kv.adopt_watches(&mut self.kv);
        let mut registry = Registry::new(snapshot.members);
        for id in snapshot.removed {
            registry.mark_removed(id);
        }
        registry.set_conf_members(snapshot.conf_members);
        self.kv = kv;
        self.registry = registry;
        self.applied = index;
        Ok(())
    }
}
