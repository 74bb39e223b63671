//! One simulated server: the real Raft core (`RawNode`), its disk (`disk`), its state machine (the
//! real `raftkv_kv::KvStore`, through `kv::StateMachine`), the reads it serves, its leases, its
//! snapshots, and the faults it can suffer (crash, pause, slow disk, failed sync).
//!
//! A `Ready` is handed to the disk when taken and is durable when its simulated write completes,
//! in the order the `Ready`s were taken; only then do the `Ready`'s persisted messages leave, its
//! committed entries get applied, and the core hear `advance`. A crash keeps the disk (minus what
//! its power loss drops) and loses everything else: the `RawNode`, unfinished writes, the state
//! machine, pending reads and the clients' pending requests; a restart recovers the storage,
//! restores the state machine from its snapshot (if any) and re-applies the log after it. A failed
//! write or sync stops the node (the WAL's contract: the failure is fatal); it restarts later like
//! a crashed node.
//!
//! Snapshots (§7): every `snapshot_every` applied entries, at the start of a tick (so the
//! checkers have seen every commit before the log behind it goes), the node snapshots its state
//! machine at its applied index and compacts its log there. A snapshot from the leader replaces
//! the log when its write completes, and the state machine is restored from it.
//!
//! Leases (the server's driver does the same): before applying, the store's clock is set to now;
//! when the node becomes leader it extends every lease's deadline by one election timeout
//! (`lease_promote`) before anything else; on each tick the leader proposes a revoke for every
//! lease whose deadline passed (`expired_leases`); keep-alives go to the leader's store, not
//! through the log, and only once the leader has applied an entry of its own term (by then
//! every revoke an earlier leader proposed that will ever commit is applied, so no keep-alive is
//! acknowledged for a lease whose revoke is about to take effect).
//!
//! Reads (thesis §6.4): a client's read is handed to the core (`read_index`, as ReadIndex or
//! lease on the leader, forwarded to the leader on a follower); once the core releases it with a
//! read index and the state machine has applied that index, the node answers from its state
//! machine.
//!
//! A pause freezes the process: no ticks, no input handled. On resume the node first catches up
//! on the ticks it missed, as a server whose ticks follow a monotonic clock does, and only then
//! handles what arrived meanwhile. Leases rest on every node's ticks keeping pace with time: a
//! leader that resumed and served a lease read before catching up would trust a lease that
//! expired while it was frozen.
//!
//! Invariants: `Ready`s are persisted in the order taken; nothing a `Ready` promises leaves before
//! its write completes; a paused node neither ticks nor handles messages or disk completions (they
//! wait until it resumes, after the missed ticks); a read is answered only once `applied` reaches
//! its read index.

use std::collections::{BTreeMap, VecDeque};

use raftkv_raft::{
    ConfState, Config, Entry, Error, Index, MemStorage, MemberChange, Message, NodeId, Raft,
    RawNode, ReadMode, ReadState, Ready, ReadyAck, Role, Storage, Term,
};
use raftkv_wal::Crash;

use crate::checkers::StateMachineEvent;
use crate::checkers::liveness::NodeSummary;
use crate::client::ProposeOutcome;
pub use crate::disk::{NodeDisk, NodeStorage, OpenError, StorageKind};
use crate::kv::{Command, LeaseId, Op, OpResult, StateMachine, ms, revoke_request};
use crate::network::{TICK, Time};

/// Most revokes a leader proposes per tick (the server's `LEASE_REVOKES_PER_TICK_MAX`).
const REVOKES_PER_TICK_MAX: usize = 16;
/// Milliseconds per tick (the core's default 100 ms tick).
const TICK_MS: u64 = TICK * crate::kv::MS_PER_TIME;

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

/// An answer a node owes a client.
#[derive(Clone, Copy, Debug)]
pub struct Reply {
    /// The command answered.
    pub command: Command,
    /// Its result.
    pub result: OpResult,
    /// Index of the entry that carried it (for a read outside the log: the applied index served).
    pub index: Index,
    /// Term of that entry (0 for a read outside the log).
    pub term: Term,
}

/// What a node produced while handling one input.
#[derive(Debug, Default)]
pub struct NodeOutput {
    /// Messages to put on the wire.
    pub messages: Vec<Message>,
    /// State machine changes, in order: entries applied, snapshots restored or taken.
    pub state_machine: Vec<StateMachineEvent>,
    /// Answers to clients.
    pub replies: Vec<Reply>,
    /// Disk writes completed and other storage events, for the trace.
    pub persisted: Vec<String>,
    /// When the next pending disk write completes, if any.
    pub next_write: Option<Time>,
    /// The node stopped: a write or sync failed (the WAL is unusable until a restart).
    pub stopped: Option<String>,
    /// Revokes of expired leases this node tried to propose as leader.
    pub revokes: Vec<RevokeProposal>,
}

/// A revoke a leader tried to propose for an expired lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RevokeProposal {
    /// The lease.
    pub lease: LeaseId,
    /// The entry `(index, term)` that carries it; `None` when the core refused the proposal
    /// (during a leadership transfer, say): the store lists the lease again after
    /// `lease_revoke_retry_ms`.
    pub entry: Option<(Index, Term)>,
}

/// What the leader's store said to a keep-alive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeepAliveOutcome {
    /// The lease lives `ttl` milliseconds more from now.
    Renewed(u64),
    /// No such lease (revoked, or never granted).
    NotFound,
    /// The node is not the leader, or has not applied an entry of its term yet.
    NotLeader,
    /// The node is down or paused.
    Unreachable,
}

/// A read this node accepted from a client.
#[derive(Clone, Copy, Debug)]
struct PendingRead {
    /// The client's get.
    command: Command,
    /// The read index, once the core released the read.
    index: Option<Index>,
}

/// How a node is run, beyond its Raft settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeSettings {
    /// Normal latency of a disk write.
    pub disk_latency: Time,
    /// Take a snapshot every this many applied entries (0: never).
    pub snapshot_every: u64,
    /// The stable storage.
    pub storage: StorageKind,
    /// A lease rule of the driver broken on purpose (tests of the lease checker).
    pub lease_mutation: Option<LeaseMutation>,
}

impl NodeSettings {
    /// Disk writes of `disk_latency` into `MemStorage`, no snapshots.
    pub fn new(disk_latency: Time) -> Self {
        NodeSettings {
            disk_latency,
            snapshot_every: 0,
            storage: StorageKind::Mem,
            lease_mutation: None,
        }
    }
}

/// A lease rule of the driver, broken on purpose so tests can prove the lease checker notices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseMutation {
    /// A new leader keeps the deadlines it computed as a follower instead of extending them
    /// (`lease_promote` is not called).
    NoPromote,
    /// A leader serves keep-alives before it has applied an entry of its own term, so a revoke an
    /// earlier leader proposed may still commit after it renewed the lease.
    EarlyKeepAlive,
}

/// One server.
pub struct SimNode {
    /// Its id.
    pub id: NodeId,
    /// Its Raft settings (`applied` and `seed` set on every restart).
    config: Config,
    /// How it is run.
    settings: NodeSettings,
    /// The running core; `None` while crashed.
    raw: Option<RawNode<NodeStorage>>,
    /// What survives a crash.
    disk: NodeDisk,
    /// Bumped on every crash, so completions of writes from before it are ignored.
    pub incarnation: u64,
    /// Disk writes under way, oldest first.
    writes: VecDeque<PendingWrite>,
    /// Current latency of a disk write.
    disk_latency: Time,
    /// Paused: no ticks, no input handled.
    paused: bool,
    /// Ticks that came due while paused, delivered on resume.
    missed_ticks: u64,
    /// Messages that arrived while paused.
    inbox: VecDeque<Message>,
    /// The state machine.
    kv: StateMachine,
    /// Last index applied to `kv` (or restored into it from a snapshot).
    applied: Index,
    /// Proposals this node accepted, by index: the term they were appended in and the command,
    /// answered when that entry is applied (an entry of another term there overwrote it).
    waiting: BTreeMap<Index, (Term, Command)>,
    /// The time of the latest input (the lease clock of what gets applied).
    now: Time,
    /// The term in which the node, as leader, last extended its leases.
    promoted: Option<Term>,
    /// Reads this node accepted, by context.
    reads: BTreeMap<u64, PendingRead>,
}

impl SimNode {
    /// A fresh node with an empty disk.
    pub fn new(config: Config, settings: NodeSettings) -> Result<Self, String> {
        let (disk, storage) = NodeDisk::new(settings.storage)?;
        let raw = RawNode::new(&config, storage).map_err(|e| e.to_string())?;
        Ok(SimNode {
            id: config.id,
            config,
            settings,
            raw: Some(raw),
            disk,
            incarnation: 0,
            writes: VecDeque::new(),
            disk_latency: settings.disk_latency,
            paused: false,
            missed_ticks: 0,
            inbox: VecDeque::new(),
            kv: StateMachine::new(),
            applied: 0,
            waiting: BTreeMap::new(),
            now: 0,
            promoted: None,
            reads: BTreeMap::new(),
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
    pub fn raft(&self) -> Option<&Raft<NodeStorage>> {
        self.raw.as_ref().map(RawNode::raft)
    }

    /// The membership the node is in, as it knows it (while running).
    pub fn conf_state(&self) -> Option<&ConfState> {
        self.raft().map(Raft::conf_state)
    }

    /// The disk's durable image: exactly what a crash would keep.
    pub fn disk(&self) -> &MemStorage {
        self.disk.image(self.raw.as_ref().map(RawNode::storage))
    }

    /// The node's disk.
    pub fn node_disk(&self) -> &NodeDisk {
        &self.disk
    }

    /// The node's whole log: durable part and in-memory tail while running, the disk while down.
    pub fn log(&self) -> HeldLog {
        match self.raft() {
            Some(raft) => {
                let log = raft.raft_log();
                let first = log.first_index();
                HeldLog {
                    prev_term: log.term(first - 1).unwrap_or(0),
                    first_index: first,
                    entries: log
                        .slice(first, log.last_index() + 1, u64::MAX)
                        .unwrap_or_default(),
                }
            }
            None => HeldLog::of_disk(self.disk()),
        }
    }

    /// Last index applied to the state machine.
    pub fn applied(&self) -> Index {
        self.applied
    }

    /// The election timeout in the store's milliseconds (the extension a new leader gives leases).
    pub fn election_timeout_ms(&self) -> u64 {
        u64::from(self.config.election_timeout_ticks) * TICK_MS
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
            members: raft.map_or_else(Vec::new, |r| r.conf_state().members().into_iter().collect()),
        }
    }

    fn running(&mut self) -> Option<&mut RawNode<NodeStorage>> {
        if self.paused {
            return None;
        }
        self.raw.as_mut()
    }

    /// One tick of the node's clock (after a snapshot, when one is due).
    pub fn tick(&mut self, now: Time, out: &mut NodeOutput) {
        if self.paused && self.raw.is_some() {
            self.missed_ticks += 1;
        }
        if self.running().is_none() {
            return;
        }
        self.maybe_snapshot(out);
        if let Some(raw) = self.running() {
            raw.tick();
        }
        self.drain(now, out);
        self.revoke_expired(now, out);
    }

    /// As leader: proposes a revoke for every lease whose deadline passed.
    fn revoke_expired(&mut self, now: Time, out: &mut NodeOutput) {
        if self
            .running()
            .is_none_or(|raw| raw.raft().role() != Role::Leader)
        {
            return;
        }
        let expired = self
            .kv
            .store_mut()
            .expired_leases(ms(now), REVOKES_PER_TICK_MAX);
        if expired.is_empty() {
            return;
        }
        for lease in expired {
            let Some(raw) = self.running() else {
                break;
            };
            let term = raw.raft().term();
            match raw.propose(revoke_request(lease)) {
                Ok(index) => {
                    out.persisted.push(format!(
                        "lease {lease} expired: proposed its revoke at ({index},{term})"
                    ));
                    let entry = Some((index, term));
                    out.revokes.push(RevokeProposal { lease, entry });
                }
                Err(error) => {
                    out.persisted
                        .push(format!("lease {lease} expired: revoke refused ({error})"));
                    out.revokes.push(RevokeProposal { lease, entry: None });
                }
            }
        }
        self.drain(now, out);
    }

    /// A keep-alive of `lease` arrives (the simulator routes it to the current leader): the
    /// leader's store renews the lease's deadline to now + TTL. Refused by a node that is not the
    /// leader or has not applied an entry of its own term yet.
    pub fn keep_alive(&mut self, lease: LeaseId, now: Time) -> KeepAliveOutcome {
        let applied = self.applied;
        let early = self.settings.lease_mutation == Some(LeaseMutation::EarlyKeepAlive);
        let Some(raw) = self.running() else {
            return KeepAliveOutcome::Unreachable;
        };
        let raft = raw.raft();
        let term = raft.term();
        let caught_up = raft.raft_log().term(applied).ok() == Some(term) || early;
        if raft.role() != Role::Leader || !caught_up {
            return KeepAliveOutcome::NotLeader;
        }
        match self.kv.store_mut().lease_keep_alive(lease, ms(now)) {
            Ok(ttl) => KeepAliveOutcome::Renewed(ttl),
            Err(_) => KeepAliveOutcome::NotFound,
        }
    }

    /// A node that has just become leader extends every lease by an election timeout before it
    /// does anything else.
    fn maybe_promote(&mut self, now: Time, out: &mut NodeOutput) {
        let Some(raft) = self.raw.as_ref().map(RawNode::raft) else {
            return;
        };
        if raft.role() != Role::Leader || self.promoted == Some(raft.term()) {
            return;
        }
        self.promoted = Some(raft.term());
        if self.settings.lease_mutation == Some(LeaseMutation::NoPromote) {
            return;
        }
        let extend = self.election_timeout_ms();
        self.kv.store_mut().lease_promote(ms(now), extend);
        out.persisted.push(format!(
            "leads: extended every lease to now + ttl + {extend} ms"
        ));
    }

    /// Starts an election now (the explorer's stand-in for an election timeout).
    pub fn campaign(&mut self, now: Time, out: &mut NodeOutput) {
        if let Some(raw) = self.running() {
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
        let Some(raw) = self.running() else {
            return ProposeOutcome::Unreachable;
        };
        let term = raw.raft().term();
        let outcome = match raw.propose(command.encode()) {
            Ok(index) => {
                self.waiting.insert(index, (term, command));
                ProposeOutcome::Accepted(index)
            }
            Err(error) => refusal(error),
        };
        self.drain(now, out);
        outcome
    }

    /// A client reads here, outside the log: the core is asked for a read index (`context`
    /// identifies this attempt), and the node answers once it has applied that index.
    pub fn read(
        &mut self,
        command: Command,
        context: u64,
        mode: ReadMode,
        now: Time,
        out: &mut NodeOutput,
    ) -> ProposeOutcome {
        let Some(raw) = self.running() else {
            return ProposeOutcome::Unreachable;
        };
        let outcome = match raw.read_index(context, mode) {
            Ok(()) => {
                let read = PendingRead {
                    command,
                    index: None,
                };
                self.reads.insert(context, read);
                ProposeOutcome::Accepted(0)
            }
            Err(error) => refusal(error),
        };
        self.drain(now, out);
        outcome
    }

    /// The leader is asked to change the membership.
    pub fn propose_conf_change(
        &mut self,
        changes: Vec<MemberChange>,
        now: Time,
        out: &mut NodeOutput,
    ) -> Result<Index, Error> {
        let raw = self.running().ok_or(Error::NotLeader { leader: None })?;
        let result = raw.propose_conf_change(changes);
        self.drain(now, out);
        result
    }

    /// The leader is asked to hand leadership to `target`.
    pub fn transfer_leader(
        &mut self,
        target: NodeId,
        now: Time,
        out: &mut NodeOutput,
    ) -> Result<(), Error> {
        let raw = self.running().ok_or(Error::NotLeader { leader: None })?;
        let result = raw.transfer_leader(target);
        self.drain(now, out);
        result
    }

    /// Disk writes due by `now` complete (a scheduled completion event).
    pub fn on_disk(&mut self, now: Time, out: &mut NodeOutput) {
        if self.running().is_some() {
            self.drain(now, out);
        }
    }

    /// Takes a snapshot of the state machine at the applied index and compacts the log there,
    /// when `snapshot_every` entries were applied since the log's first index.
    fn maybe_snapshot(&mut self, out: &mut NodeOutput) {
        let every = self.settings.snapshot_every;
        let Some(raw) = self.raw.as_mut() else {
            return;
        };
        let log = raw.raft().raft_log();
        let index = log.applied();
        if every == 0 || index < log.first_index() - 1 + every || index != self.applied {
            return;
        }
        let Ok(snapshot) = raw.create_snapshot(index, self.kv.snapshot()) else {
            return;
        };
        let (term, bytes) = (snapshot.metadata.term, snapshot.data.len());
        if let Err(reason) = self.disk.compact(raw.storage_mut(), snapshot) {
            self.halt(reason, out);
            return;
        }
        out.persisted.push(format!(
            "took a snapshot at ({index},{term}) of {bytes} bytes, compacted"
        ));
        out.state_machine.push(StateMachineEvent::Snapshotted {
            index,
            term,
            digest: self.kv.digest(),
        });
    }

    /// Takes every `Ready`, sends what may leave at once, and completes the disk writes due by
    /// `now` (a write's completion may make more output ready, hence the loop).
    fn drain(&mut self, now: Time, out: &mut NodeOutput) {
        self.now = now;
        loop {
            let mut progressed = false;
            while let Some(raw) = self.raw.as_mut().filter(|raw| raw.has_ready()) {
                let mut ready = raw.ready();
                out.messages.append(&mut ready.messages);
                if let Err(reason) = self.disk.write(raw.storage_mut(), &ready) {
                    self.halt(reason, out);
                    return;
                }
                for read in std::mem::take(&mut ready.read_states) {
                    self.on_read_state(read);
                }
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
        self.maybe_promote(now, out);
        self.serve_reads(out);
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
        if let Err(reason) = self.disk.complete(raw.storage_mut(), &ready) {
            self.halt(reason, out);
            return;
        }
        // The contract's order: snapshot, then hard state and entries.
        if let Some(snapshot) = &ready.snapshot {
            let (index, term) = (snapshot.metadata.index, snapshot.metadata.term);
            out.persisted.push(format!(
                "installed the leader's snapshot at ({index},{term})"
            ));
            self.kv = restore(&snapshot.data, out);
            self.applied = index;
            // Proposals the snapshot covers are never applied here: nothing to answer.
            self.waiting = self.waiting.split_off(&(index + 1));
            out.state_machine.push(StateMachineEvent::Restored {
                index,
                term,
                digest: self.kv.digest(),
            });
        }
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
        let effect = self.kv.apply(&entry, ms(self.now));
        if let Some((lease, _)) = effect.granted {
            let remaining = self
                .kv
                .store()
                .lease_time_to_live(lease, ms(self.now))
                .ok()
                .and_then(|status| status.remaining_ms);
            out.persisted.push(format!(
                "applied the grant of lease {lease} at {}: expires in {remaining:?} ms",
                entry.index
            ));
        }
        if let Some((term, command)) = self.waiting.remove(&entry.index)
            && term == entry.term
            && let Some(result) = effect.result
        {
            if let Some(error) = &effect.error {
                out.persisted
                    .push(format!("applied {command} at {}: {error}", entry.index));
            }
            out.replies.push(Reply {
                command,
                result,
                index: entry.index,
                term: entry.term,
            });
        }
        let digest = self.kv.digest();
        out.state_machine.push(StateMachineEvent::Applied {
            entry,
            digest,
            effect,
        });
    }

    /// The core released a read: note its index (reads of other incarnations are unknown here).
    fn on_read_state(&mut self, read: ReadState) {
        if let Some(pending) = self.reads.get_mut(&read.context) {
            pending.index = Some(read.index);
        }
    }

    /// Answers every released read whose index the state machine has reached.
    fn serve_reads(&mut self, out: &mut NodeOutput) {
        let applied = self.applied;
        let ready: Vec<u64> = self
            .reads
            .iter()
            .filter(|(_, r)| r.index.is_some_and(|index| index <= applied))
            .map(|(&context, _)| context)
            .collect();
        for context in ready {
            let Some(read) = self.reads.remove(&context) else {
                continue;
            };
            let Op::Get { key } = read.command.op else {
                continue;
            };
            out.replies.push(Reply {
                command: read.command,
                result: OpResult::Read(self.kv.get(key)),
                index: applied,
                term: 0,
            });
        }
    }

    /// A write or sync failed: the node stops at once (what the failed write promised never
    /// leaves); the simulator crashes its disk and restarts it later.
    fn halt(&mut self, reason: String, out: &mut NodeOutput) {
        out.stopped = Some(reason);
        out.next_write = None;
        self.stop();
    }

    /// Crash: the process stops and the disk suffers a power loss of `crash`'s kind.
    pub fn crash(&mut self, crash: Crash) {
        self.stop();
        self.disk.power_loss(crash);
    }

    /// The process stops: keep the disk, lose everything else.
    fn stop(&mut self) {
        if let Some(mut raw) = self.raw.take() {
            let storage = std::mem::replace(raw.storage_mut(), NodeStorage::Mem(Box::default()));
            self.disk.shut_down(storage);
        }
        self.incarnation += 1;
        self.writes.clear();
        self.inbox.clear();
        self.waiting.clear();
        self.reads.clear();
        self.kv = StateMachine::new();
        self.promoted = None;
        self.applied = 0;
        self.paused = false;
        self.missed_ticks = 0;
    }

    /// Restart a crashed node from its disk: the storage recovered, the state machine from the
    /// storage's snapshot.
    pub fn restart(&mut self, now: Time, out: &mut NodeOutput) -> Result<(), OpenError> {
        if self.raw.is_some() {
            return Ok(());
        }
        let storage = self.disk.open()?;
        let snapshot = storage.snapshot();
        let (index, term) = (snapshot.metadata.index, snapshot.metadata.term);
        self.kv = match index {
            0 => StateMachine::new(),
            _ => restore(&snapshot.data, out),
        };
        self.applied = index;
        let mut config = self.config.clone();
        config.applied = index;
        config.seed = self.config.seed ^ self.incarnation.wrapping_mul(0x9E37_79B9);
        self.raw = Some(RawNode::new(&config, storage).map_err(OpenError::Core)?);
        out.state_machine.push(StateMachineEvent::Restored {
            index,
            term,
            digest: self.kv.digest(),
        });
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
        for _ in 0..std::mem::take(&mut self.missed_ticks) {
            self.tick(now, out);
        }
        let mut refused = Vec::new();
        while let Some(message) = self.inbox.pop_front() {
            refused.extend(self.receive(message, now, out));
        }
        self.drain(now, out);
        refused
    }

    /// Makes the next sync of the node's disk fail (a no-op with `MemStorage`, which never syncs).
    pub fn fail_next_sync(&mut self) {
        self.disk.fail_next_sync();
    }

    /// Disk writes take `latency` from now on (`None`: back to normal).
    pub fn set_disk_latency(&mut self, latency: Option<Time>) {
        self.disk_latency = latency.unwrap_or(self.settings.disk_latency);
    }
}

/// The state machine a snapshot holds; an empty one (which State Machine Safety then reports) when
/// the store refuses the snapshot.
fn restore(data: &[u8], out: &mut NodeOutput) -> StateMachine {
    StateMachine::restore(data).unwrap_or_else(|error| {
        out.persisted
            .push(format!("the store refused the snapshot: {error}"));
        StateMachine::new()
    })
}

/// What a refusal of the core tells a client.
fn refusal(error: Error) -> ProposeOutcome {
    match error {
        Error::NotLeader { leader } => ProposeOutcome::NotLeader(leader),
        _ => ProposeOutcome::Overloaded,
    }
}

/// A log as held by one node: its entries and the term of the entry just before them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct HeldLog {
    /// Term of the entry before the first held one (the snapshot's term; 0 before index 1).
    pub prev_term: Term,
    /// Index of the first held entry.
    pub first_index: Index,
    /// The entries, contiguous from `first_index`.
    pub entries: Vec<Entry>,
}

impl HeldLog {
    /// What a disk holds.
    pub fn of_disk(disk: &MemStorage) -> HeldLog {
        let first = disk.first_index();
        HeldLog {
            prev_term: disk.term(first - 1).unwrap_or(0),
            first_index: first,
            entries: disk.all_entries().to_vec(),
        }
    }
}
