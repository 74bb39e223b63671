//! The driver: one thread that owns the Raft core and its WAL and turns inputs (ticks, peer
//! messages, client requests) into `Ready`s, handled in the order the core's contract requires.
//!
//! Each turn of the loop takes every queued input at once, so all proposals that arrived during
//! the previous sync share the next one (group commit through batching): a `Ready` carries them
//! all, the WAL writes them in one append and one `fdatasync`. A leader's appends go out before
//! its own sync (pipelining); votes and acknowledgements only after it.
//!
//! Invariants: a client's write is answered only after its entry is applied (so committed and
//! durable on a majority); a read is answered only once the state machine has applied the read
//! index; a WAL error stops the node (nothing after it is acknowledged).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use raftkv_raft::{
    Entry, Index, MemberChange, Message, NodeId, RawNode, ReadMode, Ready, Role, Term,
};
use raftkv_wal::{FsDisk, Wal};
use serde::Serialize;
use tokio::sync::oneshot;

use crate::config::{ServerConfig, host_port};
use crate::error::RequestError;
use crate::members::Member;
use crate::metrics::Metrics;
use crate::state::{Applied, Command, State};
use crate::transport::{PeerAddrs, Transport};

/// Inputs queued for the driver before senders are refused (clients get 503, peers' messages
/// are dropped).
pub const INPUT_QUEUE_MAX: usize = 8192;
/// Client requests queued for the driver at once; the rest of `INPUT_QUEUE_MAX` is kept for
/// peer messages, so a flood of clients cannot crowd out heartbeats and votes.
pub const CLIENT_INPUTS_MAX: usize = INPUT_QUEUE_MAX / 2;
/// Inputs handled per turn before the driver handles a `Ready` (bounds the batch).
pub const INPUT_BATCH_MAX: usize = 4096;
/// Outstanding writes and reads per node before new ones are refused.
pub const PENDING_REQUESTS_MAX: usize = 16_384;
/// A learner is promoted once its log is within this many entries of the leader's.
pub const PROMOTE_LAG_ENTRIES: u64 = 64;
/// Revisions of key-value history kept by automatic compaction (older ones are dropped, as with
/// etcd's revision auto-compaction); watches and reads at older revisions get `Compacted`.
pub const HISTORY_RETAINED_REVISIONS: i64 = 10_000;
/// Ticks between the leader's checks for history to compact.
pub const HISTORY_COMPACT_INTERVAL_TICKS: u64 = 50;
/// Expired leases the leader proposes to revoke per tick (the rest follow on later ticks).
pub const LEASE_REVOKES_PER_TICK_MAX: usize = 64;

/// A request's reply channel.
pub type Reply<T> = oneshot::Sender<Result<T, RequestError>>;

/// What the driver is asked to do.
pub enum Input {
    /// Messages from a peer.
    Peer(Vec<Message>),
    /// Propose a command payload (see `state::Command`); answered once applied.
    Propose {
        /// The payload.
        data: Bytes,
        /// Gets the result of applying it.
        reply: Reply<Applied>,
    },
    /// A read barrier: answered once this node has applied everything committed before it.
    Read {
        /// ReadIndex round or lease.
        mode: ReadMode,
        /// Gets `Ok` when the local state may be read.
        reply: Reply<()>,
    },
    /// Remove a member (voter or learner) from the configuration; answered once applied.
    RemoveMember {
        /// The member's node id.
        id: NodeId,
        /// Gets the index of the configuration entry.
        reply: Reply<Index>,
    },
    /// Renew a lease (leader only; not through the log, as in etcd).
    LeaseKeepAlive {
        /// The lease.
        id: i64,
        /// Gets the lease's TTL in milliseconds, or why it cannot be renewed.
        reply: Reply<Result<u64, raftkv_kv::KvError>>,
    },
    /// Add a member as a learner (it is promoted once caught up); answered once applied.
    Join {
        /// The new member.
        member: Member,
        /// Gets the index of the configuration entry.
        reply: Reply<Index>,
    },
    /// Hand leadership to an up-to-date voter (if leader), then stop.
    Shutdown {
        /// Signalled once the driver has stopped.
        done: oneshot::Sender<()>,
    },
}

/// What `/v1/status` shows; refreshed by the driver after every turn.
#[derive(Clone, Debug, Default, Serialize)]
pub struct NodeStatus {
    /// This node's id.
    pub id: NodeId,
    /// This member's name.
    pub name: String,
    /// The cluster id, in hex.
    pub cluster_id: String,
    /// follower, pre-candidate, candidate or leader.
    pub role: String,
    /// Current term.
    pub term: Term,
    /// The leader this node knows of.
    pub leader: Option<NodeId>,
    /// Highest index known committed.
    pub commit_index: Index,
    /// Highest index applied to the store.
    pub applied_index: Index,
    /// Index of the latest snapshot.
    pub snapshot_index: Index,
    /// Last index in the log.
    pub last_index: Index,
    /// Voters of the configuration (the incoming half while a change is in flight).
    pub voters: Vec<NodeId>,
    /// Voters of the outgoing configuration while a change is in flight.
    pub voters_outgoing: Vec<NodeId>,
    /// Learners.
    pub learners: Vec<NodeId>,
    /// Set when the WAL failed: the node serves nothing until restarted.
    pub wal_error: Option<String>,
}

/// Shared between the driver and the API.
pub struct Shared {
    /// The replicated state (key-value store and registry); locked briefly, never across await.
    pub state: Mutex<State>,
    /// Latest status.
    pub status: Mutex<NodeStatus>,
    /// Milliseconds since `epoch` when the current WAL sync started; 0 when none is running.
    pub sync_started_ms: AtomicU64,
    /// Time origin for `sync_started_ms`.
    pub epoch: Instant,
    /// Counters for `/metrics`.
    pub metrics: Metrics,
    /// Woken after every applied batch (watchers poll the store then).
    pub applied: tokio::sync::Notify,
    /// Client requests in the driver's queue (bounded by `CLIENT_INPUTS_MAX`).
    pub client_inputs: std::sync::atomic::AtomicUsize,
    /// Set when the node starts shutting down: watch streams end.
    pub stopping: tokio::sync::watch::Sender<bool>,
}

impl Shared {
    /// The replicated state, locked (a poisoned lock is taken over: the driver asserts its own
    /// invariants, so a panic elsewhere left nothing half-applied).
    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The latest status, locked.
    pub fn status(&self) -> MutexGuard<'_, NodeStatus> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How long the current WAL sync has been running, if one is.
    pub fn sync_running_for(&self) -> Option<Duration> {
        let started = self.sync_started_ms.load(Ordering::Relaxed);
        (started != 0).then(|| {
            let now = self.epoch.elapsed().as_millis() as u64;
            Duration::from_millis(now.saturating_sub(started))
        })
    }
}

/// A write waiting for its entry to be applied.
struct PendingWrite {
    /// The term it was proposed in: a different term at its index means it was overwritten.
    term: Term,
    /// Where the result goes.
    reply: WriteReply,
}

enum WriteReply {
    Command(Reply<Applied>),
    Join(Reply<Index>),
}

impl WriteReply {
    fn fail(self, error: RequestError) {
        match self {
            WriteReply::Command(r) => {
                let _ = r.send(Err(error));
            }
            WriteReply::Join(r) => {
                let _ = r.send(Err(error));
            }
        }
    }
}

/// The driver's state.
pub struct Driver {
    node: RawNode<Wal<FsDisk>>,
    shared: Arc<Shared>,
    transport: Transport,
    addrs: PeerAddrs,
    config: ServerConfig,
    id: NodeId,
    /// This node's own registry record, as it should be published.
    me: Member,
    /// Writes by index.
    writes: BTreeMap<Index, PendingWrite>,
    /// Reads waiting for their read index, by context.
    reads_waiting: HashMap<u64, (u64, Reply<()>)>,
    /// Reads with a read index, waiting for apply to reach it.
    reads_ready: Vec<(Index, Reply<()>)>,
    /// Next read context.
    next_read: u64,
    /// Index of the latest snapshot this node took or installed.
    snapshot_index: Index,
    /// Ticks since start.
    ticks: u64,
    /// Tick of the last publish attempt.
    published_at: Option<u64>,
    /// The (leader, term) reads in flight were issued under; a change fails them.
    leadership: (Option<NodeId>, Term),
    /// Set by `Shutdown`: the tick by which the node stops even if the transfer has not finished.
    stopping: Option<(u64, oneshot::Sender<()>)>,
}

impl Driver {
    /// A driver over a started node.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        node: RawNode<Wal<FsDisk>>,
        shared: Arc<Shared>,
        transport: Transport,
        addrs: PeerAddrs,
        config: ServerConfig,
        me: Member,
        snapshot_index: Index,
    ) -> Self {
        let id = node.raft().id();
        let mut driver = Driver {
            node,
            shared,
            transport,
            addrs,
            config,
            id,
            me,
            writes: BTreeMap::new(),
            reads_waiting: HashMap::new(),
            reads_ready: Vec::new(),
            next_read: 1,
            snapshot_index,
            ticks: 0,
            published_at: None,
            leadership: (None, 0),
            stopping: None,
        };
        driver.refresh_addrs();
        // A lone voter need not wait out an election timeout to lead.
        let conf = driver.node.raft().tracker().conf_state();
        if conf.voters.len() == 1 && conf.voters.contains(&id) && !conf.is_joint() {
            driver.node.campaign();
        }
        driver.leadership = (driver.node.raft().leader(), driver.node.raft().term());
        driver.refresh_status();
        driver
    }

    /// Runs until shutdown (returns `None`) or a WAL failure (returns what failed).
    pub fn run(mut self, inputs: Receiver<Input>) -> Option<String> {
        let tick = self.config.tick;
        let mut next_tick = Instant::now() + tick;
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            let first = match inputs.recv_timeout(wait) {
                Ok(input) => Some(input),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            // Every overdue tick is delivered before any input: after a pause or a long sync the
            // core must see the time that passed (its leader lease expires, CheckQuorum steps a
            // cut-off leader down) before it answers a lease read or takes a proposal.
            let now = Instant::now();
            while now >= next_tick {
                self.on_tick();
                next_tick += tick;
            }
            if let Some(input) = first {
                self.handle(input);
                for input in inputs.try_iter().take(INPUT_BATCH_MAX) {
                    self.handle(input);
                }
            }
            while self.node.has_ready() {
                if let Err(e) = self.handle_ready() {
                    let message = e.to_string();
                    self.fail(e);
                    return Some(message);
                }
            }
            self.refresh_status();
            if let Some((deadline, _)) = &self.stopping {
                if self.node.raft().role() != Role::Leader || self.ticks >= *deadline {
                    break;
                }
            }
        }
        if let Some((_, done)) = self.stopping.take() {
            tracing::info!("driver stopped");
            let _ = done.send(());
        }
        None
    }

    fn fail(&mut self, error: raftkv_wal::WalError) {
        tracing::error!(
            data_dir = %self.config.data_dir.display(),
            error = %error,
            "write-ahead log failed; the node stops and acknowledges nothing more. \
             Check the disk, then restart the node (it recovers from what was synced)"
        );
        self.shared.status().wal_error = Some(error.to_string());
        for (_, write) in std::mem::take(&mut self.writes) {
            write
                .reply
                .fail(RequestError::Unknown("the node's disk failed".into()));
        }
        if let Some((_, done)) = self.stopping.take() {
            let _ = done.send(());
        }
    }

    fn handle(&mut self, input: Input) {
        if !matches!(input, Input::Peer(_) | Input::Shutdown { .. }) {
            self.shared.client_inputs.fetch_sub(1, Ordering::Relaxed);
        }
        match input {
            Input::Peer(messages) => {
                for message in messages {
                    if let Err(e) = self.node.step(message) {
                        tracing::debug!(error = %e, "peer message refused");
                    }
                }
            }
            Input::Propose { data, reply } => {
                if self.stopping.is_some() {
                    let _ = reply.send(Err(RequestError::Unavailable("node stopping".into())));
                } else if self.writes.len() >= PENDING_REQUESTS_MAX {
                    let _ = reply.send(Err(RequestError::Unavailable("too many writes".into())));
                } else {
                    match self.node.propose(data) {
                        Ok(index) => {
                            Metrics::bump(&self.shared.metrics.proposals);
                            self.track_write(index, WriteReply::Command(reply));
                        }
                        Err(e) => {
                            let _ = reply.send(Err(e.into()));
                        }
                    }
                }
            }
            Input::Read { mode, reply } => {
                if self.reads_waiting.len() + self.reads_ready.len() >= PENDING_REQUESTS_MAX {
                    let _ = reply.send(Err(RequestError::Unavailable("too many reads".into())));
                    return;
                }
                let context = self.next_read;
                self.next_read += 1;
                match self.node.read_index(context, mode) {
                    Ok(()) => {
                        self.reads_waiting.insert(context, (self.ticks, reply));
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e.into()));
                    }
                }
            }
            Input::Join { member, reply } => self.join(member, reply),
            Input::RemoveMember { id, reply } => self.remove_member(id, reply),
            Input::LeaseKeepAlive { id, reply } => {
                let raft = self.node.raft();
                let log = raft.raft_log();
                // A new leader renews leases only once it has applied an entry of its own term:
                // before that, a revoke proposed by an earlier leader may still commit after the
                // renewal (found by the simulator).
                let settled = log.term(log.applied()) == Ok(raft.term());
                let answer = if raft.role() == Role::Leader && !settled {
                    Err(RequestError::Unavailable(
                        "the new leader is not ready to renew leases yet".into(),
                    ))
                } else if raft.role() == Role::Leader {
                    let now = self.now_ms();
                    let mut state = self.shared.state();
                    Ok(state.kv.lease_keep_alive(id, now))
                } else {
                    Err(RequestError::NotLeader {
                        leader: raft.leader(),
                    })
                };
                let _ = reply.send(answer);
            }
            Input::Shutdown { done } => {
                let deadline = self.ticks + u64::from(self.config.election_ticks);
                if let Some(target) = self.transfer_target() {
                    tracing::info!(target, "shutting down: handing leadership over");
                    if let Err(e) = self.node.transfer_leader(target) {
                        tracing::warn!(error = %e, "leadership transfer refused");
                    }
                }
                self.stopping = Some((deadline, done));
            }
        }
    }

    fn track_write(&mut self, index: Index, reply: WriteReply) {
        let term = self.node.raft().term();
        if let Some(old) = self.writes.insert(index, PendingWrite { term, reply }) {
            old.reply.fail(RequestError::NotCommitted);
        }
    }

    /// The up-to-date voter to hand leadership to, if this node leads and has one.
    fn transfer_target(&self) -> Option<NodeId> {
        let raft = self.node.raft();
        if raft.role() != Role::Leader {
            return None;
        }
        let tracker = raft.tracker();
        let conf = tracker.conf_state();
        conf.voters
            .iter()
            .filter(|&&id| id != self.id)
            .filter_map(|&id| tracker.get(id).map(|p| (p.match_index, id)))
            .max()
            .map(|(_, id)| id)
    }

    fn join(&mut self, member: Member, reply: Reply<Index>) {
        let raft = self.node.raft();
        if raft.role() != Role::Leader {
            let _ = reply.send(Err(RequestError::NotLeader {
                leader: raft.leader(),
            }));
            return;
        }
        let conf = raft.tracker().conf_state();
        if conf.learners.contains(&member.id) {
            // A retried join of a learner: it does not vote, so even a wiped one is harmless.
            let _ = reply.send(Ok(raft.raft_log().committed()));
            return;
        }
        if conf.is_voter(member.id) {
            // A voter that lost its data must not come back as itself: with an empty log it could
            // vote a leader in that lacks committed entries, or vote twice in a term.
            let _ = reply.send(Err(RequestError::Invalid(format!(
                "`{}` is already a voter; if it lost its data, remove it first \
                 (DELETE /v1/members/{}) and join it under a new name",
                member.name, member.name
            ))));
            return;
        }
        let id = member.id;
        match self
            .node
            .propose_conf_change(vec![MemberChange::AddLearner(id)])
        {
            Ok(index) => {
                tracing::info!(node = id, index, "adding a learner");
                self.track_write(index, WriteReply::Join(reply));
                // Its addresses; if this proposal is refused, the node publishes them itself.
                if let Err(e) = self.node.propose(Command::publish(member)) {
                    tracing::debug!(node = id, error = %e, "publishing the new member deferred");
                }
            }
            Err(e) => {
                let _ = reply.send(Err(e.into()));
            }
        }
    }

    fn remove_member(&mut self, id: NodeId, reply: Reply<Index>) {
        let raft = self.node.raft();
        if raft.role() != Role::Leader {
            let _ = reply.send(Err(RequestError::NotLeader {
                leader: raft.leader(),
            }));
            return;
        }
        if !raft.tracker().conf_state().members().contains(&id) {
            let _ = reply.send(Err(RequestError::Invalid(format!(
                "node {id} is not a member of the configuration"
            ))));
            return;
        }
        match self
            .node
            .propose_conf_change(vec![MemberChange::Remove(id)])
        {
            Ok(index) => {
                tracing::info!(node = id, index, "removing a member");
                self.track_write(index, WriteReply::Join(reply));
            }
            Err(e) => {
                let _ = reply.send(Err(e.into()));
            }
        }
    }

    fn on_tick(&mut self) {
        self.ticks += 1;
        self.node.tick();
        if self.node.raft().role() == Role::Leader && self.stopping.is_none() {
            self.promote_caught_up_learners();
            self.publish_self();
            self.revoke_expired_leases();
            self.maybe_compact_history();
        }
        self.expire_lost_reads();
    }

    /// Forgets reads whose read index never came (the request or answer was dropped; the core
    /// does not retry them): their clients have timed out by now.
    fn expire_lost_reads(&mut self) {
        let timeout = self.config.request_timeout.as_millis() / self.config.tick.as_millis().max(1);
        let horizon = self.ticks.saturating_sub(timeout as u64 + 1);
        self.reads_waiting
            .retain(|_, (issued, reply)| *issued >= horizon && !reply.is_closed());
    }

    /// Leader: every `HISTORY_COMPACT_INTERVAL_TICKS`, proposes dropping MVCC history older than
    /// `HISTORY_RETAINED_REVISIONS` revisions, so memory and snapshots track the live data.
    fn maybe_compact_history(&mut self) {
        if self.ticks % HISTORY_COMPACT_INTERVAL_TICKS != 0 {
            return;
        }
        let (revision, compacted) = {
            let state = self.shared.state();
            (state.kv.revision(), state.kv.compacted_revision())
        };
        let target = revision - HISTORY_RETAINED_REVISIONS;
        if target > compacted + HISTORY_RETAINED_REVISIONS / 10 {
            let request = raftkv_kv::Request::compact(target).encode_to_vec();
            match self.node.propose(Command::kv(request.into())) {
                Ok(_) => tracing::info!(revision = target, "compacting key-value history"),
                Err(e) => tracing::debug!(error = %e, "history compaction deferred"),
            }
        }
    }

    /// Milliseconds on this node's monotonic clock (lease deadlines; never replicated).
    fn now_ms(&self) -> u64 {
        self.shared.epoch.elapsed().as_millis() as u64
    }

    /// Leader: proposes revoking leases whose deadline passed; every node then deletes their keys
    /// at the same revision.
    fn revoke_expired_leases(&mut self) {
        let now = self.now_ms();
        let expired = self
            .shared
            .state()
            .kv
            .expired_leases(now, LEASE_REVOKES_PER_TICK_MAX);
        for id in expired {
            let request = raftkv_kv::Request::lease_revoke(id).encode_to_vec();
            match self.node.propose(Command::kv(request.into())) {
                Ok(_) => tracing::debug!(lease = id, "lease expired; revoking"),
                Err(e) => tracing::debug!(lease = id, error = %e, "lease revoke deferred"),
            }
        }
    }

    /// Leader: proposes promoting a learner whose log has caught up.
    fn promote_caught_up_learners(&mut self) {
        let raft = self.node.raft();
        let tracker = raft.tracker();
        let conf = tracker.conf_state();
        if conf.is_joint() {
            return;
        }
        let committed = raft.raft_log().committed();
        let ready = conf.learners.iter().copied().find(|&id| {
            tracker.get(id).is_some_and(|p| {
                p.recent_active
                    && p.match_index > 0
                    && p.match_index + PROMOTE_LAG_ENTRIES >= committed
            })
        });
        if let Some(id) = ready {
            match self
                .node
                .propose_conf_change(vec![MemberChange::AddVoter(id)])
            {
                Ok(index) => tracing::info!(node = id, index, "promoting caught-up learner"),
                Err(e) => tracing::debug!(node = id, error = %e, "promotion deferred"),
            }
        }
    }

    /// Leader: makes sure the registry has this node's current addresses.
    fn publish_self(&mut self) {
        let current = self.shared.state().registry.get(self.id).cloned();
        if current.as_ref() == Some(&self.me) {
            return;
        }
        let due = self
            .published_at
            .is_none_or(|at| self.ticks >= at + u64::from(self.config.election_ticks));
        if due {
            self.published_at = Some(self.ticks);
            if let Err(e) = self.node.propose(Command::publish(self.me.clone())) {
                tracing::debug!(error = %e, "publishing this node's addresses deferred");
            }
        }
    }

    fn handle_ready(&mut self) -> Result<(), raftkv_wal::WalError> {
        let ready = self.node.ready();
        let ack = ready.ack();
        let Ready {
            soft_state,
            hard_state,
            snapshot,
            entries,
            messages,
            persisted_messages,
            committed_entries,
            read_states,
        } = ready;
        if let Some(soft) = soft_state {
            tracing::info!(
                role = ?soft.role,
                term = self.node.raft().term(),
                leader = ?soft.leader,
                "role changed"
            );
            if soft.role == Role::Leader {
                // Leases granted under the old leader get a fresh deadline plus one election
                // timeout, so none expires early because of the leader change.
                let extend = self.config.tick * self.config.election_ticks;
                let now = self.now_ms();
                self.shared
                    .state()
                    .kv
                    .lease_promote(now, extend.as_millis() as u64);
            } else {
                self.published_at = None;
            }
            // Reads in flight under an old leadership never complete (the core drops them).
            let leadership = (soft.leader, self.node.raft().term());
            if leadership != self.leadership {
                self.leadership = leadership;
                for (_, (_, reply)) in self.reads_waiting.drain() {
                    let _ = reply.send(Err(RequestError::Unavailable("leader changed".into())));
                }
            }
        }
        // A leader's appends may leave before its own sync (they promise nothing about its disk).
        self.transport.send(messages);
        if snapshot.is_some() || hard_state.is_some() || !entries.is_empty() {
            let sync_start = Instant::now();
            let started = self.shared.epoch.elapsed().as_millis().max(1) as u64;
            self.shared
                .sync_started_ms
                .store(started, Ordering::Relaxed);
            if let Some(stall) = &self.config.debug_stall_file {
                while stall.exists() {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            let saved = self
                .node
                .storage_mut()
                .save(hard_state, &entries, snapshot.as_ref());
            self.shared.sync_started_ms.store(0, Ordering::Relaxed);
            saved?;
            let took = sync_start.elapsed().as_micros() as u64;
            let metrics = &self.shared.metrics;
            Metrics::bump(&metrics.wal_syncs);
            metrics.wal_sync_micros.fetch_add(took, Ordering::Relaxed);
        }
        if let Some(snapshot) = &snapshot {
            self.install_snapshot(snapshot.metadata.index, &snapshot.data);
        }
        // Votes and acknowledgements vouch for what is now durable.
        self.transport.send(persisted_messages);
        if !committed_entries.is_empty() {
            self.apply(committed_entries);
        }
        for read in read_states {
            if let Some((_, reply)) = self.reads_waiting.remove(&read.context) {
                self.reads_ready.push((read.index, reply));
            }
        }
        self.node.advance(ack);
        self.release_reads();
        self.maybe_snapshot()?;
        Ok(())
    }

    fn install_snapshot(&mut self, index: Index, data: &Bytes) {
        let restored = self.shared.state().restore(index, data);
        if let Err(e) = restored {
            // The leader's snapshot passed its checksums and the core's checks: a snapshot this
            // node cannot read means the binaries disagree on the format. Stop, keep the data.
            panic!("cannot restore the snapshot at {index} received from the leader: {e}");
        }
        tracing::info!(index, "installed snapshot from the leader");
        self.shared.applied.notify_waiters();
        Metrics::bump(&self.shared.metrics.snapshots_installed);
        self.snapshot_index = self.snapshot_index.max(index);
        // Writes at or below the snapshot were decided without this node seeing them.
        let later = self.writes.split_off(&(index + 1));
        for (_, write) in std::mem::replace(&mut self.writes, later) {
            write
                .reply
                .fail(RequestError::Unknown("replaced by a snapshot".into()));
        }
        self.refresh_addrs();
    }

    fn apply(&mut self, entries: Vec<Entry>) {
        let mut membership_changed = false;
        let mut results = Vec::new();
        let now = self.now_ms();
        {
            let mut state = self.shared.state();
            state.kv.set_clock(now);
            for entry in &entries {
                if entry.index <= state.applied() {
                    continue;
                }
                let applied = state.apply(entry);
                if let raftkv_raft::EntryKind::ConfChange(conf) = &entry.kind {
                    tracing::info!(
                        index = entry.index,
                        voters = ?conf.voters,
                        outgoing = ?conf.voters_outgoing,
                        learners = ?conf.learners,
                        "membership changed"
                    );
                }
                membership_changed |= matches!(applied, Applied::Conf | Applied::Published);
                results.push((entry.index, entry.term, applied));
                Metrics::bump(&self.shared.metrics.applied_entries);
            }
        }
        for (index, term, applied) in results {
            // Writes below this index that were never seen were overwritten before applying.
            while let Some(entry) = self.writes.first_entry() {
                if *entry.key() >= index {
                    break;
                }
                entry.remove().reply.fail(RequestError::NotCommitted);
            }
            let Some(write) = self.writes.remove(&index) else {
                continue;
            };
            if write.term != term {
                write.reply.fail(RequestError::NotCommitted);
                continue;
            }
            match write.reply {
                WriteReply::Command(reply) => {
                    let _ = reply.send(Ok(applied));
                }
                WriteReply::Join(reply) => {
                    let _ = reply.send(Ok(index));
                }
            }
        }
        if membership_changed {
            self.refresh_addrs();
        }
        self.shared.applied.notify_waiters();
    }

    fn release_reads(&mut self) {
        let applied = self.node.raft().raft_log().applied();
        let mut still = Vec::new();
        for (index, reply) in std::mem::take(&mut self.reads_ready) {
            if index <= applied {
                Metrics::bump(&self.shared.metrics.reads);
                let _ = reply.send(Ok(()));
            } else {
                still.push((index, reply));
            }
        }
        self.reads_ready = still;
    }

    /// Takes a snapshot and compacts the log once enough entries were applied since the last.
    fn maybe_snapshot(&mut self) -> Result<(), raftkv_wal::WalError> {
        let applied = self.node.raft().raft_log().applied();
        if applied < self.snapshot_index + self.config.snapshot_entries {
            return Ok(());
        }
        let data = {
            let state = self.shared.state();
            if state.applied() != applied {
                return Ok(());
            }
            state.snapshot_data()
        };
        let bytes = data.len();
        match self.node.create_snapshot(applied, data) {
            Ok(snapshot) => {
                self.node.storage_mut().compact(snapshot)?;
                self.snapshot_index = applied;
                Metrics::bump(&self.shared.metrics.snapshots_taken);
                tracing::info!(
                    index = applied,
                    bytes,
                    "took snapshot and compacted the log"
                );
            }
            Err(e) => tracing::warn!(index = applied, error = %e, "snapshot skipped"),
        }
        Ok(())
    }

    /// Rebuilds the peer address book from the registry.
    fn refresh_addrs(&mut self) {
        let state = self.shared.state();
        let mut addrs = self.addrs.write().unwrap_or_else(|p| p.into_inner());
        for member in state.registry.members() {
            if let Ok(addr) = host_port(&member.peer_url) {
                addrs.insert(member.id, addr);
            }
        }
    }

    fn refresh_status(&mut self) {
        let raft = self.node.raft();
        let log = raft.raft_log();
        let conf = raft.tracker().conf_state();
        let mut status = self.shared.status();
        status.id = self.id;
        status.role = match raft.role() {
            Role::Follower => "follower",
            Role::PreCandidate => "pre-candidate",
            Role::Candidate => "candidate",
            Role::Leader => "leader",
        }
        .to_string();
        status.term = raft.term();
        status.leader = raft.leader();
        status.commit_index = log.committed();
        status.applied_index = log.applied();
        status.snapshot_index = self.snapshot_index;
        status.last_index = log.last_index();
        status.voters = conf.voters.iter().copied().collect();
        status.voters_outgoing = conf.voters_outgoing.iter().copied().collect();
        status.learners = conf.learners.iter().copied().collect();
    }
}
