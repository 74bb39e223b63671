//! One simulated server: the real Raft core (`RawNode`), its disk, its key-value state machine,
//! and the faults it can suffer (crash, pause, slow disk).
//!
//! The node's `MemStorage` is its disk: a `Ready` is written into it only when its simulated write
//! completes, in the order the `Ready`s were taken; only then do the `Ready`'s persisted messages
//! leave, its committed entries get applied, and the core hear `advance`. A crash keeps the disk and
//! drops everything else: the `RawNode`, unwritten `Ready`s, the state machine (a restart re-applies
//! the log from index 1 into an empty store) and the clients' pending requests.
//!
//! Invariants: `Ready`s are persisted in the order taken; nothing a `Ready` promises leaves before
//! its write completes; a paused node neither ticks nor handles messages or disk completions (they
//! wait until it resumes).

use std::collections::{BTreeSet, VecDeque};

use raftkv_raft::{
    Config, Entry, Error, Index, MemStorage, Message, Raft, RawNode, Ready, ReadyAck, Role, Term,
};

use crate::checkers::liveness::NodeSummary;
use crate::client::ProposeOutcome;
use crate::kv::{ClientId, Command, KvStore, OpResult, RequestId};
use crate::network::Time;

/// A `Ready` whose disk write is under way.
#[derive(Debug)]
struct PendingWrite {
    /// What to persist, send afterwards and apply (its `messages` already left).
    ready: Ready,
    /// What to acknowledge once done.
    ack: ReadyAck,
    /// When the write completes.
    done_at: Time,
}

/// An answer a node owes a client whose proposal it accepted.
#[derive(Clone, Copy, Debug)]
pub struct Reply {
    /// The command answered.
    pub command: Command,
    /// Its result.
    pub result: OpResult,
    /// Index of the entry that carried it.
    pub index: Index,
    /// Term of that entry.
    pub term: Term,
}

/// What a node produced while handling one input.
#[derive(Debug, Default)]
pub struct NodeOutput {
    /// Messages to put on the wire.
    pub messages: Vec<Message>,
    /// Entries applied to the state machine, in order.
    pub applied: Vec<Entry>,
    /// Answers to clients.
    pub replies: Vec<Reply>,
    /// Disk writes completed, as (last index persisted, hard state written) for the trace.
    pub persisted: Vec<String>,
    /// When the next pending disk write completes, if any.
    pub next_write: Option<Time>,
}

/// One server.
pub struct SimNode {
    /// Its id.
    pub id: u64,
    /// Its Raft settings (`applied` is reset and `seed` varied on every restart).
    config: Config,
    /// The running core; `None` while crashed.
    raw: Option<RawNode<MemStorage>>,
    /// The disk while crashed (while running it is the core's storage).
    disk: MemStorage,
    /// Bumped on every crash, so completions of writes from before it are ignored.
    pub incarnation: u64,
    /// Disk writes under way, oldest first.
    writes: VecDeque<PendingWrite>,
    /// Normal latency of a disk write.
    base_disk_latency: Time,
    /// Current latency of a disk write.
    disk_latency: Time,
    /// Paused: no ticks, no input handled.
    paused: bool,
    /// Messages that arrived while paused.
    inbox: VecDeque<Message>,
    /// The state machine.
    kv: KvStore,
    /// Last index applied to `kv`.
    applied: Index,
    /// Requests this node accepted and will answer when it applies them.
    waiting: BTreeSet<(ClientId, RequestId)>,
}

impl SimNode {
    /// A fresh node with an empty disk.
    pub fn new(config: Config, disk_latency: Time) -> Result<Self, Error> {
        let raw = RawNode::new(&config, MemStorage::new())?;
        Ok(SimNode {
            id: config.id,
            config,
            raw: Some(raw),
            disk: MemStorage::new(),
            incarnation: 0,
            writes: VecDeque::new(),
            base_disk_latency: disk_latency,
            disk_latency,
            paused: false,
            inbox: VecDeque::new(),
            kv: KvStore::default(),
            applied: 0,
            waiting: BTreeSet::new(),
        })
    }

    /// Whether the node is running (not crashed).
    pub fn is_up(&self) -> bool {
        self.raw.is_some()
    }

    /// Whether the node is paused.
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// The core, while running.
    pub fn raft(&self) -> Option<&Raft<MemStorage>> {
        self.raw.as_ref().map(RawNode::raft)
    }

    /// The disk: exactly what was persisted.
    pub fn disk(&self) -> &MemStorage {
        self.raw.as_ref().map_or(&self.disk, RawNode::storage)
    }

    /// The node's whole log: durable part and in-memory tail while running, the disk while down.
    pub fn log(&self) -> Vec<Entry> {
        match self.raft() {
            Some(raft) => {
                let log = raft.raft_log();
                log.slice(log.first_index(), log.last_index() + 1, u64::MAX)
                    .unwrap_or_default()
            }
            None => self.disk.all_entries().to_vec(),
        }
    }

    /// Last index applied to the state machine.
    pub fn applied(&self) -> Index {
        self.applied
    }

    /// Disk writes under way.
    pub fn pending_writes(&self) -> usize {
        self.writes.len()
    }

    /// Feeds the disk writes under way (their content, not their timing) to `state`, for the
    /// explorer's state hashing.
    pub fn hash_pending_writes(&self, state: &mut impl std::hash::Hasher) {
        for write in &self.writes {
            state.write(format!("{:?}{:?}", write.ready, write.ack).as_bytes());
        }
    }

    /// What the liveness check needs.
    pub fn summary(&self) -> NodeSummary {
        let raft = self.raft();
        NodeSummary {
            id: self.id,
            live: raft.is_some() && !self.paused,
            role: raft.map_or(Role::Follower, Raft::role),
            term: raft.map_or(0, Raft::term),
            leader: raft.and_then(Raft::leader),
            last_index: raft.map_or(0, |r| r.raft_log().last_index()),
            committed: raft.map_or(0, |r| r.raft_log().committed()),
            applied: self.applied,
        }
    }

    /// One tick of the node's clock.
    pub fn tick(&mut self, now: Time, out: &mut NodeOutput) {
        if self.paused {
            return;
        }
        if let Some(raw) = self.raw.as_mut() {
            raw.tick();
            self.drain(now, out);
        }
    }

    /// Starts an election now (the explorer's stand-in for an election timeout).
    pub fn campaign(&mut self, now: Time, out: &mut NodeOutput) {
        if self.paused {
            return;
        }
        if let Some(raw) = self.raw.as_mut() {
            raw.campaign();
            self.drain(now, out);
        }
    }

    /// A message arrives. Returns the core's refusal of a malformed message, if any.
    pub fn receive(&mut self, message: Message, now: Time, out: &mut NodeOutput) -> Option<Error> {
        if self.paused {
            self.inbox.push_back(message);
            return None;
        }
        let raw = self.raw.as_mut()?;
        let refused = raw.step(message).err();
        self.drain(now, out);
        refused
    }

    /// A client proposes `command` here.
    pub fn propose(&mut self, command: Command, now: Time, out: &mut NodeOutput) -> ProposeOutcome {
        if self.paused {
            return ProposeOutcome::Unreachable;
        }
        let Some(raw) = self.raw.as_mut() else {
            return ProposeOutcome::Unreachable;
        };
        let outcome = match raw.propose(command.encode()) {
            Ok(index) => {
                self.waiting.insert((command.client, command.request));
                ProposeOutcome::Accepted(index)
            }
            Err(Error::NotLeader { leader }) => ProposeOutcome::NotLeader(leader),
            Err(_) => ProposeOutcome::Overloaded,
        };
        self.drain(now, out);
        outcome
    }

    /// Disk writes due by `now` complete (a scheduled completion event).
    pub fn on_disk(&mut self, now: Time, out: &mut NodeOutput) {
        if !self.paused && self.raw.is_some() {
            self.drain(now, out);
        }
    }

    /// Takes every `Ready`, sends what may leave at once, and completes the disk writes due by
    /// `now` (a write's completion may make more output ready, hence the loop).
    fn drain(&mut self, now: Time, out: &mut NodeOutput) {
        loop {
            let mut progressed = false;
            while let Some(raw) = self.raw.as_mut().filter(|raw| raw.has_ready()) {
                let mut ready = raw.ready();
                out.messages.append(&mut ready.messages);
                let after = self.writes.back().map_or(0, |w| w.done_at);
                let ack = ready.ack();
                self.writes.push_back(PendingWrite {
                    ready,
                    ack,
                    done_at: (now + self.disk_latency).max(after),
                });
                progressed = true;
            }
            while self.writes.front().is_some_and(|w| w.done_at <= now) {
                if let Some(write) = self.writes.pop_front() {
                    self.complete_write(write, out);
                    progressed = true;
                }
            }
            if !progressed {
                break;
            }
        }
        out.next_write = self.writes.front().map(|w| w.done_at);
    }

    /// Completes the oldest disk write regardless of time (the explorer's "disk completes" step).
    pub fn complete_oldest_write(&mut self, out: &mut NodeOutput) {
        if let Some(write) = self.writes.pop_front() {
            self.complete_write(write, out);
        }
    }

    /// A write completes: it is durable, so what it promised may leave, then apply and advance.
    fn complete_write(&mut self, write: PendingWrite, out: &mut NodeOutput) {
        let Some(raw) = self.raw.as_mut() else {
            return;
        };
        let ready = write.ready;
        // The simulator never takes snapshots, so leaders never send one; persist it anyway, as
        // the contract orders (snapshot, then hard state and entries).
        if let Some(snapshot) = ready.snapshot {
            out.persisted.push(format!(
                "persisted a snapshot at {}",
                snapshot.metadata.index
            ));
            raw.storage_mut().apply_snapshot(snapshot);
        }
        if let Some(hs) = ready.hard_state {
            raw.storage_mut().set_hard_state(hs);
        }
        raw.storage_mut().append(&ready.entries);
        if let Some((index, term)) = write.ack.persisted {
            out.persisted.push(format!(
                "persisted up to ({index},{term}){}",
                ready
                    .hard_state
                    .map(|h| format!(" hs=(t{} v{:?} c{})", h.term, h.vote, h.commit))
                    .unwrap_or_default()
            ));
        } else if let Some(h) = ready.hard_state {
            out.persisted.push(format!(
                "persisted hs=(t{} v{:?} c{})",
                h.term, h.vote, h.commit
            ));
        }
        out.messages.extend(ready.persisted_messages);
        for entry in ready.committed_entries {
            self.apply(entry, out);
        }
        if let Some(raw) = self.raw.as_mut() {
            raw.advance(write.ack);
        }
    }

    fn apply(&mut self, entry: Entry, out: &mut NodeOutput) {
        self.applied = entry.index;
        if let Some((command, result)) = self.kv.apply(&entry.data)
            && self.waiting.remove(&(command.client, command.request))
        {
            out.replies.push(Reply {
                command,
                result,
                index: entry.index,
                term: entry.term,
            });
        }
        out.applied.push(entry);
    }

    /// Crash: keep the disk, lose everything else.
    pub fn crash(&mut self) {
        if let Some(raw) = self.raw.take() {
            self.disk = raw.storage().clone();
        }
        self.incarnation += 1;
        self.writes.clear();
        self.inbox.clear();
        self.waiting.clear();
        self.kv = KvStore::default();
        self.applied = 0;
        self.paused = false;
    }

    /// Restart a crashed node from its disk, with an empty state machine.
    pub fn restart(&mut self, now: Time, out: &mut NodeOutput) -> Result<(), Error> {
        if self.raw.is_some() {
            return Ok(());
        }
        let mut config = self.config.clone();
        config.applied = 0;
        config.seed = self.config.seed ^ self.incarnation.wrapping_mul(0x9E37_79B9);
        self.raw = Some(RawNode::new(&config, std::mem::take(&mut self.disk))?);
        self.drain(now, out);
        Ok(())
    }

    /// Pause: stop ticking and handling input.
    pub fn pause(&mut self) {
        if self.raw.is_some() {
            self.paused = true;
        }
    }

    /// Resume: handle what arrived meanwhile, then carry on.
    pub fn resume(&mut self, now: Time, out: &mut NodeOutput) -> Vec<Error> {
        if !self.paused {
            return Vec::new();
        }
        self.paused = false;
        let mut refused = Vec::new();
        while let Some(message) = self.inbox.pop_front() {
            refused.extend(self.receive(message, now, out));
        }
        self.drain(now, out);
        refused
    }

    /// Disk writes take `latency` from now on (`None`: back to normal).
    pub fn set_disk_latency(&mut self, latency: Option<Time>) {
        self.disk_latency = latency.unwrap_or(self.base_disk_latency);
    }
}
