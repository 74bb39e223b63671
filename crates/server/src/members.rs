//! Who is in the cluster and where they listen: node ids derived from names, the member registry
//! (name, peer URL, client URL per node id), and the ids of removed nodes.
//!
//! The registry is replicated state: it changes only by applying log entries (a member publishing
//! its addresses, a configuration change removing a member) and travels in snapshots, so every
//! node agrees on it at every applied index. Raft's `ConfState` says who votes; the registry says
//! how to reach them.

use std::collections::{BTreeMap, BTreeSet};

use raftkv_raft::{ConfState, NodeId};
use serde::{Deserialize, Serialize};

/// A member's addresses.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, prost::Message)]
pub struct Member {
    /// Raft node id (derived from the name, see [`node_id`]).
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// Human name, unique in the cluster.
    #[prost(string, tag = "2")]
    pub name: String,
    /// URL peers connect to (`http://host:port`; only host and port are used).
    #[prost(string, tag = "3")]
    pub peer_url: String,
    /// URL clients send requests to. Empty until the member has published it.
    #[prost(string, tag = "4")]
    pub client_url: String,
}

/// The replicated member registry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Registry {
    /// Members by node id.
    members: BTreeMap<NodeId, Member>,
    /// Nodes removed from the cluster: their connections are refused.
    removed: BTreeSet<NodeId>,
}

impl Registry {
    /// A registry holding `members`.
    pub fn new(members: impl IntoIterator<Item = Member>) -> Self {
        Registry {
            members: members.into_iter().map(|m| (m.id, m)).collect(),
            removed: BTreeSet::new(),
        }
    }

    /// Adds or updates a member (a publish or a join).
    pub fn upsert(&mut self, member: Member) {
        self.removed.remove(&member.id);
        self.members.insert(member.id, member);
    }

    /// Keeps only the members of `conf`; the rest are remembered as removed.
    pub fn retain_conf(&mut self, conf: &ConfState) {
        let keep = conf.members();
        let gone: Vec<NodeId> = self
            .members
            .keys()
            .filter(|id| !keep.contains(id))
            .copied()
            .collect();
        for id in gone {
            self.members.remove(&id);
            self.removed.insert(id);
        }
    }

    /// A member by id.
    pub fn get(&self, id: NodeId) -> Option<&Member> {
        self.members.get(&id)
    }

    /// A member by name.
    pub fn by_name(&self, name: &str) -> Option<&Member> {
        self.members.values().find(|m| m.name == name)
    }

    /// All members, by id.
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    /// Whether `id` was removed from the cluster.
    pub fn is_removed(&self, id: NodeId) -> bool {
        self.removed.contains(&id)
    }

    /// The removed ids.
    pub fn removed(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.removed.iter().copied()
    }

    /// Marks `id` removed (restoring a snapshot).
    pub fn mark_removed(&mut self, id: NodeId) {
        self.removed.insert(id);
    }
}

/// The node id of the member called `name`: a 64-bit FNV-1a hash of the name, mixed, never 0.
/// Every node derives the same id from the same name, so `--initial-cluster` needs no ids.
pub fn node_id(name: &str) -> NodeId {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in name.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // Keep ids below the core's bound on ids, terms and indexes (2^62) and away from 0.
    let mut state = hash;
    (raftkv_raft::splitmix64(&mut state) >> 2).max(1)
}

/// The cluster id of a static bootstrap: a hash over the sorted `name=peer-url` pairs, so every
/// node started with the same `--initial-cluster` derives the same id.
pub fn cluster_id(initial: &[(String, String)]) -> u64 {
    let mut pairs: Vec<String> = initial.iter().map(|(n, u)| format!("{n}={u}")).collect();
    pairs.sort();
    node_id(&pairs.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str) -> Member {
        Member {
            id: node_id(name),
            name: name.to_string(),
            peer_url: format!("http://{name}:7001"),
            client_url: String::new(),
        }
    }

    #[test]
    fn ids_are_stable_distinct_and_non_zero() {
        assert_eq!(node_id("n1"), node_id("n1"));
        assert_ne!(node_id("n1"), node_id("n2"));
        assert_ne!(node_id(""), 0);
        assert!(node_id("n1") < 1 << 62);
    }

    #[test]
    fn cluster_id_ignores_the_order_of_the_initial_cluster() {
        let a = vec![("a".into(), "u1".into()), ("b".into(), "u2".into())];
        let b = vec![("b".into(), "u2".into()), ("a".into(), "u1".into())];
        assert_eq!(cluster_id(&a), cluster_id(&b));
    }

    #[test]
    fn a_member_dropped_from_the_configuration_is_remembered_as_removed() {
        let mut registry = Registry::new([member("a"), member("b")]);
        registry.retain_conf(&ConfState::from_voters([node_id("a")]));
        assert!(registry.get(node_id("b")).is_none());
        assert!(registry.is_removed(node_id("b")));
        registry.upsert(member("b"));
        assert!(!registry.is_removed(node_id("b")));
    }
}
