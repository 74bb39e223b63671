//! One simulated server: the replica engine (`raftkv_replica::Replica`, the same code the server
//! runs) over its simulated disk (`disk`), and the faults it can suffer (crash, pause, slow disk,
//! failed sync). This file adds only what the engine leaves to its driver: time, the disk's
//! latency, the network's messages and the clients' routing. Every decision of the node loop
//! (applying, answering writes and reads, leases, snapshots, joins and promotion, history
//! compaction, publishing) is the engine's.
//!
//! The engine's `Persist`s are handed to the disk when taken and are durable when their simulated
//! write completes, in the order taken; only then does the engine hear `persisted`. A snapshot
//! the engine asks for takes a disk write's time to produce (its view is encoded when it
//! completes, as the server's snapshot worker does on its thread). A crash keeps the disk (minus
//! what its power loss drops) and loses everything else: the engine, unfinished writes and
//! snapshots, the clients' pending requests; a restart recovers the storage and starts a new
//! engine on it (which restores the state from the storage's snapshot and re-applies the log
//! after it). A failed write or sync stops the node (the WAL's contract: the failure is fatal);
//! it restarts later like a crashed node.
//!
//! A pause freezes the process: no ticks, no input handled. On resume the node first catches up
//! on the ticks it missed, as a server whose ticks follow a monotonic clock does, and only then
//! handles what arrived meanwhile.
//!
//! Invariants: `Persist`s complete in the order taken; a paused node neither ticks nor handles
//! messages or disk completions (they wait until it resumes, after the missed ticks).

use std::collections::{BTreeMap, VecDeque};

use raftkv_raft::{
    ConfState, Config, Entry, Error, Index, MemStorage, Message, NodeId, Raft, ReadMode, Role,
    Storage, Term,
};
use raftkv_replica::{
    Answer, Event, Member, Output, Own, Persist, Replica, RequestError, SnapshotTask,
};
use raftkv_wal::Crash;

use crate::checkers::StateMachineEvent;
use crate::checkers::liveness::NodeSummary;
use crate::client::ProposeOutcome;
pub use crate::disk::{NodeDisk, NodeStorage, OpenError, StorageKind};
use crate::kv::{self, Command, LeaseId, Op, OpResult, ms};
use crate::network::{TICK, Time};

mod membership;

/// A lease rule of the engine broken on purpose (tests of the lease checker).
pub use raftkv_replica::Mutation as EngineMutation;

/// Seeds drawn to snapshot every this many entries or more also apply the server's log-size
/// rule for snapshots, with this fraction.
const SNAPSHOT_LOG_FRACTION_FROM: u64 = 40;
/// See `SNAPSHOT_LOG_FRACTION_FROM`.
const SNAPSHOT_LOG_FRACTION: u64 = 4;

/// Milliseconds per tick (the core's default 100 ms tick).
const TICK_MS: u64 = TICK * crate::kv::MS_PER_TIME;
/// Revisions of key-value history the simulated nodes keep (small, so runs compact often).
const HISTORY_RETAINED_REVISIONS: i64 = 40;
/// Ticks between the leader's checks for history to compact.
const HISTORY_COMPACT_INTERVAL_TICKS: u64 = 10;

/// A `Persist` whose disk write is under way.
#[derive(Debug)]
struct PendingWrite {
    /// What to persist.
    persist: Persist,
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
    /// When the next pending disk write or snapshot completes, if any.
    pub next_write: Option<Time>,
    /// The node stopped: a write or sync failed (the WAL is unusable until a restart).
    pub stopped: Option<String>,
    /// Revokes of expired leases this node tried to propose as leader.
    pub revokes: Vec<RevokeProposal>,
    /// What the engine proposed on its own and the core accepted (promotions, publishes,
    /// history compactions, revokes).
    pub proposed: Vec<Own>,
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

/// How a node is run, beyond its Raft settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeSettings {
    /// Normal latency of a disk write (and of producing a snapshot).
    pub disk_latency: Time,
    /// Take a snapshot every this many applied entries (0: never).
    pub snapshot_every: u64,
    /// The stable storage.
    pub storage: StorageKind,
    /// A rule of the engine broken on purpose (tests of the lease and hold checkers).
    pub engine_mutation: Option<EngineMutation>,
}

impl NodeSettings {
    /// Disk writes of `disk_latency` into `MemStorage`, no snapshots.
    pub fn new(disk_latency: Time) -> Self {
        NodeSettings {
            disk_latency,
            snapshot_every: 0,
            storage: StorageKind::Mem,
            engine_mutation: None,
        }
    }
}

/// The registry record a simulated node publishes.
pub fn member(id: NodeId) -> Member {
    Member {
        id,
        name: format!("n{id}"),
        peer_url: format!("http://n{id}:7001"),
        client_url: format!("http://n{id}:7000"),
    }
}

/// What a client request waits for.
#[derive(Clone, Copy, Debug)]
enum Waiting {
    /// A command proposed through the log.
    Write(Command),
    /// A get served outside the log once the read is released.
    Read(Command),
    /// A keep-alive (answered at once).
    KeepAlive,
    /// A membership change.
    Membership,
}

/// One server.
pub struct SimNode {
    /// Its id.
    pub id: NodeId,
    /// Its Raft settings (`seed` changed on every restart).
    config: Config,
    /// How it is run.
    settings: NodeSettings,
    /// The running engine; `None` while crashed.
    engine: Option<Replica<NodeStorage>>,
    /// What survives a crash.
    disk: NodeDisk,
    /// Bumped on every crash, so completions of writes from before it are ignored.
    pub incarnation: u64,
    /// Disk writes under way, oldest first.
    writes: VecDeque<PendingWrite>,
    /// Snapshots being produced, with when each completes.
    snapshots: VecDeque<(Time, SnapshotTask)>,
    /// Current latency of a disk write.
    disk_latency: Time,
    /// Paused: no ticks, no input handled.
    paused: bool,
    /// Ticks that came due while paused, delivered on resume.
    missed_ticks: u64,
    /// Messages that arrived while paused.
    inbox: VecDeque<Message>,
    /// Requests handed to the engine, by request id.
    waiting: BTreeMap<u64, Waiting>,
    /// Next request id.
    next_request: u64,
    /// The answer to the latest keep-alive.
    keep_alive: Option<KeepAliveOutcome>,
    /// Digests of the snapshots being produced, by index (reported once taken).
    snapshot_digests: BTreeMap<Index, u64>,
}

impl SimNode {
    /// A fresh node with an empty disk.
    pub fn new(config: Config, settings: NodeSettings) -> Result<Self, String> {
        let (disk, storage) = NodeDisk::new(settings.storage)?;
        let mut node = SimNode {
            id: config.id,
            config,
            settings,
            engine: None,
            disk,
            incarnation: 0,
            writes: VecDeque::new(),
            snapshots: VecDeque::new(),
            disk_latency: settings.disk_latency,
            paused: false,
            missed_ticks: 0,
            inbox: VecDeque::new(),
            waiting: BTreeMap::new(),
            next_request: 1,
            keep_alive: None,
            snapshot_digests: BTreeMap::new(),
        };
        let engine = Replica::new(&node.config, storage, node.engine_settings(), 0)
            .map_err(|e| e.to_string())?;
        node.engine = Some(engine);
        Ok(node)
    }

    /// The engine's settings: the simulator's timing, this node's published record, and every
    /// applied entry recorded for the checkers.
    fn engine_settings(&self) -> raftkv_replica::Settings {
        raftkv_replica::Settings {
            tick_ms: TICK_MS,
            snapshot_entries: self.settings.snapshot_every,
            // The server's rule (a snapshot waits for the log to pay for it) on the seeds that
            // snapshot least often; the others snapshot by entry count alone, as often as drawn.
            snapshot_log_fraction: if self.settings.snapshot_every >= SNAPSHOT_LOG_FRACTION_FROM {
                SNAPSHOT_LOG_FRACTION
            } else {
                0
            },
            history_retained_revisions: HISTORY_RETAINED_REVISIONS,
            history_compact_interval_ticks: HISTORY_COMPACT_INTERVAL_TICKS,
            me: Some(member(self.id)),
            record_applies: true,
            mutation: self.settings.engine_mutation,
            ..raftkv_replica::Settings::default()
        }
    }

    /// Whether the node is running (not crashed).
    pub fn is_up(&self) -> bool {
        self.engine.is_some()
    }

    /// Whether the node is paused.
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// The core, while running.
    pub fn raft(&self) -> Option<&Raft<NodeStorage>> {
        self.engine.as_ref().map(Replica::raft)
    }

    /// The engine, while running.
    pub fn engine(&self) -> Option<&Replica<NodeStorage>> {
        self.engine.as_ref()
    }

    /// The membership the node is in, as it knows it (while running).
    pub fn conf_state(&self) -> Option<&ConfState> {
        self.raft().map(Raft::conf_state)
    }

    /// The disk's durable image: exactly what a crash would keep.
    pub fn disk(&self) -> &MemStorage {
        self.disk.image(self.engine.as_ref().map(Replica::storage))
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
        self.engine.as_ref().map_or(0, |e| e.state().applied())
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
        if let Some(engine) = &self.engine {
            engine.hash_in_flight(state);
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
            applied: self.applied(),
            members: raft.map_or_else(Vec::new, |r| r.conf_state().members().into_iter().collect()),
        }
    }

    fn running(&mut self) -> Option<&mut Replica<NodeStorage>> {
        if self.paused {
            return None;
        }
        self.engine.as_mut()
    }

    /// Hands a request to the running engine under a new request id (remembering what waits
    /// for it); `None` while the node is down or paused.
    fn submit<T>(
        &mut self,
        waiting: Waiting,
        request: impl FnOnce(&mut Replica<NodeStorage>, u64) -> T,
    ) -> Option<(u64, T)> {
        let id = self.next_request;
        let engine = self.engine.as_mut().filter(|_| !self.paused)?;
        let result = request(engine, id);
        self.next_request += 1;
        self.waiting.insert(id, waiting);
        Some((id, result))
    }

    /// One tick of the node's clock.
    pub fn tick(&mut self, now: Time, out: &mut NodeOutput) {
        if self.paused && self.engine.is_some() {
            self.missed_ticks += 1;
        }
        let Some(engine) = self.running() else {
            return;
        };
        engine.tick(ms(now));
        self.drain(now, out);
    }

    /// A keep-alive of `lease` arrives (the simulator routes it to the current leader).
    pub fn keep_alive(&mut self, lease: LeaseId, now: Time) -> KeepAliveOutcome {
        // A keep-alive produces only its answer (no `Ready`), so nothing else is taken here.
        let submitted = self.submit(Waiting::KeepAlive, |engine, id| {
            engine.keep_alive(ms(now), id, lease);
            engine.take_replies()
        });
        let Some((_, replies)) = submitted else {
            return KeepAliveOutcome::Unreachable;
        };
        let mut out = NodeOutput::default();
        for (rid, result) in replies {
            self.on_reply(rid, result, &mut Vec::new(), &mut out);
        }
        self.keep_alive
            .take()
            .unwrap_or(KeepAliveOutcome::NotLeader)
    }

    /// Starts an election now (the explorer's stand-in for an election timeout).
    pub fn campaign(&mut self, now: Time, out: &mut NodeOutput) {
        if let Some(engine) = self.running() {
            engine.campaign();
            self.drain(now, out);
        }
    }

    /// A message arrives. Returns the core's refusal of a malformed message, if any.
    pub fn receive(&mut self, message: Message, now: Time, out: &mut NodeOutput) -> Option<Error> {
        if self.paused {
            self.inbox.push_back(message);
            return None;
        }
        let engine = self.engine.as_mut()?;
        let refused = engine.step(vec![message]).pop();
        self.drain(now, out);
        refused
    }

    /// A client proposes `command` here.
    pub fn propose(&mut self, command: Command, now: Time, out: &mut NodeOutput) -> ProposeOutcome {
        let submitted = self.submit(Waiting::Write(command), |engine, id| {
            engine.propose(id, command.encode());
        });
        match submitted {
            Some((id, ())) => self.outcome(id, now, out),
            None => ProposeOutcome::Unreachable,
        }
    }

    /// A client reads here, outside the log: the engine asks the core for a read index and
    /// answers once it has applied that index.
    pub fn read(
        &mut self,
        command: Command,
        mode: ReadMode,
        now: Time,
        out: &mut NodeOutput,
    ) -> ProposeOutcome {
        match self.submit(Waiting::Read(command), |engine, id| engine.read(id, mode)) {
            Some((id, ())) => self.outcome(id, now, out),
            None => ProposeOutcome::Unreachable,
        }
    }

    /// Whether the request `id` was accepted: it is still waiting after the engine's output.
    fn outcome(&mut self, id: u64, now: Time, out: &mut NodeOutput) -> ProposeOutcome {
        let refused = self.drain(now, out);
        match refused.into_iter().find(|(rid, _)| *rid == id) {
            Some((_, RequestError::NotLeader { leader })) => ProposeOutcome::NotLeader(leader),
            Some(_) => ProposeOutcome::Overloaded,
            None => ProposeOutcome::Accepted(0),
        }
    }

    /// Disk writes and snapshots due by `now` complete (a scheduled completion event).
    pub fn on_disk(&mut self, now: Time, out: &mut NodeOutput) {
        if self.running().is_some() {
            self.drain(now, out);
        }
    }

    /// Carries out the engine's output and completes the disk writes and snapshots due by `now`
    /// (a completion may make more output, hence the loop). Returns the refusals among the
    /// replies.
    fn drain(&mut self, now: Time, out: &mut NodeOutput) -> Vec<(u64, RequestError)> {
        let mut refused = Vec::new();
        loop {
            let Some(engine) = self.engine.as_mut() else {
                return refused;
            };
            let output = engine.take_output(ms(now));
            let mut progressed = !output.is_empty();
            if let Err(reason) = self.carry_out(output, now, out, &mut refused) {
                self.halt(reason, out);
                return refused;
            }
            while self.writes.front().is_some_and(|w| w.done_at <= now) {
                if let Some(write) = self.writes.pop_front()
                    && let Err(reason) = self.complete_write(write, now, out)
                {
                    self.halt(reason, out);
                    return refused;
                }
                progressed = true;
            }
            while self.snapshots.front().is_some_and(|(at, _)| *at <= now) {
                if let Some((_, task)) = self.snapshots.pop_front()
                    && let Some(engine) = self.engine.as_mut()
                {
                    engine.snapshot_written(task.encode());
                }
                progressed = true;
            }
            if !progressed {
                break;
            }
        }
        let next_snapshot = self.snapshots.front().map(|(at, _)| *at);
        out.next_write = match (self.writes.front().map(|w| w.done_at), next_snapshot) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        refused
    }

    /// Sends, writes, schedules and routes what one output holds.
    fn carry_out(
        &mut self,
        output: Output,
        now: Time,
        out: &mut NodeOutput,
        refused: &mut Vec<(u64, RequestError)>,
    ) -> Result<(), String> {
        let Output {
            messages,
            persist,
            snapshot_tasks,
            compact,
            replies,
            events,
        } = output;
        out.messages.extend(messages);
        for event in events {
            self.on_event(event, out);
        }
        for persist in persist {
            if let Some(engine) = self.engine.as_mut() {
                self.disk.write(engine.storage_mut(), &persist)?;
            }
            let after = self.writes.back().map_or(0, |w| w.done_at);
            let done_at = (now + self.disk_latency).max(after);
            self.writes.push_back(PendingWrite { persist, done_at });
        }
        for task in snapshot_tasks {
            self.snapshot_digests
                .insert(task.metadata.index, task.digest());
            self.snapshots.push_back((now + self.disk_latency, task));
        }
        for snapshot in compact {
            if let Some(engine) = self.engine.as_mut() {
                self.disk.compact(engine.storage_mut(), snapshot)?;
            }
        }
        for (id, result) in replies {
            self.on_reply(id, result, refused, out);
        }
        Ok(())
    }

    fn on_reply(
        &mut self,
        id: u64,
        result: Result<Answer, RequestError>,
        refused: &mut Vec<(u64, RequestError)>,
        out: &mut NodeOutput,
    ) {
        let Some(waiting) = self.waiting.remove(&id) else {
            return;
        };
        match (waiting, result) {
            (Waiting::KeepAlive, Ok(Answer::KeepAlive(Ok(ttl)))) => {
                self.keep_alive = Some(KeepAliveOutcome::Renewed(ttl));
            }
            (Waiting::KeepAlive, Ok(_)) => self.keep_alive = Some(KeepAliveOutcome::NotFound),
            (Waiting::KeepAlive, Err(_)) => self.keep_alive = Some(KeepAliveOutcome::NotLeader),
            (
                Waiting::Write(command),
                Ok(Answer::Applied {
                    index,
                    term,
                    applied,
                }),
            ) => {
                if let Some(result) = kv::op_result(&command.op, &applied) {
                    out.replies.push(Reply {
                        command,
                        result,
                        index,
                        term,
                    });
                }
            }
            (Waiting::Read(command), Ok(Answer::Read { applied })) => {
                let Op::Get { key } = command.op else {
                    return;
                };
                let Some(engine) = self.engine.as_ref() else {
                    return;
                };
                let value = kv::get(&engine.state(), key);
                out.replies.push(Reply {
                    command,
                    result: OpResult::Read(value),
                    index: applied,
                    term: 0,
                });
            }
            // A refusal, a lost write or read: the client hears nothing and retries after its
            // timeout, as it would over a network.
            (_, Err(error)) => refused.push((id, error)),
            (_, Ok(_)) => {}
        }
    }

    fn on_event(&mut self, event: Event, out: &mut NodeOutput) {
        match event {
            Event::Applied(record) => {
                let effect = kv::effect(&record);
                if let Some((lease, ttl)) = effect.granted {
                    out.persisted.push(format!(
                        "applied the grant of lease {lease} at {}: ttl {ttl} ms",
                        record.entry.index
                    ));
                }
                if let Some(error) = &effect.error {
                    out.persisted
                        .push(format!("applied {}: {error}", record.entry.index));
                }
                out.state_machine.push(StateMachineEvent::Applied {
                    entry: record.entry,
                    digest: record.digest,
                    effect,
                });
            }
            Event::Recovered {
                index,
                term,
                digest,
            } => out.state_machine.push(StateMachineEvent::Restored {
                index,
                term,
                digest,
            }),
            Event::SnapshotInstalled {
                index,
                term,
                digest,
            } => {
                out.persisted.push(format!(
                    "installed the leader's snapshot at ({index},{term})"
                ));
                out.state_machine.push(StateMachineEvent::Restored {
                    index,
                    term,
                    digest,
                });
            }
            Event::SnapshotRequested { index } => {
                out.persisted.push(format!("snapshot at {index} requested"));
            }
            Event::SnapshotTaken { index, term, bytes } => {
                out.persisted.push(format!(
                    "took a snapshot at ({index},{term}) of {bytes} bytes, compacted"
                ));
                if let Some(digest) = self.snapshot_digests.remove(&index) {
                    out.state_machine.push(StateMachineEvent::Snapshotted {
                        index,
                        term,
                        digest,
                    });
                }
            }
            Event::LeaseRevokeProposed { lease, entry } => {
                out.persisted.push(match entry {
                    Some((index, term)) => {
                        format!("lease {lease} expired: proposed its revoke at ({index},{term})")
                    }
                    None => format!("lease {lease} expired: revoke refused"),
                });
                out.revokes.push(RevokeProposal { lease, entry });
            }
            Event::LeasesPromoted { extend_ms } => out.persisted.push(format!(
                "leads: extended every lease to now + ttl + {extend_ms} ms"
            )),
            Event::MembershipApplied { index, conf } => {
                out.persisted
                    .push(format!("applied configuration at {index}: {conf:?}"));
            }
            Event::Proposed { what, refused } => {
                out.persisted.push(match &refused {
                    None => format!("proposed {what}"),
                    Some(error) => format!("{what} refused: {error}"),
                });
                if refused.is_none() {
                    out.proposed.push(what);
                }
            }
            Event::SnapshotSkipped { index, reason } => {
                out.persisted
                    .push(format!("snapshot at {index} skipped: {reason}"));
            }
            Event::Undecodable { index } => {
                out.persisted
                    .push(format!("undecodable entry at {index} applied as a no-op"));
            }
            // The simulated clients propose no corruption-check points: every apply's digest is
            // compared across nodes already (`StateMachineEvent::Applied`).
            Event::HashCheckpoint { .. } => {}
            Event::RoleChanged { .. } | Event::RegistryChanged | Event::AppliedTo { .. } => {}
        }
    }

    /// Completes the oldest disk write regardless of time (the explorer's "disk completes" step).
    pub fn complete_oldest_write(&mut self, out: &mut NodeOutput) {
        if let Some(write) = self.writes.pop_front() {
            let now = 0;
            if let Err(reason) = self.complete_write(write, now, out) {
                self.halt(reason, out);
                return;
            }
            self.drain(now, out);
        }
    }

    /// A write completes: it is durable; the engine hears it.
    fn complete_write(
        &mut self,
        write: PendingWrite,
        now: Time,
        out: &mut NodeOutput,
    ) -> Result<(), String> {
        let Some(engine) = self.engine.as_mut() else {
            return Ok(());
        };
        self.disk.complete(engine.storage_mut(), &write.persist)?;
        let persist = &write.persist;
        if let Some((index, term)) = persist.entries.last().map(|e| (e.index, e.term)) {
            out.persisted.push(format!(
                "persisted up to ({index},{term}){}",
                persist
                    .hard_state
                    .map(|h| format!(" hs=(t{} v{:?} c{})", h.term, h.vote, h.commit))
                    .unwrap_or_default()
            ));
        } else if let Some(h) = persist.hard_state {
            out.persisted.push(format!(
                "persisted hs=(t{} v{:?} c{})",
                h.term, h.vote, h.commit
            ));
        }
        engine
            .persisted(ms(now), persist.seq, None)
            .map_err(|e| e.to_string())
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
        if let Some(mut engine) = self.engine.take() {
            let storage = std::mem::replace(engine.storage_mut(), NodeStorage::Mem(Box::default()));
            self.disk.shut_down(storage);
        }
        self.incarnation += 1;
        self.writes.clear();
        self.snapshots.clear();
        self.inbox.clear();
        self.waiting.clear();
        self.snapshot_digests.clear();
        self.paused = false;
        self.missed_ticks = 0;
    }

    /// Restart a crashed node from its disk: the storage recovered, a new engine on it.
    pub fn restart(&mut self, now: Time, out: &mut NodeOutput) -> Result<(), OpenError> {
        if self.engine.is_some() {
            return Ok(());
        }
        let storage = self.disk.open()?;
        let mut config = self.config.clone();
        config.seed = self.config.seed ^ self.incarnation.wrapping_mul(0x9E37_79B9);
        let engine = Replica::new(&config, storage, self.engine_settings(), ms(now))
            .map_err(OpenError::Engine)?;
        self.engine = Some(engine);
        self.drain(now, out);
        Ok(())
    }

    /// Pause: stop ticking and handling input.
    pub fn pause(&mut self) {
        if self.engine.is_some() {
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
