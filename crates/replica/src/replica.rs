//! The replica: the Raft node, the replicated state, and the bookkeeping of the node loop (writes
//! and reads waiting for their answers, the `Ready`s handed to the disk, the snapshot under way).
//!
//! A driver feeds it input (each with the time now, in milliseconds of a monotonic clock), then
//! calls [`Replica::take_output`] and carries out what it says: send the messages, perform the
//! `Persist`s in order and report each with [`Replica::persisted`], produce the `SnapshotTask`s and
//! report them with [`Replica::snapshot_written`], compact the storage as told, route the replies.
//! Several `Persist`s may be under way at once.
//!
//! Invariants: a `Ready`'s persisted messages leave and the core hears that its writes are durable
//! only once its `Persist` is reported, in order; its committed entries (durable here already) are
//! applied as it is taken, unless a leader's snapshot under way comes first (then once reported); a write is answered only
//! once its entry is applied with the term it was proposed in; a read only once the state has
//! applied its read index; the log is compacted only up to a snapshot whose file is durable.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use raftkv_raft::{
    Config, Entry, Index, Message, NodeId, Raft, RawNode, ReadyAck, Role, Snapshot, Storage, Term,
};

use crate::error::{ReplicaError, RequestError};
use crate::members::Member;
use crate::output::{Answer, Event, Output, Own, Persist, RequestId};
use crate::state::{self, State};

/// Outstanding writes, and outstanding reads, per node before new ones are refused.
pub const PENDING_REQUESTS_MAX: usize = 16_384;
/// A learner is promoted once its log is within this many entries of the leader's.
pub const PROMOTE_LAG_ENTRIES: u64 = 64;
/// Revisions of key-value history kept by automatic compaction (older ones are dropped, as with
/// etcd's revision auto-compaction); watches and reads at older revisions get `Compacted`.
pub const HISTORY_RETAINED_REVISIONS: i64 = 10_000;
/// Ticks between the leader's checks for history to compact.
pub const HISTORY_COMPACT_INTERVAL_TICKS: u64 = 50;
/// Expired leases the leader proposes to revoke per tick, in entries of up to
/// `raftkv_kv::LEASE_EXPIRE_IDS_MAX` (the rest follow on later ticks).
pub const LEASE_REVOKES_PER_TICK_MAX: usize = 10_000;
/// Applied entries between snapshots, by default.
pub const SNAPSHOT_ENTRIES: u64 = 10_000;
/// Ticks a read may wait for its read index before it is given up (the core does not retry a
/// lost ReadIndex round; its client has timed out by then).
pub const READ_TIMEOUT_TICKS: u64 = 100;

/// A rule of the engine (leases, learner holds), broken on purpose so tests can prove the
/// simulator notices.
#[cfg(feature = "mutations")]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mutation {
    /// A new leader keeps the deadlines it computed as a follower instead of extending them
    /// (`lease_promote` is not called).
    NoPromote,
    /// A leader serves keep-alives before it has applied an entry of its own term, so a revoke an
    /// earlier leader proposed may still commit after it renewed the lease.
    EarlyKeepAlive,
    /// The leader promotes a caught-up learner even when it is held (added as a learner on
    /// purpose, to be promoted only when asked).
    IgnoreHold,
}

/// How the replica runs, beyond its Raft settings.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Milliseconds per tick (the lease extension of a new leader is an election timeout).
    pub tick_ms: u64,
    /// Applied entries between snapshots (0: never).
    pub snapshot_entries: u64,
    /// A snapshot also waits until the entries applied since the last one hold at least
    /// 1/`snapshot_log_fraction` of that snapshot's bytes (0: `snapshot_entries` alone decides).
    /// A snapshot costs in proportion to the whole store, so this keeps its cost per entry
    /// bounded however large the store grows, for a log of at most that fraction of it.
    pub snapshot_log_fraction: u64,
    /// Ticks a read may wait for its read index.
    pub read_timeout_ticks: u64,
    /// Revisions of history automatic compaction keeps.
    pub history_retained_revisions: i64,
    /// Ticks between the leader's checks for history to compact (0: never).
    pub history_compact_interval_ticks: u64,
    /// This node's registry record as it should be published (`None`: never published).
    pub me: Option<Member>,
    /// Emit an `Event::Applied` for every entry (for checkers; costs a digest per entry).
    pub record_applies: bool,
    /// A rule to break on purpose (test builds only).
    #[cfg(feature = "mutations")]
    pub mutation: Option<Mutation>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            tick_ms: 100,
            snapshot_entries: SNAPSHOT_ENTRIES,
            snapshot_log_fraction: 0,
            read_timeout_ticks: READ_TIMEOUT_TICKS,
            history_retained_revisions: HISTORY_RETAINED_REVISIONS,
            history_compact_interval_ticks: HISTORY_COMPACT_INTERVAL_TICKS,
            me: None,
            record_applies: false,
            #[cfg(feature = "mutations")]
            mutation: None,
        }
    }
}

/// A write waiting for its entry to be applied.
#[derive(Debug)]
pub(crate) struct PendingWrite {
    /// The term it was proposed in: a different term at its index means it was overwritten.
    pub(crate) term: Term,
    /// Who waits.
    pub(crate) id: RequestId,
    /// A membership change (answered with its index) rather than a command.
    pub(crate) membership: bool,
}

/// A `Ready` whose `Persist` is under way: what to do once it is durable.
#[derive(Debug)]
pub(crate) struct InFlight {
    /// The `Persist`'s number.
    pub(crate) seq: u64,
    /// The leader's snapshot it installs.
    pub(crate) snapshot: Option<Snapshot>,
    /// Votes and acknowledgements, which vouch for what it persists.
    pub(crate) persisted_messages: Vec<Message>,
    /// Entries to apply once it is durable.
    pub(crate) committed_entries: Vec<Entry>,
    /// What to tell the core then.
    pub(crate) ack: ReadyAck,
}

/// One replica. See the module documentation.
pub struct Replica<S: Storage> {
    pub(crate) node: RawNode<S>,
    /// Shared with readers on other threads (the driver's API); locked briefly.
    pub(crate) state: Arc<Mutex<State>>,
    pub(crate) settings: Settings,
    pub(crate) id: NodeId,
    /// Election timeout in ticks (how long a shutdown waits for a transfer; publish retries).
    pub(crate) election_ticks: u64,
    pub(crate) out: Output,
    /// `Ready`s handed to the disk, oldest first.
    pub(crate) in_flight: VecDeque<InFlight>,
    pub(crate) next_seq: u64,
    /// Writes by index.
    pub(crate) writes: BTreeMap<Index, PendingWrite>,
    /// Reads waiting for their read index, by context: the tick they were issued at and who
    /// waits.
    pub(crate) reads_waiting: BTreeMap<u64, (u64, RequestId)>,
    /// Reads with a read index, waiting for apply to reach it.
    pub(crate) reads_ready: Vec<(Index, RequestId)>,
    pub(crate) next_read: u64,
    /// Index of the latest snapshot in storage (taken or installed).
    pub(crate) snapshot_index: Index,
    /// Bytes of the latest snapshot's data (taken, installed or found at start).
    pub(crate) snapshot_bytes: u64,
    /// Bytes of the entries applied since the latest snapshot was asked for or installed.
    pub(crate) log_bytes_since_snapshot: u64,
    /// The index of the snapshot being produced by the driver.
    pub(crate) snapshot_pending: Option<Index>,
    /// Ticks since start.
    pub(crate) ticks: u64,
    /// Tick of the last publish attempt.
    pub(crate) published_at: Option<u64>,
    /// The (leader, term) reads in flight were issued under; a change fails them.
    pub(crate) leadership: (Option<NodeId>, Term),
    /// Set by `shutdown`: the tick by which the replica stops even if no transfer happened.
    pub(crate) stopping: Option<u64>,
}

impl<S: Storage> Replica<S> {
    /// A replica over `storage`: the state restored from its snapshot (if any), the core
    /// started after it. A lone voter campaigns at once.
    pub fn new(
        config: &Config,
        storage: S,
        settings: Settings,
        now_ms: u64,
    ) -> Result<Self, ReplicaError> {
        let snapshot = storage
            .snapshot()
            .map_err(|e| ReplicaError::Start(e.into()))?;
        let index = snapshot.metadata.index;
        let state = match index {
            0 => State::new(state::limits()),
            _ => state::decode(index, &snapshot.data, state::limits())?,
        };
        let mut config = config.clone();
        config.applied = index;
        let node = RawNode::new(&config, storage)?;
        let id = node.raft().id();
        let mut replica = Replica {
            node,
            state: Arc::new(Mutex::new(state)),
            settings,
            id,
            election_ticks: u64::from(config.election_timeout_ticks),
            out: Output::default(),
            in_flight: VecDeque::new(),
            next_seq: 1,
            writes: BTreeMap::new(),
            reads_waiting: BTreeMap::new(),
            reads_ready: Vec::new(),
            next_read: 1,
            snapshot_index: index,
            snapshot_bytes: snapshot.data.len() as u64,
            log_bytes_since_snapshot: 0,
            snapshot_pending: None,
            ticks: 0,
            published_at: None,
            leadership: (None, 0),
            stopping: None,
        };
        let conf = replica.node.raft().tracker().conf_state();
        if conf.voters.len() == 1 && conf.voters.contains(&id) && !conf.is_joint() {
            replica.node.campaign();
        }
        replica.leadership = (replica.node.raft().leader(), replica.node.raft().term());
        let digest = replica.state().digest();
        replica.out.events.push(Event::Recovered {
            index,
            term: snapshot.metadata.term,
            digest,
        });
        replica.drain(now_ms);
        Ok(replica)
    }

    /// The replicated state, shared (lock it briefly, never across a wait).
    pub fn shared_state(&self) -> Arc<Mutex<State>> {
        self.state.clone()
    }

    /// The replicated state, locked (a poisoned lock is taken over: the engine asserts its own
    /// invariants, so a panic elsewhere left nothing half-applied).
    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The core, for inspection.
    pub fn raft(&self) -> &Raft<S> {
        self.node.raft()
    }

    /// The storage, for inspection.
    pub fn storage(&self) -> &S {
        self.node.storage()
    }

    /// The storage, to carry out `Persist`s and compactions in.
    pub fn storage_mut(&mut self) -> &mut S {
        self.node.storage_mut()
    }

    /// Index of the latest snapshot in storage.
    pub fn snapshot_index(&self) -> Index {
        self.snapshot_index
    }

    /// `Persist`s handed out and not yet reported.
    pub fn persists_in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Feeds the writes under way (content, not timing) to `hasher`, for state exploration.
    pub fn hash_in_flight(&self, hasher: &mut impl std::hash::Hasher) {
        for flight in &self.in_flight {
            hasher.write(format!("{flight:?}").as_bytes());
        }
    }

    /// Whether a shutdown finished: leadership handed over, or the wait for it ran out.
    pub fn is_stopped(&self) -> bool {
        self.stopping
            .is_some_and(|deadline| self.raft().role() != Role::Leader || self.ticks >= deadline)
    }

    /// Everything produced since the last call. Takes every `Ready` the core has first.
    pub fn take_output(&mut self, now_ms: u64) -> Output {
        self.drain(now_ms);
        std::mem::take(&mut self.out)
    }

    /// The replies produced since the last take, without taking `Ready`s (for an input that
    /// produces only its answer, such as a keep-alive).
    pub fn take_replies(&mut self) -> Vec<(RequestId, Result<Answer, RequestError>)> {
        std::mem::take(&mut self.out.replies)
    }

    /// One tick of the node's clock.
    pub fn tick(&mut self, now_ms: u64) {
        self.ticks += 1;
        self.node.tick();
        if self.raft().role() == Role::Leader && self.stopping.is_none() {
            self.promote_caught_up_learners();
            self.publish_self();
            self.revoke_expired_leases(now_ms);
            self.maybe_compact_history();
        }
        self.expire_lost_reads();
    }

    /// Messages from peers. Returns the core's refusals of malformed ones.
    pub fn step(&mut self, messages: Vec<Message>) -> Vec<raftkv_raft::Error> {
        messages
            .into_iter()
            .filter_map(|message| self.node.step(message).err())
            .collect()
    }

    /// Starts an election now (bootstrap, tests and state exploration).
    pub fn campaign(&mut self) {
        self.node.campaign();
    }

    /// Proposes a command payload (see `state::Command`); answered once applied.
    pub fn propose(&mut self, id: RequestId, data: Bytes) {
        if self.stopping.is_some() {
            self.reply(id, Err(RequestError::Unavailable("node stopping".into())));
        } else if self.writes.len() >= PENDING_REQUESTS_MAX {
            self.reply(id, Err(RequestError::Unavailable("too many writes".into())));
        } else {
            match self.node.propose(data) {
                Ok(index) => self.track_write(index, id, false),
                Err(e) => self.reply(id, Err(e.into())),
            }
        }
    }

    /// Hands leadership to `target` (if leader).
    pub fn transfer_leader(&mut self, target: NodeId) -> Result<(), RequestError> {
        Ok(self.node.transfer_leader(target)?)
    }

    /// The driver's disk has been syncing for longer than it may (a stalled disk): a leader
    /// hands leadership to its most up-to-date voter. It cannot apply what it cannot persist,
    /// while its heartbeats would keep everyone else from electing a leader that can. Returns
    /// the voter asked to take over.
    pub fn disk_stalled(&mut self) -> Option<NodeId> {
        let target = self.transfer_target()?;
        let refused = self.node.transfer_leader(target).err();
        self.out.events.push(Event::Proposed {
            what: Own::Transfer(target),
            refused: refused.as_ref().map(|e| e.to_string()),
        });
        refused.is_none().then_some(target)
    }

    /// Stops: hands leadership to an up-to-date voter (if leader) and refuses new writes;
    /// `is_stopped` says when the driver may exit.
    pub fn shutdown(&mut self) {
        if let Some(target) = self.transfer_target()
            && let Err(e) = self.node.transfer_leader(target)
        {
            self.out.events.push(Event::Proposed {
                what: Own::Transfer(target),
                refused: Some(e.to_string()),
            });
        }
        self.stopping = Some(self.ticks + self.election_ticks);
    }

    pub(crate) fn reply(&mut self, id: RequestId, result: Result<Answer, RequestError>) {
        self.out.replies.push((id, result));
    }

    pub(crate) fn track_write(&mut self, index: Index, id: RequestId, membership: bool) {
        let term = self.raft().term();
        let write = PendingWrite {
            term,
            id,
            membership,
        };
        if let Some(old) = self.writes.insert(index, write) {
            self.reply(old.id, Err(RequestError::NotCommitted));
        }
    }

    /// Proposes something the engine decided on its own; the outcome becomes an event.
    pub(crate) fn propose_own(&mut self, what: Own, data: Bytes) -> Option<Index> {
        let result = self.node.propose(data);
        let (index, refused) = match result {
            Ok(index) => (Some(index), None),
            Err(e) => (None, Some(e.to_string())),
        };
        self.out.events.push(Event::Proposed { what, refused });
        index
    }

    /// Takes every `Ready`: sends what may leave at once, hands the rest to the disk.
    fn drain(&mut self, now_ms: u64) {
        while self.node.has_ready() {
            let ready = self.node.ready();
            let ack = ready.ack();
            if let Some(soft) = ready.soft_state {
                self.on_role_change(soft.role, soft.leader, now_ms);
            }
            self.out.messages.extend(ready.messages);
            for read in ready.read_states {
                if let Some((_, id)) = self.reads_waiting.remove(&read.context) {
                    self.reads_ready.push((read.index, id));
                }
            }
            let seq = self.next_seq;
            self.next_seq += 1;
            self.out.persist.push(Persist {
                seq,
                hard_state: ready.hard_state,
                entries: ready.entries,
                snapshot: ready.snapshot.clone(),
            });
            let mut ack = ack;
            let mut committed_entries = ready.committed_entries;
            if self.may_apply_now(ready.snapshot.is_some()) && !committed_entries.is_empty() {
                // Committed entries are durable in this node's log already (the core hands out
                // no other): apply them while this `Ready`'s own writes are synced, so an apply
                // never waits for the disk twice (etcd applies the same way).
                ack.applied = None;
                let last = committed_entries.last().map(|e| e.index);
                self.apply(std::mem::take(&mut committed_entries), now_ms);
                if let Some(last) = last {
                    self.node.advance_apply(last);
                }
                self.maybe_snapshot();
            }
            self.in_flight.push_back(InFlight {
                seq,
                snapshot: ready.snapshot,
                persisted_messages: ready.persisted_messages,
                committed_entries,
                ack,
            });
        }
        self.release_reads();
    }

    /// Whether a `Ready`'s committed entries may be applied when it is taken rather than once
    /// its `Persist` is reported: not if it or an earlier one under way installs a leader's
    /// snapshot (the entries follow it), nor if an earlier one still holds entries (order).
    /// (The core already hands out no entry past a snapshot that is not durable; this keeps the
    /// engine right on its own.)
    fn may_apply_now(&self, installs_snapshot: bool) -> bool {
        !installs_snapshot
            && self
                .in_flight
                .iter()
                .all(|f| f.snapshot.is_none() && f.committed_entries.is_empty())
    }

    fn on_role_change(&mut self, role: Role, leader: Option<NodeId>, now_ms: u64) {
        let term = self.raft().term();
        self.out
            .events
            .push(Event::RoleChanged { role, term, leader });
        if role == Role::Leader {
            self.promote_leases(now_ms);
        } else {
            self.published_at = None;
        }
        // Reads in flight under an old leadership never complete (the core drops them).
        if (leader, term) != self.leadership {
            self.leadership = (leader, term);
            for (_, (_, id)) in std::mem::take(&mut self.reads_waiting) {
                self.reply(id, Err(RequestError::Unavailable("leader changed".into())));
            }
        }
    }
}
