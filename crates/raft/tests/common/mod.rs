//! A tiny in-memory router for scenario tests: nodes wired together, a `Ready` loop that persists
//! into each node's `MemStorage`, and links that can be cut.
#![allow(dead_code, missing_docs)]

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use raftkv_raft::{
    Config, Entry, HardState, MemStorage, MemberChange, Message, NodeId, RawNode, ReadMode,
    ReadState, Role, Snapshot, Storage, Term,
};

/// Config used by the scenarios: T = 10 ticks, heartbeat every tick, PreVote and CheckQuorum on.
pub fn config(id: NodeId, voters: &[NodeId]) -> Config {
    let mut config = Config::new(id, voters.to_vec());
    config.seed = 42;
    config
}

/// Entries with the given terms at indexes 1, 2, ...
pub fn log_of_terms(terms: &[Term]) -> Vec<Entry> {
    terms
        .iter()
        .enumerate()
        .map(|(i, &t)| Entry::new(i as u64 + 1, t, Bytes::from(format!("e{}", i + 1))))
        .collect()
}

/// Storage holding a log with the given terms, at `term` (no vote).
pub fn storage_with_terms(terms: &[Term], term: Term) -> MemStorage {
    let hs = HardState {
        term,
        vote: None,
        commit: 0,
    };
    MemStorage::with_log(log_of_terms(terms), hs)
}

/// What a node handed out while draining.
#[derive(Default)]
pub struct Drained {
    /// Every message it wants sent.
    pub msgs: Vec<Message>,
    /// Committed entries handed out for applying, in order.
    pub applied: Vec<Entry>,
    /// A snapshot from the leader it installed (the state machine must be replaced by it).
    pub snapshot: Option<Snapshot>,
    /// Reads released.
    pub read_states: Vec<ReadState>,
}

/// Persists a node's pending output (snapshot, hard state, entries), collects its messages,
/// committed entries and reads, and acknowledges, until it has nothing more to say.
pub fn drain(node: &mut RawNode<MemStorage>) -> Drained {
    let mut out = Drained::default();
    while node.has_ready() {
        let ready = node.ready();
        let ack = ready.ack();
        if let Some(snapshot) = ready.snapshot {
            node.storage_mut().apply_snapshot(snapshot.clone());
            out.applied.clear();
            out.snapshot = Some(snapshot);
        }
        if let Some(hs) = ready.hard_state {
            node.storage_mut().set_hard_state(hs);
        }
        node.storage_mut().append(&ready.entries);
        out.msgs.extend(ready.messages);
        out.msgs.extend(ready.persisted_messages);
        out.applied.extend(ready.committed_entries);
        out.read_states.extend(ready.read_states);
        node.advance(ack);
    }
    out
}

/// The harness's state machine snapshot: the applied entries, as (index, term, data) records.
pub fn encode_applied(entries: &[Entry]) -> Bytes {
    let mut out = Vec::new();
    for e in entries {
        out.extend_from_slice(&e.index.to_le_bytes());
        out.extend_from_slice(&e.term.to_le_bytes());
        out.extend_from_slice(&(e.data.len() as u32).to_le_bytes());
        out.extend_from_slice(&e.data);
    }
    Bytes::from(out)
}

/// Inverse of `encode_applied`.
pub fn decode_applied(mut data: &[u8]) -> Vec<Entry> {
    let mut entries = Vec::new();
    while data.len() >= 20 {
        let index = u64::from_le_bytes(data[0..8].try_into().unwrap());
        let term = u64::from_le_bytes(data[8..16].try_into().unwrap());
        let len = u32::from_le_bytes(data[16..20].try_into().unwrap()) as usize;
        entries.push(Entry::new(
            index,
            term,
            Bytes::copy_from_slice(&data[20..20 + len]),
        ));
        data = &data[20 + len..];
    }
    entries
}

/// Node 1 of voters {1, 2, 3} over `storage`, elected in a new term by node 2's vote alone; no
/// follower has acknowledged anything yet (its first entry of the term is not committed).
pub fn leader_elected_by_node_2(storage: MemStorage) -> RawNode<MemStorage> {
    let mut leader = RawNode::new(&config(1, &[1, 2, 3]), storage).unwrap();
    leader.force_campaign();
    let term = leader.raft().term();
    let grant = Message {
        from: 2,
        to: 1,
        term,
        body: raftkv_raft::MessageBody::RequestVoteResponse(raftkv_raft::RequestVoteResponse {
            pre_vote: false,
            granted: true,
        }),
    };
    leader.step(grant).unwrap();
    assert_eq!(leader.raft().role(), Role::Leader);
    leader
}

/// The terms of every entry in a node's log (stable and unstable).
pub fn log_terms(node: &RawNode<MemStorage>) -> Vec<Term> {
    let log = node.raft().raft_log();
    (1..=log.last_index())
        .map(|i| log.term(i).unwrap())
        .collect()
}

/// A cluster of nodes wired through an in-memory network.
pub struct Cluster {
    pub nodes: BTreeMap<NodeId, RawNode<MemStorage>>,
    pub configs: BTreeMap<NodeId, Config>,
    /// Entries each node applied, in order.
    pub applied: BTreeMap<NodeId, Vec<Entry>>,
    /// Directed links (from, to) whose messages are dropped.
    cut: BTreeSet<(NodeId, NodeId)>,
    /// Every message delivered, in order (for assertions about what was said).
    pub delivered: Vec<Message>,
    /// Reads each node released, in order.
    pub read_states: BTreeMap<NodeId, Vec<ReadState>>,
}

impl Cluster {
    /// `ids` as voters with the default scenario config and empty logs.
    pub fn new(ids: &[NodeId]) -> Self {
        Self::with(ids, |_| {}, |_| MemStorage::new())
    }

    /// Custom configs and initial storages.
    pub fn with(
        ids: &[NodeId],
        tweak: impl Fn(&mut Config),
        storage: impl Fn(NodeId) -> MemStorage,
    ) -> Self {
        let mut cluster = Cluster {
            nodes: BTreeMap::new(),
            configs: BTreeMap::new(),
            applied: BTreeMap::new(),
            cut: BTreeSet::new(),
            delivered: Vec::new(),
            read_states: BTreeMap::new(),
        };
        for &id in ids {
            let mut cfg = config(id, ids);
            tweak(&mut cfg);
            cluster
                .nodes
                .insert(id, RawNode::new(&cfg, storage(id)).unwrap());
            cluster.configs.insert(id, cfg);
            cluster.applied.insert(id, Vec::new());
        }
        cluster
    }

    /// A cluster restarting from the given storages that elects at once: CheckQuorum is off, so
    /// restarted voters answer votes without first waiting out the restart guard (a voter that
    /// restarts with a term ignores votes for an election timeout when CheckQuorum is on).
    pub fn restarted(ids: &[NodeId], storage: impl Fn(NodeId) -> MemStorage) -> Self {
        Self::with(ids, |cfg| cfg.check_quorum = false, storage)
    }

    pub fn node(&self, id: NodeId) -> &RawNode<MemStorage> {
        &self.nodes[&id]
    }

    pub fn node_mut(&mut self, id: NodeId) -> &mut RawNode<MemStorage> {
        self.nodes.get_mut(&id).unwrap()
    }

    pub fn role(&self, id: NodeId) -> Role {
        self.node(id).raft().role()
    }

    pub fn term(&self, id: NodeId) -> Term {
        self.node(id).raft().term()
    }

    pub fn committed(&self, id: NodeId) -> u64 {
        self.node(id).raft().raft_log().committed()
    }

    /// The leaders, by id.
    pub fn leaders(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.raft().role() == Role::Leader)
            .map(|(&id, _)| id)
            .collect()
    }

    /// Drops messages in both directions between `id` and everyone else.
    pub fn isolate(&mut self, id: NodeId) {
        let others: Vec<NodeId> = self.nodes.keys().copied().filter(|&o| o != id).collect();
        for other in others {
            self.cut.insert((id, other));
            self.cut.insert((other, id));
        }
    }

    /// Drops messages from `from` to `to`.
    pub fn cut(&mut self, from: NodeId, to: NodeId) {
        self.cut.insert((from, to));
    }

    /// Restores the link from `from` to `to`.
    pub fn heal_link(&mut self, from: NodeId, to: NodeId) {
        self.cut.remove(&(from, to));
    }

    /// Restores every link.
    pub fn heal(&mut self) {
        self.cut.clear();
    }

    /// Starts an election on `id` and lets the cluster settle.
    pub fn campaign(&mut self, id: NodeId) {
        self.node_mut(id).campaign();
        self.stabilize();
    }

    /// Proposes on `id`, then settles.
    pub fn propose(&mut self, id: NodeId, data: &str) -> raftkv_raft::Result<u64> {
        let index = self
            .node_mut(id)
            .propose(Bytes::copy_from_slice(data.as_bytes()))?;
        self.stabilize();
        Ok(index)
    }

    /// Ticks every node `n` times, settling after each tick.
    pub fn tick_all(&mut self, n: usize) {
        for _ in 0..n {
            let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
            for id in ids {
                self.node_mut(id).tick();
            }
            self.stabilize();
        }
    }

    /// Ticks only `id`, `n` times, settling after each tick.
    pub fn tick_node(&mut self, id: NodeId, n: usize) {
        for _ in 0..n {
            self.node_mut(id).tick();
            self.stabilize();
        }
    }

    /// Persists, applies and delivers until nothing moves.
    pub fn stabilize(&mut self) {
        while self.round() {}
    }

    /// One round: every node persists and applies its pending output, then the messages it handed
    /// out are delivered. Returns whether any message was handed out.
    pub fn round(&mut self) -> bool {
        let mut msgs = Vec::new();
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            let node = self.nodes.get_mut(&id).unwrap();
            let out = drain(node);
            msgs.extend(out.msgs);
            let applied = self.applied.entry(id).or_default();
            if let Some(snapshot) = out.snapshot {
                *applied = decode_applied(&snapshot.data);
            }
            applied.extend(out.applied);
            self.read_states
                .entry(id)
                .or_default()
                .extend(out.read_states);
        }
        if msgs.is_empty() {
            return false;
        }
        for m in msgs {
            if self.cut.contains(&(m.from, m.to)) {
                continue;
            }
            if let Some(node) = self.nodes.get_mut(&m.to) {
                self.delivered.push(m.clone());
                node.step(m).unwrap();
            }
        }
        true
    }

    /// Adds a node that belongs to no configuration yet (it learns one from the leader's log or
    /// snapshot once a membership change adds it).
    pub fn add_node(&mut self, id: NodeId) {
        let cfg = config(id, &[]);
        self.nodes
            .insert(id, RawNode::new(&cfg, MemStorage::new()).unwrap());
        self.configs.insert(id, cfg);
        self.applied.insert(id, Vec::new());
    }

    /// Proposes a membership change on `id` and settles.
    pub fn change_membership(
        &mut self,
        id: NodeId,
        changes: &[MemberChange],
    ) -> raftkv_raft::Result<u64> {
        let index = self.node_mut(id).propose_conf_change(changes.to_vec())?;
        self.stabilize();
        Ok(index)
    }

    /// Snapshots `id`'s applied state at its applied index and compacts its log there.
    pub fn compact(&mut self, id: NodeId) {
        let index = self.node(id).raft().raft_log().applied();
        self.try_compact(id, index).unwrap();
    }

    /// Snapshots `id`'s applied state at `index` and compacts its log there, if the core agrees
    /// to describe a snapshot at `index`.
    pub fn try_compact(&mut self, id: NodeId, index: u64) -> raftkv_raft::Result<()> {
        let applied = self.applied[&id].clone();
        let upto: Vec<Entry> = applied.into_iter().filter(|e| e.index <= index).collect();
        let snapshot = self
            .node_mut(id)
            .create_snapshot(index, encode_applied(&upto))?;
        assert!(self.node_mut(id).storage_mut().compact(snapshot));
        Ok(())
    }

    /// Asks `id` for a read index and settles.
    pub fn read(&mut self, id: NodeId, context: u64, mode: ReadMode) -> raftkv_raft::Result<()> {
        self.node_mut(id).read_index(context, mode)?;
        self.stabilize();
        Ok(())
    }

    /// The reads `id` released so far.
    pub fn reads(&self, id: NodeId) -> Vec<ReadState> {
        self.read_states.get(&id).cloned().unwrap_or_default()
    }

    /// Crashes `id` (losing nothing: the scenarios settle before crashing) and restarts it from
    /// its storage.
    pub fn restart(&mut self, id: NodeId) {
        let storage = self.node(id).storage().clone();
        let mut cfg = self.configs[&id].clone();
        cfg.applied = 0;
        self.applied.insert(id, Vec::new());
        self.nodes.insert(id, RawNode::new(&cfg, storage).unwrap());
    }

    /// The stored hard state of `id`.
    pub fn stored_hard_state(&self, id: NodeId) -> HardState {
        self.node(id).storage().initial_state().hard_state
    }
}
