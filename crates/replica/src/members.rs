//! Who is in the cluster and where they listen: node ids derived from names, the member registry
//! (name, peer URL, client URL per node id), the ids of removed nodes, and the learners held
//! back from promotion (added as learners on purpose, promoted only when asked).
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
    /// Raft node id (derived from the name, see [`node_id`], or assigned when an operator added
    /// the member before it started).
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// Human name, unique in the cluster. Empty while the member is unstarted: added by an
    /// operator, not yet started (its node publishes its name when it joins).
    #[prost(string, tag = "2")]
    pub name: String,
    /// URL peers connect to (`http://host:port`; only host and port are used).
    #[prost(string, tag = "3")]
    pub peer_url: String,
    /// URL clients send requests to. Empty until the member has published it.
    #[prost(string, tag = "4")]
    pub client_url: String,
}

/// Longest member name, in bytes.
pub const MEMBER_NAME_BYTES_MAX: usize = 63;
/// Longest member URL, in bytes.
pub const MEMBER_URL_BYTES_MAX: usize = 256;

impl Member {
    /// An unstarted member: added by an operator at `peer_url` under `id`, not yet started.
    pub fn unstarted(id: NodeId, peer_url: String) -> Self {
        Member {
            id,
            name: String::new(),
            peer_url,
            client_url: String::new(),
        }
    }

    /// Whether the member was added but has not started yet (no name, no client URL).
    pub fn is_unstarted(&self) -> bool {
        self.name.is_empty() && self.client_url.is_empty()
    }

    /// Why this record cannot join or be published, if it cannot: a name of 1 to
    /// `MEMBER_NAME_BYTES_MAX` letters, digits, `-`, `_` or `.` (none for an unstarted member);
    /// URLs of the form `http(s)://host:port` within `MEMBER_URL_BYTES_MAX` (the client URL may
    /// be empty until published). (The server also derives the id from the name: see
    /// [`node_id`].)
    pub fn invalid(&self) -> Option<String> {
        let name = &self.name;
        if (name.is_empty() && !self.is_unstarted()) || name.len() > MEMBER_NAME_BYTES_MAX {
            return Some(format!(
                "a member name has 1 to {MEMBER_NAME_BYTES_MAX} characters, not {}",
                name.len()
            ));
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Some(format!(
                "member name `{name}` may hold only letters, digits, `-`, `_` and `.`"
            ));
        }
        if let Some(reason) = url_invalid(&self.peer_url) {
            return Some(format!("peer URL: {reason}"));
        }
        if !self.client_url.is_empty()
            && let Some(reason) = url_invalid(&self.client_url)
        {
            return Some(format!("client URL: {reason}"));
        }
        None
    }
}

/// Why `url` is not `http(s)://host:port`, if it is not.
fn url_invalid(url: &str) -> Option<String> {
    if url.len() > MEMBER_URL_BYTES_MAX {
        return Some(format!("{} bytes, over {MEMBER_URL_BYTES_MAX}", url.len()));
    }
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    let authority = rest.map(|r| r.trim_end_matches('/'));
    let well_formed = authority.is_some_and(|a| {
        a.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._[]:".contains(&b))
                && port.parse::<u16>().is_ok_and(|p| p > 0)
        })
    });
    (!well_formed).then(|| format!("`{url}` is not of the form http://host:port"))
}

/// The replicated member registry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Registry {
    /// Members by node id.
    members: BTreeMap<NodeId, Member>,
    /// Nodes removed from the cluster: their connections are refused.
    removed: BTreeSet<NodeId>,
    /// Members of the latest configuration applied, so a change can tell who left.
    conf_members: BTreeSet<NodeId>,
    /// Learners added as learners on purpose (etcd's `member add --learner`): the leader does
    /// not promote them when they catch up; only an explicit promotion does. A hold lasts while
    /// its id is a learner: the first configuration applied in which it is not drops it.
    held: BTreeSet<NodeId>,
}

impl Registry {
    /// A registry holding `members`.
    pub fn new(members: impl IntoIterator<Item = Member>) -> Self {
        Registry {
            members: members.into_iter().map(|m| (m.id, m)).collect(),
            removed: BTreeSet::new(),
            conf_members: BTreeSet::new(),
            held: BTreeSet::new(),
        }
    }

    /// Adds or updates a member (a publish or a join).
    pub fn upsert(&mut self, member: Member) {
        self.members.insert(member.id, member);
    }

    /// Applies a new configuration: members of the previous one that are not in `conf` are
    /// forgotten and remembered as removed. (A node that published but whose configuration change
    /// has not taken effect yet is not "removed": it never was a member.)
    pub fn apply_conf(&mut self, conf: &ConfState) {
        let now = conf.members();
        for id in self.conf_members.difference(&now) {
            self.members.remove(id);
            self.removed.insert(*id);
        }
        for id in &now {
            self.removed.remove(id);
        }
        self.conf_members = now;
        self.held.retain(|id| conf.learners.contains(id));
    }

    /// Holds learner `id` back from promotion until promoted explicitly.
    pub fn hold(&mut self, id: NodeId) {
        self.held.insert(id);
    }

    /// Whether learner `id` is held back from promotion.
    pub fn is_held(&self, id: NodeId) -> bool {
        self.held.contains(&id)
    }

    /// The held learners.
    pub fn held(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.held.iter().copied()
    }

    /// The member listening on `peer_url`, if any.
    pub fn by_peer_url(&self, peer_url: &str) -> Option<&Member> {
        self.members.values().find(|m| m.peer_url == peer_url)
    }

    /// The members of the latest configuration applied.
    pub fn conf_members(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.conf_members.iter().copied()
    }

    /// Restores the latest configuration's members (from a snapshot).
    pub fn set_conf_members(&mut self, ids: impl IntoIterator<Item = NodeId>) {
        self.conf_members = ids.into_iter().collect();
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

/// The members a static bootstrap names (`name`, peer URL): each with the id its name gives;
/// client URLs are learnt from each member's publish entry.
pub fn initial_members(initial: &[(String, String)]) -> Vec<Member> {
    initial
        .iter()
        .map(|(name, peer_url)| Member {
            id: node_id(name),
            name: name.clone(),
            peer_url: peer_url.clone(),
            client_url: String::new(),
        })
        .collect()
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
    fn a_member_record_is_bounded_and_well_formed() {
        assert_eq!(member("n-1.a_b").invalid(), None);
        let long = "x".repeat(MEMBER_NAME_BYTES_MAX + 1);
        assert!(member(&long).invalid().is_some());
        assert!(member("").invalid().is_some());
        assert!(member("a b").invalid().is_some());
        for url in [
            "",
            "n1:7001",
            "ftp://n1:7001",
            "http://n1",
            "http://n1:0",
            "http://n1:99999",
            "http://n 1:7001",
        ] {
            let mut bad = member("a");
            bad.peer_url = url.to_string();
            assert!(bad.invalid().is_some(), "{url}");
        }
        let mut long_url = member("a");
        long_url.peer_url = format!("http://{}:1", "h".repeat(MEMBER_URL_BYTES_MAX));
        assert!(long_url.invalid().is_some());
        let mut bad_client = member("a");
        bad_client.client_url = "nowhere".into();
        assert!(bad_client.invalid().is_some());
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
        let (a, b, c) = (node_id("a"), node_id("b"), node_id("c"));
        let mut registry = Registry::new([member("a"), member("b"), member("c")]);
        registry.apply_conf(&ConfState::from_voters([a, b]));
        registry.apply_conf(&ConfState::from_voters([a]));
        assert!(registry.get(b).is_none());
        assert!(registry.is_removed(b));
        // `c` published but was never in a configuration: not removed, still known.
        assert!(!registry.is_removed(c));
        assert!(registry.get(c).is_some());
        registry.apply_conf(&ConfState::from_voters([a, b]));
        assert!(!registry.is_removed(b));
    }

    #[test]
    fn a_hold_lasts_while_its_id_is_a_learner() {
        let (a, b) = (node_id("a"), node_id("b"));
        let mut registry = Registry::new([member("a"), Member::unstarted(b, "http://h:1".into())]);
        let with_learner = ConfState {
            learners: [b].into(),
            ..ConfState::from_voters([a])
        };
        registry.hold(b);
        registry.apply_conf(&with_learner);
        assert!(registry.is_held(b));
        registry.apply_conf(&with_learner);
        assert!(
            registry.is_held(b),
            "another change that keeps it a learner"
        );
        registry.apply_conf(&ConfState::from_voters([a, b]));
        assert!(!registry.is_held(b), "promoted");
        // A hold whose learner never made it into a configuration ends at the next one.
        registry.hold(node_id("c"));
        registry.apply_conf(&ConfState::from_voters([a, b]));
        assert!(!registry.is_held(node_id("c")));
    }

    #[test]
    fn an_unstarted_member_has_no_name_until_it_publishes_one() {
        let added = Member::unstarted(7, "http://h:1".into());
        assert!(added.is_unstarted());
        assert_eq!(added.invalid(), None);
        let nameless_but_reachable = Member {
            client_url: "http://h:2".into(),
            ..added
        };
        assert!(nameless_but_reachable.invalid().is_some());
    }
}
